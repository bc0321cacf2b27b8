"""Expand a config into work and compute every distance. Writes nothing.

For each source image, each distinct transform chain is applied once (the
untouched image is side A of most pairs) and each distinct variant is hashed
once per hasher, in one batch; distances are then taken row-wise between the
A and B hashes of every pair.
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
UNAVAILABLE = "unavailable"


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
    hashers: list[HasherInfo]
    sources: list[dict]
    notes: list[str] = field(default_factory=list)
    previews: list[tuple[PairSpec, np.ndarray, np.ndarray]] = field(default_factory=list)


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
    paths, notes = resolve_sources(config.images, config.fallback_image, config.source)
    hashers, infos = prepare_hashers(config, skip_unavailable)
    sources = [load_source(path) for path in paths]
    notes += [f"hasher {i.id} unavailable: {i.reason}" for i in infos if i.status == UNAVAILABLE]

    frames, previews = [], []
    with tqdm(total=len(sources) * (1 + len(hashers)), desc="harness", unit="step",
              disable=None if progress is None else not progress) as bar:
        for number, source in enumerate(sources):
            bar.set_postfix_str(f"{source.name}: transforms")
            variants, sides, errors = transform_variants(source, config.pairs)
            bar.update()
            if number == 0 and config.previews:
                previews = [(pair, variants[a] if a is not None else None, variants[b] if b is not None else None)
                            for pair, (a, b) in zip(config.pairs, sides)]
            for info in infos:
                bar.set_postfix_str(f"{source.name}: {info.id}")
                frames.append(score(source, config.pairs, info, hashers.get(info.id), variants, sides, errors))
                if info.id in hashers:
                    bar.update()

    distances = pd.concat(frames, ignore_index=True)[DISTANCE_COLUMNS]
    failed = distances["error"].ne("") & distances["error"].ne(UNAVAILABLE)
    if failed.any():
        notes.append(f"{int(failed.sum())} of {len(distances)} distances failed; see the error column")
    source_info = [{"name": s.name, "id": s.id, "origin": s.origin,
                    "height": s.pixels.shape[0], "width": s.pixels.shape[1]} for s in sources]
    return RunResult(config, distances, infos, source_info, notes, previews)


def transform_variants(source: SourceImage, pairs: tuple[PairSpec, ...]):
    """Apply each distinct chain once. Returns the variant images, the (a, b) variant
    index of every pair (None where a transform failed) and the failure reasons by pair."""
    variants: list[np.ndarray] = []
    index: dict[tuple[Step, ...], int | str] = {}
    sides, errors = [], {}
    for number, pair in enumerate(pairs):
        pair_sides = []
        for chain in (pair.a, pair.b):
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


def score(source, pairs, info: HasherInfo, hasher, variants, sides, errors) -> pd.DataFrame:
    """One hasher's distances for every pair of one source image."""
    distance = np.full(len(pairs), np.nan)
    error = [errors.get(i, "") for i in range(len(pairs))]
    if hasher is None:
        error = [UNAVAILABLE] * len(pairs)
    else:
        ok = [i for i, (a, b) in enumerate(sides) if a is not None and b is not None]
        if ok:
            hashes = hasher.hash_batch(variants)
            a = np.array([sides[i][0] for i in ok])
            b = np.array([sides[i][1] for i in ok])
            distance[ok] = hasher.distance(hashes[a], hashes[b])
    return pd.DataFrame({
        "image": source.name,
        "image_id": source.id,
        "family": [p.family for p in pairs],
        "value": pd.Series([p.value for p in pairs], dtype=object),  # 3 stays 3, 2.0 stays 2.0
        "label": [p.label for p in pairs],
        "hasher": info.id,
        "distance": distance,
        "distance_norm": np.clip(distance / info.distance_max, 0.0, 1.0),
        "error": error,
    })
