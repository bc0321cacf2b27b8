"""The leak audit's decisions: thresholds, the exact search, what a threshold costs, and the tables.

Split pairs are audited in the splits' order: each split against itself (duplicates inside it),
then against every later split. The search runs shard by shard (blocks of query rows) on the
engine `run` uses, so a Dask cluster can take it; the results are exact, so sharding changes
nothing in them.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from harness import search
from harness.cluster import Engine
from harness.errors import HarnessError, HashError
from harness.hashers.base import BitHasher
from harness.leaks import (AGREEMENT, ESTIMATE_COLUMNS, GROUP_COLUMNS, LEAK_COLUMNS, MISS_COLUMNS, SHARD, LeakConfig,
                           SplitHashes)
from harness.markdown import number
from harness.metrics import poisson_quantile, threshold_at_fpr, wilson_interval


def split_pairs(splits: list[SplitHashes]) -> list[tuple[int, int]]:
    """(a, b) with a <= b: each split with itself, then with every later one."""
    return [(a, b) for a in range(len(splits)) for b in range(a, len(splits))]


def compared(splits, a: int, b: int) -> int:
    n, m = len(splits[a].files), len(splits[b].files)
    return n * (n - 1) // 2 if a == b else n * m


# --- work that runs on the engine ------------------------------------------------------

def _search_state(arrays: dict, hashers: dict):
    """The hashes and the hashers (in a worker: built from their specs; distances need no model)."""
    built = {hid: h.build() if hasattr(h, "build") else h for hid, h in hashers.items()}
    return arrays, built


def stored(hasher, distance: np.ndarray) -> np.ndarray:
    """Distances as the audit's tables hold them and its decisions read them: to 6 significant digits,
    as a run's (whose thresholds a calibration takes). A distance just above a threshold that prints
    as the threshold (19.8615039 against 19.8615) is then flagged, as the table that shows it says;
    Hamming distances are whole numbers, and stay as they are."""
    from harness.storage import round6

    return distance if isinstance(hasher, BitHasher) else round6(distance)


def _searched_to(hasher, threshold: float) -> float:
    """How far the exact search must look for every distance that `stored` puts at or below
    `threshold`: half a unit of the sixth digit above it (1e-5 of it is more)."""
    return threshold if isinstance(hasher, BitHasher) else threshold + abs(threshold) * 1e-5


def _search_shard(state, job):
    """Pairs of one block of split a's rows against split b (within one split: i < j), with their
    `stored` distances; for pairs, a TooManyPairs instead once the block holds more than `limit`
    (the audit's max_flags)."""
    arrays, hashers = state
    kind, hid, a, b, start, stop, threshold, limit = job
    hasher = hashers[hid]
    if kind == "pairs":
        try:
            found = _shard_pairs(hasher, arrays[(a, hid)][start:stop], arrays[(b, hid)], a == b, start, stop,
                                 _searched_to(hasher, threshold), limit)
        except HashError as exc:  # a plugin's distance that misbehaves: the audit cannot be exact without it
            raise HarnessError(f"leak search: {exc}; the audit needs every pair's distance") from None
        if isinstance(found, search.TooManyPairs):
            return found
        i, j, distance = found
        distance = stored(hasher, distance)
        keep = distance <= threshold
        return i[keep], j[keep], distance[keep]
    queries = arrays[(a, hid)][start:stop]
    database = arrays[(b, hid)]
    if a == b:
        counts = search.hamming_histogram_within(queries, int(hasher.distance_max))
        rest = database[stop:]
        if len(rest):
            counts = counts + search.hamming_histogram(queries, rest, int(hasher.distance_max))
        return counts
    return search.hamming_histogram(queries, database, int(hasher.distance_max))


def _shard_pairs(hasher, queries, database, same: bool, start: int, stop: int, threshold: float, limit):
    """The pairs of `queries` (rows start:stop of split a) against `database` (split b; `same`: a is
    b, and then i < j) within `threshold`, with the search's own distances; or its TooManyPairs."""
    try:
        if same:  # inside the block (i < j), then the block against the rows after it
            inside = search.hasher_pairs_within(hasher, queries, threshold, limit=limit)
            try:
                after = search.hasher_pairs(hasher, queries, database[stop:], threshold,
                                            limit=None if limit is None else limit - len(inside))
            except search.TooManyPairs as over:
                raise search.TooManyPairs(len(inside) + over.count) from None
            i = np.concatenate([inside.i, after.i]) + start
            j = np.concatenate([inside.j + start, after.j + stop])
            order = np.lexsort([j, i])
            return i[order], j[order], np.concatenate([inside.distance, after.distance])[order]
        found = search.hasher_pairs(hasher, queries, database, threshold, limit=limit)
    except search.TooManyPairs as over:  # returned, not raised: a value comes back the same way from any engine
        return over
    return found.i + start, found.j, found.distance


def _engine_map(jobs, splits, hashers, specs, workers, scheduler, finished=None):
    arrays = {(k, hid): split.arrays[hid] for k, split in enumerate(splits) for hid in hashers}
    # In this process the hashers are the prepared ones; elsewhere each worker builds them from specs.
    local = workers <= 1 and not scheduler
    given = hashers if local else {spec.id: spec for spec in specs}
    with Engine(workers=workers, scheduler=scheduler, setup=(_search_state, (arrays, given))) as engine:
        return list(engine.map(_search_shard, jobs, finished)), engine.kind


def _shards(kind, hid, a, b, count, threshold=None, limit=None):
    return [(kind, hid, a, b, start, min(start + SHARD, count), threshold, limit)
            for start in range(0, count, SHARD)]


# --- thresholds ---------------------------------------------------------------------------

class Calibration:
    """What a `run` output directory says about each hasher: its impostor distances (different
    images), the same pairs side by side for all hashers (for the agreement of several), and its
    edited copies' distances."""

    def __init__(self, directory: str, config: LeakConfig, hashers: dict):
        from harness.api import load

        self.directory = directory
        results = load(directory)
        self.results = results
        run_hashers = results.hashers.set_index("hasher") if len(results.hashers) else pd.DataFrame()
        for spec in config.hashers:
            if spec.id not in run_hashers.index:
                raise HarnessError(f"calibration {directory}: the run has no hasher {spec.id} "
                                   f"(it has {', '.join(run_hashers.index) or 'none'})")
            row = run_hashers.loc[spec.id]
            mine = {k: v for k, v in hashers[spec.id].spec().items() if k != "name"}
            try:
                theirs = json.loads(row["params"]) if row["params"] else {}
            except (ValueError, RecursionError):  # RecursionError: JSON nested too deep ([[[[...)
                theirs = None
            if row["name"] != spec.name or theirs != json.loads(json.dumps(mine)):
                raise HarnessError(f"calibration {directory}: its {spec.id} is {row['name']} {row['params']}, not "
                                   f"{spec.name} {json.dumps(mine)}: its distances mean something else")
        impostors = results.impostors.drop(index=results.metrics.excluded.index)
        own = {hid: impostors[impostors["hasher"] == hid] for hid in hashers}
        self.impostors = {hid: table["distance"].to_numpy(np.float64) for hid, table in own.items()}
        empty = [hid for hid, distances in self.impostors.items() if not len(distances)]
        if empty:  # (one image: no pair of different images; or every pair excluded as duplicates)
            images = len(results.images)
            raise HarnessError(f"calibration {directory}: the run has no impostor pairs (pairs of different images) "
                               f"of {', '.join(empty)} to calibrate from (it has {images} "
                               f"image{'' if images == 1 else 's'}); calibrate with a run of many images")
        # As they are (categorical): source_pairs counts by their codes, without millions of strings.
        self.pair_ids = {hid: (table["image_id"].array, table["other_id"].array) for hid, table in own.items()}
        self.sources = {hid: source_pairs(*self.pair_ids[hid]) for hid in own}
        self._impostors = impostors
        genuine = results.distances[results.distances["error"] == ""]
        self.genuine = genuine
        self.first_point = results.metrics.chosen  # "fpr=0.01": the run's first target

    def threshold(self, hasher_id: str, fpr: float | None) -> tuple[float, str]:
        results = self.results
        genuine = self.genuine.loc[self.genuine["hasher"] == hasher_id, "distance"].to_numpy(np.float64)
        if fpr is not None:
            point = threshold_at_fpr(self.impostors[hasher_id], genuine, fpr)
            name, threshold, resolved = point.name, point.threshold, point.resolved
        else:
            table = results.thresholds
            row = table[(table["hasher"] == hasher_id) & (table["operating_point"] == self.first_point)]
            if row.empty:
                raise HarnessError(f"calibration {self.directory}: no threshold of {hasher_id} at {self.first_point}")
            threshold, name = float(row["threshold"].iloc[0]), self.first_point
            resolved = bool(row["resolved"].iloc[0])
        if not np.isfinite(threshold):
            raise HarnessError(f"calibration {self.directory}: {hasher_id} has no threshold at {name} (its closest "
                               "impostor pairs are too many at one distance)")
        unresolved = ("" if resolved else f"; unresolved: its {len(self.impostors[hasher_id])} impostor pairs are "
                      "too few to measure that rate, so the threshold only sits below the closest of them")
        return threshold, f"{name} of the impostor pairs of the run {self.directory}{unresolved}"

    def false_rate(self, thresholds: dict, min_agree: int, hasher_id: str | None) -> tuple[int, int, int, int]:
        """(impostor pairs called matches, impostor pairs, pairs of different source images among
        them, and among the matches): of one hasher, or (None) of the agreement. The last says how
        many independent chances a rate rests on: five matches that are one pair of look-alike
        photographs and its edited copies are one."""
        if hasher_id is not None:
            matched = self.impostors[hasher_id] <= thresholds[hasher_id]
            images, others = self.pair_ids[hasher_id]
            return (int(np.count_nonzero(matched)), len(matched), self.sources[hasher_id],
                    source_pairs(images[matched], others[matched]))
        return agreement_rate(self._impostors, thresholds, min_agree)


def agreement_rate(impostors: pd.DataFrame, thresholds: dict, min_agree: int) -> tuple[int, int, int, int]:
    """Calibration.false_rate of the agreement: the impostor pairs (kind, family, value, image_id,
    other_id) that every hasher of `thresholds` measured, each hasher's distance the first of its
    rows that is a number (as a pivot table's "first"), how many of them at least `min_agree`
    hashers call matches, and their pairs of different source images. On integer keys: a pivot
    table of the run's millions of rows took 10-20 s."""
    key, size = np.zeros(len(impostors), np.int64), 1
    valid = np.ones(len(impostors), bool)
    for column in ("kind", "family", "value", "image_id", "other_id"):
        values = pd.Categorical(impostors[column])
        valid &= values.codes >= 0  # a missing key is no pair (as a pivot table leaves it out)
        if size * (len(values.categories) + 1) >= 1 << 62:
            key = pd.factorize(key)[0].astype(np.int64)
            size = int(key.max(initial=0)) + 1
        key, size = key * len(values.categories) + values.codes, size * len(values.categories)
    distance = impostors["distance"].to_numpy(np.float64)
    valid &= ~np.isnan(distance)
    firsts = []  # per hasher: its keys, sorted, and the row of each key's first distance
    for hid in thresholds:
        rows = np.flatnonzero(valid & (impostors["hasher"] == hid).to_numpy())
        rows = rows[np.argsort(key[rows], kind="stable")]
        first = np.r_[True, key[rows[1:]] != key[rows[:-1]]] if len(rows) else np.zeros(0, bool)
        firsts.append((key[rows[first]], rows[first]))
    if any(not len(keys) for keys, _ in firsts):
        return 0, 0, 0, 0
    # The first hasher's keys that every hasher has (a lookup in each one's sorted keys), and their distances.
    common, first_rows = firsts[0]
    everywhere = np.ones(len(common), bool)
    distances = []
    for keys, rows in firsts:
        at = np.minimum(np.searchsorted(keys, common), len(keys) - 1)
        everywhere &= keys[at] == common
        distances.append(distance[rows[at]])
    agree = sum(d[everywhere] <= t for d, t in zip(distances, thresholds.values()))
    matched = agree >= min_agree
    at = first_rows[everywhere]
    images, others = impostors["image_id"].array[at], impostors["other_id"].array[at]
    return (int(np.count_nonzero(matched)), len(at), source_pairs(images, others),
            source_pairs(images[matched], others[matched]))


def source_pairs(image_ids, other_ids) -> int:
    """How many pairs of different source images the impostor pairs come from (either way round):
    the edited copies of one pair are not independent chances of a false match, so the share's
    interval counts each such pair once (as a family's detection rate counts images, not copies).
    Ids are compared as text. Counted on integer codes, sorted: a set of millions of pairs of
    strings took seconds a call and gigabytes."""
    left, right = pd.Categorical(image_ids), pd.Categorical(other_ids)
    if (left.codes < 0).any() or (right.codes < 0).any():  # a missing id: as text, "None" or "nan"
        left, right = pd.Categorical(list(map(str, image_ids))), pd.Categorical(list(map(str, other_ids)))
    # One code per id as text, over both sides' categories (few: the run's images).
    names = np.concatenate([np.asarray(left.categories.astype(str), object),
                            np.asarray(right.categories.astype(str), object)])
    code = pd.factorize(names)[0].astype(np.int64)
    a, b = code[left.codes], code[len(left.categories) + right.codes.astype(np.int64)]
    # np.unique took 20 times a sort's time on 4.6 million keys (numpy 2.4): count the changes of a sorted key.
    key = np.sort(np.minimum(a, b) * len(names) + np.maximum(a, b))
    return int(len(key) and 1 + np.count_nonzero(key[1:] != key[:-1]))


def choose_thresholds(config: LeakConfig, splits, hashers: dict, calibration: "Calibration | None", *, workers=1,
                      scheduler=None):
    """Each hasher's threshold, how it was chosen, and notes (`calibration`: the run given, read
    before any image is hashed, so that a wrong one costs nothing)."""
    thresholds, basis, notes = {}, {}, []
    histograms = None
    for spec in config.hashers:
        hid = spec.id
        if hid in config.threshold:
            thresholds[hid], basis[hid] = config.threshold[hid], "given"
        elif calibration is not None:
            thresholds[hid], basis[hid] = calibration.threshold(hid, config.fpr)
        else:  # fpr on the data itself
            if not isinstance(hashers[hid], BitHasher):
                raise HarnessError(f"fpr: {hid} is not a Hamming hash, whose distances the audit can count exactly; "
                                   "give it a threshold or a calibration run")
            if histograms is None:
                histograms = data_histograms(splits, hashers, config.hashers, workers=workers, scheduler=scheduler)
            counts = histograms[hid]
            total = int(counts.sum())
            allowed = config.fpr * total
            cumulative = np.cumsum(counts)
            within = np.flatnonzero(cumulative <= allowed + 1e-9)
            if not len(within):
                # More pairs have identical hashes than the share allows: exact copies, most likely, which are
                # what the audit is for. No threshold keeps to the share; 0 flags those and nothing more.
                thresholds[hid], basis[hid], note = _identical_only(hid, int(counts[0]), total, config.fpr)
                notes.append(note)
                continue
            thresholds[hid] = float(within[-1])
            basis[hid] = (f"the largest distance at which at most fpr={config.fpr:g} of the {total:,} pairs compared "
                          f"are flagged ({int(cumulative[within[-1]]):,})")
            if within[-1] == 0 and len(counts) > 1:  # an all-clear that only means "no identical hashes"
                notes.append(f"fpr: {hid}'s threshold is 0: fpr={config.fpr:g} of the {total:,} pairs compared allows "
                             f"{_pairs(allowed)} to be flagged, and {_within(int(cumulative[1]))} distance 1, so only "
                             "identical hashes are flagged and near copies (a re-saved JPEG, a resize) are not; give "
                             f"{_INSTEAD} to flag them")
    return thresholds, basis, notes


# What to give instead of an fpr the data cannot resolve, named as the command line and a config (or
# find_leaks) take it: the notes go to both.
_INSTEAD = "a threshold or a calibration run (--threshold, --calibration: a run's output directory)"


def _within(count: int) -> str:
    return f"{count:,} {'is' if count == 1 else 'are'} within"


def _pairs(count: float) -> str:
    """A share of pairs as a count: "1 pair", "0.09 pairs", "12,345.6 pairs" (not "1.23e+04")."""
    shown = f"{count:,.2f}".rstrip("0").rstrip(".")
    return f"{shown} {'pair' if shown == '1' else 'pairs'}"


def _identical_only(hasher_id: str, identical: int, total: int, fpr: float) -> tuple[float, str, str]:
    """The threshold 0, its basis and a note, when the pairs with identical hashes alone are more than
    `fpr` of the `total` compared."""
    said = (f"{identical:,} of the {total:,} pairs compared have identical {hasher_id} hashes, more than fpr={fpr:g} of "
            "them")
    return (0.0, f"0, flagging only identical hashes: {said}, so no threshold flags at most that share",
            f"fpr: {said}; the threshold is 0, so only those pairs are flagged (copies, most likely). For near copies "
            f"too, give {_INSTEAD}")


def data_histograms(splits, hashers: dict, specs, *, workers=1, scheduler=None) -> dict[str, np.ndarray]:
    """Per Hamming hasher: the number of pairs at each distance, over every pair the audit compares:
    across splits, or inside the split when there is only one."""
    pairs = [(a, b) for a, b in split_pairs(splits) if a != b] or [(0, 0)]
    jobs = [job for hid, hasher in hashers.items() if isinstance(hasher, BitHasher)
            for a, b in pairs for job in _shards("histogram", hid, a, b, len(splits[a].files))]
    results, _ = _engine_map(jobs, splits, hashers, specs, workers, scheduler)
    counts: dict[str, np.ndarray] = {}
    for job, result in zip(jobs, results):
        counts[job[1]] = counts.get(job[1], 0) + result
    return counts


# --- the search -----------------------------------------------------------------------------

class Found:
    """Per (split a, split b, hasher): the pairs within the hasher's threshold."""

    def __init__(self):
        self.pairs: dict[tuple[int, int, str], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.engine = "this process"


def identical_hashes(splits, hashers: dict) -> tuple[int, str]:
    """The pairs of files that have identical hashes (of the hasher with most of them), with a
    phrase naming the largest such set of files: how many, in which splits, and one of them. Only
    when an audit is refused: it sorts every file's hash."""
    best = (0, "")
    for hid in hashers:
        split_of, file_of, parts = [], [], []
        for index, split in enumerate(splits):
            rows = split.rows.get(hid)
            if rows is None or hid not in split.arrays:
                continue
            files = np.flatnonzero(rows >= 0)
            array = np.ascontiguousarray(split.arrays[hid][rows[files]])
            parts.append(array.reshape(len(files), -1).view(np.uint8).reshape(len(files), -1))
            split_of.append(np.full(len(files), index))
            file_of.append(files)
        if not parts or not sum(map(len, parts)):
            continue
        _, inverse, counts = np.unique(np.concatenate(parts), axis=0, return_inverse=True, return_counts=True)
        pairs = int((counts * (counts - 1) // 2).sum())
        if pairs <= best[0]:
            continue
        largest = int(np.argmax(counts))
        members = np.flatnonzero(inverse.ravel() == largest)
        in_split = np.concatenate(split_of)[members]
        first = members[0]
        example = splits[in_split[0]].files[int(np.concatenate(file_of)[first])]
        spread = ", ".join(f"{int((in_split == index).sum()):,} in {splits[index].name}"
                           for index in np.unique(in_split))
        best = (pairs, f"{int(counts[largest]):,} files have one {hid} hash ({spread}; e.g. {example}): copies of one "
                       f"picture (a placeholder or blank image repeated?); files with identical hashes make "
                       f"{pairs:,} of the pairs")
    return best


def search_all(config: LeakConfig, splits, hashers: dict, thresholds: dict, *, workers=1, scheduler=None) -> Found:
    """Every pair within the thresholds. The pairs are counted as each shard's come back (in any
    order), and the audit stops as soon as they are more than max_flags, each shard's search
    stopping there too: a threshold that flags most pairs of a large data set is refused holding
    about max_flags pairs, not all of them (gigabytes)."""
    jobs = [job for a, b in split_pairs(splits) for hid in hashers
            for job in _shards("pairs", hid, a, b, len(splits[a].files), thresholds[hid], config.max_flags)]
    total = 0

    def count(result):
        nonlocal total
        total += result.count if isinstance(result, search.TooManyPairs) else len(result[0])
        if total > config.max_flags:
            # Pairs of files with one hash are flagged at any threshold: where they make most of
            # max_flags (a placeholder or blank image repeated through a data set, as scraped sets
            # often hold), no smaller threshold helps, and the line names them.
            shared = identical_hashes(splits, hashers)
            why = (f"these files share their hashes: {shared[1]}, which no smaller threshold tells apart; "
                   "remove them from the splits" if shared[0] * 2 >= config.max_flags else
                   "the threshold is far too loose for these images; choose a smaller one")
            raise HarnessError(f"at least {total:,} pairs (counted once per hasher) are within the thresholds "
                               f"({', '.join(f'{h} <= {number(t)}' for h, t in thresholds.items())}), "
                               f"more than max_flags ({config.max_flags}): {why}, or raise max_flags (a key of the "
                               "audit's config: `max_flags: N`)")

    results, kind = _engine_map(jobs, splits, hashers, config.hashers, workers, scheduler, finished=count)
    found = Found()
    found.engine = kind
    parts: dict[tuple, list] = {}
    for job, result in zip(jobs, results):
        parts.setdefault((job[2], job[3], job[1]), []).append(result)
    for a, b in split_pairs(splits):
        for hid in hashers:
            chunks = parts.get((a, b, hid), [])
            i = np.concatenate([c[0] for c in chunks]) if chunks else np.zeros(0, np.int64)
            j = np.concatenate([c[1] for c in chunks]) if chunks else np.zeros(0, np.int64)
            d = np.concatenate([c[2] for c in chunks]) if chunks else np.zeros(0)
            found.pairs[(a, b, hid)] = (i, j, d)
    return found


# --- tables ------------------------------------------------------------------------------------

def flagged_pairs(config: LeakConfig, splits, hashers: dict, found: Found, thresholds: dict) -> pd.DataFrame:
    """One row per pair at least `min_agree` hashers flag: split numbers, rows, every hasher's distance."""
    frames = []
    for a, b in split_pairs(splits):
        keys = []
        for hid in hashers:
            i, j, _ = found.pairs[(a, b, hid)]
            keys.append(np.stack([i, j], axis=1) if len(i) else np.zeros((0, 2), np.int64))
        union = np.unique(np.concatenate(keys), axis=0) if keys else np.zeros((0, 2), np.int64)
        if not len(union):
            continue
        frame = pd.DataFrame({"a": a, "b": b, "i": union[:, 0], "j": union[:, 1]})
        agree = np.zeros(len(union), np.int64)
        for hid, hasher in hashers.items():
            rows_a = splits[a].arrays[hid][union[:, 0]]
            rows_b = splits[b].arrays[hid][union[:, 1]]
            distance = stored(hasher, hasher.checked_distance(rows_a, rows_b))
            frame[hid] = distance
            agree += distance <= thresholds[hid]
        frame["agree"] = agree
        frames.append(frame[agree >= config.min_agree])
    columns = ["a", "b", "i", "j", *hashers, "agree"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def tables(config: LeakConfig, splits, hashers: dict, flagged: pd.DataFrame, thresholds: dict) -> dict:
    """leaks (long), pairs (wide, named), groups, clean lists and the files table."""
    offsets = np.cumsum([0] + [len(s.files) for s in splits])
    count = int(offsets[-1])
    gi = offsets[flagged["a"].to_numpy(np.int64)] + flagged["i"].to_numpy(np.int64) if len(flagged) else np.zeros(0, np.int64)
    gj = offsets[flagged["b"].to_numpy(np.int64)] + flagged["j"].to_numpy(np.int64) if len(flagged) else np.zeros(0, np.int64)
    group = search.duplicate_groups(count, gi, gj)
    split_of = np.repeat(np.arange(len(splits)), [len(s.files) for s in splits])
    names = [s.name for s in splits]
    file_of = [f for s in splits for f in s.files]

    pairs = pd.DataFrame({
        "split_a": [names[a] for a in flagged["a"]], "file_a": [file_of[g] for g in gi],
        "split_b": [names[b] for b in flagged["b"]], "file_b": [file_of[g] for g in gj],
        **{hid: flagged[hid].to_numpy(np.float64) for hid in hashers},
        "agree": flagged["agree"].to_numpy(np.int64), "group": group[gi] if len(gi) else np.zeros(0, np.int64),
    })
    # Long: each flagged pair's row for every hasher, pair by pair.
    per = len(hashers)
    distance = np.stack([pairs[h].to_numpy() for h in hashers], axis=1).ravel() if len(pairs) else np.zeros(0)
    hasher_column = np.tile(np.array(list(hashers), dtype=object), len(pairs))
    leaks = pd.DataFrame({
        **{c: np.repeat(pairs[c].to_numpy(), per) for c in ("split_a", "file_a", "split_b", "file_b")},
        "hasher": hasher_column, "distance": distance,
        "flagged": [d <= thresholds[h] for h, d in zip(hasher_column, distance)],
        **{c: np.repeat(pairs[c].to_numpy(), per) for c in ("agree", "group")},
    }, columns=LEAK_COLUMNS)

    # Each flagged pair's closeness, as the review page orders them: its smallest distance / maximum
    # among the hashers that flag it. A distance beyond its hasher's threshold is that hasher saying
    # "not a copy"; counted, it made a partner flagged only at 8 bits the nearer one by another
    # hasher's unflagging 6.5, where the page shows a partner at 7 first.
    def flagging(h):
        distance = pairs[h].to_numpy(np.float64)
        return np.where(distance <= thresholds[h], (distance / hashers[h].distance_max).clip(0, 1), np.nan)

    nearest = np.fmin.reduce([flagging(h) for h in hashers]) if len(pairs) else np.zeros(0)
    keep, copy_of = clean_rule(count, split_of, gi, gj, nearest)
    members = np.flatnonzero(group >= 0)
    members = members[np.lexsort([members, group[members]])]
    groups = pd.DataFrame({"group": group[members], "split": [names[split_of[g]] for g in members],
                           "file": [file_of[g] for g in members], "keep": keep[members],
                           "copy_of": [file_of[c] if c >= 0 else "" for c in copy_of[members]],
                           "copy_in": [names[split_of[c]] if c >= 0 else "" for c in copy_of[members]]},
                          columns=GROUP_COLUMNS)
    clean = {name: [file_of[g] for g in range(offsets[k], offsets[k + 1]) if keep[g]]
             for k, name in enumerate(names)}
    files = pd.DataFrame({"split": [names[s] for s in split_of], "file": file_of, "group": group, "keep": keep,
                          "notes": [note for s in splits for note in s.file_notes]})
    return {"leaks": leaks, "pairs": pairs, "groups": groups, "clean": clean, "files": files}


def clean_rule(count: int, split_of: np.ndarray, i: np.ndarray, j: np.ndarray,
               nearness: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Which files stay in their split, and for each that leaves, the file it is a copy of (-1 if none).

    Files are taken in the audit's order (split by split, each split's files in order); `i`, `j` are
    the flagged pairs in that one index space, `nearness` their distances (smaller: closer). A file
    leaves when it is flagged with a file of an earlier split (kept or not: it is a copy of a picture
    that split holds), or with a file of its own split that stays. So every copy is flagged with the
    file it is said to copy, at the thresholds; a chain A~B~C with A and C beyond them is not taken
    for one picture (the groups, connected components, still show the chain), and every group of
    copies inside a split keeps a file. The file it is said to copy is the nearest such partner (one
    that stays first among equals, then the first in order): a stretched photo flagged with the
    original at 1 and with another picture at 22 is a copy of the original."""
    keep = np.ones(count, bool)
    copy_of = np.full(count, -1, np.int64)
    if not len(i):
        return keep, copy_of
    low, high = np.minimum(i, j), np.maximum(i, j)
    near = np.zeros(len(low)) if nearness is None else np.asarray(nearness, np.float64)
    order = np.lexsort((low, high))  # each file's earlier partners together, in order
    low, high, near = low[order], high[order], near[order]
    starts = np.flatnonzero(np.r_[True, high[1:] != high[:-1]])
    # Written by hand: a greedy pass where each file's fate depends on the fates of the files before
    # it; one step per file in a flagged pair (at most max_flags of them).
    for start, end in zip(starts, np.r_[starts[1:], len(high)]):
        file, partners, distance = int(high[start]), low[start:end], near[start:end]
        staying = keep[partners]
        earlier = split_of[partners] < split_of[file]
        options = np.flatnonzero(earlier if earlier.any() else staying)
        if len(options):
            best = options[np.lexsort((partners[options], ~staying[options], distance[options]))[0]]
            keep[file], copy_of[file] = False, int(partners[best])
    return keep, copy_of


# --- what the thresholds cost -------------------------------------------------------------------

def estimates(config: LeakConfig, splits, found: Found, flagged: pd.DataFrame, thresholds: dict,
              calibration: Calibration | None) -> pd.DataFrame:
    """Per pair of splits and hasher (and, with several hashers, their agreement): the pairs
    compared and flagged, and the expected false flags with a 95% interval."""
    rows = []
    names = [s.name for s in splits]
    hashers = list(thresholds)
    subjects = [(h, h) for h in hashers] + ([(AGREEMENT, None)] if len(hashers) > 1 else [])
    rates = {}  # the calibration's share is the same for every pair of splits: counted once a subject
    for a, b in split_pairs(splits):
        pairs = compared(splits, a, b)
        if not pairs:
            continue
        for label, hid in subjects:
            if hid is not None:
                flags = len(found.pairs[(a, b, hid)][0])
                threshold = f"{thresholds[hid]:g}"
            else:
                flags = int(((flagged["a"] == a) & (flagged["b"] == b)).sum()) if len(flagged) else 0
                threshold = f"{config.min_agree} of {len(hashers)}"
            if calibration is not None:
                if label not in rates:
                    rates[label] = calibration.false_rate(thresholds, config.min_agree, hid)
                false, impostors, sources, matched = rates[label]
                rate = false / impostors if impostors else float("nan")
                expected, low, high = false_flag_range(pairs, rate, sources)
                basis = (f"{false:,} of {impostors:,} impostor pairs of the run {calibration.directory} at or below "
                         f"the threshold (they are {matched:,} of its {sources:,} pairs of different images)")
            else:  # no estimate, a bound: every flagged pair may be a chance match
                expected, low, high = float("nan"), 0.0, float(flags)
                basis = ("at most the flagged pairs: without a calibration run the data cannot tell a copy from "
                         "a chance match")
            rows.append({"split_a": names[a], "split_b": names[b], "hasher": label, "threshold": threshold,
                         "pairs_compared": pairs, "pairs_flagged": flags, "expected_false": expected,
                         "expected_false_low": low, "expected_false_high": high, "basis": basis})
    return pd.DataFrame(rows, columns=ESTIMATE_COLUMNS)


def false_flag_range(pairs: int, rate: float, sources: int) -> tuple[float, float, float]:
    """The false flags expected among `pairs` at a share `rate` of chance matches, and a 95% range for
    the number this audit finds: the share's Wilson interval over the `sources` pairs of different
    images it was measured on (not over their many edited copies, which share those images' luck),
    each end widened by the chance variation of a count (Poisson) around it."""
    if not sources or not np.isfinite(rate):
        return float("nan"), float("nan"), float("nan")
    low, high = wilson_interval(rate * sources, sources)
    return pairs * rate, poisson_quantile(0.025, pairs * low), poisson_quantile(0.975, pairs * high)


def misses(config: LeakConfig, thresholds: dict, calibration: Calibration | None) -> pd.DataFrame:
    """With a calibration run: per hasher (and their agreement) and family of edits, the share of the
    run's edited copies the threshold misses (pooled over strengths, with a 95% interval)."""
    if calibration is None:
        return _miss_table([])
    genuine = calibration.genuine
    rows = []
    for hid, threshold in thresholds.items():
        own = genuine[genuine["hasher"] == hid]
        for family, part in own.groupby("family", sort=False, observed=True):
            missed = int(np.count_nonzero(part["distance"].to_numpy(np.float64) > threshold))
            rows.append(_miss_row(hid, family, len(part), missed, part["image_id"].nunique()))
    if len(thresholds) > 1:
        wide = genuine.pivot_table(index=["image_id", "family", "value", "label"], columns="hasher",
                                   values="distance", aggfunc="first", observed=True)[list(thresholds)].dropna()
        agree = sum((wide[h] <= t).to_numpy() for h, t in thresholds.items())
        detected = pd.Series(agree >= config.min_agree, index=wide.index)
        for family, part in detected.groupby(level="family", sort=False, observed=True):
            rows.append(_miss_row(AGREEMENT, family, len(part), int((~part).sum()),
                                  part.index.get_level_values("image_id").nunique()))
    return _miss_table(rows)


def _miss_table(rows: list[dict]) -> pd.DataFrame:
    """The rows with the same column types whether there are any or not (an empty table's columns
    were all `object`, its numbers included)."""
    types = {"hasher": "str", "family": "str", "copies": "int64", "missed": "int64", "miss_rate": "float64",
             "miss_low": "float64", "miss_high": "float64"}
    return pd.DataFrame(rows, columns=MISS_COLUMNS).astype({column: types[column] for column in MISS_COLUMNS})


def _miss_row(hasher: str, family: str, copies: int, missed: int, images: int) -> dict:
    """The interval counts images, not copies: the copies of one image at several strengths are not
    independent (as in the run's own detection rates per family)."""
    low, high = wilson_interval(missed / copies * images, images) if copies else (float("nan"), float("nan"))
    return {"hasher": hasher, "family": family, "copies": copies, "missed": missed,
            "miss_rate": missed / copies if copies else float("nan"), "miss_low": low, "miss_high": high}
