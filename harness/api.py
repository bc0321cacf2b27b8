"""The Python API: one call from a config to every table, in memory.

    import harness
    results = harness.evaluate("configs/collection.yaml", hashers=["pHash"])
    results.thresholds          # a DataFrame
    results.save("reports/mine")
    again = harness.load("reports/mine")

The flow is one way: config -> runner (distances, impostors) -> metrics (every derived
table) -> report (files). `evaluate` stops before the report; `Results.save` is the
report; `load` reads a saved run and recomputes its metrics from its tables.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Union

from harness.config import Config, Snapshot
from harness.errors import HarnessError, shortened
from harness.schema import ERROR_COLUMNS, UNAVAILABLE, release_lookups

if TYPE_CHECKING:  # pandas and the metrics are imported when tables are made, not before the image pass
    import pandas as pd

    from harness.metrics import Metrics
    from harness.runner import Pass

# What `evaluate` accepts: a config as a YAML path, a dict or a parsed Config; images as one source
# or a list or tuple of them; hashers as one id or a list or tuple of them.
PathArgument = Union[str, os.PathLike[str]]
ConfigArgument = Union[PathArgument, dict, Config]
ImagesArgument = Union[PathArgument, list[PathArgument], tuple[PathArgument, ...]]
HashersArgument = Union[str, list[str], tuple[str, ...]]

# The images table's columns that name the images (runner.Sources.columns), which categories share.
TEXT_SOURCE_COLUMNS = ("name", "id")
HASHER_COLUMNS = ["hasher", "name", "distance", "distance_max", "status", "reason", "cpu_exact", "params"]


@dataclass
class Results:
    """Everything a run computed, as DataFrames, with its provenance.

    `distances`: one row per (image, pair, hasher); `impostors`: distances between different
    images; `errors`: every image, transform or hash that failed; `images`: each source image;
    `hashers`: each hasher's distance, maximum and status. The derived tables (`table`,
    `thresholds`, `detection`, `roc`, `retrieval`, `verdicts`) come from `metrics`. `config` is the
    resolved config, which `evaluate` (or `python -m harness run`) accepts and which reproduces these
    tables: a copy of the results' own each time it is read, so editing it changes no record.
    """

    config: dict = Snapshot()  # a copy each time it is read (see config.Snapshot)
    provenance: dict
    distances: pd.DataFrame
    impostors: pd.DataFrame
    errors: pd.DataFrame
    images: pd.DataFrame
    hashers: pd.DataFrame
    notes: list[str]
    metrics: Metrics
    previews: list = field(default_factory=list, repr=False)  # (pair, A, B) thumbnails of the first image's drawn pairs
    cache: str | None = field(default=None, repr=False)  # the hash cache the results were computed with
    # The directory `load` read these results from: its previews.png goes with them when they are
    # saved (the thumbnails it shows are not kept, so it cannot be drawn again).
    loaded_from: str | None = field(default=None, repr=False)

    @property
    def table(self) -> pd.DataFrame:
        """The article's table as table.csv shows it: a hasher's cells are text (the median distance
        as printed, "unavailable" or "error"); the numbers are in `distances`."""
        return self.metrics.table

    @property
    def thresholds(self) -> pd.DataFrame:
        return self.metrics.thresholds

    @property
    def detection(self) -> pd.DataFrame:
        return self.metrics.detection

    @property
    def roc(self) -> pd.DataFrame:
        return self.metrics.roc

    @property
    def retrieval(self) -> pd.DataFrame:
        return self.metrics.retrieval

    @property
    def verdicts(self) -> pd.DataFrame:
        return self.metrics.verdicts

    @property
    def failures(self) -> int:
        """Problems with images, transforms or hashes, plus failed distances (not unavailable hashers)."""
        failed = self.distances["error"].ne("") & self.distances["error"].ne(UNAVAILABLE)
        return int(failed.sum()) + len(self.errors)

    def save(self, out_dir: str | os.PathLike[str]) -> None:
        """Write what `python -m harness run` writes to `out_dir` (a directory path: str or
        pathlib.Path), as one consistent set: the derived tables, figures and summary are made again
        from `distances` and `impostors` as they are now, so a frame edited since the results were
        made is saved with the tables that follow from it, as `load` reads them back; an edit that
        leaves them no run's tables is refused (checked_tables)."""
        from harness import report, storage

        out_dir = path_argument("out_dir", out_dir)
        images = self.config.get("images", []) if isinstance(self.config, dict) else []
        ran_in = self.provenance.get("cwd")  # relative entries and paths are the run's
        with storage.removed_if_unused(out_dir):  # Ctrl-C while saving leaves no folder it made
            listed = images if isinstance(images, list) else []
            storage.check_output_dir(out_dir, images=storage.anchored(listed, ran_in))
            if "origin" in self.images:
                storage.check_sources_outside(storage.anchored(self.images["origin"].astype(str), ran_in), out_dir)
            distances, impostors = self.checked_tables()
            current = metrics_of(self.config, distances, impostors, "<results>")
            with storage.sole_writer(out_dir):  # the saved config names this directory: running it again writes here
                report.write(dataclasses.replace(self, config={**self.config, "output": out_dir}, distances=distances,
                                                 impostors=impostors, metrics=current), out_dir)

    def checked_tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The distances and impostors as save writes them, checked as `load` checks a saved set:
        an edit that leaves them a run's tables (a hasher's or a family's rows dropped, distances
        changed) passes; one that does not (an image's rows cut short, a distance emptied without an
        error) is a HarnessError, not a set that `load` refuses, or a report that fails half-way."""
        from harness import storage

        try:
            distances = storage.normalise(storage.DISTANCES, self.distances)
            impostors = storage.normalise(storage.IMPOSTORS, self.impostors)
            for name, frame in ((storage.DISTANCES, distances), (storage.IMPOSTORS, impostors)):
                storage.check_long("<results>", name, frame)
            storage.check_listed("<results>", distances, impostors, self.images, self.hashers)
        except RESHAPED as exc:
            raise not_run_tables("<results>", exc) from None
        return distances, impostors

    def __repr__(self) -> str:
        name = self.config.get("name")  # a config's name has no length limit: a repr has one line
        return (f"Results({(shortened(name, 80) if isinstance(name, str) else name)!r}: "
                f"{len(self.images):,} images, "  # two files may share a stem
                f"{len(self.metrics.table):,} pairs, hashers {[shortened(h, 80) for h in self.hashers['hasher']]}, "
                f"{len(self.impostors):,} impostor distances, {self.failures:,} failures)")


def evaluate(config: ConfigArgument, *, images: ImagesArgument | None = None,
             hashers: HashersArgument | None = None, workers: int | None = 1,
             cache: str | os.PathLike[str] | None = None, strict: bool = False, progress: bool | None = False,
             scheduler: str | None = None) -> Results:
    """Run a config and return its Results; writes nothing but the hash cache (if `cache` is a path).
    `results.save(dir)` writes what `python -m harness run` writes.

    `config`: a YAML path (str or pathlib.Path), a dict shaped like a YAML config (paths may be
    pathlib.Path, lists tuples, numbers NumPy scalars), or a parsed `harness.config.Config`.
    `images`: image sources (a path, builtin:NAME or glob, or a list or tuple of them) that replace
    the config's (default None: the config's). `hashers`: a hasher id or a list of them, the only
    ones of the config's that run (default None: all). `workers`: worker processes (default 1,
    this process; None: one per core from 32 images on). `cache`: a hash cache file that keeps
    hashes across calls (default None, no cache). `strict`: a hasher that cannot run here (no
    TensorFlow, no weights) raises (default False: it is marked unavailable and the others run).
    `progress`: True shows a progress bar, None one when the output is a terminal (default False).
    `scheduler`: the address of a Dask scheduler to run the image work on, e.g. 'tcp://host:8786'
    (default None, no cluster). Raises harness.HarnessError (a config problem: harness.ConfigError)
    with the same one-line messages as the command line; a wrong-type argument is one naming it.
    """
    return image_pass(config, images=images, hashers=hashers, workers=workers, cache=cache, strict=strict,
                      progress=progress, scheduler=scheduler).results()


@dataclass
class Evaluation:
    """A config's images decoded, edited and hashed (through the cache), its tables not made yet:
    `results()` makes them. `inputs` digests everything they are made from, so a caller that finds
    the same digest beside a saved set (`python -m harness run` over its own output) knows the set
    would come out the same, byte for byte, without making it."""

    run: Pass
    provenance: dict
    cache: str | None

    @property
    def inputs(self) -> str:
        return self.run.inputs

    @property
    def failures(self) -> int:
        return self.run.failures

    @property
    def notes(self) -> list[str]:
        """What the pass noted (a hash cache replaced or dropped, unavailable hashers, ...)."""
        return self.run.notes

    def results(self) -> Results:
        return dataclasses.replace(from_run(self.run.result(), self.provenance), cache=self.cache)


def image_pass(config: ConfigArgument, *, images: ImagesArgument | None = None,
               hashers: HashersArgument | None = None, workers: int | None = 1,
               cache: str | os.PathLike[str] | None = None, strict: bool = False,
               progress: bool | None = False, scheduler: str | None = None, output: str | None = None,
               strict_advice: str = "or pass strict=False to run the other hashers") -> Evaluation:
    """`evaluate` up to its tables (see Evaluation); the same arguments, and `output`, the directory
    the results will be saved to (checked before any work to hold none of the images).
    `strict_advice` ends a strict run's unavailable-hasher error: how this caller's user turns
    `strict` off (the command line's is an option, not this argument)."""
    from harness import runner
    from harness.cluster import check_workers
    from harness.provenance import provenance

    parsed = resolve_config(config, images, hashers)
    workers = check_workers(workers)
    cache = check_run_options(cache=cache, scheduler=scheduler, progress=progress, strict=strict, workers=workers)
    started = provenance()  # the code and versions as the run starts
    passed = runner.image_pass(parsed, skip_unavailable=not strict, progress=progress, cache_path=cache,
                               workers=workers, scheduler=scheduler, output=output, advice=strict_advice)
    return Evaluation(passed, {**started, "engine": passed.engine,
                               "cpu_inexact_transforms": passed.cpu_inexact_transforms,
                               "files_read": passed.files_read, "cache": passed.cache}, cache)


def resolve_config(config, images=None, hashers=None):
    from harness.config import Config, load_config, parse_config

    images, hashers = strings_argument("images", images), strings_argument("hashers", hashers)
    if isinstance(config, (str, os.PathLike)):
        return load_config(os.fspath(config), images=images, hashers=hashers, hashers_option="hashers",
                           images_option="images")
    if isinstance(config, dict):
        return parse_config(config, "<dict>", images, hashers, hashers_option="hashers", images_option="images")
    if isinstance(config, Config):
        if images is None and hashers is None and config.plugins_imported:
            return config
        # Parsed without importing its plugins (as `validate` does): parse it again, importing them.
        return parse_config(config.raw, config.source, images, hashers, hashers_option="hashers",
                            images_option="images")
    raise HarnessError(f"config: expected a YAML path, a dict or a Config, got {type(config).__name__}")


def check_run_options(*, cache, scheduler, progress, strict=False, workers=1) -> str | None:
    """The API's other run arguments, checked as the command line's are (one line naming the
    argument, not a TypeError deep in the run): returns `cache` as a string path (or None).
    A count of `workers` (other than the default 1, or None: auto) and `scheduler` exclude each
    other, as --workers and --scheduler do: the cluster's workers do the work, and a count given for
    this machine would be ignored without a word."""
    from harness.errors import shown

    if scheduler is not None and workers not in (1, None):
        raise HarnessError(f"workers={shown(workers)} and scheduler exclude each other: a scheduler's own workers do "
                           "the work; leave out workers, or scheduler to run here")

    if (cache is not None and not isinstance(cache, (str, os.PathLike))) or cache == "":
        raise HarnessError(f"cache: expected a file path (or None for no cache), got {shown(cache)}")
    if scheduler is not None and (not isinstance(scheduler, str) or not scheduler.strip()):
        raise HarnessError(f"scheduler: expected a Dask scheduler's address such as 'tcp://host:8786' (or None), "
                           f"got {shown(scheduler)}")
    if progress is not None and not isinstance(progress, bool):
        raise HarnessError(f"progress: expected True, False or None, got {shown(progress)}")
    if not isinstance(strict, bool):
        raise HarnessError(f"strict: expected True or False, got {shown(strict)}")
    if cache is None:
        return None
    from harness import storage

    storage.check_cache_folder(os.fspath(cache), option="cache")
    return os.fspath(cache)


def path_argument(key: str, value) -> str:
    """A path argument of the API (a str or an os.PathLike such as pathlib.Path) as a str; anything
    else (None, a number, bytes) is a HarnessError naming the argument, before anything is written."""
    from harness.errors import shown

    path = os.fspath(value) if isinstance(value, os.PathLike) else value
    if not isinstance(path, str) or not path:
        raise HarnessError(f"{key}: expected a path (a str or pathlib.Path), got {shown(value)}")
    return path


def strings_argument(key: str, value) -> list[str] | None:
    """An `images=` or `hashers=` argument as a list of strings: one string (or path) is a list of
    one, as in a config; anything else is a HarnessError naming the argument."""
    from harness.errors import shown

    if value is None:
        return None
    items = [value] if isinstance(value, (str, os.PathLike)) else value
    if not isinstance(items, (list, tuple)):
        raise HarnessError(f"{key}: expected a list of strings, got {shown(value)}")
    items = [os.fspath(item) if isinstance(item, os.PathLike) else item for item in items]
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise HarnessError(f"{key}[{i}]: expected a string, got {shown(item)}")
    if not items:
        raise HarnessError(f"{key}: empty; leave it out to keep the config's {key}")
    return items


def from_run(result, provenance: dict) -> Results:
    """A runner's result as Results: tables in their saved form, metrics computed from them."""
    import pandas as pd

    from harness import metrics, storage

    # The texts stay the run's Python strings (pandas' text type would copy them into Arrow, and every
    # lookup back into Python objects); the impostors' and distances' categories share them.
    images = pd.DataFrame({column: pd.Series(values, dtype=object) if column in TEXT_SOURCE_COLUMNS else values
                           for column, values in result.sources.items()}).rename(
        columns={"name": "image", "id": "image_id"})
    result.sources = None  # its Python strings (a few hundred bytes an image) go; the table holds them
    distances = storage.normalise(storage.DISTANCES, result.distances)
    impostors = storage.normalise(storage.IMPOSTORS, metrics.name_impostors(result.impostors, images))
    errors = as_objects(result.errors.reindex(columns=ERROR_COLUMNS), ERROR_COLUMNS)
    hashers = hasher_table(result.hashers)
    config = result.config
    notes = list(result.notes) + [f"{config.source}: {problem}"
                                  for problem in metrics.unmatched_duplicates(config.impostors, images)]
    result.distances = result.impostors = None  # the raw tables go before the metrics' working copies come
    release_lookups(distances, impostors)
    return Results(config=config.reproducible(), provenance=provenance, distances=distances, impostors=impostors,
                   errors=errors, images=images, hashers=hashers, notes=notes,
                   metrics=metrics.compute(distances, impostors, config.detection, config.impostors),
                   previews=result.previews)


def as_objects(frame: pd.DataFrame, columns) -> pd.DataFrame:
    """`frame` with its text `columns` as Python objects, whatever pandas would infer: a run's tables
    keep the run's own strings (see from_run), and pandas' text type would differ between an empty
    errors table and a full one."""
    return frame.astype({column: object for column in columns if column in frame.columns})


def hasher_table(infos) -> pd.DataFrame:
    import json

    import pandas as pd

    return pd.DataFrame([{"hasher": h.id, "name": h.spec["name"], "distance": h.distance_kind,
                          "distance_max": float(h.distance_max), "status": h.status, "reason": h.reason,
                          "cpu_exact": "yes" if h.cpu_exact else "no",
                          "params": json.dumps({k: v for k, v in h.spec.items() if k != "name"})}
                         for h in infos], columns=HASHER_COLUMNS)


def load(out_dir: str | os.PathLike[str]) -> Results:
    """The Results saved in an output directory (by `run` or `Results.save`; a str or pathlib.Path),
    metrics recomputed. A damaged directory (a file missing, empty, cut short, of the wrong shape or
    type, or a long table naming a hasher or image its small tables do not list) is a HarnessError."""
    from harness import storage
    from harness.config import hasher_ids, settings_of_hashers

    out_dir = path_argument("out_dir", out_dir)
    if not os.path.isdir(out_dir):
        raise HarnessError(f"{out_dir}: " + ("not a directory" if os.path.exists(out_dir) else "no such directory"))
    storage.check_complete(out_dir)
    run = storage.read_json(out_dir, storage.RUN)
    source = os.path.join(out_dir, storage.RUN)
    check_run_record(run, source)
    # A run with --hashers by earlier code kept the settings of the hashers it left out.
    config = settings_of_hashers(run.get("config", {}), hasher_ids(run.get("config", {})))
    distances = storage.read_long(out_dir, storage.DISTANCES, run)
    impostors = storage.read_long(out_dir, storage.IMPOSTORS, run)
    provenance = {k: v for k, v in run.items() if k not in ("config", "hashers", "notes")}
    # The small tables in the types a run gives them (`from_run`), so that a loaded table equals it.
    images = as_objects(storage.read_small(out_dir, storage.IMAGES, ["image", "image_id"]), ["image", "image_id"])
    hashers = storage.read_small(out_dir, storage.HASHERS, ["hasher", "distance", "distance_max", "status"])
    hashers["distance_max"] = hashers["distance_max"].astype(float)
    # Tables that disagree (a small one cut short or emptied) are refused, not reported as fewer hashers or images.
    storage.check_listed(out_dir, distances, impostors, images, hashers, run)
    release_lookups(distances, impostors)
    return Results(config=config, provenance=provenance, distances=distances, impostors=impostors,
                   errors=as_objects(storage.read_errors(out_dir), ERROR_COLUMNS), images=images, hashers=hashers,
                   notes=[str(n) for n in run.get("notes", [])],
                   metrics=metrics_of(config, distances, impostors, source), loaded_from=os.path.abspath(out_dir))


def metrics_of(config: dict, distances: pd.DataFrame, impostors: pd.DataFrame, source: str) -> Metrics:
    """The metrics of a resolved config's (dict's) tables. Only what the metrics read is checked:
    the config as a whole is checked where it is run, and a saved run loads wherever it is (a
    ResNet50's weights file named in it need not be there)."""
    from harness import metrics
    from harness.config import config_section

    detection = config_section("detection", config.get("detection"), source)
    impostor_spec = config_section("impostors", config.get("impostors"), source)
    try:
        return metrics.compute(distances, impostors, detection, impostor_spec)
    except RESHAPED as exc:
        raise not_run_tables(source, exc) from None


# What pandas raises on frames edited into another shape (a column dropped, text where numbers go).
RESHAPED = (KeyError, TypeError, ValueError, AttributeError)


def not_run_tables(source: str, exc: BaseException) -> HarnessError:
    from harness.errors import exception_text

    return HarnessError(f"{source}: the distances and impostors are not a run's tables any more "
                        f"({exception_text(exc)})")


# What the report reads from run.json, and the JSON type each must have (None: may be null).
RUN_RECORD_TYPES = {"config": (dict,), "notes": (list,), "command": (list,), "versions": (dict,),
                    "git": (dict, type(None)), "cpu": (dict,), "date": (str,), "cwd": (str,),
                    "cpu_inexact_transforms": (list,), "cache": (dict,)}


def check_run_record(run: dict, source: str) -> None:
    """run.json's parts that the report reads have the types a run writes (a HarnessError naming the key)."""
    from harness.errors import shown

    for key, types in RUN_RECORD_TYPES.items():
        if key in run and not isinstance(run[key], types):
            raise HarnessError(f"{source}: {key}: expected a JSON {_json_type(types[0])}, got {shown(run[key])}")
    if not all(isinstance(part, str) for part in run.get("command", [])):
        raise HarnessError(f"{source}: command: expected a list of strings, got {shown(run['command'])}")
    if not all(isinstance(name, str) for name in run.get("cpu_inexact_transforms", [])):
        raise HarnessError(f"{source}: cpu_inexact_transforms: expected a list of strings, got "
                           f"{shown(run['cpu_inexact_transforms'])}")
    from harness.cache import CACHE_COUNTS

    cache = run.get("cache", {})  # none in a run.json of an older version; each count a whole number >= 0
    for key in CACHE_COUNTS:
        if key in cache and not (isinstance(cache[key], int) and not isinstance(cache[key], bool) and cache[key] >= 0):
            raise HarnessError(f"{source}: cache.{key}: expected a whole number of at least 0, got {shown(cache[key])}")
    if not isinstance(cache.get("path"), (str, type(None))):
        raise HarnessError(f"{source}: cache.path: expected a string or null, got {shown(cache['path'])}")
    sweeps = run.get("config", {}).get("sweeps", [])
    if not isinstance(sweeps, list):
        raise HarnessError(f"{source}: config.sweeps: expected a list, got {shown(sweeps)}")
    if not run.get("config"):  # none, or {}: the metrics were made with the defaults' targets and rules, in silence
        raise HarnessError(f"{source}: holds no config (the run's settings: its targets, thresholds and rules), "
                           "so its metrics cannot be made again; run the config again")


def _json_type(kind: type) -> str:
    return {dict: "object", list: "array", str: "string"}[kind]
