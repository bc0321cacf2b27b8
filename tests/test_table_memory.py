"""The long tables at scale: built once, in their saved form, and read without whole-table copies.

At 100,000 images the distance table has 1.2 million rows; these tests pin the pieces that keep
its memory down (issue 9) to the results the plain whole-table code gave.
"""

import os

import numpy as np
import pandas as pd
import pytest

from harness import metrics, report, schema, storage
from harness.metrics import PAIR_KEY
from tests.conftest import ROOT


@pytest.mark.parametrize("codes, count, expected", [
    ([0, 0, 1, 0, 2, 1], 3, True),
    ([0, 2, 1], 3, False),  # 2 before 1
    ([1, 0], 2, False),
    ([0, 1, 1], 3, False),  # category 2 never used
    ([0, -1, 1], 2, False),  # a missing value
    ([], 0, True),
    ([], 1, False),
])
def test_in_first_seen_order(codes, count, expected, monkeypatch):
    monkeypatch.setattr(schema, "ROWS_BLOCK", 2)  # blocks end inside every case
    assert schema.in_first_seen_order(np.array(codes, np.int16), count) is expected


@pytest.mark.parametrize("seed", range(20))
def test_in_first_seen_order_agrees_with_first_seen_codes(seed, monkeypatch):
    monkeypatch.setattr(schema, "ROWS_BLOCK", 5)
    rng = np.random.default_rng(seed)
    count = int(rng.integers(1, 6))
    codes = rng.integers(0, count, int(rng.integers(1, 40)))
    if seed % 2:  # renumber in order of appearance: the runner's tables
        codes = np.unique(codes, return_inverse=True)[1].reshape(-1)
        order = schema.first_seen_codes(codes)
        renumber = np.empty(codes.max() + 1, np.int64)
        renumber[order] = np.arange(len(order))
        codes, count = renumber[codes], len(order)
    in_order = list(schema.first_seen_codes(codes)) == list(range(count))
    assert schema.in_first_seen_order(codes, count) is in_order


@pytest.mark.parametrize("seed", range(40))
def test_first_seen_codes_and_categorical_follow_their_definitions(seed, monkeypatch):
    """Against the plain definitions, row by row: the codes in order of first appearance, and each
    row's text with the distinct texts as categories in order of first appearance (missing codes,
    texts that two codes share, unused codes; blocks that end inside the column)."""
    monkeypatch.setattr(schema, "ROWS_BLOCK", int(np.random.default_rng(seed).integers(1, 9)))
    rng = np.random.default_rng(seed)
    count = int(rng.integers(1, 8))
    codes = rng.integers(-1 if seed % 3 == 0 else 0, count, int(rng.integers(0, 40))).astype(
        [np.int8, np.int16, np.int32][seed % 3])
    assert list(schema.first_seen_codes(codes, count)) == list(dict.fromkeys(c for c in codes.tolist() if c >= 0))
    texts = np.array([str(rng.integers(0, 5)) for _ in range(count)] + [rng.choice(["", "0", "x"])], dtype=object)
    row_texts = [texts[c] for c in codes.tolist()]  # texts[-1] for -1
    made = schema.first_seen_categorical(codes, texts)
    assert list(made.categories) == list(dict.fromkeys(row_texts))
    assert list(made.astype(object)) == row_texts
    assert made.codes.dtype == np.int8 and made.categories.dtype == object


def test_first_seen_categorical_keeps_the_narrowest_codes_pandas_would_keep():
    codes = np.arange(40_000, dtype=np.int32)[::-1].copy()
    made = schema.first_seen_categorical(codes, np.array([f"n{k}" for k in range(40_000)] + [""], dtype=object))
    assert made.codes.dtype == np.int32 and made.codes[0] == 0 and made.categories[0] == "n39999"
    assert pd.Categorical.from_codes(made.codes, categories=made.categories).codes.dtype == np.int32
    assert [schema.code_dtype(n) for n in (0, 126, 127, 32766, 32767)] == [np.int8, np.int8, np.int16, np.int16,
                                                                          np.int32]


def test_round6_rounds_as_each_value_printed_and_copies_only_what_changes(monkeypatch):
    monkeypatch.setattr(storage, "ROWS_BLOCK", 7)  # many blocks, some exact, some not
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.integers(0, 64, 20).astype(float), rng.random(20) / 3, [np.nan, np.inf, -0.0, 2e7],
                             np.full(10, 1 / 3)])
    rng.shuffle(values)
    expected = np.array([float(storage.FLOAT_FORMAT % v) for v in values])
    rounded = storage.round6(values)
    np.testing.assert_array_equal(rounded, expected)
    assert rounded is not values and not np.array_equal(values, expected, equal_nan=True)  # the input is kept
    assert storage.round6(rounded) is rounded  # already to 6 digits: no copy
    whole = rng.integers(0, 64, 30).astype(float)
    assert storage.round6(whole) is whole
    in_place = values.copy()
    assert storage.round6(in_place, in_place=True) is in_place
    np.testing.assert_array_equal(in_place, expected)


def test_a_runs_tables_are_already_in_their_saved_form(tmp_path):
    """normalise (what every table read back goes through) changes and copies nothing of a run's own."""
    import cv2

    from harness.config import parse_config
    from harness.runner import run
    from tests.conftest import make_scene

    for k in range(3):
        cv2.imwrite(str(tmp_path / f"scene{k}.png"), make_scene(k))
    config = parse_config({"images": [str(tmp_path)], "hashers": ["aHash", "imagehash.phash"],
                           "sweeps": [{"family": "jpeg", "b": {"jpeg": {"quality": "$value"}}, "values": [30, 90]},
                                      {"family": "crop", "b": {"center_crop": {"fraction": 0.9}}}]}, "<test>")
    distances = run(config, workers=1).distances
    assert len(distances) == 3 * 2 * 3 and distances["distance_norm"].between(0, 1).all()
    normal = storage.normalise(storage.DISTANCES, distances)
    for column in distances.columns:
        before, after = distances[column].array, normal[column].array
        if isinstance(distances[column].dtype, pd.CategoricalDtype):
            before, after = before.codes, after.codes
            assert list(normal[column].cat.categories) == schema.first_seen(distances[column])
        assert np.shares_memory(np.asarray(before), np.asarray(after)), column


def _shuffled_distances() -> pd.DataFrame:
    """Two hashers' distances whose (pair, hasher) groups first appear interleaved, an error and an
    unavailable hasher's rows among them."""
    rng = np.random.default_rng(3)
    rows = []
    for image in range(4):
        for hasher in ("h1", "h0", "off"):
            for family, value in (("jpeg", "30"), ("jpeg", "90"), ("crop", "0.9")):
                if hasher == "off":
                    rows.append((f"i{image}", family, value, f"{family} {value}", hasher, np.nan, np.nan,
                                 "unavailable"))
                    continue
                failed = image == 0 and hasher == "h1" and value == "90"
                distance = np.nan if failed else float(rng.integers(0, 64))
                rows.append((f"i{image}", family, value, f"{family} {value}", hasher, distance, distance / 64,
                             "hash: failed" if failed else ""))
    frame = pd.DataFrame(rows, columns=["image", "family", "value", "label", "hasher", "distance", "distance_norm",
                                        "error"])
    frame.insert(1, "image_id", frame["image"])
    return storage.normalise(storage.DISTANCES, frame.sample(frac=1, random_state=1).reset_index(drop=True))


def test_the_tables_name_the_images_with_the_runs_own_strings(tmp_path):
    """The images' names and ids are one set of Python strings, shared by the images table and every
    categorical column that names them: pandas' text type would copy them into Arrow and back into
    new Python objects for every column it looks up (23 MiB at 100,000 images)."""
    import cv2

    import harness
    from tests.conftest import make_scene

    for k in range(4):
        cv2.imwrite(str(tmp_path / f"scene{k}.png"), make_scene(k))
    results = harness.evaluate({"images": [str(tmp_path)], "hashers": ["aHash"],
                                "sweeps": [{"family": "jpeg", "b": {"jpeg": {"quality": 50}}}]})
    images = results.images
    names = {id(text) for text in images["image"].to_numpy()} | {id(text) for text in images["image_id"].to_numpy()}
    assert images["image"].dtype == object and images["image_id"].dtype == object
    for table, columns in ((results.distances, ["image", "image_id"]),
                           (results.impostors, ["image", "other", "image_id", "other_id"])):
        for column in columns:
            categories = table[column].cat.categories
            assert categories.dtype == object, column
            assert {id(text) for text in categories} <= names, column


def test_the_tables_keep_no_hash_table_of_their_categories_once_made_or_read(tmp_path):
    """pandas builds a hash table of a categorical's categories to check them, and keeps it while they
    live (8 MiB for a 100,000-image run's tables); a run's tables and a loaded set's let it go."""
    import cv2

    import harness
    from tests.conftest import make_scene

    if not hasattr(pd.Index, "_cleanup"):
        pytest.skip("this pandas has no Index._cleanup: the hash tables stay (memory only)")
    (tmp_path / "images").mkdir()
    for k in range(4):
        cv2.imwrite(str(tmp_path / "images" / f"scene{k}.png"), make_scene(k))
    results = harness.evaluate({"images": [str(tmp_path / "images")], "hashers": ["aHash"],
                                "sweeps": [{"family": "jpeg", "b": {"jpeg": {"quality": 50}}}]})
    results.save(str(tmp_path / "out"))
    for made in (results, harness.load(str(tmp_path / "out"))):
        for table in (made.distances, made.impostors):
            for name in ("image", "image_id", "other", "other_id"):  # the columns of as many names as images
                if name in table:
                    categories = table[name].cat.categories
                    assert "_engine" not in categories._cache or categories._engine.sizeof() == 0, name
    assert results.distances["image"].cat.categories.get_loc("scene1") == 1  # a lookup still works


def test_a_table_read_back_has_the_same_categories_as_the_one_saved(tmp_path):
    """Parquet gives pandas' text type back; normalise makes it Python strings again, with the same
    codes, so a loaded table equals the saved one and saves to the same bytes."""
    frame = _shuffled_distances()
    texts = frame.copy()
    texts["image"] = pd.Categorical.from_codes(frame["image"].cat.codes, dtype=pd.CategoricalDtype(
        pd.Index(list(frame["image"].cat.categories), dtype="str")))
    normal = storage.normalise(storage.DISTANCES, texts)
    assert normal["image"].cat.categories.dtype == object
    pd.testing.assert_frame_equal(normal, frame)
    first, second = tmp_path / "first.parquet", tmp_path / "second.parquet"
    storage._to_parquet(frame, str(first))
    storage._to_parquet(storage.normalise(storage.DISTANCES, pd.read_parquet(first)), str(second))
    assert first.read_bytes() == second.read_bytes()


@pytest.mark.parametrize("group_rows", [1, 5, 12, 1 << 20])
def test_a_long_table_in_row_groups_reads_back_as_pandas_wrote_it_each_group_naming_its_own_images(
        tmp_path, group_rows):
    """_long_to_parquet writes the file pandas' to_parquet writes (schema and pandas' metadata, NaN as
    null), in row groups whose dictionaries hold only the names their rows use; it reads back to the
    same table, and a table read back writes the same bytes again."""
    import pyarrow.parquet as pq

    frame = storage.normalise(storage.DISTANCES, _shuffled_distances().sort_values("image", kind="stable"))
    with_missing = frame.copy()
    with_missing["family"] = with_missing["family"].cat.add_categories(["never used"])
    with_missing.loc[3, "family"] = np.nan
    for table in (frame, with_missing):
        ours, theirs = tmp_path / "ours.parquet", tmp_path / "theirs.parquet"
        storage._long_to_parquet(table, str(ours), group_rows)
        storage._to_parquet(table, str(theirs))
        assert pq.read_schema(ours).equals(pq.read_schema(theirs), check_metadata=True)
        pd.testing.assert_frame_equal(pd.read_parquet(ours), pd.read_parquet(theirs), check_categorical=False)
        written = pq.ParquetFile(ours)
        assert written.metadata.num_row_groups == -(-len(table) // group_rows)
        for group in range(written.metadata.num_row_groups):
            part, rows = written.read_row_group(group), table.iloc[group * group_rows:(group + 1) * group_rows]
            for column in ("image", "image_id", "family", "hasher"):
                used = set(rows[column].dropna())  # in the table's order of its categories
                assert part.column(column).chunk(0).dictionary.to_pylist() == [
                    text for text in table[column].cat.categories if text in used]
        read = written.read()
        assert read.column("distance").null_count == table["distance"].isna().sum() > 0
        assert read.column("family").null_count == table["family"].isna().sum()
    again = tmp_path / "again.parquet"
    storage._long_to_parquet(storage.normalise(storage.DISTANCES, pd.read_parquet(ours)), str(again), group_rows)
    first = tmp_path / "first.parquet"
    storage._long_to_parquet(frame, str(first), group_rows)
    storage._long_to_parquet(storage.normalise(storage.DISTANCES, pd.read_parquet(first)), str(again), group_rows)
    assert again.read_bytes() == first.read_bytes()


def test_curves_and_the_article_table_one_hasher_at_a_time_match_one_grouping():
    distances = _shuffled_distances()
    # The whole-table groupings they replace (issue 9: 70 MiB at 100,000 images).
    usable = distances.loc[distances["error"] == "", PAIR_KEY + ["hasher", "distance_norm"]]
    grouped = usable.groupby(PAIR_KEY + ["hasher"], sort=False, observed=True)["distance_norm"]
    expected = pd.DataFrame({"median": grouped.median(), "q25": grouped.quantile(0.25), "q75": grouped.quantile(0.75),
                             "images": grouped.count()}).reset_index()
    expected["x"] = pd.to_numeric(expected["value"], errors="coerce")
    pd.testing.assert_frame_equal(metrics.family_curves(distances), expected)

    table = metrics.article_table(distances)
    assert list(table.columns) == PAIR_KEY + metrics.hasher_order(distances)
    pairs = distances[PAIR_KEY].drop_duplicates().reset_index(drop=True)
    pd.testing.assert_frame_equal(table[PAIR_KEY], pairs)
    assert (table["off"] == "unavailable").all()
    for hasher in ("h1", "h0"):
        medians = distances[distances["hasher"] == hasher].groupby(PAIR_KEY, sort=False, observed=True)[
            "distance"].median()
        assert list(table[hasher]) == [metrics.format_number(v) for v in pairs.join(medians, on=PAIR_KEY)["distance"]]


@pytest.mark.parametrize("shared_label", [False, True])
def test_the_heatmap_medians_are_pandas_groupby_medians_per_label(shared_label):
    """figures.label_medians (one hasher's pair groups at a time) against pandas' groupby median of
    each hasher's usable rows by label, to the bit; with a label that two pairs share (their rows
    taken together), an error row and an unavailable hasher."""
    from harness import figures

    distances = _shuffled_distances()
    if shared_label:
        distances["label"] = distances["label"].astype(object).replace({"jpeg 90": "jpeg 30"}).astype("category")
    hashers = metrics.hasher_order(distances)
    labels = schema.first_seen(distances["label"])
    norm, raw, unavailable = figures.label_medians(distances, hashers, labels)
    for column, hasher in enumerate(hashers):
        usable = distances[(distances["hasher"] == hasher) & (distances["error"] == "")]
        medians = usable.groupby("label", sort=False, observed=True)[["distance_norm", "distance"]].median()
        expected = medians.reindex(labels).to_numpy(dtype=float)
        np.testing.assert_array_equal(norm[:, column], expected[:, 0])
        np.testing.assert_array_equal(raw[:, column], expected[:, 1])
        assert unavailable[column] == (hasher == "off")
    assert np.isfinite(raw[:, hashers.index("h0")]).all() and np.isnan(raw[:, hashers.index("off")]).all()


def test_the_fingerprint_is_the_same_hashed_in_blocks_and_follows_every_value(monkeypatch):
    from harness.api import Results

    distances = _shuffled_distances()
    results = Results(config={}, provenance={}, distances=distances, impostors=distances.iloc[:0],
                      errors=pd.DataFrame(), images=pd.DataFrame({"image": ["a"]}), hashers=pd.DataFrame(),
                      notes=[], metrics=None, previews=[])
    whole = report.report_fingerprint(results)
    monkeypatch.setattr(storage, "ROWS_BLOCK", 5)
    assert report.report_fingerprint(results) == whole
    monkeypatch.setattr(report, "TEXT_BLOCK", 2)
    assert report.report_fingerprint(results) == whole
    # The same table with other code widths and pandas' text type for its categories: the same.
    same = distances.copy()
    same["image"] = pd.Categorical.from_codes(same["image"].cat.codes.astype(np.int32),
                                              dtype=pd.CategoricalDtype(pd.Index(list(same["image"].cat.categories),
                                                                                 dtype="str")))
    results.distances = same
    assert report.report_fingerprint(results) == whole
    changed = [distances.iloc[1:], distances.assign(distance=distances["distance"].where(distances.index != 3, 99.0)),
               distances.assign(image=distances["image"].cat.rename_categories(
                   {distances["image"].cat.categories[0]: "renamed"}))]
    swapped = distances.copy()  # two rows' images swapped: the same categories, other codes
    other = int(np.flatnonzero(distances["image"] != distances["image"].iloc[0])[0])
    swapped.loc[[0, other], "image"] = swapped.loc[[other, 0], "image"].to_numpy()
    assert swapped["image"].iloc[0] != distances["image"].iloc[0]
    for table in changed + [swapped]:
        results.distances = table
        assert report.report_fingerprint(results) != whole


def test_a_growing_array_hands_over_what_it_was_given_in_chunks_or_in_its_reserved_room(monkeypatch):
    from harness.runner import Growing

    monkeypatch.setattr(Growing, "CHUNK_BYTES", 64)  # chunks of 64 rows, the least
    values = np.arange(200, dtype=np.float64)
    for capacity in (None, 200, 70):  # chunks; room for all (no copy); too little room (chunks after it)
        growing = Growing(np.float64, capacity)
        for start in range(0, 200, 7):
            growing.extend(values[start:start + 7])
        whole = growing.take()
        assert whole.tolist() == values.tolist() and growing.take() is None
        if capacity == 200:  # the reserved room itself, filled, not a copy of it
            assert whole.base is not None and len(whole.base) == 200
    reserved = Growing(np.int32, 1000)
    reserved.extend([1, 2, 3])
    assert reserved.take().tolist() == [1, 2, 3]


def _pandas_csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(None, index=False, lineterminator="\n", float_format=storage.FLOAT_FORMAT).encode()


def _csv_quotes_carriage_returns() -> bool:
    """Whether this Python's csv module, as pandas' to_csv uses it (lines ended by "\n"), quotes a
    field holding a carriage return: Python 3.13 and later do."""
    import csv
    import io

    written = io.StringIO()
    csv.writer(written, lineterminator="\n").writerow(["a\rb", "c"])
    return written.getvalue().startswith('"')


@pytest.mark.parametrize("block", [4, 1 << 16])
def test_a_long_table_written_through_arrow_has_the_bytes_pandas_writes(tmp_path, monkeypatch, block):
    """storage._to_csv writes a table of text categories and floats with Arrow's CSV writer, in blocks
    of rows: the same bytes as pandas' to_csv, missing values, unused categories, -0.0, infinities
    and 6-digit floats included; a table Arrow cannot write as pandas does (text that pandas quotes,
    a column of another type) is written by pandas, still the same bytes."""
    monkeypatch.setattr(storage, "ROWS_BLOCK", block)
    frame = _shuffled_distances()
    frame["family"] = frame["family"].cat.add_categories(["never used"])
    frame.loc[2, "family"] = np.nan
    frame.loc[:5, "distance_norm"] = [-0.0, 0.0, np.inf, -np.inf, 1.23456e-7, 123456789.0]
    path = tmp_path / "table.csv"
    assert storage._csv_columns(frame) is not None  # the Arrow path
    storage._to_csv(frame, str(path))
    assert path.read_bytes() == _pandas_csv(frame)
    assert b"\n-0," in path.read_bytes() or b",-0," in path.read_bytes()

    quoted = frame.copy()  # a name with a comma, a quote, a line break: pandas quotes it, and writes it
    for mark in (",", '"', "\n", "\r"):
        quoted["image"] = frame["image"].cat.rename_categories(lambda text: f"{text}{mark}x")
        assert storage._csv_columns(quoted) is None
        storage._to_csv(quoted, str(path))
        assert path.read_bytes() == _pandas_csv(quoted)
        # pandas quotes with Python's csv module, which quotes a carriage return from Python 3.13 on
        # (not before); Arrow writes none as pandas would, so such a table is pandas' either way.
        assert (b'"' in path.read_bytes()) == (mark != "\r" or _csv_quotes_carriage_returns())
    counted = frame.assign(count=np.arange(len(frame)))  # an integer column: pandas writes the table
    assert storage._csv_columns(counted) is None
    storage._to_csv(counted, str(path))
    assert path.read_bytes() == _pandas_csv(counted)
    twice = pd.concat([frame[["image", "distance"]], frame[["distance"]]], axis=1)  # two columns of one name
    assert storage._csv_columns(twice) is None
    storage._to_csv(twice, str(path))
    assert path.read_bytes() == _pandas_csv(twice)
    storage._to_csv(frame.iloc[:0], str(path))  # no rows: the header alone
    assert path.read_bytes() == _pandas_csv(frame.iloc[:0])


@pytest.mark.parametrize("report_dir", ["collection", "zoo", "protocols/copydays"])
@pytest.mark.parametrize("name", [storage.DISTANCES, storage.IMPOSTORS])
def test_the_committed_long_tables_read_back_write_the_same_bytes(tmp_path, report_dir, name):
    """The committed reports' long tables (written by pandas' to_csv before the Arrow path existed),
    read back and written again, give the same bytes: through Arrow, but for the zoo's distances,
    whose chained edits' labels hold commas ("Downscale x0.5, JPEG 10"), which pandas writes."""
    folder = os.path.join(ROOT, "reports", report_dir)
    table = storage.read_long(folder, name)
    assert (storage._csv_columns(table) is None) == (report_dir == "zoo" and name == storage.DISTANCES)
    storage._to_csv(table, str(tmp_path / "again.csv"))
    with open(os.path.join(folder, f"{name}.csv"), "rb") as committed:
        assert (tmp_path / "again.csv").read_bytes() == committed.read()


def test_the_summary_makes_names_only_for_the_images_it_shows():
    """The summary shows ten images: it made a text for each of 100,000 (12 MiB at the run's peak,
    issue 9's "at most 1.3x the peak at 1,000"); a name shared with an image past the tenth is
    still told apart by its origin."""
    import tracemalloc

    from harness.summary import image_names

    count = 100_000
    names = [f"img{k:06d}" for k in range(count)]
    names[1] = names[count - 1] = "shared"
    images = pd.DataFrame({"image": pd.Categorical(names), "origin": [f"d{k % 7}/{n}.png" for k, n in enumerate(names)]})
    assert image_names(images, 10) == ["img000000", "d1/shared.png"] + [f"img{k:06d}" for k in range(2, 10)]
    assert image_names(images.drop(columns="origin"), 3) == ["img000000", "shared", "img000002"]
    tracemalloc.start()
    try:
        image_names(images, 10)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20, f"{peak / 2**20:.1f} MiB for ten names"
