"""Expand a config into work and compute every distance. Writes nothing but the hash cache.

Pass 1 reads each source image once and hashes the untouched images, in batches,
with every hasher. Those hashes serve three times: as side A or B of every pair
that leaves a side untouched, as the impostor baseline (distances between
different source images), and as the "other image" for edited copies.
Pass 2 reads each image again, applies each distinct transform chain once,
hashes each distinct variant once per hasher in one batch, and takes the
row-wise distances of every pair. Images are never all held in memory.

Nothing one image does stops the run: an unreadable image, a transform that
cannot apply or a hasher that fails on an image becomes a row of `errors` and
an `error` cell in the distances. Hashes go to a persistent cache as they are
computed, so a run that is stopped and started again redoes only what is missing.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from tqdm import tqdm

from harness.cache import HashCache, digest
from harness.config import Config, HasherSpec, PairSpec, Step
from harness.errors import HarnessError, HashError, ImageError, UnavailableError
from harness.images import DEFAULT_MAX_PIXELS, SourceImage, load_source, resolve_sources
from transforms import TransformError, apply_chain

DISTANCE_COLUMNS = ["image", "image_id", "family", "value", "label", "hasher", "distance", "distance_norm", "error"]
IMPOSTOR_COLUMNS = ["hasher", "kind", "family", "value", "image_id", "other_id", "distance"]
ERROR_COLUMNS = ["image", "image_id", "stage", "reason"]
UNAVAILABLE = "unavailable"
UNTOUCHED: tuple[Step, ...] = ()
SOURCE_BATCH = 32  # source images hashed per batch in pass 1
PAIR_BLOCK = 65_536  # impostor pairs gathered per vectorised distance call


@dataclass
class HasherInfo:
    id: str
    spec: dict
    distance_kind: str
    distance_max: float
    key: str  # cache key: the spec and every library version that can change a hash
    status: str = "ok"  # or UNAVAILABLE
    reason: str = ""


@dataclass
class RunResult:
    config: Config
    distances: pd.DataFrame
    impostors: pd.DataFrame
    errors: pd.DataFrame
    hashers: list[HasherInfo]
    sources: list[dict]
    notes: list[str] = field(default_factory=list)
    previews: list[tuple[PairSpec, np.ndarray | None, np.ndarray | None]] = field(default_factory=list)


@dataclass
class Hashed:
    """One hasher's hashes of a batch of images: `array` holds the rows of the images that
    hashed, `rows[k]` is image k's row in it (-1 where hashing failed, reason in `errors[k]`)."""

    array: np.ndarray | None
    rows: np.ndarray
    errors: dict[int, str]
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    def take(self, indices) -> "Hashed":
        """The same images' hashes, as a batch of their own (for caching one image)."""
        indices = np.asarray(indices, dtype=np.int64)
        rows = self.rows[indices]
        kept = rows >= 0
        array = self.array[rows[kept]] if kept.any() else None
        new_rows = np.full(len(indices), -1)
        new_rows[kept] = np.arange(int(kept.sum()))
        return Hashed(array, new_rows, {k: self.errors[i] for k, i in enumerate(indices) if i in self.errors},
                      {key: values[indices] for key, values in self.extras.items()})

    @staticmethod
    def join(parts: list["Hashed"]) -> "Hashed":
        arrays = [p.array for p in parts if p.array is not None]
        rows, errors, offset, start = [], {}, 0, 0
        for part in parts:
            rows.append(np.where(part.rows >= 0, part.rows + offset, -1))
            errors.update({start + k: reason for k, reason in part.errors.items()})
            offset += 0 if part.array is None else len(part.array)
            start += len(part.rows)
        keys = parts[0].extras.keys() if parts else []
        return Hashed(np.concatenate(arrays) if arrays else None,
                      np.concatenate(rows) if rows else np.zeros(0, np.int64), errors,
                      {key: np.concatenate([p.extras[key] for p in parts]) for key in keys})


def hash_safely(hasher, images: list[np.ndarray]) -> Hashed:
    """Hash a batch; when the batch fails, hash image by image so one bad image costs only itself."""
    try:
        array = hasher.hash_images(images)
        return Hashed(array, np.arange(len(images)), {}, hasher.checked_extras(images))
    except HashError:
        if len(images) == 1:
            raise
    parts = []
    for image in images:
        try:
            parts.append(hash_safely(hasher, [image]))
        except HashError as exc:
            parts.append(Hashed(None, np.array([-1]), {0: str(exc)}))
    joined = Hashed.join(parts)
    if any(not p.extras for p in parts):  # extras only where every image hashed
        joined.extras = {}
    return joined


def hash_with_cache(hasher, key: str, cache: HashCache, images: list[np.ndarray],
                    names: list[tuple[str, str]]) -> tuple[Hashed, list[tuple[str, str, Hashed]]]:
    """Hashes of `images`, image k known to the cache as names[k] = (image id, item).

    Only what the cache lacks is computed, or the whole batch when the hasher's results
    depend on the batch (batch_invariant False), so they match an uncached run bit for bit.
    Returns the hashes and the new entries for the caller to store (failures are not stored)."""
    found = [cache.get(key, image_id, item) for image_id, item in names]
    missing = [k for k, entry in enumerate(found) if entry is None]
    if missing and not hasher.batch_invariant:
        missing = list(range(len(images)))
    new = []
    if missing:
        fresh = hash_safely(hasher, [images[k] for k in missing])
        for j, k in enumerate(missing):
            found[k] = fresh.take([j])
            if j not in fresh.errors:
                new.append((*names[k], found[k]))
    return Hashed.join(found), new


# --- set-up ------------------------------------------------------------------

def hasher_key(spec: dict, versions: dict) -> str:
    return digest("hasher", spec, versions)


def prepare_hashers(config: Config, skip_unavailable: bool, versions: dict):
    """Build and load every hasher before any work; the first unavailable one stops the run
    unless `skip_unavailable`, which marks it instead."""
    built, infos = {}, []
    for number, spec in enumerate(config.hashers):
        hasher = spec.build()
        info = HasherInfo(spec.id, hasher.spec(), hasher.distance_kind, hasher.distance_max,
                          hasher_key(hasher.spec(), versions))
        try:
            hasher.prepare()
            built[spec.id] = hasher
        except UnavailableError as exc:
            where = f"{config.source}: hashers[{number}] ({spec.id})"
            if not skip_unavailable:
                raise UnavailableError(f"{where}: {exc}; or pass --skip-unavailable to run the other hashers") from None
            info.status, info.reason = UNAVAILABLE, str(exc)
        infos.append(info)
    return built, infos


def run(config: Config, skip_unavailable: bool = False, progress: bool | None = None,
        cache_path: str | None = None, workers: int = 1) -> RunResult:
    from harness.provenance import versions as library_versions

    versions = {k: v for k, v in library_versions().items() if k != "platform"}
    paths, notes = resolve_sources(config.images, config.fallback_image, config.source, config.limit, config.seed)
    hashers, infos = prepare_hashers(config, skip_unavailable, versions)
    notes += [f"hasher {i.id} unavailable: {i.reason}" for i in infos if i.status == UNAVAILABLE]
    keys = {info.id: info.key for info in infos}
    salt = digest("versions", versions)  # transform results depend on library versions too
    rng = np.random.default_rng(config.seed)
    cache = HashCache(cache_path)
    errors: list[dict] = []
    try:
        with tqdm(total=2 * len(paths), desc="harness", unit="image",
                  disable=None if progress is None else not progress) as bar:
            bar.set_postfix_str("hashing source images")
            max_pixels = config.max_pixels or DEFAULT_MAX_PIXELS
            sources, source_hashed, duplicates = hash_sources(paths, hashers, keys, cache, errors, bar, max_pixels)
            if not sources:
                raise HarnessError(f"none of the {len(paths)} images could be read; first: {errors[0]['reason']}")
            if duplicates:
                notes.append(f"{len(duplicates)} images have the same pixels as another and count once: "
                             + ", ".join(duplicates[:5]) + (", ..." if len(duplicates) > 5 else ""))
            if len(sources) < 2:
                notes.append("one image only: no impostor pairs, so no thresholds or detection rates")
            impostor_frames = [source_impostors(sources, source_hashed, hashers, config.impostors.max_pairs, rng)]

            frames, previews = [], []
            specs = [spec for spec in config.hashers if spec.id in hashers]
            for number, done in enumerate(pass_two(sources, config, specs, hashers, keys, salt,
                                                   cache, workers, max_pixels)):
                bar.set_postfix_str(sources[number]["name"])
                for stage_reason in done.stage_errors:
                    errors.append({"image": sources[number]["name"], "image_id": sources[number]["id"],
                                   **stage_reason})
                if number == 0 and config.previews:
                    previews = done.previews
                for info in infos:
                    frames.append(score(sources[number], config.pairs, info, hashers.get(info.id), done,
                                        source_hashed, number))
                if config.impostors.transformed and len(sources) > 1:
                    impostor_frames.append(transformed_impostors(
                        number, sources, config.pairs, done, source_hashed, hashers,
                        config.impostors.per_variant, rng))
                bar.update()
    finally:
        cache.close()

    distances = pd.concat(frames, ignore_index=True)[DISTANCE_COLUMNS]
    impostors = pd.concat(impostor_frames, ignore_index=True)[IMPOSTOR_COLUMNS]
    error_table = pd.DataFrame(errors, columns=ERROR_COLUMNS)
    failed = distances["error"].ne("") & distances["error"].ne(UNAVAILABLE)
    if failed.any():
        notes.append(f"{int(failed.sum())} of {len(distances)} distances failed; see the error column")
    if len(error_table):
        notes.append(f"{len(error_table)} problems with images, transforms or hashers; see errors.csv")
    return RunResult(config, distances, impostors, error_table, infos, sources, notes, previews)


# --- pass 1: the untouched source images ------------------------------------------

def hash_sources(paths, hashers, keys, cache, errors, bar, max_pixels: int):
    """Every readable, distinct source image hashed by every hasher, in batches of
    SOURCE_BATCH (cached hashes are reused; see hash_with_cache). Unreadable images become errors;
    images with the same pixels as an earlier one are dropped (they would be impostors at 0)."""
    sources, seen, duplicates = [], set(), []
    parts = {hid: [] for hid in hashers}
    for start in range(0, len(paths), SOURCE_BATCH):
        batch = []
        for path in paths[start:start + SOURCE_BATCH]:
            bar.update()
            try:
                image = load_source(path, max_pixels=max_pixels)
            except ImageError as exc:
                errors.append({"image": path, "image_id": "", "stage": "read", "reason": str(exc)})
                continue
            if image.id in seen:
                duplicates.append(image.name)
                continue
            seen.add(image.id)
            batch.append(image)
            sources.append({"name": image.name, "id": image.id, "origin": image.origin,
                            "height": image.pixels.shape[0], "width": image.pixels.shape[1],
                            "notes": "; ".join(image.notes)})
        if not batch:
            continue
        for hid, hasher in hashers.items():
            hashed, new = hash_with_cache(hasher, keys[hid], cache, [image.pixels for image in batch],
                                          [(image.id, "source") for image in batch])
            for image_id, item, entry in new:
                cache.put_many(keys[hid], image_id, {item: entry})
            for k, reason in hashed.errors.items():
                errors.append({"image": batch[k].name, "image_id": batch[k].id, "stage": f"hash {hid}",
                               "reason": reason})
            parts[hid].append(hashed)
            # Side outputs (PDQ's quality score) become per-image columns "<hasher>.<name>".
            for key, values in hashed.extras.items():
                for source, value in zip(sources[-len(batch):], values):
                    source[f"{hid}.{key}"] = value.item() if hasattr(value, "item") else value
    return sources, {hid: Hashed.join(p) for hid, p in parts.items() if p}, duplicates


# --- pass 2: the edited copies ------------------------------------------------------

@dataclass
class ImageWork:
    """What pass 2 produced for one source image."""

    sides: list  # per pair: (a, b), each a variant index, UNTOUCHED, or None (transform failed)
    pair_errors: dict[int, str]
    hashed: dict[str, Hashed]  # per hasher, over the variants
    stage_errors: list[dict]
    previews: list = field(default_factory=list)


def transform_variants(source: SourceImage, pairs: tuple[PairSpec, ...]):
    """Apply each distinct chain once; the untouched image is not a variant (pass 1 hashed it).

    Returns the variant images, the chain of each, the (a, b) side of every pair (a variant
    index, UNTOUCHED, or None where a transform failed) and the failure reasons by pair number."""
    variants: list[np.ndarray] = []
    chains: list[tuple[Step, ...]] = []
    index: dict[tuple[Step, ...], int | str] = {}
    sides, errors = [], {}
    for number, pair in enumerate(pairs):
        pair_sides = []
        for chain in (pair.a, pair.b):
            if chain == UNTOUCHED:
                pair_sides.append(UNTOUCHED)
                continue
            if chain not in index:
                try:
                    variants.append(apply_chain(source.pixels, ((n, dict(p)) for n, p in chain)))
                    chains.append(chain)
                    index[chain] = len(variants) - 1
                except TransformError as exc:
                    index[chain] = str(exc)
            found = index[chain]
            if isinstance(found, str):
                errors[number] = f"transform: {found}"
                found = None
            pair_sides.append(found)
        sides.append(tuple(pair_sides))
    return variants, chains, sides, errors


def process_image(source: dict, pairs, hashers: dict, keys: dict, salt: str, cache: HashCache,
                  with_previews: bool, max_pixels: int) -> tuple[ImageWork, dict[str, dict]]:
    """Transform one source image and hash its variants with every hasher (cache first).
    Returns the work and, per hasher, the newly computed entries for the caller to store."""
    try:
        image = load_source(source["origin"], max_pixels=max_pixels)
    except ImageError as exc:  # readable in pass 1, not now (the file changed)
        reason = f"read: {exc}"
        return ImageWork([(None, None)] * len(pairs), dict.fromkeys(range(len(pairs)), reason), {},
                         [{"stage": "read", "reason": str(exc)}]), {}
    variants, chains, sides, pair_errors = transform_variants(image, pairs)
    names = [(image.id, digest("chain", chain, salt)) for chain in chains]
    stage_errors = [{"stage": "transform", "reason": reason[len("transform: "):]}
                    for reason in dict.fromkeys(pair_errors.values())]
    hashed, computed = {}, {}
    for hid, hasher in hashers.items():
        found, new = hash_with_cache(hasher, keys[hid], cache, variants, names)
        computed[hid] = {item: entry for _, item, entry in new}
        hashed[hid] = found
        stage_errors += [{"stage": f"hash {hid}", "reason": reason} for reason in dict.fromkeys(found.errors.values())]
    previews = []
    if with_previews:
        pick = lambda side: image.pixels if side == UNTOUCHED else (variants[side] if side is not None else None)
        previews = [(pair, pick(a), pick(b)) for pair, (a, b) in zip(pairs, sides)]
    return ImageWork(sides, pair_errors, hashed, stage_errors, previews), computed


def pass_two(sources, config: Config, specs: list[HasherSpec], hashers, keys, salt, cache, workers,
             max_pixels):
    """Yield each source image's ImageWork in order; with workers > 1, several images are
    processed at once in worker processes (each with its own hashers), and the results
    still arrive in order, so the tables do not depend on the number of workers."""
    def store(source, computed):
        for hid, entries in computed.items():
            cache.put_many(keys[hid], source["id"], entries)

    if workers <= 1 or len(sources) < 2:
        for number, source in enumerate(sources):
            work, computed = process_image(source, config.pairs, hashers, keys, salt, cache,
                                           number == 0 and config.previews, max_pixels)
            store(source, computed)
            yield work
        return
    context = multiprocessing.get_context("spawn")  # TensorFlow and OpenCV threads do not survive fork
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                                                initargs=(specs, keys, salt, cache.path)) as pool:
        jobs = [(source, config.pairs, number == 0 and config.previews, max_pixels)
                for number, source in enumerate(sources)]
        for source, (work, computed) in zip(sources, pool.map(_work, jobs)):
            store(source, computed)
            yield work


_WORKER: dict = {}


def _start_worker(specs, keys, salt, cache_path):
    hashers = {}
    for spec in specs:
        hasher = spec.build()
        hasher.prepare()
        hashers[spec.id] = hasher
    _WORKER.update(hashers=hashers, keys=keys, salt=salt, cache=HashCache(cache_path))


def _work(job):
    source, pairs, with_previews, max_pixels = job
    return process_image(source, pairs, _WORKER["hashers"], _WORKER["keys"], _WORKER["salt"],
                         _WORKER["cache"], with_previews, max_pixels)


def score(source: dict, pairs, info: HasherInfo, hasher, work: ImageWork, source_hashed: dict, number: int):
    """One hasher's distances for every pair of one source image."""
    distance = np.full(len(pairs), np.nan)
    error = [work.pair_errors.get(i, "") for i in range(len(pairs))]
    variants, own = work.hashed.get(info.id), source_hashed.get(info.id)
    if hasher is None or variants is None:
        error = [UNAVAILABLE if info.status == UNAVAILABLE else e for e in error]
    else:
        # One array holding the variants' rows and, last, the untouched image's row.
        arrays = [a for a in (variants.array,) if a is not None]
        untouched = -1
        if own.rows[number] >= 0:
            arrays.append(own.array[own.rows[number]:own.rows[number] + 1])
            untouched = sum(len(a) for a in arrays) - 1

        def row(side):
            return untouched if side == UNTOUCHED else (-1 if side is None else int(variants.rows[side]))

        def why_unhashed(a, b) -> str:
            for side in (a, b):
                if side == UNTOUCHED and untouched < 0:
                    return own.errors[number]
                if side not in (None, UNTOUCHED) and variants.rows[side] < 0:
                    return variants.errors[side]
            return "no hash"

        ok, a_rows, b_rows = [], [], []
        for i, (a, b) in enumerate(work.sides):
            if error[i]:
                continue
            ra, rb = row(a), row(b)
            if ra < 0 or rb < 0:
                error[i] = f"hash: {why_unhashed(a, b)}"
                continue
            ok.append(i)
            a_rows.append(ra)
            b_rows.append(rb)
        if ok:
            lookup = np.concatenate(arrays)
            distance[ok] = hasher.distance(lookup[np.asarray(a_rows)], lookup[np.asarray(b_rows)])
    return pd.DataFrame({
        "image": source["name"],
        "image_id": source["id"],
        "family": [p.family for p in pairs],
        "value": pd.Series([p.value for p in pairs], dtype=object),  # 3 stays 3, 2.0 stays 2.0
        "label": [p.label for p in pairs],
        "hasher": info.id,
        "distance": distance,
        "distance_norm": np.clip(distance / info.distance_max, 0.0, 1.0),
        "error": error,
    })


# --- the impostor baseline --------------------------------------------------

def sample_pairs(count: int, max_pairs: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i < j) of `count` items: all of them, or a seeded sample of `max_pairs`."""
    total = count * (count - 1) // 2
    if total <= max_pairs:
        return np.triu_indices(count, k=1)
    linear = np.sort(rng.choice(total, size=max_pairs, replace=False))
    # Row i of the upper triangle starts at offset i*count - i*(i+1)/2; invert that.
    i = np.floor(((2 * count - 1) - np.sqrt((2 * count - 1) ** 2 - 8 * linear)) / 2).astype(np.int64)
    start = i * count - i * (i + 1) // 2
    too_far = linear >= start + (count - 1 - i)  # guard against rounding at row boundaries
    i[too_far] += 1
    start = i * count - i * (i + 1) // 2
    j = linear - start + i + 1
    return i, j


def pair_distances(hasher, a: np.ndarray, b: np.ndarray, rows_a: np.ndarray, rows_b: np.ndarray) -> np.ndarray:
    """Row-wise distances for gathered index pairs, in blocks so memory stays bounded."""
    out = np.empty(len(rows_a), dtype=np.float64)
    for start in range(0, len(rows_a), PAIR_BLOCK):
        block = slice(start, start + PAIR_BLOCK)
        out[block] = hasher.distance(a[rows_a[block]], b[rows_b[block]])
    return out


def source_impostors(sources, source_hashed: dict[str, Hashed], hashers, max_pairs, rng) -> pd.DataFrame:
    """Distances between different untouched source images, per hasher: the same sampled
    pairs for every hasher, less those with an image the hasher could not hash."""
    i, j = sample_pairs(len(sources), max_pairs, rng)
    ids = np.array([s["id"] for s in sources])
    frames = [pd.DataFrame(columns=IMPOSTOR_COLUMNS)]
    for hid, hasher in hashers.items():
        rows = source_hashed[hid].rows
        keep = (rows[i] >= 0) & (rows[j] >= 0)
        array = source_hashed[hid].array
        frames.append(pd.DataFrame({
            "hasher": hid, "kind": "source", "family": "", "value": "",
            "image_id": ids[i[keep]], "other_id": ids[j[keep]],
            "distance": pair_distances(hasher, array, array, rows[i[keep]], rows[j[keep]]) if keep.any() else [],
        }))
    return pd.concat(frames, ignore_index=True)


def transformed_impostors(number, sources, pairs, work: ImageWork, source_hashed, hashers,
                          per_variant, rng) -> pd.DataFrame:
    """Each edited copy (side B of a pair) of image `number` against `per_variant` other source
    images, the same others for every hasher."""
    edited = [(k, b) for k, (_, b) in enumerate(work.sides) if b is not None and b != UNTOUCHED]
    if not edited:
        return pd.DataFrame(columns=IMPOSTOR_COLUMNS)
    others = np.array([k for k in range(len(sources)) if k != number])
    take = min(per_variant, len(others))
    chosen = np.stack([rng.choice(others, size=take, replace=False) for _ in edited])  # (variants, take)
    pair_numbers = np.repeat([k for k, _ in edited], take)
    variants = np.repeat([b for _, b in edited], take)
    other_sources = chosen.ravel()
    ids = np.array([s["id"] for s in sources])
    frames = [pd.DataFrame(columns=IMPOSTOR_COLUMNS)]
    for hid, hasher in hashers.items():
        mine, theirs = work.hashed[hid], source_hashed[hid]
        variant_rows, other_rows = mine.rows[variants], theirs.rows[other_sources]
        keep = (variant_rows >= 0) & (other_rows >= 0)
        if not keep.any():
            continue
        frames.append(pd.DataFrame({
            "hasher": hid, "kind": "transformed",
            "family": [pairs[k].family for k in pair_numbers[keep]],
            "value": pd.Series([pairs[k].value for k in pair_numbers[keep]], dtype=object),
            "image_id": sources[number]["id"], "other_id": ids[other_sources[keep]],
            "distance": pair_distances(hasher, mine.array, theirs.array, variant_rows[keep], other_rows[keep]),
        }))
    return pd.concat(frames, ignore_index=True)
