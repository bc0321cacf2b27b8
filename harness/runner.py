"""Expand a config into work and compute every distance. Writes nothing.

Pass 1 reads each source image once and hashes the untouched images, in
batches, with every hasher. Those hashes serve three times: as side A or B of
every pair that leaves a side untouched, as the impostor baseline (distances
between different source images), and as the "other image" for edited copies.
Pass 2 reads each image again, applies each distinct transform chain once,
hashes each distinct variant once per hasher in one batch, and takes the
row-wise distances of every pair. Images are never all held in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from tqdm import tqdm

from harness.config import Config, PairSpec, Step
from harness.errors import UnavailableError
from harness.images import SourceImage, load_source, resolve_sources
from transforms import TransformError, apply_chain

DISTANCE_COLUMNS = ["image", "image_id", "family", "value", "label", "hasher", "distance", "distance_norm", "error"]
IMPOSTOR_COLUMNS = ["hasher", "kind", "family", "value", "image_id", "other_id", "distance"]
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
    status: str = "ok"  # or UNAVAILABLE
    reason: str = ""


@dataclass
class RunResult:
    config: Config
    distances: pd.DataFrame
    impostors: pd.DataFrame
    hashers: list[HasherInfo]
    sources: list[dict]
    notes: list[str] = field(default_factory=list)
    previews: list[tuple[PairSpec, np.ndarray | None, np.ndarray | None]] = field(default_factory=list)


def prepare_hashers(config: Config, skip_unavailable: bool):
    """Build and load every hasher before any work; the first unavailable one stops the run
    unless `skip_unavailable`, which marks it instead."""
    built, infos = {}, []
    for number, spec in enumerate(config.hashers):
        hasher = spec.build()
        info = HasherInfo(spec.id, hasher.spec(), hasher.distance_kind, hasher.distance_max)
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


def run(config: Config, skip_unavailable: bool = False, progress: bool | None = None) -> RunResult:
    paths, notes = resolve_sources(config.images, config.fallback_image, config.source, config.limit, config.seed)
    hashers, infos = prepare_hashers(config, skip_unavailable)
    notes += [f"hasher {i.id} unavailable: {i.reason}" for i in infos if i.status == UNAVAILABLE]
    rng = np.random.default_rng(config.seed)

    with tqdm(total=2 * len(paths), desc="harness", unit="image",
              disable=None if progress is None else not progress) as bar:
        bar.set_postfix_str("hashing source images")
        sources, source_hashes, duplicates = hash_sources(paths, hashers, bar)
        if duplicates:
            notes.append(f"{len(duplicates)} images have the same pixels as another and count once: "
                         + ", ".join(duplicates[:5]) + (", ..." if len(duplicates) > 5 else ""))
        impostor_frames = [source_impostors(sources, source_hashes, hashers, config.impostors.max_pairs, rng)]
        if len(sources) < 2:
            notes.append("one image only: no impostor pairs, so no thresholds or detection rates")

        frames, previews = [], []
        for number, source in enumerate(sources):
            bar.set_postfix_str(source["name"])
            image = load_source(source["origin"])
            variants, sides, errors = transform_variants(image, config.pairs)
            if number == 0 and config.previews:
                previews = [(pair, _pick(variants, image, a), _pick(variants, image, b))
                            for pair, (a, b) in zip(config.pairs, sides)]
            variant_hashes = {hid: hasher.hash_batch(variants) for hid, hasher in hashers.items()}
            for info in infos:
                frames.append(score(image, config.pairs, info, hashers.get(info.id), sides, errors,
                                    variant_hashes.get(info.id), source_hashes.get(info.id), number))
            if config.impostors.transformed and len(sources) > 1:
                impostor_frames.append(transformed_impostors(
                    number, sources, config.pairs, sides, variant_hashes, source_hashes, hashers,
                    config.impostors.per_variant, rng))
            bar.update()

    distances = pd.concat(frames, ignore_index=True)[DISTANCE_COLUMNS]
    impostors = pd.concat(impostor_frames, ignore_index=True)[IMPOSTOR_COLUMNS]
    failed = distances["error"].ne("") & distances["error"].ne(UNAVAILABLE)
    if failed.any():
        notes.append(f"{int(failed.sum())} of {len(distances)} distances failed; see the error column")
    return RunResult(config, distances, impostors, infos, sources, notes, previews)


def hash_sources(paths: list[str], hashers: dict, bar) -> tuple[list[dict], dict[str, np.ndarray], list[str]]:
    """Pass 1: every untouched source image hashed by every hasher, in batches.
    Images with the same pixels as an earlier one are dropped (they would be impostors at distance 0)."""
    sources, seen, duplicates = [], set(), []
    hashes = {hid: [] for hid in hashers}
    for start in range(0, len(paths), SOURCE_BATCH):
        batch = []
        for path in paths[start:start + SOURCE_BATCH]:
            image = load_source(path)
            bar.update()
            if image.id in seen:
                duplicates.append(image.name)
                continue
            seen.add(image.id)
            batch.append(image)
            sources.append({"name": image.name, "id": image.id, "origin": image.origin,
                            "height": image.pixels.shape[0], "width": image.pixels.shape[1]})
        for hid, hasher in hashers.items():
            if batch:
                hashes[hid].append(hasher.hash_batch([image.pixels for image in batch]))
    return sources, {hid: np.concatenate(parts) for hid, parts in hashes.items() if parts}, duplicates


def transform_variants(source: SourceImage, pairs: tuple[PairSpec, ...]):
    """Apply each distinct chain once; the untouched image is not a variant (pass 1 hashed it).

    Returns the variant images, the (a, b) side of every pair (a variant index, UNTOUCHED,
    or None where a transform failed) and the failure reasons by pair number."""
    variants: list[np.ndarray] = []
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
                    index[chain] = len(variants) - 1
                except TransformError as exc:
                    index[chain] = str(exc)
            found = index[chain]
            if isinstance(found, str):
                errors[number] = f"transform: {found}"
                found = None
            pair_sides.append(found)
        sides.append(tuple(pair_sides))
    return variants, sides, errors


def _pick(variants, image: SourceImage, side):
    return image.pixels if side == UNTOUCHED else (variants[side] if side is not None else None)


def _side_hashes(side_indices, variant_hashes, source_hash):
    """Hash rows for one side of several pairs: a variant's row, or the untouched image's."""
    rows = [source_hash if side == UNTOUCHED else variant_hashes[side] for side in side_indices]
    return np.stack(rows)


def score(image, pairs, info: HasherInfo, hasher, sides, errors, variant_hashes, source_hashes, number):
    """One hasher's distances for every pair of one source image."""
    distance = np.full(len(pairs), np.nan)
    error = [errors.get(i, "") for i in range(len(pairs))]
    if hasher is None:
        error = [UNAVAILABLE] * len(pairs)
    else:
        ok = [i for i, (a, b) in enumerate(sides) if a is not None and b is not None]
        if ok:
            a = _side_hashes([sides[i][0] for i in ok], variant_hashes, source_hashes[number])
            b = _side_hashes([sides[i][1] for i in ok], variant_hashes, source_hashes[number])
            distance[ok] = hasher.distance(a, b)
    return pd.DataFrame({
        "image": image.name,
        "image_id": image.id,
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


def source_impostors(sources, source_hashes, hashers, max_pairs, rng) -> pd.DataFrame:
    """Distances between different untouched source images, per hasher."""
    i, j = sample_pairs(len(sources), max_pairs, rng)
    ids = np.array([s["id"] for s in sources])
    frames = [pd.DataFrame(columns=IMPOSTOR_COLUMNS)]
    for hid, hasher in hashers.items():
        frames.append(pd.DataFrame({
            "hasher": hid, "kind": "source", "family": "", "value": "",
            "image_id": ids[i], "other_id": ids[j],
            "distance": pair_distances(hasher, source_hashes[hid], source_hashes[hid], i, j),
        }))
    return pd.concat(frames, ignore_index=True)


def transformed_impostors(number, sources, pairs, sides, variant_hashes, source_hashes, hashers,
                          per_variant, rng) -> pd.DataFrame:
    """Each edited copy (side B of a pair) of image `number` against `per_variant` other source images."""
    edited = [(k, b) for k, (_, b) in enumerate(sides) if b is not None and b != UNTOUCHED]
    if not edited:
        return pd.DataFrame(columns=IMPOSTOR_COLUMNS)
    others = np.array([k for k in range(len(sources)) if k != number])
    take = min(per_variant, len(others))
    chosen = np.stack([rng.choice(others, size=take, replace=False) for _ in edited])  # (variants, take)
    pair_numbers = np.repeat([k for k, _ in edited], take)
    variant_rows = np.repeat([b for _, b in edited], take)
    other_rows = chosen.ravel()
    ids = np.array([s["id"] for s in sources])
    frames = []
    for hid, hasher in hashers.items():
        frames.append(pd.DataFrame({
            "hasher": hid, "kind": "transformed",
            "family": [pairs[k].family for k in pair_numbers],
            "value": pd.Series([pairs[k].value for k in pair_numbers], dtype=object),
            "image_id": sources[number]["id"], "other_id": ids[other_rows],
            "distance": pair_distances(hasher, variant_hashes[hid], source_hashes[hid], variant_rows, other_rows),
        }))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=IMPOSTOR_COLUMNS)
