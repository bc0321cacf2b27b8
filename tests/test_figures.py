"""The figures: text from configs drawn literally, and the hand-made layout keeping every text
inside the figure and off every other panel."""

import io
import itertools
import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.cbook import is_math_text
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from harness import api
from harness import figures as plots
from harness.cluster import usable_cores
from harness.metrics import hasher_order

# Names a config may hold that matplotlib would read as mathtext: "$\frac$" even fails to parse.
DOLLARS = {
    "name": "dollars",
    "images": ["builtin:coffee", "builtin:camera", "builtin:astronaut"],
    "report": {"previews": True},
    "hashers": ["aHash", {"name": "pHash", "id": "p$Hash$"}],
    "sweeps": [
        {"family": "cost $5 and $6", "label": "$\\frac$ {value}", "b": {"jpeg": {"quality": "$value"}},
         "values": [80, 20]},
        {"family": "$x^2$", "labels": ["$a$ mild", "$b$ strong"], "b": {"blur": {"kernel": "$value"}},
         "values": [3, 9]},
    ],
}

# Crowded on purpose: long hasher ids (a legend over several rows), long labels (slanted ticks),
# a family of one pair (bars), an inverted axis and a geometric (log) one.
CROWDED = {
    "name": "crowded",
    "images": ["builtin:coffee", "builtin:camera", "builtin:astronaut"],
    "report": {"previews": True},
    "hashers": ["aHash", "pHash", "imagehash.average_hash", "imagehash.dhash", "imagehash.phash",
                {"name": "BlockMeanHash", "mode": 1, "id": "a rather long name for BlockMeanHash mode 1"},
                {"name": "imagehash.whash", "mode": "haar", "id": "imagehash.whash-haar"}, "MarrHildrethHash"],
    "sweeps": [
        {"family": "identity", "label": "Same image"},
        {"family": "a family whose name is long", "b": {"jpeg": {"quality": "$value"}}, "values": [90, 50, 10],
         "labels": ["Quality ninety (mild)", "Quality fifty", "Quality ten (the strongest of all)"]},
        {"family": "shift", "b": {"crop": {"x": 64, "y": 64, "width": 128, "height": 128, "dx": "$value",
                                           "dy": "$value"}},
         "a": {"crop": {"x": 64, "y": 64, "width": 128, "height": 128}}, "values": [1, 2, 4, 8, 16, 32]},
        {"family": "gamma", "b": {"gamma": {"gamma": "$value"}}, "values": [0.8, 0.5, 0.3]},
        {"family": "blur", "b": {"blur": {"kernel": "$value"}}, "values": [3, 7]},
    ],
}


def every_figure(results):
    metrics, distances = results.metrics, results.distances
    hashers = hasher_order(distances)
    axes = plots.sweep_axes(results.config)
    impostors = results.impostors.drop(index=metrics.excluded.index)
    chosen = metrics.chosen
    return {
        "families": plots.overview_figure(metrics.curves, hashers, axes),
        "heatmap": plots.heatmap_figure(distances),
        "detection": plots.detection_figure(metrics.detection, chosen, hashers, axes),
        "matrix": plots.detection_matrix_figure(metrics.detection, chosen, hashers),
        "histograms": plots.histogram_figure(distances, impostors, metrics.points, hashers),
        "roc": plots.roc_figure(distances, impostors, hashers),
        "previews": plots.previews_figure(results.previews),
    }


def drawn(figure) -> bytes:
    """The PNG the report would save (this draws every text, and fails where mathtext does)."""
    buffer = io.BytesIO()
    plots.save_png(figure, buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def dollars():
    return api.evaluate(DOLLARS)


@pytest.fixture(scope="module")
def crowded():
    return api.evaluate(CROWDED)


@pytest.fixture(scope="module")
def crowded_figures(crowded):
    return every_figure(crowded)


def test_text_from_configs_is_drawn_literally(dollars):
    seen = set()
    for name, figure in every_figure(dollars).items():
        drawn(figure)  # before: "$\frac$" raised a ParseSyntaxException here
        for text in figure.findobj(Text):
            shown = text.get_text()
            literal = shown.replace("\\$", "$")  # as matplotlib draws plain text
            if any(part in literal for part in ("cost", "frac", "Hash$", "x^2", "$a$", "$b$")):
                assert not (text.get_parse_math() and is_math_text(shown)), (name, shown)
                seen.add(literal)
    # The names themselves reach the figures, dollars and all.
    for expected in ("cost $5 and $6", "$x^2$", "p$Hash$", "$\\frac$ 80", "$a$ mild"):
        assert expected in seen, expected


def test_the_report_draws_names_as_they_are_with_no_escape_left_in_them(dollars):
    """The report draws with text.parse_math off: a name's `$` needs no escape there, and one
    would be drawn. Was: the titles read "cost \\$5 and \\$6"."""
    from harness.report import _report_style

    with _report_style():
        figures = every_figure(dollars)
        texts = {name: [text.get_text() for text in figure.findobj(Text)] for name, figure in figures.items()}
        for figure in figures.values():
            drawn(figure)
    assert "cost $5 and $6" in texts["families"] and "$a$ mild" in texts["heatmap"]
    assert not [(name, text) for name, shown in texts.items() for text in shown if "\\$" in text]


def test_a_name_of_any_length_is_drawn_in_at_most_a_hundred_characters():
    """A 20,000-character family name (the label defaults to it): titles wrapped to two lines, tick
    labels cut. Was: minutes to wrap at 2,000 characters; at 200,000, 16 GB and no end."""
    name = "W" * 20_000
    results = api.evaluate({"name": "long", "images": ["builtin:coffee", "builtin:camera"], "hashers": ["aHash"],
                            "report": {"previews": True},
                            "sweeps": [{"family": name, "b": {"jpeg": {"quality": "$value"}}, "values": [50, 60]}]})
    for key, figure in every_figure(results).items():
        drawn(figure)
        longest = max(len(text.get_text()) for text in figure.findobj(Text))
        assert longest <= 2 * plots.NAME_DRAWN_MAX, (key, longest)
    heatmap = every_figure(results)["heatmap"]
    labels = [label.get_text() for label in heatmap.axes[0].get_yticklabels()]
    # Its start and its end, where the labels differ (they read alike when cut at the end: "W" * 99 + "…").
    assert labels == ["W" * 60 + "…" + "W" * 36 + " 50", "W" * 60 + "…" + "W" * 36 + " 60"]


def overlap(a, b, tolerance: float = 1.0) -> bool:
    return (min(a.x1, b.x1) - max(a.x0, b.x0) > tolerance) and (min(a.y1, b.y1) - max(a.y0, b.y0) > tolerance)


@pytest.mark.parametrize("name", ["families", "heatmap", "detection", "matrix", "histograms", "roc", "previews"])
def test_every_text_stays_in_the_figure_and_off_the_other_panels(crowded_figures, name):
    assert_inside_and_apart(crowded_figures[name], name)


def test_previews_of_one_pair_a_family_keep_their_title_inside():
    """One thumbnail a row is narrower than the title over them: the figure is as wide as the title."""
    results = api.evaluate({"images": ["builtin:camera", "builtin:coffee"], "report": {"previews": True},
                            "hashers": ["aHash"], "sweeps": [{"family": "jpeg", "b": {"jpeg": {"quality": 50}}},
                                                             {"family": "blur", "b": {"blur": {"kernel": 3}}}]})
    assert_inside_and_apart(plots.previews_figure(results.previews), "previews")


def test_preview_titles_are_readable_and_a_long_one_takes_two_lines():
    """Titles of 8 points at the previews' 72 dpi (6 points was 4 pixels: unreadable); a label too wide
    for its thumbnail goes on two lines, inside the figure and off the next thumbnail."""
    label = "Downscale x0.5, then JPEG quality 10, then a box blur 5x5"
    results = api.evaluate({"images": ["builtin:camera", "builtin:coffee"], "report": {"previews": True},
                            "hashers": ["aHash"], "sweeps": [
                                {"family": "chain", "label": label, "b": [{"scale": {"factor": 0.5}},
                                                                          {"jpeg": {"quality": 10}}, {"blur": {"kernel": 5}}]},
                                {"family": "blur", "b": {"blur": {"kernel": 3}}}]})
    figure = plots.previews_figure(results.previews)
    titles = [text for text in figure.texts if text.get_text() != figure.texts[0].get_text()]
    assert {text.get_fontsize() for text in titles} == {plots.PREVIEW_TITLE}
    long = [text.get_text() for text in titles if text.get_text().startswith("Downscale")]
    assert len(long) == 1 and long[0].count("\n") == 1, long
    assert long[0].split("\n")[1].startswith("…") and long[0].endswith("box blur 5x5"), long  # its end, which differs
    assert_inside_and_apart(figure, "previews")


def test_long_labels_that_differ_only_at_their_end_are_drawn_apart():
    """Cut at their end, two labels of 140 characters read alike in the heatmap's rows and in the
    previews' titles: their {value}, which tells them apart, was cut off."""
    label = ("A very long label describing the edit in painstaking detail so that it cannot possibly fit "
             "in any tick label or legend box, strength {value}")
    results = api.evaluate({"images": ["builtin:camera", "builtin:coffee"], "report": {"previews": True},
                            "hashers": ["aHash"], "sweeps": [{"family": "jpeg", "label": label,
                                                              "b": {"jpeg": {"quality": "$value"}},
                                                              "values": [80, 50]}]})
    figures = every_figure(results)
    rows = [text.get_text() for text in figures["heatmap"].axes[0].get_yticklabels()]
    assert len(rows) == 2 and rows[0].endswith("strength 80") and rows[1].endswith("strength 50"), rows
    titles = [text.get_text() for text in figures["previews"].texts if "strength" in text.get_text()]
    assert sorted(title[-11:] for title in titles) == ["strength 50", "strength 80"], titles
    assert_inside_and_apart(figures["previews"], "previews")


def assert_inside_and_apart(figure, name):
    drawn(figure)
    renderer = figure.canvas.get_renderer()
    page = figure.bbox
    boxes = [ax.get_tightbbox(renderer) for ax in figure.axes if ax.get_visible()]
    boxes += [legend.get_window_extent(renderer) for legend in figure.legends]
    boxes += [text.get_window_extent(renderer) for text in figure.texts]
    boxes += [Bbox.from_extents(*np.array(image.get_extent())[[0, 2, 1, 3]]) for image in figure.images]
    assert len(boxes) > 1
    for box in boxes:
        assert box.x0 >= page.x0 - 1 and box.y0 >= page.y0 - 1, (name, box, page)
        assert box.x1 <= page.x1 + 1 and box.y1 <= page.y1 + 1, (name, box, page)
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not overlap(a, b), (name, a, b)


def test_every_panel_labels_its_ticks_and_its_axis(crowded_figures):
    figure = crowded_figures["families"]
    drawn(figure)
    for ax in figure.axes:
        assert ax.get_title()
        assert [t for t in ax.get_xticklabels() if t.get_text()], ax.get_title()
        assert [t for t in ax.get_yticklabels() if t.get_text()], ax.get_title()
        assert ax.get_xlabel() or ax.get_title() == "identity"  # the swept parameter's name
    titles = {ax.get_title(): ax for ax in figure.axes}
    # The config's labels, their shared first word dropped; mildest (listed first) on the left.
    jpeg = titles["a family whose name is long"]
    assert jpeg.get_xlabel() == "jpeg quality"
    on_screen = {jpeg.transData.transform((x, 0))[0]: label.get_text()
                 for x, label in zip(jpeg.get_xticks(), jpeg.get_xticklabels())}
    assert [on_screen[x] for x in sorted(on_screen)] == ["ninety (mild)", "fifty", "ten (the stro…"]
    assert titles["shift"].get_xscale() == "log"


def test_a_rebuilt_figure_is_byte_identical(crowded):
    assert drawn(every_figure(crowded)["detection"]) == drawn(every_figure(crowded)["detection"])


@pytest.mark.parametrize("labels, expected", [
    (["Downscale to 1/2", "Downscale to 1/4"], ["1/2", "1/4"]),
    (["JPEG 80", "JPEG 40", "PNG"], ["JPEG 80", "JPEG 40", "PNG"]),  # nothing shared
    (["Shift 1 px", "Shift 2 px"], ["1 px", "2 px"]),
    (["Gamma", "Gamma 2"], ["Gamma", "Gamma 2"]),  # nothing would be left of one
    (["only one label"], ["only one label"]),
])
def test_tick_labels_drop_the_words_every_label_starts_with(labels, expected):
    assert plots._tick_texts(labels) == expected


@pytest.mark.parametrize("transform, param, values, mildest", [
    ("jpeg", "quality", [10, 50, 90], 90),  # listed strongest first (as the article lists it)
    ("jpeg", "quality", [90, 50, 10], 90),
    ("blur", "kernel", [9, 5, 3], 3),
    ("gamma", "gamma", [2.0, 1.5, 1.2], 2.0),  # no way is stronger: the config's order stands
    ("gamma", "gamma", [1.2, 1.5, 2.0], 1.2),
])
def test_the_mildest_edit_is_on_the_left_whatever_order_the_config_lists(transform, param, values, mildest):
    config = {"sweeps": [{"family": "f", "b": {transform: {param: "$value"}}, "values": values}]}
    axis = plots.sweep_axes(config)["f"]
    ax = Figure().add_subplot()
    ax.plot(values, [0] * len(values))
    plots._value_axis(ax, pd.DataFrame({"x": [float(v) for v in values], "label": [str(v) for v in values]}), axis)
    assert min(values, key=lambda x: ax.transData.transform((x, 0))[0]) == mildest


def test_the_strength_direction_of_a_plugin_is_not_looked_up_by_importing_it():
    config = {"sweeps": [{"family": "f", "b": {"no_such_module_anywhere:edit": {"k": "$value"}}, "values": [1, 2]}]}
    assert plots.sweep_axes(config)["f"].stronger is None
    assert "no_such_module_anywhere" not in sys.modules


@pytest.mark.parametrize("values, labels", [
    ([0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], [f"{round(v * 100)}%" for v in
                                                       [0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]]),  # Copydays
    ([75, 50, 30, 20, 15, 10, 8, 5, 3], None),  # geometric: a log axis
    ([10, 20, 30, 40, 50, 60, 70, 80, 90], None),
])
def test_the_tick_labels_of_a_panel_never_touch(values, labels):
    config = {"sweeps": [{"family": "f", "b": {"crop_area": {"removed": "$value"}}, "values": values,
                          **({"labels": labels} if labels else {})}]}
    axis = plots.sweep_axes(config)["f"]
    figure = Figure(figsize=plots.PANEL, dpi=plots.DPI)
    FigureCanvasAgg(figure)
    ax = figure.add_axes((0, 0.3, 1, 0.7))
    ax.plot(values, [0] * len(values))
    plots._value_axis(ax, pd.DataFrame({"x": [float(v) for v in values],
                                        "label": labels or [str(v) for v in values]}), axis)
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text()]
    assert len(boxes) == len(values)
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not overlap(a, b, tolerance=0.0), (a, b)


# Each fork of the process that runs it, recorded in `forks` (the copies' pids).
RECORD_FORKS = """
import os
forks, real_fork = [], os.fork
def fork():
    pid = real_fork()
    if pid:
        forks.append(pid)
    return pid
os.fork = fork
"""
# Whether each recorded copy was reaped by the time the script ends.
COPIES_REAPED = """
for pid in forks:
    try:
        os.waitpid(pid, os.WNOHANG)
        print("copy left running")
    except ChildProcessError:
        print("copy reaped")
"""


# A run in a process of its own (one thread, so the report may fork), saying how often it forked; with
# "fail-in-copy", every figure the forked copy draws fails there (and only there).
FORKING_RUN = RECORD_FORKS + """
import runpy, sys
from harness import figures
parent = os.getpid()
if sys.argv[3] == "fail-in-copy":
    for name in ("overview_figure", "detection_figure", "roc_figure", "heatmap_figure", "histogram_figure"):
        def failing(*args, _real=getattr(figures, name), **kwargs):
            if os.getpid() != parent:
                raise RuntimeError("the copy fails")
            return _real(*args, **kwargs)
        setattr(figures, name, failing)
sys.argv = ["harness", "run", sys.argv[1], "--out", sys.argv[2], "--quiet", "--workers", "1"]
code = 0
try:
    runpy.run_module("harness", run_name="__main__")
except SystemExit as stop:
    code = stop.code
print("forks", len(forks))
sys.exit(code)
"""


@pytest.mark.parametrize("mode", ["plain", "fail-in-copy"])
def test_figures_drawn_in_two_processes_are_the_bytes_drawn_in_one(tmp_path, mode, monkeypatch):
    import shutil
    import subprocess

    import yaml

    from harness import report

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(CROWDED))
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-c", FORKING_RUN, str(config), str(out), mode], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    cores = usable_cores()
    assert done.stdout.split()[-1] == ("1" if cores > 1 else "0")
    serial = tmp_path / "serial"
    shutil.copytree(out, serial)
    monkeypatch.setattr(report, "can_fork", lambda: False)
    report.write(api.load(str(serial)), str(serial), rebuild=True)
    figures = sorted(p.relative_to(out) for p in out.rglob("*.png"))
    assert len(figures) == 7  # previews and six figures
    for name in figures:
        assert (out / name).read_bytes() == (serial / name).read_bytes(), name


# report.draw in a process of its own (one thread, so it may fork): `meanwhile` runs in this process
# while the copy draws; when it fails, the copy is stopped and reaped before the error goes on.
DRAW_MEANWHILE = RECORD_FORKS + """
import sys, time
from harness import figures, report, storage
builders = sys.argv[1] + ".builders"  # the process that built each figure
def figure():
    with open(builders, "a") as log:
        log.write(f"{os.getpid()}\\n")
    made = figures._figure(dpi=30)
    made.add_subplot().plot([0, 1], [1, 0])
    return made
def meanwhile():
    if sys.argv[2] == "fail":
        raise OSError(28, "No space left on device")
    # "slow tables": the tables take until the copy has taken every figure (or a minute)
    for _ in range(600 if sys.argv[2] == "slow tables" else 0):
        if all(os.path.exists(output.path(f"f{k}.png")) for k in range(4)):
            break
        time.sleep(0.1)
    output.write_text("table.txt", "written meanwhile")
with storage.OutputSet(sys.argv[1]) as output:
    try:
        report.draw(output, [(f"f{k}.png", figure) for k in range(4)], meanwhile)
        print("drawn", sorted(output.files()))
    except OSError as exc:
        print("error", exc.strerror)
built = [int(pid) for pid in open(builders).read().split()] if os.path.exists(builders) else []
print("built by the copy", sum(pid in forks for pid in built), "of", len(built))
""" + COPIES_REAPED


@pytest.mark.parametrize("mode", ["ok", "fail", "slow tables"])
def test_tables_written_while_the_copy_draws(tmp_path, mode):
    """The copy takes the figures one at a time: while the tables take long, it draws them all."""
    import subprocess

    done = subprocess.run([sys.executable, "-c", DRAW_MEANWHILE, str(tmp_path / "out"), mode], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    cores = usable_cores()
    assert lines[2:] == (["copy reaped"] if cores > 1 else [])
    if mode == "slow tables" and cores > 1:
        assert lines[1] == "built by the copy 4 of 4"
    if mode != "fail":
        assert lines[0] == "drawn " + str(sorted(["f0.png", "f1.png", "f2.png", "f3.png", "table.txt"]))
    else:
        assert lines[0] == "error No space left on device"


# A forked copy that never finishes its figure (as one stuck on a lock another thread held at the fork).
STUCK_COPY = RECORD_FORKS + """
import sys, time
from harness import figures, report, storage
report.COPY_GRACE = 1.0
parent = os.getpid()
def figure():
    if os.getpid() != parent:
        time.sleep(3600)
    made = figures._figure(dpi=30)
    made.add_subplot().plot([0, 1], [1, 0])
    return made
started = time.monotonic()
with storage.OutputSet(sys.argv[1]) as output:
    report.draw(output, [(f"f{k}.png", figure) for k in range(4)])
    print("drawn", sorted(output.files()), "within a minute" if time.monotonic() - started < 60 else "late")
""" + COPIES_REAPED


def test_a_drawing_copy_that_never_ends_is_stopped_and_its_figure_drawn_here(tmp_path):
    """Was: this process waited for its forked copy for as long as the copy took; a copy stuck on
    its figure (a lock a native library's thread held at the fork) hung the report for good. Now a
    copy not ended COPY_GRACE seconds (and ten of the longest figure) after the last figure was
    taken is killed, and this process draws the figures it did not."""
    import subprocess

    if usable_cores() < 2:
        pytest.skip("one core: the report does not fork")
    done = subprocess.run([sys.executable, "-c", STUCK_COPY, str(tmp_path / "out")], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"drawn {[f'f{k}.png' for k in range(4)]} within a minute", "copy reaped"], \
        done.stdout


# The forked copy's parent-death signal, read where it draws (Linux's prctl PR_GET_PDEATHSIG).
DEATH_SIGNAL = RECORD_FORKS + """
import ctypes, sys, time
from harness import figures, report, storage
log = sys.argv[1] + ".signals"
def figure():
    signal = ctypes.c_int(0)
    ctypes.CDLL(None).prctl(2, ctypes.byref(signal))
    with open(log, "a") as out:
        out.write(f"{os.getpid()} {signal.value}\\n")
    made = figures._figure(dpi=30)
    made.add_subplot().plot([0, 1], [1, 0])
    return made
def meanwhile():  # until the copy has drawn every figure (a minute at most)
    for _ in range(600):
        if all(os.path.exists(output.path(f"f{k}.png")) for k in range(4)):
            break
        time.sleep(0.1)
with storage.OutputSet(sys.argv[1]) as output:
    report.draw(output, [(f"f{k}.png", figure) for k in range(4)], meanwhile)
print(sorted({int(sig) for pid, sig in (line.split() for line in open(log)) if int(pid) in forks}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_the_drawing_copy_dies_with_its_parent(tmp_path):
    """A run killed with -9 while the report draws left its forked copy writing figures into the
    dead run's staging folder: the copy has the workers' parent-death signal now."""
    import signal
    import subprocess

    if usable_cores() < 2:
        pytest.skip("one core: the report does not fork")
    done = subprocess.run([sys.executable, "-c", DEATH_SIGNAL, str(tmp_path / "out")], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == str([int(signal.SIGKILL)]), done.stdout


# report.draw interrupted (SIGINT to itself) the moment the copy is forked, or while it waits for the
# copy: the copy must be stopped before the staging folder goes, or it writes figures/ there again.
INTERRUPTED_DRAW = RECORD_FORKS + """
import signal, sys, time
from harness import figures, report, storage
recorded, when = os.fork, sys.argv[2]
def fork_then_interrupt():
    pid = recorded()
    if pid and when == "at the fork":
        os.kill(os.getpid(), signal.SIGINT)
    return pid
os.fork = fork_then_interrupt
def figure():
    time.sleep(0.3)
    made = figures._figure(dpi=30)
    made.add_subplot().plot([0, 1], [1, 0])
    return made
sent = []
def waiting(pid, options, _real=os.waitpid):  # the first wait for the copy's last figure is interrupted
    if when == "while waiting" and pid in forks and not sent:
        sent.append(pid)
        os.kill(os.getpid(), signal.SIGINT)
    return _real(pid, options)
os.waitpid = waiting
staging = None
try:
    with storage.OutputSet(sys.argv[1]) as output:
        staging = output.staging
        report.draw(output, [(f"figures/f{k}.png", figure) for k in range(6)])
    print("not interrupted")
except KeyboardInterrupt:
    print("interrupted")
time.sleep(2.5)  # longer than the copy would take to draw what is left
print("staging left" if os.path.lexists(staging) else "staging gone")
""" + COPIES_REAPED


@pytest.mark.parametrize("when", ["at the fork", "while waiting"])
def test_an_interrupted_report_stops_its_drawing_copy_before_its_staging_folder_goes(tmp_path, when):
    """Ctrl-C between the fork and the block that stops the copy, or while this process waited for
    the copy's last figure, left the copy drawing: its figures/ came back in a staging folder that stayed."""
    import subprocess

    if usable_cores() < 2:
        pytest.skip("one core: the report does not fork")
    done = subprocess.run([sys.executable, "-c", INTERRUPTED_DRAW, str(tmp_path / "out"), when], capture_output=True,
                          text=True, timeout=120)
    assert done.stdout.splitlines() == ["interrupted", "staging gone", "copy reaped"], (done.stdout, done.stderr)
    assert not [p for p in tmp_path.iterdir() if ".staging" in p.name]


@pytest.mark.parametrize("count", [3, 10, 15, 20, 25])
def test_no_two_hashers_are_drawn_alike(count):
    """Past ten hashers, hasher k+10 gets the light shade of hasher k's hue (tab20's pairs): a
    marker shape tells the two apart, and no two hashers share both colour and shape."""
    from matplotlib.colors import to_hex

    hashers = [f"h{k}" for k in range(count)]
    styles = [(to_hex(plots._colour(hashers, h)), plots._marker(hashers, h)) for h in hashers]
    assert len(set(styles)) == count
    assert all(styles[k][1] != styles[k + 10][1] for k in range(count - 10))


def near_identical_images(folder, count: int = 4):
    """`count` flat grey images that differ in one pixel: every pair of different images is as close
    as a copy, so no hasher finds a threshold that keeps false matches at 1%."""
    import cv2

    folder.mkdir(exist_ok=True)
    for k in range(count):
        image = np.full((64, 64, 3), 128, np.uint8)
        image[k, k] = 0
        cv2.imwrite(str(folder / f"flat{k}.png"), image)
    return folder


def no_threshold_config(folder, **more) -> dict:
    return {"name": "dup", "images": [str(folder)], "hashers": ["aHash", "pHash"],
            "sweeps": [{"family": "jpeg", "label": "JPEG {value}", "b": {"jpeg": {"quality": "$value"}},
                        "values": [90, 50, 10]}], **more}


def figure_text(figure) -> str:
    return "\n".join(text.get_text() for text in figure.findobj(Text))


def test_a_run_in_which_no_hasher_has_a_threshold_writes_its_report(tmp_path):
    """Was: exit 3 (IndexError in _place_panels: the detection figure had no panel) and no report."""
    import yaml

    from harness.__main__ import main

    config = tmp_path / "dup.yaml"
    config.write_text(yaml.safe_dump(no_threshold_config(near_identical_images(tmp_path / "flat"))))
    out = tmp_path / "out"
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    for name in ("summary.md", "thresholds.csv", "figures/detection.png", "figures/detection_matrix.png"):
        assert (out / name).is_file(), name
    assert pd.read_csv(out / "thresholds.csv")["threshold"].isna().all()  # the case this test is about


def test_the_detection_figure_without_a_threshold_says_why_it_is_empty(tmp_path):
    results = api.evaluate(no_threshold_config(near_identical_images(tmp_path / "flat")))
    figure = plots.detection_figure(results.metrics.detection, results.metrics.chosen,
                                    hasher_order(results.distances))
    drawn(figure)
    assert not figure.axes
    text = figure_text(figure).replace("\n", " ")
    assert "No hasher has a threshold at fpr=0.01" in text and "aHash, pHash" in text


def test_the_roc_figure_without_impostor_pairs_says_why_it_is_empty(tmp_path):
    """Every impostor pair excluded as a known duplicate: no curve anywhere (was: empty panels
    under a legend of hashers that drew nothing)."""
    folder = near_identical_images(tmp_path / "flat", count=2)
    results = api.evaluate(no_threshold_config(folder, impostors={"duplicates": [["flat0", "flat1"]]}))
    impostors = results.impostors.drop(index=results.metrics.excluded.index)
    assert impostors.empty
    figure = plots.roc_figure(results.distances, impostors, hasher_order(results.distances))
    drawn(figure)
    assert not figure.axes
    assert "no impostor pairs" in figure_text(figure).replace("\n", " ").lower()


def test_the_answer_names_no_best_hasher_where_none_has_a_threshold(tmp_path):
    """Was: "aHash = pHash | n/a (0 of 0; 95% CI n/–n/a)", a tie of hashers that detect nothing."""
    from harness.summary import summary_markdown

    results = api.evaluate(no_threshold_config(near_identical_images(tmp_path / "flat")))
    figures = {key: f"figures/{key}.png" for key in ("families", "heatmap", "detection", "histograms", "roc",
                                                     "matrix")}
    summary = summary_markdown(results, figures, previews=False)
    assert "| jpeg | none: no hasher has a threshold at fpr=0.01 | n/a | n/a |  |  |" in summary
    assert "aHash = pHash" not in summary and "n/–" not in summary


def test_previews_show_a_failed_edit_as_a_failed_tile_not_the_untouched_image(tmp_path):
    """Was: side A (the untouched image) under the label of the edit that failed."""
    import cv2

    from tests.conftest import make_scene

    cv2.imwrite(str(tmp_path / "scene.png"), make_scene(1))
    results = api.evaluate({"images": [str(tmp_path / "scene.png")], "hashers": ["aHash"], "report": {"previews": True},
                            "sweeps": [{"family": "crop", "label": "Crop {value}",
                                        "b": {"crop": {"x": 0, "y": 0, "width": "$value", "height": 10}},
                                        "values": [100, 1000]}]})  # 1000 does not fit the 160-pixel scene
    assert [b is None for _, _, b in results.previews] == [False, True]
    figure = plots.previews_figure(results.previews)
    drawn(figure)
    assert len(figure.images) == 2  # a thumbnail and a tile
    texts = [text.get_text() for text in figure.texts]
    assert texts.count("edit failed") == 1
    # The tile's text sits under the failed pair's title, not the other's.
    position = {text.get_text(): text.get_position()[0] for text in figure.texts}
    assert position["edit failed"] == pytest.approx(position["Crop 1000"])
    # ... and the untouched image is nowhere: the tile is flat grey with a frame.
    tile = figure.images[1].get_array()
    assert len(np.unique(tile)) == 2


def test_the_note_under_a_one_panel_figure_is_wrapped_to_its_width(tmp_path):
    """Was: "not shown (...): ResNet50, MobileNetV3S" cut off at the edge of a one-panel figure."""
    import cv2

    from tests.conftest import make_scene

    cv2.imwrite(str(tmp_path / "scene.png"), make_scene(1))
    results = api.evaluate({"images": [str(tmp_path / "scene.png")], "hashers": ["aHash", "pHash"],
                            "sweeps": [{"family": "jpeg", "b": {"jpeg": {"quality": "$value"}}, "values": [50]}]})
    missing = ["ResNet50", "MobileNetV3Small", "a-hasher-id-without-a-single-space-that-is-far-too-long-to-fit"]
    figure = plots.overview_figure(results.metrics.curves, ["aHash", "pHash"] + missing)
    assert len(figure.axes) == 1
    assert_inside_and_apart(figure, "families")
    note = next(text.get_text() for text in figure.texts if "not shown" in text.get_text())
    assert "\n" in note
    for name in missing[:2]:
        assert name in note.replace("\n", " ")
    assert missing[2] in note.replace("\n", "")


def test_floating_point_noise_around_zero_is_printed_as_zero(tmp_path):
    """Was: bar labels "6.1e-17" and heatmap cells "6.13e-15" (the zoo's RadialVarianceHash: 1 - a peak
    correlation of 1)."""
    import cv2

    from tests.conftest import make_scene

    cv2.imwrite(str(tmp_path / "scene.png"), make_scene(1))
    results = api.evaluate({"images": [str(tmp_path / "scene.png")], "hashers": ["aHash", "pHash"],
                            "sweeps": [{"family": "jpeg", "b": {"jpeg": {"quality": "$value"}}, "values": [50]}]})
    curves = results.metrics.curves.assign(median=[6.1e-17, 0.25])  # one bar of noise, one real
    bars = figure_text(plots.overview_figure(curves, ["aHash", "pHash"]))
    distances = results.distances.assign(distance=[6.13e-15, 7.0])
    cells = figure_text(plots.heatmap_figure(distances))
    for text in (bars, cells):
        assert "e-1" not in text
    assert bars.split("\n").count("0") == 1 and "0.25" in bars
    assert cells.split("\n").count("0") == 1 and "7" in cells.split("\n")


def equal_rates(hashers: list[str]) -> pd.DataFrame:
    """A detection table in which every hasher detects the same copies: a jpeg sweep and a one-pair
    family (grayscale)."""
    rows = []
    for hasher in hashers:
        for family, value, label, tpr in [("jpeg", "90", "JPEG 90", 1.0), ("jpeg", "50", "JPEG 50", 0.9),
                                          ("jpeg", "10", "JPEG 10", 0.5), ("grayscale", "", "Grayscale", 1.0)]:
            rows.append({"hasher": hasher, "operating_point": "fpr=0.01", "threshold": 5.0, "resolved": True,
                         "family": family, "value": value, "label": label, "genuine_pairs": 10,
                         "detected": round(10 * tpr), "tpr": tpr, "tpr_low": tpr - 0.2, "tpr_high": min(1, tpr + 0.1)})
    return pd.DataFrame(rows)


def test_hashers_with_equal_rates_stay_distinguishable():
    """Was: with ten hashers or fewer every marker a circle of one size, so aHash's line hid under
    pHash's (the committed collection's detection.png), and a one-pair family's points stacked."""
    hashers = ["aHash", "pHash", "dHash"]
    figure = plots.detection_figure(equal_rates(hashers), "fpr=0.01", hashers)
    drawn(figure)
    panels = {ax.get_title(): ax for ax in figure.axes}
    for family in ("jpeg", "grayscale"):
        lines = panels[family].get_lines()
        assert len(lines) == 3
        assert len({line.get_marker() for line in lines}) == 3, family
        # Drawn in order, each smaller than the one under it, so the earlier one shows around it.
        sizes = [line.get_markersize() for line in lines]
        assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == 3, family
    # The one-pair family: three points side by side at its tick, not one on another.
    xs = [float(line.get_xdata()[0]) for line in panels["grayscale"].get_lines()]
    assert len(set(xs)) == 3 and max(abs(x) for x in xs) < 0.5
    # The legend shows each hasher as its lines are drawn.
    legend = [(line.get_marker(), line.get_markersize()) for line in figure.legends[0].get_lines()]
    assert legend == [(line.get_marker(), line.get_markersize()) for line in panels["jpeg"].get_lines()]


def test_bars_carry_their_hashers_marker(tmp_path):
    import cv2

    from tests.conftest import make_scene

    cv2.imwrite(str(tmp_path / "scene.png"), make_scene(1))
    results = api.evaluate({"images": [str(tmp_path / "scene.png")], "hashers": ["aHash", "pHash"],
                            "sweeps": [{"family": "jpeg", "b": {"jpeg": {"quality": "$value"}}, "values": [50]}]})
    figure = plots.overview_figure(results.metrics.curves, ["aHash", "pHash"])
    markers = [line.get_marker() for line in figure.axes[0].get_lines()]
    assert markers == [plots._marker(["aHash", "pHash"], h) for h in ["aHash", "pHash"]]
    assert len(set(markers)) == 2


GAMMAS = [1.05, 1.1, 1.15, 1.2, 1.25, 1.3, 1.35, 1.4, 1.45, 1.5, 1.6, 1.7, 1.8, 1.9, 2.0, 2.2, 2.4, 2.6, 2.8, 3.0]


def value_axis(transform: str, param: str, values: list, **fixed):
    """A panel's x axis for a sweep of `transform`'s `param` over `values` (its other parameters
    `fixed`), drawn: (figure, axes)."""
    config = {"sweeps": [{"family": "f", "b": {transform: {**fixed, param: "$value"}}, "values": values}]}
    figure = Figure(figsize=plots.PANEL, dpi=plots.DPI)
    FigureCanvasAgg(figure)
    ax = figure.add_axes((0, 0.3, 1, 0.7))
    ax.plot(values, [0] * len(values))
    plots._value_axis(ax, pd.DataFrame({"x": [float(v) for v in values], "label": [f"{v:g}" for v in values]}),
                      plots.sweep_axes(config)["f"])
    figure.canvas.draw()
    return figure, ax


@pytest.mark.parametrize("transform, param, values, even", [
    ("gamma", "gamma", GAMMAS, False),  # twenty values: upright labels still touched
    ("gaussian_noise", "sigma", [0, 1, 2, 4, 8, 16, 32], False),  # doubling from 0: crowded at one end of a linear axis
    ("crop_area", "removed", [round(0.1001 + 0.01 * k, 4) for k in range(30)], True),  # thirty slanted: "0.1001", ...
])
def test_crowded_tick_labels_are_thinned_not_overlapped(transform, param, values, even):
    """Was: every value labelled, rotated, and the labels drawn over each other. Values in even steps
    keep even steps between their labels (see the next test); others label both ends."""
    figure, ax = value_axis(transform, param, values)
    renderer = figure.canvas.get_renderer()
    assert len(ax.get_xticks()) == len(values)  # every value keeps its tick
    labels = [t for t in ax.get_xticklabels() if t.get_text()]
    shown = [t.get_text() for t in labels]
    if even:
        assert len({b - a for a, b in itertools.pairwise(
            [k for k, t in enumerate(ax.get_xticklabels()) if t.get_text()])}) == 1, shown
    else:
        assert f"{min(values):g}" in shown and f"{max(values):g}" in shown
    assert len(shown) >= 4
    rotation = labels[0].get_rotation()
    if rotation in (0, 90):  # upright or level: their boxes are the glyphs' own
        boxes = [t.get_window_extent(renderer) for t in labels]
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                assert not overlap(a, b, tolerance=0.0), (a, b)
    else:  # slanted, parallel: apart across their slant by more than a line's height
        anchors = sorted(ax.transData.transform((x, 0))[0] for x, t in zip(ax.get_xticks(), ax.get_xticklabels())
                         if t.get_text())
        height = Text(text="0.1", fontsize=8, figure=figure).get_window_extent(renderer).height
        assert min(np.diff(anchors)) * math.sin(math.radians(rotation)) >= height


@pytest.mark.parametrize("transform, param, values, fixed, shown, title", [
    ("jpeg", "quality", list(range(5, 101, 5)), {}, [str(q) for q in range(10, 101, 10)], "jpeg quality"),
    ("rotate", "angle", list(range(1, 21)), {}, [str(a) for a in range(2, 21, 2)], "rotate angle (degrees)"),
    ("blur", "kernel", list(range(1, 40, 2)), {}, [str(k) for k in range(1, 40, 4)], "blur kernel (px)"),
    ("center_crop", "dx", [0.001953125, 0.00390625, 0.0078125], {"fraction": 0.5},
     ["0.001953125", "0.00390625", "0.0078125"], "center_crop dx (× image size)"),
])
def test_values_in_even_steps_are_labelled_in_even_steps_exactly_and_with_their_unit(transform, param, values,
                                                                                      fixed, shown, title):
    """Twenty JPEG qualities 5, 10, ..., 100 were labelled 100, 85, 75, 65, ..., 5 (the ends kept, the
    steps between them uneven), angles 1, 3, ..., 17, 20; the axis read "blur kernel" without its
    pixels; and :g labelled the sweep's 0.001953125 as 0.00195312, a value it does not have."""
    _, ax = value_axis(transform, param, values, **fixed)
    assert [t.get_text() for t in ax.get_xticklabels() if t.get_text()] == shown
    assert ax.get_xlabel() == title


LONG_FAMILY = "a family whose name runs to sixty-eight characters, longer than a pa"  # 68 characters
LONG_ID = "imagehash.phash-with-a-hasher-id-of-sixty-characters-in-all-"  # 60 characters, no space


@pytest.fixture(scope="module")
def long_names():
    config = {"images": ["builtin:coffee", "builtin:camera", "builtin:astronaut"],
              "hashers": ["aHash", {"name": "pHash", "id": LONG_ID}],
              "sweeps": [{"family": LONG_FAMILY, "b": {"jpeg": {"quality": "$value"}}, "values": [80, 20]},
                         {"family": "blur", "b": {"blur": {"kernel": "$value"}}, "values": [3, 9]}]}
    assert len(LONG_FAMILY) == 68 and len(LONG_ID) == 60
    return every_figure(api.evaluate(config))


@pytest.mark.parametrize("name", ["families", "detection", "histograms", "roc"])
def test_long_titles_stay_over_their_own_panel(long_names, name):
    """Was: a 68-character family or a 60-character hasher id ran over the next panel's title."""
    figure = long_names[name]
    assert_inside_and_apart(figure, name)
    renderer = figure.canvas.get_renderer()
    for ax in figure.axes:
        box, title = ax.get_window_extent(renderer), ax.title.get_window_extent(renderer)
        assert box.x0 - 1 <= title.x0 and title.x1 <= box.x1 + 1, ax.get_title()
    titles = [ax.get_title().replace("\n", " ") for ax in figure.axes]
    assert any(t.startswith("a family whose name") or t.startswith("imagehash.phash-with") for t in titles)


def test_histograms_mark_a_threshold_whose_rate_is_not_resolved(long_names):
    """Three images give 27 impostor pairs: too few for fpr=0.01 and 0.001 (was: drawn and labelled
    exactly like a measured threshold)."""
    figure = long_names["histograms"]
    for ax in figure.axes:
        labels = [text.get_text() for text in ax.get_legend().get_texts()]
        thresholds = [label for label in labels if label.startswith("fpr=")]
        assert thresholds and all(label.endswith(" *") for label in thresholds), labels
    assert any(text.get_text().startswith("* grey: unresolved") for text in figure.texts)


def test_histograms_draw_a_resolved_threshold_plainly(tmp_path):
    """The mark is for unresolved rates only: 25 images (300 impostor pairs) resolve fpr=0.01."""
    import cv2

    from tests.conftest import make_scene

    for seed in range(25):
        cv2.imwrite(str(tmp_path / f"scene{seed}.png"), make_scene(seed, 48, 64))
    results = api.evaluate({"images": [str(tmp_path)], "hashers": ["pHash"], "detection": {"fpr": [0.01]},
                            "sweeps": [{"family": "jpeg", "b": {"jpeg": {"quality": 50}}}]})
    assert results.thresholds["resolved"].all()
    figure = plots.histogram_figure(results.distances, results.impostors, results.metrics.points, ["pHash"])
    labels = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert any(label.startswith("fpr=0.01: ") for label in labels)
    assert not any(label.endswith("*") for label in labels) and not figure.texts


def test_histograms_count_with_separators_and_name_the_bits(tmp_path):
    """The legend read "impostors (1475)" where the summary says 1,475, and the axis "distance" where
    a Hamming distance counts bits (the report passes "bits" for each Hamming hasher)."""
    import cv2

    from tests.conftest import make_scene

    for seed in range(50):
        cv2.imwrite(str(tmp_path / f"scene{seed}.png"), make_scene(seed, 48, 64))
    results = api.evaluate({"images": [str(tmp_path)], "hashers": ["pHash", "RadialVarianceHash"],
                            "detection": {"fpr": [0.01]}, "sweeps": [{"family": "jpeg", "b": {"jpeg": {"quality": 50}}}]})
    units = {row.hasher: "bits" for row in results.hashers.itertuples() if row.distance == "hamming"}
    assert units == {"pHash": "bits"}
    figure = plots.histogram_figure(results.distances, results.impostors, results.metrics.points,
                                    ["pHash", "RadialVarianceHash"], units)
    labels = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    count = int((results.impostors["hasher"] == "pHash").sum())
    assert count >= 1000 and f"impostors ({count:,})" in labels and "copies (50)" in labels
    assert [ax.get_xlabel() for ax in figure.axes[:2]] == ["distance (bits)", "distance"]


@pytest.mark.parametrize("transformed", [True, False])
def test_the_unresolved_footnote_suggests_transformed_impostors_only_where_they_are_off(tmp_path, transformed):
    """Was: "Add images (or `impostors: {transformed: true}`)" also in a run that had them on."""
    from harness.summary import summary_markdown

    results = api.evaluate(no_threshold_config(near_identical_images(tmp_path / "flat"),
                                               impostors={"transformed": transformed}))
    figures = {key: f"figures/{key}.png" for key in ("families", "heatmap", "detection", "histograms", "roc",
                                                     "matrix")}
    summary = summary_markdown(results, figures, previews=False)
    assert "Too few impostor pairs to resolve fpr=0.01" in summary
    assert ("`impostors: {transformed: true}`" in summary) == (not transformed)


def test_the_heatmap_says_its_cells_are_medians(crowded_figures):
    title = crowded_figures["heatmap"].axes[0].get_title()
    assert "median" in title and "over images" in title


def test_the_heatmap_of_one_hasher_keeps_its_title_inside(tmp_path):
    """One column is narrower than the title: it is wrapped (was: drawn past the figure's edges)."""
    import cv2

    from tests.conftest import make_scene

    for seed in range(2):
        cv2.imwrite(str(tmp_path / f"scene{seed}.png"), make_scene(seed))
    results = api.evaluate({"images": [str(tmp_path)], "hashers": ["aHash"],
                            "sweeps": [{"family": "jpeg", "b": {"jpeg": {"quality": "$value"}}, "values": [50, 10]}]})
    figure = plots.heatmap_figure(results.distances)
    drawn(figure)
    title, page = figure.axes[0].title.get_window_extent(figure.canvas.get_renderer()), figure.bbox
    assert page.x0 - 1 <= title.x0 and title.x1 <= page.x1 + 1 and title.y1 <= page.y1 + 1, (title, page)
    assert "\n" in figure.axes[0].get_title()


def test_a_sessions_matplotlib_style_does_not_change_the_report(tmp_path):
    """A notebook's `plt.style.use` or `rcParams` (or a matplotlibrc file) must not reach the saved
    figures, which are the same bytes whoever makes them; and the session keeps its own settings."""
    import matplotlib
    import matplotlib.style

    import harness

    config = {"name": "style", "images": ["builtin:coffee", "builtin:camera", "builtin:moon"], "hashers": ["aHash"],
              "report": {"previews": False},
              "sweeps": [{"family": "jpeg", "b": {"jpeg": {"quality": "$value"}}, "values": [20, 60]}]}
    results = harness.evaluate(config)
    results.save(str(tmp_path / "plain"))
    with matplotlib.rc_context():
        matplotlib.style.use("ggplot")
        matplotlib.rcParams["font.size"] = 20
        results.save(str(tmp_path / "styled"))
        assert matplotlib.rcParams["font.size"] == 20 and matplotlib.rcParams["axes.facecolor"] == "#E5E5E5"
    figures = sorted(path.name for path in (tmp_path / "plain" / "figures").iterdir())
    assert "families.png" in figures
    for name in figures:
        assert (tmp_path / "styled" / "figures" / name).read_bytes() == \
            (tmp_path / "plain" / "figures" / name).read_bytes(), name


# --- many families: the figures draw the first ones and say so ------------------------------------

# 70 families of three pairs each: more families than a grid figure draws (MAX_PANELS), and more
# pairs than the heatmap does (MAX_TABLE_ROWS). Was: a panel and a row for each; 1,000 single-pair
# families took 2 minutes and 2 GiB to draw, three figures 76,000 pixels tall.
FAMILIES = 70
MANY = {
    "name": "many",
    "images": ["builtin:camera", "builtin:coffee"],
    "report": {"previews": True},
    "hashers": ["aHash"],
    "sweeps": [{"family": f"f{k}", "b": {"jpeg": {"quality": "$value"}}, "values": [90, 50, 10 + k % 20]}
               for k in range(FAMILIES)],
}


@pytest.fixture(scope="module")
def many():
    return api.evaluate(MANY)


def test_a_grid_figure_draws_its_first_families_and_says_how_many_it_leaves_out(many):
    metrics, hashers = many.metrics, hasher_order(many.distances)
    axes = plots.sweep_axes(many.config)
    impostors = many.impostors.drop(index=metrics.excluded.index)
    for figure, table in ((plots.overview_figure(metrics.curves, hashers, axes), "table.csv"),
                          (plots.detection_figure(metrics.detection, metrics.chosen, hashers, axes), "detection.csv"),
                          (plots.roc_figure(many.distances, impostors, hashers), "roc.csv")):
        text = figure_text(figure).replace("\n", " ")
        assert len(figure.axes) < FAMILIES and f"families are drawn; the other {FAMILIES - len(figure.axes)}" in text
        assert len(figure.axes) == plots.MAX_PANELS >= 60  # a sweep of 60 families is still drawn whole
        assert [ax.get_title() for ax in figure.axes] == [f"f{k}" for k in range(plots.MAX_PANELS)]  # the first
        assert f"the first {plots.MAX_PANELS} of {FAMILIES} families are drawn; the other 6 are not" in text
        assert table in text


def test_a_colour_table_draws_its_first_rows_and_says_how_many_it_leaves_out(many, monkeypatch):
    pairs = 3 * FAMILIES
    heatmap = plots.heatmap_figure(many.distances)
    shown = [label.get_text() for label in heatmap.axes[0].get_yticklabels()]
    text = figure_text(heatmap).replace("\n", " ")
    assert len(shown) < pairs and f"pairs are drawn; the other {pairs - len(shown)} are not" in text
    assert shown == list(many.metrics.table["label"])[:plots.MAX_TABLE_ROWS]
    assert f"the first {plots.MAX_TABLE_ROWS} of {pairs} pairs are drawn" in text and "table.csv" in text
    # The detection matrix has a row per family: 70, fewer than the limit, so a smaller one here.
    monkeypatch.setattr(plots, "MAX_TABLE_ROWS", 50, raising=False)
    matrix = plots.detection_matrix_figure(many.metrics.detection, many.metrics.chosen, ["aHash"])
    assert len(matrix.axes[0].get_yticklabels()) == 50
    assert "the first 50 of 70 families are drawn; the other 20 are not" in figure_text(matrix).replace("\n", " ")
    # Drawn, each note inside its figure.
    drawn(heatmap), drawn(matrix)


def test_previews_show_the_first_families_and_say_so(many):
    # The run keeps thumbnails of the pairs drawn alone (was: of every pair, drawn or not).
    assert [pair.family for pair, _, _ in many.previews] == [f"f{k}" for k in range(plots.MAX_PANELS) for _ in "abc"]
    figure = plots.previews_figure(many.previews, *plots.preview_scope(many.table))
    assert len(figure.images) < 3 * FAMILIES and f"of {FAMILIES} families" in figure_text(figure)
    assert len(figure.images) == 3 * plots.MAX_PANELS  # a thumbnail per pair of the first families
    assert f"of the first {plots.MAX_PANELS} of {FAMILIES} families" in figure_text(figure)


def test_a_long_sweep_previews_its_pairs_evenly_spaced_and_says_so(tmp_path):
    """A family of 40 values shows 12 of them, the first and the last among them, and the run keeps
    no thumbnail of the others. Was: one thumbnail per value in one row (a sweep of 1,000 values:
    a PNG 115,007 pixels wide, and twice the memory)."""
    from harness.config import preview_pairs
    from harness.schema import PREVIEW_COLUMNS

    values = [round(0.3 + 0.05 * k, 2) for k in range(40)]
    config = {"name": "long", "images": ["builtin:coffee"], "hashers": ["aHash"], "report": {"previews": True},
              "sweeps": [{"family": "short", "b": {"jpeg": {"quality": "$value"}}, "values": [90, 50]},
                         {"family": "gamma", "b": {"gamma": {"gamma": "$value"}}, "values": values}]}
    results = api.evaluate(config)
    kept = [pair.value for pair, _, _ in results.previews if pair.family == "gamma"]
    assert len(kept) == PREVIEW_COLUMNS == 12 and kept[0] == values[0] and kept[-1] == values[-1]
    assert kept == [values[round(k * 39 / 11)] for k in range(12)]  # evenly spaced
    assert [pair.value for pair, _, _ in results.previews if pair.family == "short"] == [90, 50]
    assert all(b is not None and max(b.shape[:2]) <= 192 for _, _, b in results.previews)
    assert preview_pairs(results_pairs := [pair for pair, _, _ in results.previews]) == results_pairs  # kept as chosen
    figure = plots.previews_figure(results.previews, *plots.preview_scope(results.table))
    assert len(figure.images) == 14
    text = figure_text(figure)
    assert "Side B of the pairs (first image)\n12 pairs of a family that has more, from its first value" in text
    results.save(tmp_path / "out")
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "Side B of the pairs for the first image (coffee)" in summary
    assert ("It shows 12 pairs of a family that has more, from its first value to its last, evenly spaced; the "
            "tables hold every pair.") in summary
    with Image.open(tmp_path / "out" / "previews.png") as png:
        assert png.size[0] < 2000  # 12 thumbnails a row, not 40


def test_the_summary_says_which_figures_leave_families_out(many):
    from harness.summary import summary_markdown

    figures = {key: f"figures/{key}.png" for key in ("families", "heatmap", "detection", "histograms", "roc",
                                                     "matrix")}
    summary = summary_markdown(many, figures, previews=True)
    families, pairs = FAMILIES, 3 * FAMILIES
    assert "Not every family is drawn" in summary and "Not everything is drawn" in summary
    assert (f"`families.png` draws the first {plots.MAX_PANELS} of {families} families and `heatmap.png` draws "
            f"the first {plots.MAX_TABLE_ROWS} of {pairs} pairs") in summary
    assert f"`roc.png` draws the first {plots.MAX_PANELS} of {families} families" in summary
    assert f"of {families} families the figures show the first {plots.MAX_PANELS} (the matrix all of them)" in summary


def test_a_family_of_one_strength_shows_its_interval_as_a_whisker(crowded_figures, crowded):
    """A band needs two points: a family of one strength (identity) or of named values showed no
    interval at all in detection.png, while the summary said the band is a 95% Wilson interval."""
    from matplotlib.collections import LineCollection

    detection = crowded.metrics.detection
    identity = detection[(detection["family"] == "identity") & (detection["operating_point"] == crowded.metrics.chosen)]
    panel = next(ax for ax in crowded_figures["detection"].axes if ax.get_title() == "identity")
    whiskers = [segment for collection in panel.findobj(LineCollection) for segment in collection.get_segments()]
    drawn_ranges = sorted((round(seg[:, 1].min(), 6), round(seg[:, 1].max(), 6)) for seg in whiskers)
    expected = sorted((round(low, 6), round(high, 6)) for low, high in zip(identity["tpr_low"], identity["tpr_high"])
                      if np.isfinite(low))
    assert drawn_ranges == expected and expected
    # families.png: the identity bars' inter-quartile ranges too (there is one where images disagree)
    families = next(ax for ax in crowded_figures["families"].axes if ax.get_title() == "identity")
    assert families.findobj(LineCollection)


def test_a_point_at_zero_is_drawn_whole(crowded_figures):
    """The distance axis started at 0: a median of 0 (JPEG at quality 90 for pHash) was cut in half by
    the axis, and a line along 0 hidden under it."""
    for ax in crowded_figures["families"].axes:
        bottom, top = ax.get_ylim()
        assert bottom < 0 < top and -bottom >= 0.02 * top


def test_a_pair_that_failed_for_every_image_reads_error_in_the_heatmap(tmp_path):
    """table.csv says `error`; the heatmap drew an empty grey cell, where an unavailable hasher's says so."""
    results = api.evaluate({"images": ["builtin:camera", "builtin:coffee"], "hashers": ["aHash"], "sweeps": [
        {"family": "crop", "label": "too large", "b": {"crop": {"x": 0, "y": 0, "width": 4000, "height": 10}}},
        {"family": "jpeg", "b": {"jpeg": {"quality": 50}}}]})
    assert results.table["aHash"].tolist()[0] == "error"
    texts = [text.get_text() for text in plots.heatmap_figure(results.distances).axes[0].texts]
    assert texts[0] == "error"


def test_characters_no_font_has_are_named_in_the_summary_not_warned_per_figure(tmp_path):
    """A family in Chinese, with only DejaVu Sans installed: every figure drew boxes, and matplotlib
    printed a warning per character and figure (16 lines on stderr). Now: one line of the summary."""
    config = tmp_path / "cjk.yaml"
    config.write_text('name: cjk\nimages: [builtin:camera, builtin:coffee]\nhashers: [aHash]\nsweeps:\n'
                      '  - {family: "高斯模糊", label: "高斯 {value}", b: {gaussian_blur: {sigma: $value}}, values: [2, 4]}\n',
                      encoding="utf-8")
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "harness", "run", str(config), "--out", str(out), "--quiet"],
                          capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "default"})
    assert done.returncode == 0, done.stderr
    assert "missing from font" not in done.stderr
    missing = plots.undrawable(["高斯模糊", "高斯 2", "aHash"])
    summary = (out / "summary.md").read_text(encoding="utf-8")
    if missing:  # no font here has them (a machine with Noto Sans CJK draws them, and says nothing)
        assert missing == ["高", "斯", "模", "糊"]
        assert "**Characters the figures cannot draw:** 高 斯 模 糊 (4 in all)" in summary
    else:
        assert "cannot draw" not in summary
    assert plots.undrawable(["Crème brûlée — 5 €", "naïve"]) == []  # DejaVu Sans has these


def test_the_detection_figures_say_which_hashers_they_leave_out_and_which_rates_are_unresolved(crowded):
    """families.png named the hashers it could not draw (unavailable: no distances); detection.png
    and detection_matrix.png dropped them without a word, and the matrix showed rates behind an
    unresolved threshold as solid as any other, where detection.png dashes their lines."""
    metrics, hashers = crowded.metrics, hasher_order(crowded.distances) + ["ResNet50"]
    chosen = metrics.detection[metrics.detection["operating_point"] == metrics.chosen]
    assert not chosen["resolved"].all()  # 3 images: too few impostor pairs for the rate
    for figure in (plots.detection_figure(metrics.detection, metrics.chosen, hashers),
                   plots.detection_matrix_figure(metrics.detection, metrics.chosen, hashers)):
        notes = " ".join(text.get_text() for text in figure.texts).replace("\n", " ")
        assert "not shown (no distances, e.g. unavailable): ResNet50" in notes, notes
    matrix = plots.detection_matrix_figure(metrics.detection, metrics.chosen, hashers)
    cells = [text.get_text() for text in matrix.axes[0].texts]
    assert cells and all(cell.endswith(" *") or cell == "none" for cell in cells)
    assert "*: too few impostor pairs to resolve this false-positive rate" in " ".join(
        text.get_text() for text in matrix.texts).replace("\n", " ")


def test_operating_points_at_one_threshold_share_one_line_and_its_label(crowded):
    """A fixed threshold of 10 and fpr=0.001's 10 drew one line over the other: one hid."""
    import dataclasses

    from matplotlib.lines import Line2D

    metrics, hashers = crowded.metrics, hasher_order(crowded.distances)
    first = metrics.points["aHash"][0]
    points = {"aHash": [first, dataclasses.replace(first, name="fixed", resolved=True)]}
    figure = plots.histogram_figure(crowded.distances, crowded.impostors, points, ["aHash"])
    lines = [line for line in figure.axes[0].get_lines() if isinstance(line, Line2D) and line.get_label()[0] != "_"]
    star, threshold = "" if first.resolved else " *", plots.number(first.threshold)
    # Each point its legend entry (one label naming both widened the legend past its panel), in the style
    # of the one line drawn.
    assert [line.get_label() for line in lines] == [f"{first.name}: {threshold}{star}", f"fixed: {threshold}"]
    drawn_line, entry = lines
    assert len(drawn_line.get_xdata()) and not len(entry.get_xdata())
    assert (entry.get_linestyle(), entry.get_color()) == (drawn_line.get_linestyle(), drawn_line.get_color())


def test_a_long_hashs_histogram_has_bins_wide_enough_to_see(crowded):
    """MarrHildrethHash (576 bits) had a bin per distance: the copies' bars were spikes too thin to see."""
    metrics, hashers = crowded.metrics, hasher_order(crowded.distances)
    figure = plots.histogram_figure(crowded.distances, crowded.impostors, metrics.points, hashers)
    panel = next(ax for ax in figure.axes if ax.get_title().startswith("MarrHildrethHash"))
    for patch in panel.patches:  # one filled outline per histogram: its x steps are the bins' edges
        edges = np.unique(patch.get_path().vertices[:, 0])
        assert len(edges) <= plots.HISTOGRAM_BINS + 2


def test_font_lookups_log_nothing_while_the_report_draws(caplog):
    """With WenQuanYi Zen Hei installed (weight 500), matplotlib logged "findfont: Failed to find font
    weight normal" some ten times a report, on stderr, for a font it then used all the same."""
    import logging

    logger = logging.getLogger("matplotlib.font_manager")
    with caplog.at_level(logging.DEBUG, logger="matplotlib.font_manager"):
        before = logger.level
        with plots.quiet_font_lookups():
            logger.warning("findfont: Failed to find font weight normal for X, now using 500.")
        assert logger.level == before
        logger.warning("after")
    assert [record.getMessage() for record in caplog.records] == ["after"]


def test_each_histograms_legend_stays_inside_its_panel(crowded):
    """Operating points at one threshold named in one label ("fpr=0.001, precision=0.9999: 12 *") made a
    legend wider than its panel, over the next panel and the y axis's labels."""
    import dataclasses

    metrics, hashers = crowded.metrics, hasher_order(crowded.distances)
    # As in a run with precision targets: precision=0.9999 at the threshold of the first rate.
    points = {h: [*metrics.points[h], dataclasses.replace(metrics.points[h][0], name="precision=0.9999")]
              for h in hashers}
    figure = plots.histogram_figure(crowded.distances, crowded.impostors, points, hashers)
    drawn(figure)
    renderer = figure.canvas.get_renderer()
    for ax in figure.axes:
        box, legend = ax.get_window_extent(renderer), ax.get_legend().get_window_extent(renderer)
        assert box.x0 - 1 <= legend.x0 and legend.x1 <= box.x1 + 1, (ax.get_title(), box, legend)


def test_the_roc_figure_draws_a_rate_of_0_at_an_edge_labelled_0():
    """A log axis has no 0: the curves drew a false-positive rate of 0 at an unlabelled left edge,
    each hasher's at half its own smallest rate (hashers with fewer impostor pairs further right)."""
    results = api.evaluate({"name": "roc", "images": ["builtin:coffee", "builtin:camera", "builtin:astronaut"],
                            "hashers": ["aHash", "pHash"],
                            "sweeps": [{"family": "jpeg", "b": {"jpeg": {"quality": "$value"}}, "values": [90, 10]}]})
    impostors = results.impostors
    # pHash keeps a third of its impostor pairs: its smallest rate is three times aHash's
    fewer = impostors[impostors["hasher"] != "pHash"]
    fewer = pd.concat([fewer, impostors[impostors["hasher"] == "pHash"].iloc[::3]])
    figure = plots.roc_figure(results.distances, fewer, hasher_order(results.distances))
    drawn(figure)
    ax = figure.axes[0]
    edge = ax.get_xlim()[0]
    assert edge == pytest.approx(1 / (impostors["hasher"] == "aHash").sum() / 2)
    labels = {tick.get_text(): tick.get_position()[0] for tick in ax.get_xticklabels()}
    assert labels["0"] == edge and "1" in labels
    # every label a third of a decade or more from the next: none written over another
    places = sorted(math.log10(x) for x in labels.values())
    assert all(b - a >= 1 / 3 - 1e-9 for a, b in zip(places, places[1:])), labels
    lines = [line for line in ax.get_lines() if len(line.get_xdata()) > 1]
    assert len(lines) == 2 and all(line.get_xdata()[0] == edge for line in lines)
    # one impostor pair a hasher: the edge is 0.5, a third of a decade from 1, which keeps its label
    one = plots.roc_figure(results.distances, impostors.groupby("hasher").head(1), hasher_order(results.distances))
    drawn(one)
    assert [tick.get_text() for tick in one.axes[0].get_xticklabels()] == ["0", "1"]


def test_a_fork_that_fails_leaves_the_signal_mask_as_it_was_and_draws_in_this_process(tmp_path, monkeypatch):
    """The signals held for the fork stayed held when it failed: a Python session's Ctrl-C and
    SIGTERM were blocked for the rest of it, and the report failed."""
    import signal

    from harness import report, storage

    def no_fork():
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(report, "can_fork", lambda: True)
    monkeypatch.setattr(os, "fork", no_fork)
    before = signal.pthread_sigmask(signal.SIG_BLOCK, set())

    def figure():
        made = plots._figure(dpi=30)
        made.add_subplot().plot([0, 1], [1, 0])
        return made

    with storage.OutputSet(str(tmp_path / "out")) as output:
        report.draw(output, [(f"f{k}.png", figure) for k in range(3)])
        assert output.files() == ["f0.png", "f1.png", "f2.png"]
    assert signal.pthread_sigmask(signal.SIG_BLOCK, set()) == before
