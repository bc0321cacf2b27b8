"""The report: renders a Results into its output directory, the only code that writes a run's files.

`write` saves what a run computed (the long tables, images, errors, hashers, run.json,
config.yaml, previews) and what is derived from it (table, thresholds, detection,
retrieval, ROC, figures, summary.md) as one new output set (see harness/storage.py).
`python -m harness report DIR` loads a Results from DIR and writes it again with
`rebuild=True`: the saved files are carried over as they are and every derived
file is rendered anew, so a rebuilt report equals the first one by construction.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import struct
import time

import numpy as np

from harness import safe_yaml, storage
from harness.markdown import visible
from harness.schema import category_codes

# The figures, the metrics and the summary (pandas, matplotlib) are imported where they are used:
# an unchanged rerun (`keep_unchanged`) needs none of them.

# What a run saves, and a rebuild carries over unchanged.
SAVED = [f"{storage.DISTANCES}.csv", f"{storage.DISTANCES}.parquet", f"{storage.IMPOSTORS}.csv",
         f"{storage.IMPOSTORS}.parquet", storage.IMAGES, storage.ERRORS, storage.HASHERS, storage.RUN,
         storage.CONFIG, storage.PREVIEWS]


# Rewritten by every run even when its results are unchanged: they hold the date and the command.
FRESH = [storage.RUN, storage.CONFIG, storage.SUMMARY]


def write(results, out_dir: str, rebuild: bool = False, inputs: str | None = None) -> None:
    """Write `results` to `out_dir` as one new output set; the hash cache there is kept.

    Results computed with the hash cache of `out_dir` (so trusting that directory's contents
    already) whose set is the one already there (the same tables, config, code and library
    versions: its `fingerprint`) keep that set's tables and figures instead of making them again;
    run.json, config.yaml and summary.md are written anew. Without that cache (`--no-cache`,
    another `--cache`), everything is made anew: nothing found in a directory is kept on trust.
    `inputs` (the run's Evaluation.inputs) goes into run.json, for `keep_unchanged` next time."""
    from harness import figures as plots
    from harness.summary import summary_markdown

    fingerprint = None if rebuild else report_fingerprint(results)
    reused = reusable(out_dir, fingerprint) if not rebuild and _own_cache(results, out_dir) else []
    with storage.OutputSet(out_dir) as output:
        for name in storage.CACHE_FILES:
            output.carry(name)
        if reused:  # nothing to draw: a rerun of an unchanged run does not even import matplotlib
            for name in reused:
                output.carry(name)
            figures = {key: path for key, path in figure_paths(results).items() if path in reused}
            output.write_text(storage.SUMMARY, summary_markdown(results, figures, storage.PREVIEWS in reused))
            write_run_files(results, output, fingerprint, inputs)
        else:
            with _report_style():
                if rebuild:  # the saved tables stay as they are, and run.json but for its list of files
                    for name in SAVED:
                        if name != storage.RUN and not output.carry(name) and name == storage.CONFIG:
                            # A set copied without it: the summary says the config is there, to run again.
                            output.write_text(storage.CONFIG, config_yaml(results.config, results.provenance))
                    render(results, output, previews=os.path.isfile(output.path(storage.PREVIEWS)))
                    # The set's files may change (a table a newer version writes): run.json lists them,
                    # and a later run into DIR refuses to delete anything it does not list.
                    output.write_text(storage.RUN, run_json({**storage.read_json(out_dir, storage.RUN),
                                                             **output.listing()}))
                else:
                    previews = [(storage.PREVIEWS,
                                 lambda: plots.previews_figure(results.previews, *plots.preview_scope(results.table)))]
                    kept = not results.previews and results.loaded_from is not None and output.carry(
                        storage.PREVIEWS, from_dir=results.loaded_from)  # a loaded run's, as saved
                    render(results, output, previews=bool(results.previews) or kept,
                           more=previews if results.previews else [], meanwhile=lambda: save_tables(results, output))
                    write_run_files(results, output, fingerprint, inputs)
        output.commit()


def _own_cache(results, out_dir: str) -> bool:
    """Whether the results were computed with the hash cache of `out_dir` itself."""
    return results.cache is not None and os.path.realpath(results.cache) == os.path.realpath(
        os.path.join(out_dir, storage.CACHE))


def keep_unchanged(evaluation, out_dir: str, config: dict) -> dict | None:
    """A rerun over its own output that would write the same set keeps it, without making it.

    When the evaluation used `out_dir`'s own hash cache (trusted for its values already, see
    `write`) and its `inputs` digest (the config, harness's code, the library versions and every
    image's record and hashes) is the one run.json recorded, the tables, the figures and the
    summary would come out byte for byte as they are: the set is kept, and only what says when
    and how it was made is written anew (run.json, config.yaml, the summary's provenance). No
    table is made and neither pandas nor matplotlib is imported. Returns the new run.json's
    contents, or None (nothing written) when the set cannot be kept as it is."""
    from harness.markdown import PROVENANCE_HEADING, provenance_lines

    if not _own_cache(evaluation, out_dir):
        return None
    try:
        previous = storage.read_json(out_dir, storage.RUN)
    except Exception:  # a damaged run.json: the set is made anew
        return None
    kept = reusable(out_dir, previous.get("fingerprint")) if previous.get("inputs") == evaluation.inputs else []
    # The summary's body is kept (its provenance written anew) only as the set wrote it: an edited
    # or cut one was kept, and recorded in run.json as the set's own.
    summary = storage.read_text(out_dir, storage.SUMMARY) if kept and as_written(out_dir, storage.SUMMARY,
                                                                                previous) else None
    body, heading, _ = (summary or "").rpartition(f"\n{PROVENANCE_HEADING}\n")
    if not heading or not isinstance(previous.get("hashers"), list) or not isinstance(previous.get("notes"), list):
        return None
    with storage.OutputSet(out_dir) as output:
        for name in storage.CACHE_FILES + kept:
            output.carry(name)
        provenance = evaluation.provenance
        output.write_text(storage.SUMMARY, body + "\n" + "\n".join(provenance_lines(provenance)))
        output.write_text(storage.CONFIG, config_yaml(config, provenance))
        run = run_record(provenance, config, previous["hashers"], previous["notes"], previous["fingerprint"],
                         evaluation.inputs, output.listing())
        output.write_text(storage.RUN, run_json(run))
        output.commit()
    return run


@contextlib.contextmanager
def _report_style():
    """matplotlib's own defaults while the report draws: a notebook's style (`plt.style.use`,
    `rcParams`) or a matplotlibrc file must not change the figures, which are the same bytes
    whoever makes them; the session's settings are back afterwards. And names in figures are
    text: with matplotlib's default, "$...$" in a family or a label is parsed as mathematics,
    and "$\\frac{$" stops the report. Text is drawn in DejaVu Sans, then the installed fonts that
    have other scripts (figures.font_families); a character none has is drawn as a box, and the
    summary says so (summary.undrawable_lines), instead of a warning per character and figure."""
    import warnings

    import matplotlib
    import matplotlib.style

    from harness.figures import font_families, quiet_font_lookups

    with matplotlib.rc_context(), warnings.catch_warnings(), quiet_font_lookups():
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from font", category=UserWarning)
        matplotlib.style.use(["default", {"text.parse_math": False, "font.family": list(font_families())}])
        yield


def report_fingerprint(results) -> str:
    """What the files of a run's set depend on: its tables, config, notes and previews, the versions
    of the libraries, and harness's own code (its source files)."""
    import hashlib

    from harness.provenance import code_digest

    digest = hashlib.sha256()
    for part in (results.config, results.notes, (results.provenance or {}).get("versions"), code_digest()):
        digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    categories: dict[int, tuple] = {}  # the tables' columns that name the images share one set of categories
    for table in (results.distances, results.impostors, results.images, results.errors, results.hashers):
        digest.update(json.dumps([list(map(str, table.columns)), list(map(str, table.dtypes)), len(table)]).encode())
        for _, column in table.items():
            _digest_column(digest, column, categories)
    for pair, a, b in results.previews:
        digest.update(repr(pair).encode())
        for side in (a, b):
            digest.update(b"-" if side is None else side.tobytes() + repr(side.shape).encode())
    return digest.hexdigest()


def _digest_column(digest, column, categories: dict | None = None) -> None:
    """A column into the digest, in blocks of rows (a million rows' hashes at once took 36 MiB): a
    categorical one as a digest of its categories, hashed once for all the columns that share them
    (`categories`: id -> (categories, digest); 100,000 names took 1.5 s a column when hashed for
    every block), and its codes; a NumPy number column as its bytes; any other as pandas' hash of
    each value."""
    import hashlib

    import pandas as pd

    block = storage.ROWS_BLOCK
    if isinstance(column.dtype, pd.CategoricalDtype):
        names = column.cat.categories
        known = (categories or {}).get(id(names))
        if known is None:
            hashed = hashlib.sha256()
            for start in range(0, len(names), TEXT_BLOCK):
                hashed.update(pd.util.hash_array(np.asarray(names[start:start + TEXT_BLOCK], dtype=object)).tobytes())
            known = (names, hashed.digest())  # the categories are kept, so their id is not reused
            if categories is not None:
                categories[id(names)] = known
        digest.update(known[1])
        codes = category_codes(column)
        for start in range(0, len(codes), block):  # as int64 whatever the codes' width
            digest.update(codes[start:start + block].astype(np.int64).tobytes())
    elif isinstance(column.dtype, np.dtype) and column.dtype.kind in "biuf":
        values = column.to_numpy()
        for start in range(0, len(values), block):
            digest.update(np.ascontiguousarray(values[start:start + block]).tobytes())
    else:
        for start in range(0, len(column), TEXT_BLOCK):
            digest.update(pd.util.hash_pandas_object(column.iloc[start:start + TEXT_BLOCK],
                                                     index=False).to_numpy().tobytes())


# Texts hashed at a time: pandas encodes each as a new bytes object first (65,536 names took 16 MiB).
# Each text's hash is its own, so the digest does not depend on the block.
TEXT_BLOCK = 4096


def reusable(out_dir: str, fingerprint: str) -> list[str]:
    """The files of the set in `out_dir` a run with this fingerprint can keep: none if it differs, or
    a file the set listed is missing or not as it was written (its size and digest)."""
    try:
        previous = storage.read_json(out_dir, storage.RUN)
    except Exception:  # a damaged run.json: make everything anew
        return []
    files = previous.get("files")
    if previous.get("fingerprint") != fingerprint or not isinstance(files, list):
        return []
    kept = [name for name in files if isinstance(name, str) and name not in FRESH]
    for name in kept:
        if os.path.isabs(name) or ".." in name.split("/"):
            return []
    return kept if all(as_written(out_dir, name, previous) for name in kept) else []


def as_written(out_dir: str, name: str, previous: dict) -> bool:
    """Whether the set's file `name` is as its run.json (`previous`) recorded it: its size and digest."""
    sizes, digests = previous.get("sizes"), previous.get("digests")
    if not isinstance(sizes, dict) or not isinstance(digests, dict):
        return False
    return storage.as_recorded(os.path.join(out_dir, name), sizes.get(name), digests.get(name))


def figure_paths(results) -> dict:
    """The figures a run's set holds, by key (as `render` names them)."""
    metrics = results.metrics
    figures = {}
    if len(metrics.curves):  # none when no pair yielded a distance
        figures.update(families=f"{storage.FIGURES}/families.png", heatmap=f"{storage.FIGURES}/heatmap.png")
    if metrics.has_detection:
        figures.update(detection=f"{storage.FIGURES}/detection.png", histograms=f"{storage.FIGURES}/histograms.png",
                       roc=f"{storage.FIGURES}/roc.png", matrix=f"{storage.FIGURES}/detection_matrix.png")
    return figures


def save_tables(results, output: storage.OutputSet) -> None:
    """The tables a run computed."""
    output.write_long(storage.DISTANCES, results.distances)
    output.write_long(storage.IMPOSTORS, results.impostors)
    output.write_csv(storage.IMAGES, results.images)
    output.write_csv(storage.ERRORS, results.errors)
    output.write_csv(storage.HASHERS, results.hashers)


def write_run_files(results, output: storage.OutputSet, fingerprint: str | None, inputs: str | None = None) -> None:
    """config.yaml, then run.json, last: provenance, the config, the notes, and the set's fingerprint,
    inputs and files (what a later run with the same results keeps)."""
    config = results.config
    output.write_text(storage.CONFIG, config_yaml(config, results.provenance))
    run = run_record(results.provenance, config, results.hashers.to_dict("records"), results.notes, fingerprint,
                     inputs, output.listing())
    output.write_text(storage.RUN, run_json(run))


def run_record(provenance: dict, config: dict, hashers: list, notes: list, fingerprint: str | None,
               inputs: str | None, listing: dict) -> dict:
    """run.json's contents; `listing`: the set's files and their sizes (OutputSet.listing)."""
    return {**provenance, "config": config, "hashers": hashers, "notes": notes, "fingerprint": fingerprint,
            "inputs": inputs, **listing}


def run_json(run: dict) -> str:
    return json.dumps(run, indent=2, default=str, allow_nan=False) + "\n"


def config_yaml(config: dict, provenance: dict, command: str = "run") -> str:
    """The resolved config as YAML, after a comment saying how to run it again: from the directory
    the run was started in, where its relative paths (images, splits, calibration) point."""
    header = (f"# The resolved config of this {'audit' if command == 'leaks' else 'run'}: `python -m harness "
              f"{command} <this file>`, from the directory\n# it was started in "
              f"({visible(provenance.get('cwd', '?'))}), where its relative paths point.\n")
    return header + safe_yaml.dump(config)


def render(results, output: storage.OutputSet, previews: bool, more: list | None = None,
           meanwhile=None) -> None:
    """Every derived table and figure (and the figures in `more`: (name, build) pairs), and summary.md;
    `meanwhile` (the run's own tables) is done while the figures are drawn (see draw)."""
    from harness import figures as plots
    from harness.metrics import hasher_order
    from harness.summary import summary_markdown

    metrics, distances = results.metrics, results.distances
    # The baseline the thresholds use (a copy only when the config excludes some rows: 7 MiB at 100,000 images).
    impostors = results.impostors.drop(index=metrics.excluded.index) if len(metrics.excluded) else results.impostors
    output.write_csv(storage.TABLE, metrics.table)
    hashers = hasher_order(distances)
    axes = plots.sweep_axes(results.config)
    figures = figure_paths(results)
    builds = {}  # figure key -> how to build it
    if "families" in figures:
        builds["families"] = lambda: plots.overview_figure(metrics.curves, hashers, axes)
        builds["heatmap"] = lambda: plots.heatmap_figure(distances)
    if metrics.has_detection:
        output.write_csv(storage.THRESHOLDS, metrics.thresholds)
        output.write_csv(storage.DETECTION, metrics.detection)
        output.write_csv(storage.ROC, metrics.roc)
        output.write_csv(storage.RETRIEVAL, metrics.retrieval)
        chosen = metrics.chosen
        builds["detection"] = lambda: plots.detection_figure(metrics.detection, chosen, hashers, axes)
        # A Hamming distance counts bits; the other kinds (1 - a correlation, a scaled L2) have no unit.
        units = {str(row.hasher): "bits" for row in results.hashers.itertuples(index=False) if row.distance == "hamming"}
        builds["histograms"] = lambda: plots.histogram_figure(distances, impostors, metrics.points, hashers, units)
        builds["roc"] = lambda: plots.roc_figure(distances, impostors, hashers)
        builds["matrix"] = lambda: plots.detection_matrix_figure(metrics.detection, chosen, hashers)
    # The figures that read the long tables go first, the most working memory first (up to 14 MiB
    # at 100,000 images), so that the forked copy (see draw) draws them while this process writes
    # the tables: their working memory and the tables' are then not taken in one process at once.
    first = [key for key in READING_FIGURES if key in builds]
    drawings = [(figures[key], builds[key]) for key in first] + list(more or []) + \
        [(figures[key], build) for key, build in builds.items() if key not in first]
    draw(output, drawings, meanwhile)
    output.write_text(storage.SUMMARY, summary_markdown(results, figures, previews))


READING_FIGURES = ("roc", "heatmap", "histograms")  # those that read the long tables, largest working memory first


def draw(output: storage.OutputSet, drawings: list, meanwhile=None) -> None:
    """Build and save each (name, build) figure: where this process is alone (one thread) and a
    second core is free, a forked copy of it draws figures too. Each figure is its own PNG and a
    fifth of a second or more of matplotlib, so the report takes about half the time; the files
    are the same bytes either way. `meanwhile` (the long tables: seconds at 100,000 images) is done
    by this process after the fork, before it draws. The two processes take the figures one at a
    time, each the next one not yet taken (`_FigureQueue`), so the copy draws them all if the tables
    take that long. If the copy fails, this process draws every figure it did not draw itself, so
    an error surfaces as it would in one process; so it does where the copy has not ended well
    after the last figure was taken (_copy_failed)."""
    queue = _FigureQueue(len(drawings)) if 1 < len(drawings) <= _FigureQueue.MOST and can_fork() else None
    parent = os.getpid()
    # Ctrl-C and SIGTERM wait while the copy is made, until this process is inside the block that
    # stops the copy: one between the fork and that block, or while this process waited for the copy
    # to finish, left the copy writing figures into the staging folder after it was removed (an
    # empty figures/ in a staging folder that stayed).
    stops = {signal.SIGINT, signal.SIGTERM}
    held = signal.pthread_sigmask(signal.SIG_BLOCK, stops) if queue is not None else None
    try:
        pid = os.fork() if queue is not None else None
    except OSError:  # no process to be had (EAGAIN, ENOMEM): this one draws every figure
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        queue.close()
        queue = held = pid = None
    if pid == 0:  # the copy: draw, and leave without running anything of the parent's (no atexit)
        status = 1
        try:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
            from harness.cluster import die_with_parent

            die_with_parent(parent)  # a parent killed with -9 leaves no copy writing into its staging folder
            for k in queue:
                output.save_figure(*_built(drawings[k]))
            status = 0
        finally:
            os._exit(status)
    mine, copy_failed, longest = [], False, 0.0
    try:
        if held is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)  # a signal that came meanwhile is taken here
        try:
            if meanwhile is not None:
                meanwhile()
            for k in queue if queue is not None else range(len(drawings)):
                started = time.monotonic()
                output.save_figure(*_built(drawings[k]))
                longest = max(longest, time.monotonic() - started)
                mine.append(k)
        finally:
            if queue is not None:
                queue.close()
        if pid:
            copy_failed = _copy_failed(pid, COPY_GRACE + 10 * longest)
            pid = None  # reaped
    except BaseException:  # (a full disk, Ctrl-C): the copy is stopped, not left writing into the set
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        raise
    if copy_failed:
        for k in sorted(set(range(len(drawings))) - set(mine)):
            output.save_figure(*_built(drawings[k]))


COPY_GRACE = 60.0  # seconds the copy may take past this process's last figure, plus 10 of its longest


def _copy_failed(pid: int, grace: float) -> bool:
    """Whether the drawing copy failed: its exit status, once it ends. Every figure is taken by now,
    so the copy has one at most left to draw; one that has not ended `grace` seconds on is taken
    for stuck (a fork can leave the copy waiting on a lock that another thread of this process held
    at that moment, of a native library: Python 3.12 warns of it at such forks) and killed, and this
    process draws what it did not, so that the report ends either way."""
    import select

    deadline = time.monotonic() + grace
    try:
        ended = os.pidfd_open(pid)  # readable once the copy has ended: no polling (Linux 5.3 and later)
    except (AttributeError, OSError):
        ended = None
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status) != 0
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return True
            if ended is not None:
                select.select([ended], [], [], left)
            else:
                time.sleep(min(left, 0.005))
    finally:
        if ended is not None:
            os.close(ended)


def _built(drawing) -> tuple:
    name, build = drawing
    return name, build()


class _FigureQueue:
    """The numbers 0 .. count-1, taken one at a time by a process and its forked copy, each number by
    one of them only: written to a pipe before the fork, each a two-byte record that a read takes
    whole (the kernel serialises reads from a pipe), until the pipe is empty. The standard library's
    queues would need a lock or a feeder thread; a pipe needs neither."""

    RECORD = 2
    MOST = 1024  # numbers: 2 KiB, within any system's pipe buffer, so writing them all cannot block

    def __init__(self, count: int):
        self._read, write = os.pipe()
        try:
            os.write(write, b"".join(struct.pack("<H", k) for k in range(count)))
        finally:
            os.close(write)  # an empty pipe with no writer reads as its end

    def __iter__(self):
        while self._read is not None:
            record = os.read(self._read, self.RECORD)
            if len(record) < self.RECORD:
                return
            yield struct.unpack("<H", record)[0]

    def close(self) -> None:
        if self._read is not None:
            os.close(self._read)
            self._read = None


def can_fork() -> bool:
    """Forking is safe here only without other threads (a lock one of them holds would stay held in
    the copy), and worth it only with a second core."""
    import threading

    from harness.cluster import usable_cores

    return hasattr(os, "fork") and usable_cores() > 1 and threading.active_count() == 1
