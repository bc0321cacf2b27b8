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
from harness.errors import HarnessError, ImageError, UnavailableError
from harness.images import DEFAULT_MAX_PIXELS, SourceImage, load_source, resolve_sources
from harness.hashing import Hashed, hash_with_cache
from harness.impostors import source_impostors, transformed_impostors
from harness.schema import OK, DISTANCE_COLUMNS, ERROR_COLUMNS, IMPOSTOR_COLUMNS, UNAVAILABLE, UNTOUCHED
from harness.transforms import TransformError, apply_chain

SOURCE_BATCH = 32  # source images hashed per batch in pass 1


@dataclass
class HasherInfo:
    id: str
    spec: dict
    distance_kind: str
    distance_max: float
    key: str  # cache key: the spec and every library version that can change a hash
    cpu_exact: bool = True  # the same hashes on every processor (see Hasher.cpu_exact)
    status: str = OK  # or UNAVAILABLE
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


def hasher_key(spec: dict, versions: dict) -> str:
    return digest("hasher", spec, versions)


def prepare_hashers(config: Config, skip_unavailable: bool, versions: dict):
    """Build and load every hasher before any work; the first unavailable one stops the run
    unless `skip_unavailable`, which marks it instead."""
    built, infos = {}, []
    for number, spec in enumerate(config.hashers):
        hasher = spec.build()
        info = HasherInfo(spec.id, hasher.spec(), hasher.distance_kind, hasher.distance_max,
                          hasher_key(hasher.spec(), versions), hasher.cpu_exact)
        try:
            hasher.prepare()
            built[spec.id] = hasher
        except UnavailableError as exc:
            where = f"{config.source}: hashers[{number}] ({spec.id})"
            if not skip_unavailable:
                raise UnavailableError(f"{where}: {exc}; or leave out --strict to run the other hashers") from None
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
