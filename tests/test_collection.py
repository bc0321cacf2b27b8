"""A small generated collection end to end: sources, impostors, thresholds, detection, report."""

import re
import shutil

import cv2
import pandas as pd
import pytest

from harness import api
from harness.__main__ import main
from tests.conftest import make_scene

CONFIG = """
name: little
seed: 3
images: [{folder}, "{glob}"]
hashers: [aHash, pHash]
impostors: {{transformed: true, per_variant: 3}}
detection: {{fpr: [0.05, 0.001], thresholds: {{pHash: 10}}}}
sweeps:
  - family: identity
  - family: jpeg
    b: {{jpeg: {{quality: $value}}}}
    values: [80, 20]
  - family: shift
    a: {{center_crop: {{fraction: 0.5}}}}
    b: {{center_crop: {{fraction: 0.5, dx: $value, dy: $value}}}}
    values: [0.01, 0.1]
"""


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    root = tmp_path_factory.mktemp("collection")
    folder = root / "photos"
    (folder / "nested").mkdir(parents=True)
    for seed in range(6):
        cv2.imwrite(str(folder / ("nested" if seed % 2 else "") / f"scene {seed}.png"), make_scene(seed))
    cv2.imwrite(str(folder / "copy of scene 0.png"), make_scene(0))  # same pixels: counted once
    cv2.imwrite(str(folder / "gray.png"), cv2.cvtColor(make_scene(6), cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(folder / "wide.jpg"), make_scene(7, 90, 300), [cv2.IMWRITE_JPEG_QUALITY, 95])
    (folder / "notes.txt").write_text("not an image, and not picked up: wrong extension")
    extra = root / "extra"
    extra.mkdir()
    cv2.imwrite(str(extra / "scene 8.png"), make_scene(8))
    config = root / "little.yaml"
    config.write_text(CONFIG.format(folder=folder, glob=extra / "*.png"))
    out = root / "out"
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    return config, out


def test_sources_are_expanded_and_deduplicated(collection):
    _, out = collection
    distances = pd.read_csv(out / "distances.csv", keep_default_na=False)
    assert sorted(set(distances["image"])) == sorted(
        # "copy of scene 0.png" is listed first, so "scene 0.png" is the duplicate left out
        ["copy of scene 0", "scene 1", "scene 2", "scene 3", "scene 4", "scene 5", "gray", "wide", "scene 8"])
    assert distances["image_id"].nunique() == 9
    assert "1 image has the same pixels as another" in (out / "summary.md").read_text()
    assert "scene 0.png" in (out / "summary.md").read_text()  # the file left out, not its name alone


def test_files_that_share_a_name_are_counted_apart(tmp_path):
    import cv2

    import harness
    from tests.conftest import make_scene

    for seed, suffix in ((1, ".png"), (2, ".bmp"), (3, ".png")):
        folder = tmp_path / ("b" if seed == 3 else "a")
        folder.mkdir(exist_ok=True)
        cv2.imwrite(str(folder / f"photo{suffix}"), make_scene(seed))
    results = harness.evaluate({"name": "stems", "images": [str(tmp_path / "a"), str(tmp_path / "b")],
                                "hashers": ["aHash"],
                                "sweeps": [{"family": "jpeg", "b": {"jpeg": {"quality": "$value"}}, "values": [50]}]})
    assert len(results.images) == 3 and repr(results).startswith("Results('stems': 3 images")
    # Each named by its path, where the stem `photo` would name three images in every table (and in
    # the probable duplicates the summary advises listing by name, which could not tell them apart).
    paths = [str(tmp_path / "a" / "photo.bmp"), str(tmp_path / "a" / "photo.png"), str(tmp_path / "b" / "photo.png")]
    assert results.images["image"].tolist() == paths == results.images["origin"].tolist()
    assert sorted(set(results.distances["image"])) == paths
    assert set(results.impostors["image"]) | set(results.impostors["other"]) == set(paths)


def test_no_two_sources_share_a_name_even_where_a_path_is_another_files_stem():
    """cat.jpg and cat.png share the stem cat, so each is named by its path; cat.jpg.png's stem is
    cat.jpg, which is now the first one's name: named by its path too, not left sharing it."""
    from harness.images import source_names

    names = source_names(["cat.jpg", "cat.png", "cat.jpg.png", "dog.png", "builtin:camera", "camera.png"])
    assert names == {"cat.jpg": "cat.jpg", "cat.png": "cat.png", "cat.jpg.png": "cat.jpg.png", "dog.png": "dog",
                     "builtin:camera": "builtin:camera", "camera.png": "camera.png"}


def test_impostors(collection):
    _, out = collection
    impostors = pd.read_csv(out / "impostors.csv", keep_default_na=False)
    source = impostors[impostors["kind"] == "source"]
    assert len(source) == 2 * (9 * 8 // 2)  # every pair of the 9 images, per hasher
    assert (source["image_id"] != source["other_id"]).all()
    transformed = impostors[impostors["kind"] == "transformed"]
    assert len(transformed) == 2 * 9 * 4 * 3  # 4 edited copies per image, 3 others each, 2 hashers
    assert (transformed["image_id"] != transformed["other_id"]).all()
    assert set(transformed["family"]) == {"jpeg", "shift"}


def test_thresholds_and_flags(collection):
    _, out = collection
    thresholds = pd.read_csv(out / "thresholds.csv")
    pairs = 36 + 108
    assert (thresholds["impostor_pairs"] == pairs).all()
    by_point = thresholds.set_index(["hasher", "operating_point"])
    assert by_point.loc[("pHash", "fpr=0.05"), "resolved"]
    assert by_point.loc[("pHash", "fpr=0.05"), "false_matches_allowed"] == 7
    assert not by_point.loc[("pHash", "fpr=0.001"), "resolved"]  # 144 pairs cannot resolve 1 in 1000
    assert by_point.loc[("pHash", "fixed"), "threshold"] == 10
    # A fixed threshold has no target: nothing "allowed" to set beside its false matches (was 0).
    assert pd.isna(by_point.loc[("pHash", "fixed"), "false_matches_allowed"])
    fixed_line = next(line for line in (out / "summary.md").read_text().splitlines() if line.startswith("| pHash | fixed"))
    assert "| 144 |  |" in fixed_line and "<NA>" not in fixed_line
    assert ("aHash", "fixed") not in by_point.index
    # the threshold really keeps the false-positive rate within the target on the saved impostors
    impostors = pd.read_csv(out / "impostors.csv")
    for (hasher, point), row in by_point.iterrows():
        counted = (impostors.loc[impostors["hasher"] == hasher, "distance"] <= row["threshold"]).sum()
        assert counted == row["false_matches"]
        if point.startswith("fpr="):
            assert counted <= row["false_matches_allowed"]


def test_detection_and_roc_tables(collection):
    _, out = collection
    detection = pd.read_csv(out / "detection.csv", keep_default_na=False)
    assert len(detection) == 5 * (2 + 3)  # 5 pairs x (aHash: 2 operating points, pHash: 2 + fixed)
    assert (detection["genuine_pairs"] == 9).all()
    assert (detection[detection["family"] == "identity"]["tpr"] == 1).all()
    assert (detection["tpr_low"] <= detection["tpr"]).all() and (detection["tpr"] <= detection["tpr_high"]).all()
    roc = pd.read_csv(out / "roc.csv")
    assert set(roc["family"]) == {"identity", "jpeg", "shift", "(all)"}
    assert roc["auc"].between(0, 1).all()


def test_summary_leads_with_the_answer(collection):
    _, out = collection
    summary = (out / "summary.md").read_text()
    assert summary.index("## The answer") < summary.index("## Distances")
    for figure in ("detection.png", "histograms.png", "roc.png", "families.png", "heatmap.png"):
        assert f"figures/{figure}" in summary and (out / "figures" / figure).is_file()
    assert "resolve" in summary  # the unresolved 0.001 rate is explained
    # Which threshold to use with each hasher, in the answer (it was only in the Thresholds table, far below).
    thresholds = pd.read_csv(out / "thresholds.csv").set_index(["hasher", "operating_point"])["threshold"]
    line = next(line for line in summary.splitlines() if line.startswith("The thresholds behind these rates"))
    assert line == ("The thresholds behind these rates, at fpr=0.05 (a pair is a match at or below its hasher's): "
                    f"aHash <= {thresholds[('aHash', 'fpr=0.05')]:g}, pHash <= {thresholds[('pHash', 'fpr=0.05')]:g} "
                    "(see Thresholds).")
    assert summary.index(line) < summary.index("## Distances")
    # ties are the hashers overlapping the best one's interval (metrics.rank_with_ties), no chains
    assert "overlap the best one's are **tied**" in summary


def test_rebuild_and_determinism(collection, tmp_path):
    config, out = collection
    again = tmp_path / "again"
    assert main(["run", str(config), "--out", str(again), "--quiet"]) == 0
    for name in ("distances.csv", "impostors.csv", "table.csv", "thresholds.csv", "detection.csv", "roc.csv"):
        assert (out / name).read_bytes() == (again / name).read_bytes(), name
    before = {name: (again / name).read_bytes() for name in ("detection.csv", "summary.md", "figures/detection.png")}
    shutil.rmtree(again / "figures")
    for name in ("detection.csv", "thresholds.csv", "roc.csv", "summary.md"):
        (again / name).unlink()
    assert main(["report", str(again)]) == 0
    for name, content in before.items():
        assert (again / name).read_bytes() == content, name


def test_limit_is_a_seeded_sample(collection, tmp_path):
    """`limit` samples the listed files before any is decoded (cheap on big folders)."""
    config, _ = collection
    text = config.read_text().replace("seed: 3", "seed: 4\nlimit: 4")
    limited = tmp_path / "limited.yaml"
    limited.write_text(text)
    runs = []
    for name in ("a", "b"):
        assert main(["run", str(limited), "--out", str(tmp_path / name), "--quiet"]) == 0
        runs.append(sorted(set(pd.read_csv(tmp_path / name / "distances.csv")["image"])))
    assert len(runs[0]) == 4 and runs[0] == runs[1]


def test_the_answer_says_the_range_of_impostor_pairs_when_hashers_differ():
    """A hasher that failed on some images has fewer impostor pairs: the answer gives the range."""
    import pandas as pd

    from harness.summary import answer_section

    verdicts = pd.DataFrame(columns=["family", "warning", "resolved"])
    per_hasher = pd.DataFrame(columns=["family", "hasher"])
    for counts, said in (([657, 657], "from 657 impostor pairs per hasher"),
                         ([657, 457], "from 457 to 657 impostor pairs per hasher"),
                         ([4203, 1040], "from 1,040 to 4,203 impostor pairs per hasher")):
        thresholds = pd.DataFrame({"hasher": ["a", "b"], "operating_point": "fpr=0.01", "impostor_pairs": counts,
                                   "threshold": 10.0, "resolved": True})
        text = "\n".join(answer_section({"verdicts": verdicts, "chosen": "fpr=0.01", "rate": 0.01, "min_tpr": 0.95,
                                         "thresholds": thresholds, "figures": {"matrix": "m", "detection": "d"},
                                         "hasher_verdicts": per_hasher, "families": []}))
        assert said in text, text[:400]


def test_the_summary_writes_counts_with_thousands_separators_in_prose_and_tables():
    """Counts read alike everywhere in the summary ("Images: 1,040" already had separators)."""
    import pandas as pd

    from harness.summary import format_cells

    frame = pd.DataFrame({"hasher": ["aHash", "pHash"], "impostor_pairs": [4203, 1234567],
                          "false_matches_allowed": pd.array([42, None], dtype="Int64"),
                          "fpr_measured": [0.009279, float("nan")], "resolved": [True, False]})
    cells = format_cells(frame)
    assert list(cells["impostor_pairs"]) == ["4,203", "1,234,567"]
    assert list(cells["false_matches_allowed"]) == ["42", ""]  # a nullable count's empty cell stays empty
    assert list(cells["fpr_measured"]) == ["0.009279", ""] and list(cells["resolved"]) == [True, False]


def test_the_summary_writes_whole_floats_and_large_numbers_as_it_writes_counts(tmp_path):
    """A threshold of 1240.0 (a float column) read "1240" beside counts of "4,203", and a float past
    four digits as "1.235e+04": every number of the summary has the counts' separators now, a
    threshold its six digits in the tables as in the lines, and no number an exponent."""
    import harness
    from harness.summary import format_cells

    cells = format_cells(pd.DataFrame({"threshold": [1240.0, 0.310527, 12345.6], "fpr_measured": [0.009279, 1240.0,
                                                                                                 12345.6]}))
    assert list(cells["threshold"]) == ["1,240", "0.310527", "12,345.6"]
    assert list(cells["fpr_measured"]) == ["0.009279", "1,240", "12,346"]
    # A 4,096-bit hash: its maximum, its thresholds (computed and given) in the tables and the lines.
    results = harness.evaluate({
        "name": "big", "images": ["builtin:coffee", "builtin:camera", "builtin:astronaut", "builtin:chelsea",
                                  "builtin:rocket", "builtin:moon"],
        "hashers": [{"name": "imagehash.average_hash", "hash_size": 64, "id": "aHash64"}],
        "detection": {"fpr": [0.1], "thresholds": {"aHash64": 1240}},
        "sweeps": [{"family": "jpeg", "b": {"jpeg": {"quality": "$value"}}, "values": [50]}]})
    results.save(str(tmp_path / "out"))
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "| aHash64 | hamming | 4,096 | ok |" in summary
    assert "| aHash64 | fixed |  | 1,240 |" in summary and "aHash64 <= 1,240: false-positive rate" in summary
    computed = float(results.thresholds.query("operating_point == 'fpr=0.1'")["threshold"].iloc[0])
    assert computed >= 1000 and f"aHash64 <= {computed:,.0f}" in summary  # the answer's line
    prose = summary.split("## Provenance")[0].replace("Challenge 2021", "").replace("isc2021", "")  # a year, a name
    assert not re.findall(r".{30}(?<![\d.,])\d{4,}(?![\d.]).{10}", prose)


def test_one_image_with_a_given_threshold_says_it_is_not_scored():
    import harness

    results = harness.evaluate({"name": "one", "images": ["builtin:coffee"], "hashers": ["pHash"],
                                "detection": {"thresholds": {"pHash": 10}},
                                "sweeps": [{"family": "jpeg", "b": {"jpeg": {"quality": "$value"}}, "values": [50]}]})
    assert results.detection.empty
    assert any(note.startswith("one image only") and "given for pHash are not scored" in note
               for note in results.notes)
    left_out = harness.evaluate({"name": "one", "images": ["builtin:coffee"], "hashers": ["pHash", "aHash"],
                                 "detection": {"thresholds": {"pHash": 10, "aHash": 5}},
                                 "sweeps": [{"family": "jpeg", "b": {"jpeg": {"quality": "$value"}}, "values": [50]}]},
                                hashers=["aHash"])
    assert any("given for aHash are not scored" in note for note in left_out.notes)  # pHash did not run


def test_the_summary_names_a_family_whose_every_pair_failed():
    """A family whose edit fails on every image has no detection rate, so no row in the answer, the
    detection table or its figures: the summary says so. Was: it disappeared without a word."""
    from harness.summary import summary_markdown

    config = {"name": "fails", "images": ["builtin:coffee", "builtin:camera", "builtin:astronaut", "builtin:chelsea"],
              "hashers": ["aHash", "pHash"], "impostors": {"transformed": True}, "detection": {"fpr": [0.2]},
              "sweeps": [{"family": "jpeg", "b": {"jpeg": {"quality": 50}}},
                         {"family": "outside", "b": {"crop": {"x": 5000, "y": 5000, "width": 30, "height": 30}}}]}
    results = api.evaluate(config)
    assert list(results.metrics.verdicts["family"]) == ["jpeg"] and "outside" not in set(results.detection["family"])
    figures = {key: f"figures/{key}.png" for key in ("families", "heatmap", "detection", "histograms", "roc", "matrix")}
    summary = summary_markdown(results, figures, previews=False)
    assert ("> **No detection rate for 1 family (outside):** every one of its pairs failed for every hasher, so no "
            "table or figure of detection rates has it") in summary
    assert summary.count("No detection rate") == 1
