"""Expand a config into work and compute every distance. Writes nothing but the hash cache.

One pass over the source images. Each file is read once, here, with a bound on its size (with
several workers, its first 64 KiB are read before, to send large images first, and small ones
several at a time); its
content digest finds what the hash cache already holds. An image whose every hash is cached
costs no decoding and no transform. Otherwise its work (harness/imagework.py: decode once,
each needed variant made once, hashed by every hasher that needs it) runs where the engine
puts it (harness/cluster.py: this process, worker processes or a Dask cluster), and the results
come back here in the images' order, whatever ran them, so the tables never depend on it.

Here, per image: its new hashes go to the cache in one transaction, the distances of its pairs
are taken, and the hashes the impostor baseline needs (the untouched image; each edited copy,
when `impostors.transformed`) are kept in compact arrays. After the pass come the impostor
distances (harness/impostors.py). The distance table grows by a distance and an error code a row
(`DistanceRows`: a row's image, pair and hasher follow from its place), not by DataFrames.

Nothing one image does stops the run: an unreadable image, a transform that cannot apply or a
hasher that fails on an image becomes a row of `errors` and an `error` cell in the distances.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from harness.cache import CacheUse, Entry, FileRecord, HashCache, digest
from harness.cluster import Engine, Ready, auto_workers
from harness.config import Config, PairSpec, preview_pairs
from harness.errors import HarnessError, HashError, ImageError, UnavailableError, exception_text
from harness.hashers.base import Hasher
from harness.hashing import Hashed, from_entries, probe_form, row_form, self_distance_problem
from harness.images import (DEFAULT_MAX_PIXELS, display_path, load_decoders, read_source, resolve_sources,
                            source_name, source_names, work_size)
from harness.imagework import SOURCE, ImageJob, ImageOutcome, Plan, build_state, process, process_all
from harness.registry import plugin_code
from harness.schema import DISTANCE_COLUMNS, ERROR_COLUMNS, OK, UNAVAILABLE, UNTOUCHED, code_dtype, text_dtype

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class HasherInfo:
    id: str
    spec: dict
    distance_kind: str
    distance_max: float
    key: str  # cache key: the spec and every library version that can change a hash
    cpu_exact: bool = True  # the same hashes on every processor (see Hasher.cpu_exact)
    batch_invariant: bool = True  # see Hasher.batch_invariant
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
    engine: str = "this process"


def hasher_key(hasher, versions: dict) -> str:
    """The cache's key of a hasher: its spec, the versions (provenance.result_versions), the content
    of the files its parameters name (weights), for a plugin, its module's code and, for a hasher
    that is not bit-exact across processors, the kind of CPU (provenance.cpu_kind): a cache shared
    between machines (a copied folder, a Dask cluster's client) then never gives one machine's hashes
    for another's. An exact hasher's key leaves the CPU out, so its cache serves every machine."""
    from harness.provenance import cpu_kind

    spec = hasher.spec()
    plugin = (plugin_code(spec["name"]),) if ":" in spec["name"] else ()
    cpu = () if hasher.cpu_exact else (cpu_kind(),)
    return digest("hasher", spec, versions, *plugin, *read_files(type(hasher), spec), *cpu)


def chain_key(chain, salt: str) -> str:
    """The cache's key of a transform chain's result: the chain, the salt, the content of the files
    its steps read (an overlay's image), its plugins' code and, where a step is not bit-exact across
    processors (transforms.cpu_exact), the kind of CPU: every hasher's hash of that result follows it."""
    from harness.provenance import cpu_kind
    from harness.transforms import TRANSFORMS

    plugins = [plugin_code(name) for name, _ in chain if ":" in name]
    files = [content for name, params in chain for content in read_files(TRANSFORMS.get(name), dict(params))]
    cpu = [cpu_kind()] if inexact_steps([chain]) else []
    return digest("chain", chain, salt, *plugins, *files, *cpu)


def inexact_steps(chains) -> list[str]:
    """The transforms of `chains` whose pixels, with the parameters given them, follow the processor
    (transforms.cpu_exact), sorted: none where every step is bit-exact across processors."""
    from harness.transforms import cpu_exact

    return sorted({name for chain in chains for name, params in chain if not cpu_exact(name, dict(params))})


def check_seeded(config) -> None:
    """Refuse, in one line naming the config's key, a plugin transform of the config's pairs that is not
    a function of its image and parameters, as the tables and the hash cache need (README, Plugins).
    Before any work, each plugin transform's first step is applied three times to a small made-up
    image: randomness from an unseeded generator (the usual slip in an augmentation written for
    training) gives different images, and would make two runs of one config differ and the cache
    keep the first run's draw. A step that fails on that image is not judged here (the run says what
    it does to real images)."""
    from harness.hashing import made_up_image
    from harness.transforms import TRANSFORMS, apply_chain

    tried = set()
    for pair in getattr(config, "pairs", ()):
        for name, params in pair.a + pair.b:
            if name in tried or not TRANSFORMS.is_plugin(name):
                continue
            tried.add(name)
            try:  # three times: a draw of a few values repeats once by chance
                first, *others = (apply_chain(made_up_image(), [(name, dict(params))]) for _ in range(3))
            except Exception:
                continue
            if any(other.shape != first.shape or not np.array_equal(other, first) for other in others):
                where = next((key for kind, plugin, key in config.plugins if kind == "transform" and plugin == name),
                             f"family {pair.family!r}")
                shown = ", ".join(f"{key}={value!r}" for key, value in params) or "none"
                raise HarnessError(f"{config.source}: {where}: transform {name!r} gave different images for one "
                                   f"image and the same parameters ({shown}): a transform must be a function of its "
                                   "image and parameters; draw its randomness from a parameter named `seed` (the "
                                   "config's seed is given to it)")


def read_files(target, params: dict) -> list[str]:
    """Digests of the files a transform's or hasher's parameters name for their content (FileContent):
    a result is keyed by what it was made from, not by a path whose file may be replaced."""
    from harness.params import files_read
    from harness.provenance import file_digest

    return [file_digest(path) for _, path in files_read(target, params)]


def load_hasher(config, number: int, spec, skip_unavailable: bool, advice: str = ""):
    """`spec` (the config's hashers[number]) built and loaded (prepare()), a plugin's distance tried on
    two made-up images (self_distance_problem): (hasher, None), or (hasher, why it cannot run here)
    where `skip_unavailable`; every other problem is one line naming the config's key."""
    hasher = spec.build()
    where = f"{config.source}: hashers[{number}] ({spec.id})"
    try:
        hasher.prepare()
    except UnavailableError as exc:
        if not skip_unavailable:
            raise UnavailableError(f"{where}: {exc}" + (f"; {advice}" if advice else "")) from None
        return hasher, str(exc)
    except HarnessError as exc:  # what the hasher was given does not work (a weights file that does not load)
        raise HarnessError(f"{where}: {exc}") from None
    except (Exception, SystemExit) as exc:  # sys.exit() in a plugin's prepare(): its failure, not harness's exit
        if ":" not in spec.name:  # a registered hasher failing to load is a bug of ours
            raise
        raise HarnessError(f"{where}: the plugin's prepare() failed: {exception_text(exc, with_type=True)}") from None
    problem = self_distance_problem(hasher) if ":" in spec.name else None
    if problem:  # a plugin's (the built-ins' are tested)
        raise HarnessError(f"{where}: the plugin's {problem}")
    return hasher, None


def prepare_hashers(config: Config, skip_unavailable: bool, versions: dict, advice: str = ""):
    """Build and load every hasher before any work; the first unavailable one stops the run
    unless `skip_unavailable`, which marks it instead. `advice` ends that error: how the caller
    (the command line, the API, the leak audit) lets the others run, "" where nothing does."""
    built, infos = {}, []
    for number, spec in enumerate(config.hashers):
        hasher, unavailable = load_hasher(config, number, spec, skip_unavailable, advice)
        info = HasherInfo(spec.id, hasher.spec(), hasher.distance_kind, hasher.distance_max, "",
                          hasher.cpu_exact, hasher.batch_invariant)
        if unavailable is None:
            built[spec.id] = hasher
        else:
            info.status, info.reason = UNAVAILABLE, unavailable
        # Made once it is loaded: ImageNet weights it has just downloaded are a file its key follows.
        info.key = hasher_key(hasher, versions)
        infos.append(info)
    return built, infos


def check_plugins(config, skip_unavailable: bool, advice: str = "") -> list[str]:
    """What `run` (or `leaks`, for a leak audit's config: it has no pairs) checks of a config's plugins
    before any work, for `validate --import-plugins`, without reading an image of the run: each plugin
    hasher loaded (prepare()) and tried on two made-up images, each plugin transform tried on one
    (check_seeded); each plugin transform's cpu_exact was checked as the config was parsed. The checks
    are the run's own functions, so the two cannot drift apart. Returns the notes: the plugin hashers
    that cannot run here (raised unless `skip_unavailable`, as the run does)."""
    from harness.hashers import HASHERS

    notes = []
    for number, spec in enumerate(config.hashers):
        if HASHERS.is_plugin(spec.name):
            _, unavailable = load_hasher(config, number, spec, skip_unavailable, advice)
            if unavailable is not None:
                notes.append(f"hasher {spec.id} unavailable: {unavailable}; `run` marks its distances unavailable "
                             "and runs the others (with --strict it stops)")
    check_seeded(config)
    return notes


def chain_identity(chain) -> str:
    """What tells two transform chains apart: their JSON text, which keeps each value's type. Tuples
    compare 3.0 == 3 and True == 1, so a chain compared by == (or `in`) would take a plugin's
    `int | float` parameter given 3.0 for the chain given 3, and its result for the other's."""
    return json.dumps(chain)


def make_plan(config: Config, specs, salt: str) -> Plan:
    chains = {}  # identity -> chain, in config order
    for pair in config.pairs:
        for chain in (pair.a, pair.b):
            if chain != UNTOUCHED:
                chains.setdefault(chain_identity(chain), chain)
    chains = list(chains.values())
    return Plan(hashers=tuple(specs), chains=tuple(chains),
                chain_keys=tuple(chain_key(chain, salt) for chain in chains),
                max_pixels=config.max_pixels or DEFAULT_MAX_PIXELS, max_side=config.max_side, salt=salt)


def run(config: Config, skip_unavailable: bool = False, progress: bool | None = None,
        cache_path: str | None = None, workers: int | None = None, scheduler: str | None = None) -> RunResult:
    return image_pass(config, skip_unavailable, progress, cache_path, workers, scheduler).result()


@dataclass
class Pass:
    """The pass over the images done, before any table is made: what it collected, its notes, where
    the work ran, `inputs` (a digest of everything the tables are computed from) and `failures`."""

    collector: "Collector | None"
    notes: list[str]
    engine: str
    inputs: str
    failures: int
    # The transforms whose pixels, with the parameters this run gives them, follow the processor
    # (transforms.cpu_exact): even a bit-exact hasher's distances for their pairs do.
    cpu_inexact_transforms: list[str] = field(default_factory=list)
    # The files the hashers and edits read for their content (a CNN's weights, an overlay's image),
    # with the SHA-256 the run's cache keys were made from: which weights a CNN column came from.
    files_read: list[dict] = field(default_factory=list)
    # run.json's `cache`: the hash cache the run used (or none) and how many of its images and hashes
    # came from it rather than being computed in this run (cache.CacheUse). Never in `inputs`: a rerun
    # that reads everything its first run computed has the same inputs, and keeps its set.
    cache: dict = field(default_factory=dict)

    def result(self) -> RunResult:
        """The tables; once: the collected columns are handed over to them, not copied."""
        collector, self.collector = self.collector, None
        if collector is None:
            raise RuntimeError("Pass.result() was called before")
        return collector.result(list(self.notes), self.engine)


def image_pass(config: Config, skip_unavailable: bool = False, progress: bool | None = None,
               cache_path: str | None = None, workers: int | None = None, scheduler: str | None = None,
               output: str | None = None, advice: str = "") -> Pass:
    """Every image through its work and the cache; no table yet (no pandas is needed up to here).
    `output`: the directory the results will replace, which must hold none of the images;
    `advice`: see prepare_hashers."""
    from harness.provenance import result_versions
    from harness.storage import check_sources_outside

    versions = result_versions()
    unlisted: list[tuple[str, str]] = []
    paths, notes = resolve_sources(config.images, config.fallback_image, config.source, config.limit, config.seed,
                                   unlisted, option=config.images_option)
    check_sources_outside(paths, output)
    check_seeded(config)
    hashers, infos = prepare_hashers(config, skip_unavailable, versions, advice)
    notes += [f"hasher {i.id} unavailable: {i.reason}" for i in infos if i.status == UNAVAILABLE]
    salt = digest("versions", versions)  # decoding and transform results depend on library versions too
    specs = [spec for spec in config.hashers if spec.id in hashers]
    plan = make_plan(config, specs, salt)
    cache = HashCache(cache_path)
    collector = Collector(config, plan, infos, hashers, salt, names=source_names(paths))
    collector.errors += [unlisted_row(folder, reason) for folder, reason in unlisted]
    try:
        images = ImagePass(paths, plan, infos, hashers, cache, workers=workers, scheduler=scheduler,
                           previews=collector.preview_items(), progress=progress, preload=preload_report)
        for path, outcome, cached in images:
            collector.add(path, outcome, cached)
    finally:
        cache.close()
    notes += cache.summary_notes() + images.notes
    if not collector.sources:
        first = collector.errors[0]["reason"] if collector.errors else "no images"
        raise HarnessError(f"none of the {len(paths)} images could be read; first: {first}")
    return Pass(collector, notes, images.engine, collector.inputs(notes), collector.failures(),
                inexact_steps(plan.chains), files_read_record(plan), images.use.record(cache))


def files_read_record(plan: Plan) -> list[dict]:
    """run.json's `files_read`: each file the plan's hashers and edits read for its content, with
    the SHA-256 the cache keys were made from."""
    return [{"read_as": key, "path": path, "sha256": digest_here} for key, path, digest_here, _ in plan.files]


class ImagePass:
    """The pass over the source images: iterating yields (path, outcome, cached entries) per
    image, in the images' order, whatever ran the work; each image's new results are stored in
    the cache as it comes. `engine` says afterwards where the work ran."""

    def __init__(self, paths: list[str], plan: Plan, infos: list[HasherInfo], hashers: dict, cache: HashCache, *,
                 workers: int | None = None, scheduler: str | None = None, previews: frozenset = frozenset(),
                 progress: bool | None = None, desc: str = "harness", preload=None, use: CacheUse | None = None):
        self.paths, self.plan, self.infos, self.hashers, self.cache = paths, plan, infos, hashers, cache
        self.use = use if use is not None else CacheUse()  # what was read from the cache, what computed (a leak
        # audit's splits share one: an image in two splits is counted once)
        self.preload = preload or preload_tables  # what this process loads while the workers hash
        # None: as many as help (cluster.auto_workers)
        # No more processes than images: --workers 1000 started 1,000 of them for 13 images (37 s, not 17).
        # A CNN's TensorFlow already uses every core: auto then stays in this process (Hasher.parallel_inside;
        # on 2 cores, 2 spawned workers each loading TensorFlow and the model took 1.8x the time, 2x the memory).
        inside = any(hasher.parallel_inside for hasher in hashers.values())
        self.workers = (1 if inside else auto_workers(len(paths))) if workers is None and not scheduler else \
            min(workers or 1, max(1, len(paths)))
        self.scheduler, self.progress, self.desc = scheduler, progress, desc
        self.previews = previews  # the items of the first image to keep thumbnails of (previews.png)
        self.engine = "this process"
        self.notes: list[str] = []  # what the pass had to say of where its work ran
        self.keys = {info.id: info.key for info in infos}
        # Dask workers must be of this machine's kind of CPU where a hasher or an edit follows it.
        self.same_cpu = (any(not info.cpu_exact for info in infos if info.status == OK)
                         or bool(inexact_steps(plan.chains)))
        # What each hasher's rows look like, for the cache's lookup: an entry of another form is computed
        # again. One that declares none (a plugin's) but stacks its rows as they are (the default
        # decode_rows: one form for all) is held to the form of its hash of a made-up image, found
        # before the first lookup (`_probe`); where that fails, to its first computed row's (`_seen`).
        # Never to a cached row's: a wrong one first would make every right one after it wrong.
        self.forms = {info.id: row_form(hashers[info.id]) for info in infos if info.status == OK}
        self.unknown = {hid for hid, form in self.forms.items()
                        if form is None and type(hashers[hid]).decode_rows is Hasher.decode_rows}

    def _probe(self) -> None:
        """The forms of the hashers in `unknown`, from their hashes of a made-up image (probe_form)."""
        for hid in list(self.unknown):
            self.forms[hid] = probe_form(self.hashers[hid])
            if self.forms[hid] is not None:
                self.unknown.discard(hid)

    def _seen(self, entries: dict) -> None:
        """Learn the form of a hasher in `unknown` from its first computed row in `entries`
        (hasher -> item -> Entry)."""
        for hid in self.unknown & entries.keys():
            row = next((entry.row for entry in entries[hid].values() if entry.row is not None), None)
            if row is not None:
                self.forms[hid] = (row.dtype.str, row.shape)
                self.unknown.discard(hid)

    def __iter__(self):
        plan, cache = self.plan, self.cache
        file_salt = digest("file", plan.salt, plan.max_pixels, plan.max_side)
        if cache.active:
            self._probe()
        local = self.workers <= 1 and not self.scheduler
        setup = (build_state, (plan, self.hashers)) if local else (build_state, (plan,))
        known: dict[int, tuple[str, dict]] = {}  # image number -> (file digest, cached entries), until its outcome
        rejected: dict[int, int] = {}  # image number -> entries of its lookup that did not check out, until then

        def warm_up():  # once here, before the workers are forked, not in every worker
            load_decoders()
            for hasher in self.hashers.values():
                hasher.warm_up()

        # Once the workers hash, this process mostly waits: it loads what the report needs meanwhile
        # (started after the fork: a thread must not be half-way through an import in a forked copy).
        # Never for a run whose every hash is cached: it may make no table at all.
        preload = threading.Thread(target=self.preload, daemon=True, name="preload")
        with progress_bar(len(self.paths), self.desc, self.progress) as bar, \
                Engine(workers=self.workers, scheduler=self.scheduler, setup=setup, warm_up=warm_up,
                       started=preload.start, same_cpu=self.same_cpu) as engine:
            def prepared(number: int):
                before = cache.rejected
                job = prepare_job(number, self.paths[number], plan, self.infos, cache, file_salt,
                                  self.previews if number == 0 else frozenset(), known, self.forms)
                rejected[number] = cache.rejected - before
                if not isinstance(job, Ready) and job.needs == {}:  # previews alone: one image's edits,
                    job = Ready(process(build_state(plan, self.hashers), job))  # not worth a worker
                return job

            def jobs():
                """(job, its size in pixels) per image. With several workers, large images go first
                within a few windows of their place (see largest_first); their outcomes are put back in
                the images' order here (in_order). Images whose hashes are all cached need no worker,
                so up to the first image with work the order is the images' own and no image is sized
                (a rerun over a full cache reads no header: Pillow's plugins and 91 headers were a
                sixth of such a rerun); those go alone (ALONE), as does every image when this process
                does the work."""
                for number in range(len(self.paths)):
                    job = prepared(number)
                    yield job, ALONE
                    if engine.parallel and not isinstance(job, Ready):
                        break
                else:
                    return
                rest = number + 1
                for offset, size in largest_first(self.paths[rest:], LOOKAHEAD_WINDOWS * engine.window):
                    yield prepared(rest + offset), size

            def store(result) -> None:
                """Each image's new results into the cache as soon as they are back, before the images
                ahead of it are (see Engine.map): a run stopped now keeps them."""
                for outcome in each_outcome([result]):
                    self._seen(outcome.entries)
                    if outcome.record is not None and outcome.entries:  # computed here or by a worker
                        cache.put_image((known.get(outcome.number, ("", {}))[0], file_salt, outcome.record),
                                        {self.keys[hid]: items for hid, items in outcome.entries.items()},
                                        outcome.record.image)

            for outcome in in_order(each_outcome(engine.map(process_all, sent_together(jobs()), finished=store))):
                path = self.paths[outcome.number]
                cached = known.pop(outcome.number, ("", {}))[1]
                rejected_here = rejected.pop(outcome.number, 0)
                if outcome.record is not None:
                    self.use.add(outcome.record.image, cached, outcome.entries, rejected_here)
                bar.set_postfix_str(source_name(path), refresh=False)
                yield path, outcome, cached
                bar.update()
            self.engine = engine.kind  # (known once the images are done: whether any work was sent)
            if engine.restarts:
                self.notes.append("a local worker process died (killed, or out of memory)"
                                  + (" once" if engine.restarts == 1 else f" {engine.restarts} times")
                                  + "; the images its pool held were hashed again by new workers")
            if preload.ident is not None:
                preload.join()  # the report needs those modules, and forks only once this process is alone


def unlisted_row(folder: str, reason: str) -> dict:
    """A folder among the images that could not be listed, as a row of errors.csv: its files are
    not in the run, and the exit status says so."""
    return {"image": display_path(folder), "image_id": "", "stage": "list",
            "reason": f"cannot list this folder ({reason}), so its files are left out"}


LOOKAHEAD_WINDOWS = 8  # how far ahead largest_first looks, in the engine's windows
TOGETHER_PIXELS = 1 << 19  # small images go to a worker together, up to this many pixels (8 of 256x256)
TOGETHER_MOST = 32  # and at most this many images
TOGETHER_BYTES = 1 << 22  # and files of at most this many bytes in all (few pixels may come in a large file)
ALONE = TOGETHER_PIXELS  # the size of an image that goes alone


def sent_together(sized_jobs):
    """The jobs as they go to the workers: runs of small images as one job (a list), up to
    TOGETHER_PIXELS (by the sizes largest_first read), TOGETHER_MOST images or TOGETHER_BYTES of
    their files (what this process holds while they are out); a larger image or file alone.
    Each job sent costs this process a message each way, a future and the pool's threads waking.
    Sent one by one, 3,000 images of 256x256 took this process (the whole run's share of it) 12 to
    15 s of CPU time; sent together, 10 to 11 s: about 1.2 ms an image less, where a worker spends
    about 12 ms on each, on the cores the workers need. A `Ready` outcome (nothing to compute) is
    not sent: it passes at once, after the run gathered so far (so that no outcome waits long for
    one before it, in in_order). A worker still does one image's work at a time."""
    together, pixels, held = [], 0, 0
    for job, size in sized_jobs:
        if isinstance(job, Ready):
            if together:
                yield together
                together, pixels, held = [], 0, 0
            yield job
            continue
        data = len(job.data or b"")
        if together and (pixels + size > TOGETHER_PIXELS or held + data > TOGETHER_BYTES):
            yield together
            together, pixels, held = [], 0, 0
        together.append(job)
        pixels += size
        held += data
        if len(together) >= TOGETHER_MOST or pixels >= TOGETHER_PIXELS or held >= TOGETHER_BYTES:
            yield together  # full: it goes now, not when the next job is ready (the first starts the workers)
            together, pixels, held = [], 0, 0
    if together:
        yield together


def each_outcome(results):
    """The engine's results one outcome at a time: a job sent (a list of images) gave one per image; a
    Ready outcome is itself."""
    for result in results:
        if isinstance(result, list):
            yield from result
        else:
            yield result


def largest_first(paths: list[str], lookahead: int):
    """(number, size) of the paths in the order to send them: each time the largest image (work_size) among
    the next `lookahead` not yet sent, unless one has waited `lookahead` places already (it goes
    then). A large image (seconds of work for a 13-megapixel photograph) starts while the other
    workers still have smaller ones to do, instead of alone at the end; no image goes more than
    `lookahead` places from its own, so the outcomes waiting to be put back in order (`in_order`)
    stay few."""
    import heapq

    heap: list[tuple[int, int]] = []  # (-size, number) of the numbers seen; those sent leave lazily
    sizes: dict[int, int] = {}  # the size of each number seen and not yet sent
    sent: set[int] = set()  # the numbers sent at or above `low`
    low = seen = 0  # every number below `low` is sent; below `seen`, in the heap
    for step in range(len(paths)):
        while seen < min(len(paths), step + lookahead):
            sizes[seen] = work_size(paths[seen])
            heapq.heappush(heap, (-sizes[seen], seen))
            seen += 1
        if low + lookahead <= step:  # it has waited long enough
            number = low
        else:
            number = heapq.heappop(heap)[1]
            while number < low or number in sent:
                number = heapq.heappop(heap)[1]
        sent.add(number)
        while low in sent:
            sent.discard(low)
            low += 1
        yield number, sizes.pop(number)


def in_order(outcomes):
    """The outcomes (each with its `number`, each number once) in the numbers' order."""
    held: dict[int, ImageOutcome] = {}
    expected = 0
    for outcome in outcomes:
        held[outcome.number] = outcome
        while expected in held:
            yield held.pop(expected)
            expected += 1


class _Bar(tqdm):
    """tqdm without its monitor thread (which only nudges bars that stall): a process with one thread
    may fork safely, and the report draws its figures in two processes then (report.draw)."""

    monitor_interval = 0


LOG_EVERY = 60.0  # seconds between the progress lines written where stderr is no terminal


def progress_bar(total: int, desc: str, progress: bool | None) -> tqdm:
    """The pass's progress on stderr: a bar (True, or None on a terminal), nothing (False), or, in
    the command-line process, for None where stderr is a log file or a pipe (`run ... 2> log`,
    nohup, a batch job), at most a line a minute as images finish, of a pass that lasts longer
    (_Lines): a bar there is one line rewritten with carriage returns, and none at all told a long
    job's log nothing until its end. (A Python session's None stays what the API says: a bar on a
    terminal, else nothing.)"""
    from harness import process

    terminal = progress is not None or getattr(sys.stderr, "isatty", lambda: False)()
    if terminal or not process.is_command_line():  # a Python session's None: a bar on a terminal only
        return _Bar(total=total, desc=desc, unit="image", disable=None if progress is None else not progress)
    return _Lines(total=total, desc=desc, unit="image", delay=LOG_EVERY, mininterval=LOG_EVERY, leave=False,
                  bar_format="{desc}: {percentage:3.0f}% {n_fmt}/{total_fmt} images "
                             "[{elapsed} elapsed, {remaining} left, {rate_fmt}{postfix}]")


class _Lines(_Bar):
    """tqdm's figures as whole lines: one when tqdm would redraw (`mininterval` apart, the first
    after `delay`), and a last one at the end of a pass that wrote any and not yet its total; a
    shorter pass writes none."""

    def display(self, msg=None, pos=None):
        if msg == "":  # the clearing of a bar that does not stay (leave=False): lines need none
            return False
        self.fp.write(self.__str__() + "\n")
        self.fp.flush()
        return True

    def close(self):
        if not self.disable and self.last_print_t >= self.start_t + self.delay and self.last_print_n < self.n:
            # it has written a line, not yet the last
            self._ema_dt = lambda: None  # the last line's rate: the whole pass's, as tqdm's own last bar
            self.display()
        super().close()


def preload_tables() -> None:
    """Import what making the tables needs (pandas, pyarrow: half a second) while the workers hash."""
    try:
        import harness.impostors  # noqa: F401  (pandas)
        import pyarrow.parquet  # noqa: F401
    except ImportError:  # the tables will say so themselves
        pass


def preload_report() -> None:
    """preload_tables, and the report's modules (matplotlib: most of a second) and its first figure's
    fonts and caches (figures.warm_up)."""
    preload_tables()
    try:
        import harness.figures
        import harness.summary  # noqa: F401

        harness.figures.warm_up()
    except Exception:  # only a head start: the report draws, and says what fails, itself
        pass


def prepare_job(number: int, path: str, plan: Plan, infos, cache: HashCache, file_salt: str, previews: frozenset,
                known: dict, forms: dict):
    """Read one source file (once, bounded) and find what the cache holds for it: a `Ready`
    outcome when nothing is left to compute (or the file cannot be read), else the job, which
    carries the file's bytes, so no worker reads a file and no file is read twice."""
    try:
        data = read_source(path, plan.max_pixels)
    except ImageError as exc:
        return Ready(ImageOutcome(number, None, str(exc)))
    file_digest = hashlib.sha256(data if data is not None else path.encode("utf-8", "surrogateescape")).hexdigest()
    record = cache.get_file(file_digest, file_salt)
    needs, cached = None, {}
    if record is not None:
        needs = {}
        for info in infos:
            if info.status != OK:
                continue
            found = cache.get_image(info.key, record.image, forms.get(info.id))
            missing = frozenset(item for item in plan.items if item not in found)
            if missing and not info.batch_invariant:
                missing = frozenset(plan.items)  # its batches must be those of a fresh run
            if missing:
                needs[info.id] = missing
            cached[info.id] = {item: entry for item, entry in found.items() if item not in missing}
    known[number] = (file_digest, cached)
    if needs == {} and not previews:
        return Ready(ImageOutcome(number, record))
    return ImageJob(number, path, data, needs, previews)  # previews need the pixels, even when all is cached


# --- collecting the results, image by image --------------------------------------------

class Growing:
    """An array that grows at its end, in chunks: what it holds is never copied as it grows (a
    doubling buffer would hold three times the data while it copies), and memory is the data's own
    (a few bytes a row), not a small array and its overhead for every image. `take()` hands the
    whole as one array and lets the chunks go.

    With `capacity` (the most rows it can be given, when that is known), the first chunk has room
    for all of them: only the pages filled take memory, and `take()` hands that chunk's filled part
    itself, with no copy (the distance table's 14 MiB at 100,000 images)."""

    CHUNK_BYTES = 1 << 20

    def __init__(self, dtype=None, capacity: int | None = None):
        self.dtype = dtype
        self.capacity = capacity
        self.full: list[np.ndarray] = []  # filled chunks
        self.chunk: np.ndarray | None = None  # the chunk being filled
        self.used = 0  # rows of `chunk` filled
        self.size = 0

    def extend(self, values) -> None:
        values = np.asarray(values, dtype=self.dtype)
        start = 0
        while start < len(values):
            if self.chunk is None or self.used == len(self.chunk):
                if self.chunk is not None:
                    self.full.append(self.chunk)
                row_bytes = max(1, values[:1].nbytes)
                rows = self.capacity if self.capacity and self.chunk is None and not self.full else \
                    max(64, self.CHUNK_BYTES // row_bytes)
                self.chunk = np.empty((rows, *values.shape[1:]), values.dtype)
                self.used = 0
            count = min(len(values) - start, len(self.chunk) - self.used)
            self.chunk[self.used:self.used + count] = values[start:start + count]
            self.used += count
            start += count
        self.size += len(values)

    def take(self) -> np.ndarray | None:
        """Everything added, as one array (None if nothing was); the object is empty after."""
        if self.chunk is None:
            return None
        parts = self.full + [self.chunk[:self.used]]
        if len(parts) > 1:
            whole = np.concatenate(parts)
        else:  # the reserved chunk's unfilled pages were never touched: no memory to give back
            whole = parts[0] if self.capacity else parts[0].copy()
        self.full, self.chunk, self.used, self.size = [], None, 0, 0
        return whole


class DistanceRows:
    """The distance table as it grows. Every image adds one row per hasher and pair, in that order, so
    a row's image, pair and hasher follow from its place: only its distance (8 bytes) and its error's
    code (4 bytes) are kept, and `frame()` makes the other columns, as categorical codes, at the end."""

    def __init__(self, hashers: list[HasherInfo], pairs: list[PairSpec], images: int | None = None):
        """`images`: the most images there can be (the sources listed), when known."""
        self.hashers, self.pairs = hashers, pairs
        rows = images * len(hashers) * len(pairs) if images else None
        self.distance = Growing(np.float64, rows)
        self.error = Growing(np.int32, rows)
        self.reasons: dict[str, int] = {"": 0}  # error text -> code; "" (no error) is 0

    def code(self, reason: str) -> int:
        return self.reasons.setdefault(reason, len(self.reasons))

    def add(self, distance: np.ndarray, errors: np.ndarray) -> None:
        """One image's rows of one hasher: a distance and an error code per pair."""
        self.distance.extend(distance)
        self.error.extend(errors)

    def frame(self, names: list[str], ids: pd.CategoricalDtype) -> pd.DataFrame:
        """The table; `names` and `ids` (the impostors' categories: 100,000 ids are indexed once) are
        the images' in the order they were added. Its columns are as storage.normalise leaves them
        (distances to 6 digits; categories in order of first appearance), so that copies nothing."""
        import pandas as pd

        from harness.storage import round6

        hashers, pairs, count = len(self.hashers), len(self.pairs), len(names)
        per_image = hashers * pairs
        distance = self.distance.take()
        distance = distance if distance is not None else np.zeros(0)
        error = self.error.take()
        maxima = np.array([info.distance_max for info in self.hashers], np.float64)
        norm = (distance.reshape(count, hashers, pairs) / maxima[None, :, None]).reshape(-1)
        np.clip(norm, 0.0, 1.0, out=norm)
        image_codes, image_names = pd.factorize(np.asarray(names, dtype=object))  # two files may share a name

        def categorical(codes, categories):
            return pd.Categorical.from_codes(codes, dtype=text_dtype(categories))

        def per_pair(texts):  # each pair's text, the same for every image and hasher
            codes, categories = pd.factorize(np.asarray(texts, dtype=object))
            return categorical(np.tile(narrow(codes, len(categories)), count * hashers), categories)

        def narrow(codes, categories: int):  # the codes' own type before they are repeated a million times
            return codes.astype(code_dtype(categories), copy=False)

        id_codes = np.repeat(narrow(np.arange(count), count), per_image)
        # Names are usually distinct, and then a row's image and id have the same code: one array for both.
        name_codes = id_codes if len(image_names) == count else np.repeat(narrow(image_codes, len(image_names)),
                                                                         per_image)
        columns = {
            "image": categorical(name_codes, image_names),
            "image_id": pd.Categorical.from_codes(id_codes, dtype=ids),
            "family": per_pair([p.family for p in self.pairs]),
            "value": per_pair([_text(p.value) for p in self.pairs]),
            "label": per_pair([p.label for p in self.pairs]),
            "hasher": categorical(np.tile(np.repeat(narrow(np.arange(hashers), hashers), pairs), count),
                                  [info.id for info in self.hashers]),
            "distance": round6(distance, in_place=True),  # `norm` was made from it before it was rounded
            "distance_norm": round6(norm, in_place=True),
            "error": categorical(narrow(error if error is not None else np.zeros(0, np.int32), len(self.reasons)),
                                 self.reasons),
        }
        return pd.DataFrame(columns, columns=DISTANCE_COLUMNS, copy=False)


class Rows:
    """One hasher's rows of many images, appended image by image (see Growing), -1 where an image
    has no hash."""

    def __init__(self):
        self.array = Growing()
        self.index = Growing(np.int64)
        self.errors: dict[int, str] = {}

    def add(self, hashed: Hashed, items) -> None:
        items = np.asarray(items, dtype=np.int64)
        rows = hashed.rows[items]
        ok = rows >= 0
        positions = np.full(len(items), -1, np.int64)
        positions[ok] = self.array.size + np.arange(int(ok.sum()))
        if ok.any():
            self.array.extend(hashed.array[rows[ok]])
        for k in np.flatnonzero(~ok):
            self.errors[self.index.size + int(k)] = hashed.errors.get(int(items[k]), "no hash")
        self.index.extend(positions)

    def hashed(self) -> Hashed:
        array = self.array.take()
        index = self.index.take()
        return Hashed(array if array is not None and len(array) else None,
                      index if index is not None else np.zeros(0, np.int64), dict(self.errors))


class Sources:
    """The readable, distinct source images, as columns (a list of dicts would cost a kilobyte an image)."""

    def __init__(self):
        self.names: list[str] = []
        self.ids: list[str] = []
        self.origins: list[str] = []
        self.height, self.width = Growing(np.int64), Growing(np.int64)
        self.notes: dict[int, str] = {}  # only the images that have some
        self.extras: dict[str, dict[int, object]] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, name: str, record: FileRecord, path: str) -> None:
        """`path`: the source as the run lists it (a reference, not a copy; shown as text at the end)."""
        if record.notes:
            self.notes[len(self.ids)] = "; ".join(record.notes)
        self.names.append(name)
        self.ids.append(record.image)
        self.origins.append(path)
        self.height.extend([record.height])
        self.width.extend([record.width])

    def extra(self, column: str, value) -> None:
        """A side output of the image added last (PDQ's quality)."""
        self.extras.setdefault(column, {})[len(self.ids) - 1] = value

    def columns(self) -> dict:
        count = len(self.ids)
        return {"name": self.names, "id": self.ids, "origin": [display_path(path) for path in self.origins],
                "height": self.height.take() if count else [], "width": self.width.take() if count else [],
                "notes": [self.notes.get(k, "") for k in range(count)],
                **{column: [values.get(k) for k in range(count)] for column, values in self.extras.items()}}


class Collector:
    """Takes each image's outcome in order and keeps what the tables and the impostors need."""

    def __init__(self, config: Config, plan: Plan, infos: list[HasherInfo], hashers: dict, salt: str = "",
                 names: dict[str, str] | None = None):
        """`names`: what the tables call each listed source (images.source_names), when known; their
        number is the most images the tables can have."""
        self.config, self.plan, self.hashers = config, plan, hashers
        self.infos = infos
        self.salt = salt
        # Everything the tables are computed from, as it arrives (see `inputs`).
        self.digest = hashlib.sha256()
        self.item_index = {item: k for k, item in enumerate(plan.items)}
        self.chain_number = {chain_identity(chain): k for k, chain in enumerate(plan.chains)}
        pairs = config.pairs
        # Each pair's two sides as item numbers (0: the untouched image).
        self.side_a = np.array([self._item(p.a) for p in pairs], np.int64)
        self.side_b = np.array([self._item(p.b) for p in pairs], np.int64)
        self.edited = [k for k, p in enumerate(pairs) if p.b != UNTOUCHED]  # pairs with an edited copy
        self.names = names or {}
        self.distances = DistanceRows(infos, pairs, len(names) if names is not None else None)
        self.failed_distances = 0  # distances that failed (not those of unavailable hashers)
        self.sources = Sources()
        self.errors: list[dict] = []
        self.duplicates: list[str] = []
        self.seen: set[str] = set()
        self.previews: list = []
        self.preview_pairs = preview_pairs(config.pairs) if config.previews else []  # the pairs previews.png shows
        # Per hasher: the untouched images' rows, and each image's edited copies' rows (by pair).
        self.source_rows = {hid: Rows() for hid in hashers}
        self.edited_rows = {hid: Rows() for hid in hashers}
        self.extras: dict[str, dict[str, list]] = {}
        self.forms: dict[str, tuple] = {}  # per hasher: its first image's rows' (dtype, shape), the others' too

    def _item(self, chain) -> int:
        return 0 if chain == UNTOUCHED else 1 + self.chain_number[chain_identity(chain)]

    def preview_items(self) -> frozenset[str]:
        """The items of the first image whose thumbnails previews.png shows (none without previews)."""
        return frozenset(self.plan.items[self._item(side)] for pair in self.preview_pairs for side in (pair.a, pair.b))

    def add(self, path: str, outcome: ImageOutcome, cached: dict) -> None:
        name = self.names.get(path) or source_name(path)
        record = outcome.record
        self.digest.update(json.dumps([path, outcome.error, None if record is None else [
            record.image, record.height, record.width, list(record.notes)]]).encode("utf-8", "surrogateescape"))
        if outcome.record is None:
            self.errors.append({"image": display_path(path), "image_id": "", "stage": "read",
                                "reason": outcome.error})
            return
        record = outcome.record
        if record.image in self.seen:
            self.duplicates.append(display_path(path))  # the file: names (stems) need not be unique
            return
        self.seen.add(record.image)
        self.sources.add(name, record, path)
        reported: set[tuple[str, str]] = set()
        for info in self.infos:
            hid = info.id
            if info.status == UNAVAILABLE:  # every cell says so
                pairs = len(self.side_a)
                self.distances.add(np.full(pairs, np.nan), np.full(pairs, self.distances.code(UNAVAILABLE), np.int32))
                continue
            hasher = self.hashers[hid]
            entries = {**cached.get(hid, {}), **outcome.entries.get(hid, {})}
            hashed = self._decode(hasher, [entries.get(item) for item in self.plan.items], self.forms.get(hid))
            if hashed.array is not None:
                self.forms.setdefault(hid, (hashed.array.dtype, hashed.array.shape[1:]))
            self._digest_hashed(hasher, hashed)
            for k, item in enumerate(self.plan.items):  # each failure once per image and stage
                reason = hashed.errors.get(k)
                if reason is None:
                    continue
                stage, text = ("transform", reason[len("transform: "):]) if reason.startswith("transform: ") \
                    else (f"hash {hid}", reason)
                if (stage, text) not in reported:
                    reported.add((stage, text))
                    self.errors.append({"image": name, "image_id": record.image, "stage": stage, "reason": text})
            failed = self._score(hasher, hashed)
            if failed is not None and (f"hash {hid}", failed) not in reported:
                # A distance that raised for this image's pairs is a problem of its own: errors.csv lists
                # every problem (exit 1 says so), not only the error column of the distances it cost.
                reported.add((f"hash {hid}", failed))
                self.errors.append({"image": name, "image_id": record.image, "stage": f"hash {hid}",
                                    "reason": failed})
            self._keep(hid, hashed)
            own = entries.get(SOURCE)
            for key, value in (own.extras if own is not None else {}).items():  # side outputs (PDQ's quality)
                self.sources.extra(f"{hid}.{key}", value.item() if hasattr(value, "item") else value)
        if outcome.previews and not self.previews:
            thumbs = outcome.previews
            pick = lambda chain: thumbs.get(self.plan.items[self._item(chain)])
            self.previews = [(pair, pick(pair.a), pick(pair.b)) for pair in self.preview_pairs]

    def _digest_hashed(self, hasher, hashed: Hashed) -> None:
        """One image's hashes by one hasher, into the digest: one update per image and hasher, so it
        costs nothing next to the hashing, even at 100,000 images."""
        update = self.digest.update
        update(hashed.rows.astype(np.int64).tobytes())
        update(json.dumps(sorted(hashed.errors.items())).encode("utf-8", "surrogateescape"))
        for key in sorted(hashed.extras):
            values = np.asarray(hashed.extras[key])
            update(key.encode() + (values.dtype.str + str(values.shape)).encode())
            update(values.tobytes() if values.dtype != object else repr(values.tolist()).encode())
        array = hashed.array
        if array is None:
            return
        if array.dtype == object:  # rows that are objects (ImageHash's multi-hash): as the cache stores them
            for row in array:
                plain = np.ascontiguousarray(hasher.encode_row(row))
                update((plain.dtype.str + str(plain.shape)).encode() + plain.tobytes())
        else:
            update((array.dtype.str + str(array.shape)).encode() + np.ascontiguousarray(array).tobytes())

    def inputs(self, notes: list[str]) -> str:
        """A digest of everything the run's tables are computed from: the config (its output directory
        aside), harness's code, the library versions, the hashers, the notes and every image's
        record and hashes. Two runs with the same `inputs` write the same tables and figures."""
        from harness.provenance import code_digest

        config = {k: v for k, v in self.config.reproducible().items() if k != "output"}
        infos = [vars(info) for info in self.infos]
        final = self.digest.copy()
        final.update(json.dumps([config, infos, notes, self.salt, code_digest()], sort_keys=True,
                                default=str).encode("utf-8", "surrogateescape"))
        return final.hexdigest()

    def failures(self) -> int:
        """Problems with images, transforms or hashers, plus failed distances (not unavailable hashers):
        what `Results.failures` counts."""
        return self.failed_distances + len(self.errors)

    @staticmethod
    def _decode(hasher, entries: list[Entry | None], form: tuple | None = None):
        """The image's items as one Hashed; an item with no entry (cannot happen unless a worker
        misbehaved) or rows that do not fit together, or not the other images' `form` (dtype, shape
        of a row), are failures, never a crash. (The cache's lookup recomputes entries of another
        form than the hasher declares; this is for the forms it does not.)"""
        filled = [entry if entry is not None else Entry(None, "no result") for entry in entries]
        try:
            hashed = from_entries(hasher, filled)
            array = hashed.array
            if form is not None and array is not None and (array.dtype, array.shape[1:]) != form:
                raise ValueError(f"rows of {array.dtype} {array.shape[1:]}, where the first image's are "
                                 f"{form[0]} {form[1]}")
            return hashed
        except ValueError as exc:
            return from_entries(hasher, [Entry(None, f"stored hashes do not fit together ({exc})")] * len(filled))

    def _score(self, hasher, hashed) -> str | None:
        """The image's pairs' distances, into the table; why its distance failed (a plugin's), or None."""
        pairs = len(self.side_a)
        rows = hashed.rows
        ra, rb = rows[self.side_a], rows[self.side_b]
        ok = (ra >= 0) & (rb >= 0)
        distance = np.full(pairs, np.nan)
        errors = np.zeros(pairs, np.int32)  # 0: no error
        for k in np.flatnonzero(~ok):
            a, b = int(self.side_a[k]), int(self.side_b[k])
            reason = hashed.errors.get(a if rows[a] < 0 else b, "no hash")
            errors[k] = self.distances.code(reason if reason.startswith("transform: ") else f"hash: {reason}")
        failed = None
        if ok.any():
            try:
                distance[ok] = hasher.checked_distance(hashed.array[ra[ok]], hashed.array[rb[ok]])
            except HashError as exc:  # a plugin's distance that misbehaves: these pairs say so
                failed = str(exc)
                errors[ok] = self.distances.code(f"hash: {failed}")
        self.failed_distances += int(np.count_nonzero(errors))
        self.distances.add(distance, errors)
        return failed

    def _keep(self, hid: str, hashed) -> None:
        """The untouched image's row and, for transformed impostors, its edited copies' rows."""
        self.source_rows[hid].add(hashed, [0])
        if self.config.impostors.transformed and self.edited:
            self.edited_rows[hid].add(hashed, self.side_b[self.edited])

    def result(self, notes: list[str], engine: str) -> RunResult:
        import pandas as pd

        from harness.impostors import Vocabulary, source_impostors, transformed_impostors

        config = self.config
        if self.duplicates:
            one = len(self.duplicates) == 1
            notes.append(f"{len(self.duplicates)} {'image has' if one else 'images have'} the same pixels as another "
                         "and count once: "
                         + ", ".join(self.duplicates[:5]) + (", ..." if len(self.duplicates) > 5 else ""))
        if len(self.sources) < 2:
            running = {info.id for info in self.infos}
            given = ", ".join(h for h in config.detection.thresholds if h in running)
            notes.append("one image only: no impostor pairs, so no thresholds or detection rates"
                         + (f" (the thresholds given for {given} are not scored either: each detection rate comes "
                            "with its false-positive rate, which needs a second image)" if given else ""))
        rng = np.random.default_rng(config.seed)
        source_hashed = {hid: rows.hashed() for hid, rows in self.source_rows.items()}
        vocabulary = Vocabulary(self.sources.ids, self.hashers, config.pairs)
        impostor_frames = [source_impostors(vocabulary, source_hashed, self.hashers, config.impostors.max_pairs,
                                            rng)]
        if config.impostors.transformed and len(self.sources) > 1 and self.edited:
            edited = {hid: rows.hashed() for hid, rows in self.edited_rows.items()}
            impostor_frames += transformed_impostors(vocabulary, config.pairs, self.edited, edited, source_hashed,
                                                     self.hashers, config.impostors.per_variant, rng)
        distances = self.distances.frame(self.sources.names, vocabulary.dtypes["image_id"])
        # (each part has the impostor table's columns; one part needs no concatenation, which would copy it)
        impostors = impostor_frames[0] if len(impostor_frames) == 1 else pd.concat(impostor_frames, ignore_index=True)
        del impostor_frames
        error_table = pd.DataFrame(self.errors, columns=ERROR_COLUMNS)
        failed = distances["error"].ne("") & distances["error"].ne(UNAVAILABLE)
        if failed.any():
            notes.append(f"{int(failed.sum())} of {len(distances)} distances failed; see the error column")
        if len(error_table):
            count = len(error_table)
            notes.append(f"{count} {'problem' if count == 1 else 'problems'} with images, transforms or hashers; "
                         "see errors.csv")
        return RunResult(config, distances, impostors, error_table, self.infos, self.sources.columns(), notes,
                         self.previews, engine)


def _text(value) -> str:
    from harness.config import format_value

    return format_value(value)
