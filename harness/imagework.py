"""One source image's work, wherever it runs (this process, a worker process, a Dask worker).

The image is decoded once. Each transform chain the work needs is applied once, and its
variant is hashed by every hasher that needs it, the variants going through the hashers in
batches bounded by their pixel count (so a 13-megapixel photograph's 40 variants are never
held at once), each batch's colour layouts shared between the hashers (see hashers/layouts.py).
What comes back is plain data: the image's size and notes, and per hasher and item a cache
entry (the hash as a plain array, or why there is none). Nothing here touches the cache, and
the caller reads the image file and stores the results, so the work can run on a machine that
sees neither. The files a config names as parameters (an overlay's image, a model's weights) are
the exception: they are read here, from this machine's disk, so a worker first checks that its
copy is the one the run's cache keys were made from (`Plan.files`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import cv2
import numpy as np

from harness.cache import Entry, FileRecord
from harness.config import HasherSpec, Step
from harness.errors import ImageError
from harness.hashers.layouts import shared
from harness.hashing import hash_safely, to_entries
from harness.images import SourceImage, decode_source, image_id
from harness.transforms import TransformError, apply_chain

SOURCE = "source"  # the item of the untouched image; a variant's item is its chain's key
PREVIEW_SIDE = 192  # previews keep thumbnails of this longest side, never full copies


@dataclass(frozen=True)
class Plan:
    """What is the same for every image of a run; sent to each worker once."""

    hashers: tuple[HasherSpec, ...]
    chains: tuple[tuple[Step, ...], ...]  # every distinct transform chain of the config, in config order
    chain_keys: tuple[str, ...]  # each chain's cache item (a digest of the chain and the library versions)
    max_pixels: int | None
    max_side: int | None = None  # larger images are downscaled to this longest side first
    salt: str = ""  # the library versions that decoding and transforms depend on (for cache keys)
    batch_pixels: int = 1 << 24  # variants hashed together hold at most this many pixels (but at least one)
    # (module, digest of its code) of every plugin the plan runs, as the process that made the plan
    # runs them (its cache keys hold these digests): each worker checks its own code against them.
    # Taken when the plan is made, wherever it is made (a run's, a leak audit's), unless given.
    plugin_code: tuple[tuple[str, str], ...] | None = None
    # (config key, path, digest of its content, size) of every file the hashers' and chains'
    # parameters name, as the process that made the plan read them (its cache keys hold these
    # digests): a worker opens the path on its own disk, and checks that its file is the same. Taken
    # as plugin_code is.
    files: tuple[tuple[str, str, str, int], ...] | None = None
    # (hasher id, ((parameter, path), ...)) of the files each hasher reads, as the process that made
    # the plan found them: a path a parameter names, or one the hasher finds itself (a CNN's ImageNet
    # weights, in that process's Keras cache). A worker loads these (use_files), not the ones its own
    # machine would find (another user's ~/.keras), which `files` and the cache keys do not describe.
    hasher_files: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] | None = None

    def __post_init__(self):
        if self.plugin_code is None:
            object.__setattr__(self, "plugin_code", plugins_code(self.hashers, self.chains))
        if self.hasher_files is None:
            object.__setattr__(self, "hasher_files", hasher_files(self.hashers))
        if self.files is None:
            object.__setattr__(self, "files", plan_files(self.hashers, self.chains, self.hasher_files))

    @property
    def items(self) -> tuple[str, ...]:
        return (SOURCE, *self.chain_keys)


@dataclass
class ImageJob:
    number: int  # the image's position among the run's sources
    source: str  # a path or builtin:NAME
    data: bytes | None  # the file's bytes (read once, by the caller); None for a built-in
    needs: dict[str, frozenset[str]] | None  # hasher id -> items to compute; None: all (the image is new)
    previews: frozenset[str] = frozenset()  # the items to keep thumbnails of (SOURCE among them)


@dataclass
class ImageOutcome:
    number: int
    record: FileRecord | None  # None when the image could not be read
    error: str = ""  # why it could not be read
    entries: dict[str, dict[str, Entry]] = field(default_factory=dict)  # hasher id -> item -> new entry
    previews: dict[str, np.ndarray | None] = field(default_factory=dict)  # item -> thumbnail (None: failed)


def plugins_code(hashers: tuple[HasherSpec, ...], chains: tuple[tuple[Step, ...], ...]) -> tuple[tuple[str, str], ...]:
    """(module, digest of its code in this process) of each plugin module named by the hashers and chains."""
    from harness.registry import plugin_code

    references = [spec.name for spec in hashers] + [name for chain in chains for name, _ in chain]
    modules = {reference.partition(":")[0]: reference for reference in references if ":" in reference}
    return tuple((module, plugin_code(reference)) for module, reference in modules.items())


def hasher_files(hashers: tuple[HasherSpec, ...]) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    """(hasher id, ((parameter, path), ...)) of the files each hasher reads for its content, as this
    process finds them (params.files_read)."""
    from harness.hashers import HASHERS
    from harness.params import files_read, param_specs

    found = []
    for spec in hashers:
        target = HASHERS.get(spec.name)
        # with its defaults, as the key's hasher.spec() has them (a default path is a file too)
        params = {p.name: p.default for p in param_specs(target)} | dict(spec.params)
        found.append((spec.id, tuple(files_read(target, params))))
    return tuple(found)


def plan_files(hashers: tuple[HasherSpec, ...], chains: tuple[tuple[Step, ...], ...],
               found: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] | None = None,
               ) -> tuple[tuple[str, str, str, int], ...]:
    """(config key, path, digest of its content here, its size here: -1 where it is no regular file)
    of each file the hashers' and chains' parameters name (runner.read_files digests the same for the
    cache keys); `found`: the hashers' files as hasher_files gave them, where the plan already holds
    them."""
    from harness.params import file_params
    from harness.provenance import file_digest
    from harness.transforms import TRANSFORMS

    named = [(f"{name} of hasher {hasher_id}", path)
             for hasher_id, files in (hasher_files(hashers) if found is None else found) for name, path in files]
    for chain in chains:
        for step, params in chain:
            named += [(f"{name} of {step}", path) for name, path in file_params(TRANSFORMS.get(step), dict(params))]
    return tuple((key, path, file_digest(path), _regular_size(path)) for key, path in dict.fromkeys(named))


def _regular_size(path: str) -> int:
    """The size of the regular file at `path`, -1 where there is none (file_digest keys what it is)."""
    import stat

    try:
        status = os.stat(path)
    except (OSError, ValueError):
        return -1
    return status.st_size if stat.S_ISREG(status.st_mode) else -1


def check_files(files: tuple[tuple[str, str, str, int], ...]) -> None:
    """In a worker: a HarnessError unless each file the plan names is, on this machine's disk, the one
    the run's cache keys were made from; else its results would differ from this machine's run and
    be stored under the other file's key. A copy of another size is refused before it is read: the
    worker's copy may be any file (a 6 GB one took seconds to digest, for a refusal)."""
    from harness.errors import HarnessError, shown
    from harness.provenance import file_digest

    for key, path, expected, size in files:
        here_size = _regular_size(path)
        resized = here_size >= 0 and size >= 0 and here_size != size
        here = None if resized else file_digest(path)
        if here == expected:
            continue
        if resized:
            what = (f"on this worker is {here_size:,} bytes, where the file this run read is {size:,}: another "
                    "copy, or it changed after the run read it (refused unread)")
        elif here == "no file":
            what = "is not there on this worker"
        else:
            what = ("on this worker is not the file this run read (another copy, or it changed after the run read "
                    "it): its results would differ")
        raise HarnessError(f"{shown(path)} ({key}) {what}; a file a config names must be at the same path "
                           "with the same content on every worker")


def build_state(plan: Plan, hashers: dict | None = None):
    """A worker's state: the plan and its hashers, built and loaded once per process. A worker (no
    `hashers` given) first checks that it runs the plugins' code, and reads the files, that the run's
    keys were made with."""
    if hashers is None:
        from harness.registry import check_plugin_code

        check_plugin_code(plan.plugin_code)
        check_files(plan.files)
        hashers = {}
        files = dict(plan.hasher_files)
        for spec in plan.hashers:
            hasher = spec.build()
            use_files = getattr(hasher, "use_files", None)  # a hasher that finds a file itself (a CNN's weights)
            if use_files is not None and files.get(spec.id):
                use_files(dict(files[spec.id]))
            hasher.prepare()
            hashers[spec.id] = hasher
    return plan, hashers


def process(state, job: ImageJob) -> ImageOutcome:
    """Decode, transform and hash one image: the work a job asks for, and nothing else."""
    plan, hashers = state
    try:
        image = decode_source(job.source, job.data, plan.max_pixels)
    except ImageError as exc:
        return ImageOutcome(job.number, None, str(exc))
    image = downscale(image, plan.max_side)
    pixels = image.pixels
    record = FileRecord(image.id, pixels.shape[0], pixels.shape[1], image.notes + few_pixels_note(pixels))
    needs = job.needs if job.needs is not None else {hid: frozenset(plan.items) for hid in hashers}
    wanted = set().union(*needs.values()) if needs else set()
    entries: dict[str, dict[str, Entry]] = {hid: {} for hid in needs}
    previews: dict[str, np.ndarray | None] = {}
    if SOURCE in job.previews:
        previews[SOURCE] = thumbnail(pixels)

    # The batches are cut from the run's full list of items (not from what this job needs), so
    # a hasher whose results depend on its batch (a CNN) always sees the same batches.
    steps = [(SOURCE, ())] + list(zip(plan.chain_keys, plan.chains))
    for batch in _batches(steps, pixels, plan.batch_pixels):
        made: list[tuple[str, np.ndarray]] = []
        for item, chain in batch:
            if item not in wanted and (item == SOURCE or item not in job.previews):  # SOURCE's: made above
                continue
            if item == SOURCE:
                made.append((item, pixels))
                continue
            try:
                variant = apply_chain(pixels, ((name, dict(params)) for name, params in chain))
            except TransformError as exc:
                failure = Entry(None, f"transform: {exc}")
                for hid in needs:
                    if item in needs[hid]:
                        entries[hid][item] = failure
                if item in job.previews:
                    previews[item] = None
                continue
            if item in job.previews:
                previews[item] = thumbnail(variant)
            if item in wanted:
                made.append((item, variant))
        if not made:
            continue
        with shared([variant for _, variant in made]):
            for hid, hasher in hashers.items():
                mine = [(item, variant) for item, variant in made if item in needs.get(hid, ())]
                if mine:
                    hashed = hash_safely(hasher, [variant for _, variant in mine])
                    for (item, _), entry in zip(mine, to_entries(hasher, hashed)):
                        entries[hid][item] = entry
    return ImageOutcome(job.number, record, "", entries, previews)


def process_all(state, jobs: list[ImageJob]) -> list[ImageOutcome]:
    """`process` for each image of a job (several small images sent together, or one), one after the other."""
    return [process(state, job) for job in jobs]


def _batches(steps, pixels: np.ndarray, budget: int):
    """Consecutive steps whose variants together hold at most `budget` pixels (each is assumed the
    size of the source: most edits keep it or shrink it); at least one step per batch."""
    per_image = max(1, pixels.shape[0] * pixels.shape[1])
    size = max(1, budget // per_image)
    for start in range(0, len(steps), size):
        yield steps[start:start + size]


FEW_PIXELS = 64  # an image of fewer pixels is noted: an 8 x 8 thumbnail is what aHash reads


def few_pixels_note(pixels: np.ndarray) -> tuple[str, ...]:
    """A note for an image too small for its hashes to tell it from others (a leak audit's 1 x 1
    file matched unrelated photographs, without a word), else none."""
    height, width = pixels.shape[:2]
    if height * width >= FEW_PIXELS:
        return ()
    return (f"only {width} x {height} pixels, fewer than a 64-bit hash has bits: its hashes say little and may "
            "match unrelated images",)


def downscale(image: SourceImage, max_side: int | None) -> SourceImage:
    """The image with its longer side at most `max_side` (INTER_AREA, aspect kept), with a note."""
    height, width = image.pixels.shape[:2]
    if max_side is None or max(height, width) <= max_side:
        return image
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    pixels = cv2.resize(image.pixels, size, interpolation=cv2.INTER_AREA)
    note = f"downscaled from {width}x{height} to {size[0]}x{size[1]} (max_side {max_side})"
    return SourceImage(image.name, image_id(pixels), image.origin, pixels, image.notes + (note,))


def thumbnail(pixels: np.ndarray, side: int = PREVIEW_SIDE) -> np.ndarray:
    height, width = pixels.shape[:2]
    scale = side / max(height, width)
    if scale >= 1:
        return pixels.copy()
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
