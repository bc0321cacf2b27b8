"""Command line: parse and dispatch only. Heavy modules are imported by the subcommand that needs them."""

from __future__ import annotations

import argparse
import functools
import gc
import os
import sys

# pyarrow's own allocator (mimalloc) keeps what it frees for itself: at 100,000 images the Parquet
# tables and pandas' text columns left some 50 MiB that NumPy and Python could not reuse, the largest
# part of the run's peak. With the system allocator there is one heap. Set before pandas imports
# pyarrow; a user's own setting stands.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

from harness import __version__
from harness.errors import (EXIT_BAD_INPUT, EXIT_BROKEN_PIPE, EXIT_BUG, EXIT_FAILURES, EXIT_INTERRUPTED, EXIT_OK,
                            EXIT_TERMINATED,
                            MESSAGE_MAX, PATH_MAX, HarnessError, Terminated, clipped, shortened)

EPILOG = ("Exit status: 0 all done; 1 finished, but some images, transforms or hashes failed (see errors.csv); "
          "2 bad input (config, images, weights, output directory) or a system error such as a full disk, "
          "with one line saying which; 3 a bug in harness (the traceback is saved to a file, see README "
          "'Reporting bugs'); 130 interrupted (Ctrl-C); 141 the output pipe was closed; 143 terminated (kill).")


def add_selection(command: argparse.ArgumentParser) -> None:
    """--images and --hashers, which `run` and `validate` take alike."""
    # A list option given twice adds to the list (argparse's default keeps the last and drops the
    # first in silence); "extend" and "append" are how argparse joins repeated occurrences.
    command.add_argument("--images", nargs="+", action="extend", metavar="PATH",
                         help="images that replace the config's: files, directories, globs, builtin:NAME or "
                              "builtin:skimage (repeat it to add more)")
    command.add_argument("--hashers", action="append", metavar="NAME[,NAME...]",
                         help="only these of the config's hashers (comma-separated, or repeat it)")


class Parser(argparse.ArgumentParser):
    """argparse's parser, with its usage errors on one line like every other error (argparse prints the
    whole usage first); its subcommands' parsers are of this class too."""

    def error(self, message: str):
        if message.endswith("required: CONFIG") and "--images" in _ARGV:  # `run --images a.jpg c.yaml`
            message += (" (--images takes every path after it, the config's too: give CONFIG before --images, or "
                        "end its paths with --)")
        self.exit(EXIT_BAD_INPUT, line("error", f"{message} (see {self.prog} --help)") + "\n")

    def parse_args(self, args=None, namespace=None):
        _ARGV[:] = sys.argv[1:] if args is None else args  # for error(), which a subcommand's parser calls
        # argparse reports an unknown option of a subcommand (`run --wrkers 2`) from the top parser,
        # pointing at the top-level help; the subcommand's own help is the one that lists its options.
        parsed, unknown = self.parse_known_args(args, namespace)
        if unknown:
            commands = getattr(self, "commands", None)  # set by build_parser
            chosen = commands.choices.get(parsed.command) if commands else None
            (chosen or self).error(f"unrecognized arguments: {' '.join(unknown)}")
        return parsed


_ARGV: list[str] = []  # the arguments being parsed (see Parser.error)


def line(kind: str, text) -> str:
    """What the command line prints for an error or a note: "KIND: TEXT", one line of at most MESSAGE_MAX."""
    return shortened(f"{kind}: {text}", MESSAGE_MAX)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python -m harness",
        description="Measure how robust image hashes are to the edits that make near-duplicates.",
        epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    commands = parser.commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="apply a config's transforms, score distances, write the report",
                              description="Apply the config's transform sweeps to its images, score every "
                                          "pair with every hasher, and write CSV tables, figures and a summary.",
                              epilog=EPILOG)
    run.add_argument("config", metavar="CONFIG", help="YAML config, e.g. configs/lena.yaml")
    run.add_argument("--out", metavar="DIR", type=out_option, help="output directory (default: the config's `output`)")
    add_selection(run)
    run.add_argument("--strict", action="store_true",
                     help="stop before any work when a hasher cannot run here (no TensorFlow, no weights); by "
                          "default it is marked unavailable, the others run, and the fix is printed at the end")
    run.add_argument("--skip-unavailable", action="store_true", help=argparse.SUPPRESS)  # the default now
    # On a cluster its workers do the work: --workers would be ignored there, so the two exclude each other.
    engine = run.add_mutually_exclusive_group()
    engine.add_argument("--workers", type=workers_option, default=None, metavar="N|auto",
                        help="worker processes for transforming and hashing (default auto: one per core for 32 "
                             "images or more, else none); results do not depend on it")
    engine.add_argument("--scheduler", metavar="ADDRESS", type=scheduler_option,
                        help="run the image work on a running dask.distributed cluster (e.g. tcp://10.0.0.5:8786); "
                             "the tables are the same as a local run's")
    cache = run.add_mutually_exclusive_group()
    cache.add_argument("--cache", metavar="PATH", type=cache_option,
                       help="hash cache (default: DIR/hash-cache.sqlite); a stopped run started again resumes from "
                            "it")
    cache.add_argument("--no-cache", action="store_true", help="compute everything, keep no cache")
    run.add_argument("--quiet", action="store_true", help="no progress bar and no table at the end")

    report = commands.add_parser("report", help="rebuild every table and figure of a run from its saved tables",
                                 description="Rebuild every derived table (table.csv; thresholds.csv, "
                                             "detection.csv, roc.csv and retrieval.csv when the run has "
                                             "distances between different images), the figures and "
                                             "summary.md of an output directory from its saved tables (CSV or "
                                             "Parquet), without recomputing any hash; the saved tables, "
                                             "config.yaml and run.json's provenance stay as they are.")
    report.add_argument("dir", metavar="DIR", help="the output directory of a run")

    validate = commands.add_parser("validate", help="check a config and count its work, without running it",
                                   description="Check a config as `run` would (keys, names, parameters, "
                                               "image sources, output directory), or a leak audit's config "
                                               "(one with splits) as `leaks` would, and summarise it; runs "
                                               "nothing and writes nothing: loads no "
                                               "model, reads no image of the run (an overlay's source file is "
                                               "checked) and imports no plugin (it lists "
                                               "the plugins `run` would import) unless --import-plugins. "
                                               "Exit status 0 when valid, 2 when not.")
    validate.add_argument("config", metavar="CONFIG", help="YAML config, e.g. configs/lena.yaml")
    add_selection(validate)
    validate.add_argument("--import-plugins", action="store_true",
                          help="import the config's plugins (package.module:Name) and check them and their "
                               "parameters as `run` does; importing runs the plugins' module code")

    leaks = commands.add_parser(
        "leaks", help="find the copies of images between data-set splits (and inside each)",
        description="Hash every image of every split (or read tables of precomputed hashes) and report every pair "
                    "of files, across splits and inside each, within the threshold of its hasher: exactly, with "
                    "the expected number of false flags. Writes leaks.csv, groups.csv, clean/<split>.txt, "
                    "summary.md and review.html; never changes a file of yours.",
        epilog="Examples: python -m harness leaks --train data/train --test data/test --hashers pHash --threshold 8; "
               "python -m harness leaks audit.yaml. " + EPILOG)
    leaks.add_argument("config", metavar="CONFIG", nargs="?", help="YAML config of the audit (the options override it)")
    leaks.add_argument("--train", nargs="+", action="extend", metavar="PATH",
                       help="the training split: files, directories, globs, builtin:NAME, or hash tables "
                            "(.csv/.parquet); repeat it to add more")
    leaks.add_argument("--test", nargs="+", action="extend", metavar="PATH", help="the test split, as --train")
    leaks.add_argument("--split", action="append", metavar="NAME=PATH", default=[],
                       help="another split (repeat it; e.g. --split val=data/val), audited between train and test")
    leaks.add_argument("--hashers", action="append", metavar="NAME[,NAME...]",
                       help="hashers (default pHash; comma-separated, or repeat it); with a hash table as a source, "
                            "the one hasher that made it")
    how = leaks.add_mutually_exclusive_group()
    how.add_argument("--threshold", metavar="N | NAME=N,...", help="flag pairs at or below this distance "
                                                                  "(one for all hashers, or per hasher)")
    how.add_argument("--fpr", type=float, metavar="RATE",
                     help="the threshold that flags at most this share of the pairs compared (or, with "
                          "--calibration, of the run's pairs of different images)")
    leaks.add_argument("--calibration", metavar="RUN_DIR",
                       help="a `run` output directory: its threshold at its first false-positive target (or at "
                            "--fpr), the false flags to expect, and the edited copies that threshold misses")
    leaks.add_argument("--min-agree", type=int, metavar="K", help="flag a pair when at least K hashers flag it "
                                                                  "(default 1)")
    leaks.add_argument("--out", metavar="DIR", type=out_option, help="output directory (default: reports/leaks)")
    engine = leaks.add_mutually_exclusive_group()
    engine.add_argument("--workers", type=workers_option, default=None, metavar="N|auto",
                        help="worker processes for hashing (default auto: one per core for 32 images or more)")
    engine.add_argument("--scheduler", metavar="ADDRESS", type=scheduler_option,
                       help="hash and search on a dask.distributed cluster")
    cache = leaks.add_mutually_exclusive_group()
    cache.add_argument("--cache", metavar="PATH", type=cache_option,
                       help="hash cache (default: DIR/hash-cache.sqlite)")
    cache.add_argument("--no-cache", action="store_true", help="compute everything, keep no cache")
    leaks.add_argument("--quiet", action="store_true", help="no progress bar and no answer at the end")

    listing = commands.add_parser("list", help="list the hashers and transforms a config can name",
                                  description="Every registered hasher and transform: its YAML name, what "
                                              "it does and its parameters (type, range, default).")
    listing.add_argument("which", nargs="?", choices=("hashers", "transforms"), metavar="hashers|transforms",
                         help="list only these")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        for value in sys.argv[1:] if argv is None else argv:
            _check_text(value)
        from harness import cluster

        with cluster.options_named():  # its errors name --scheduler, which the user typed (the API's: scheduler=)
            return dispatch(args)
    except HarnessError as exc:
        print(line("error", exc), file=sys.stderr)
        return exc.exit_status
    except Terminated:
        print("terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `list | head` stopped reading; Python's recommended handling
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except OSError as exc:  # the system, not the input or the code: a full disk, a file vanished
        print(line("error", os_error_line(exc)), file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:  # a bug: one line here, the traceback in a file
        print(line("error", bug_line(exc, argv)), file=sys.stderr)
        return EXIT_BUG
    return EXIT_BAD_INPUT


def dispatch(args) -> int:
    commands = {"run": command_run, "report": command_report, "validate": command_validate, "list": command_list,
                "leaks": command_leaks}
    return commands[args.command](args)


def os_error_line(exc: OSError) -> str:
    """"PATH: No space left on device" from an OSError, on one bounded line."""
    why = exc.strerror or str(exc) or type(exc).__name__
    where = exc.filename if exc.filename is not None else ""
    return shortened(f"{where}: {why}" if where else why, MESSAGE_MAX)


def bug_line(exc: BaseException, argv: list[str] | None) -> str:
    """The line printed for a bug, after saving its traceback (and what a report needs) to a file."""
    import shlex
    import tempfile
    import traceback

    what = f"{type(exc).__name__}: {shortened(exc, 200)}" if str(exc) else type(exc).__name__
    try:
        handle, path = tempfile.mkstemp(prefix="harness-bug-", suffix=".txt")
        with os.fdopen(handle, "w", encoding="utf-8", errors="replace") as report:
            report.write(f"harness {__version__}, Python {sys.version.split()[0]}, {sys.platform}\n"
                         f"command: python -m harness {shlex.join(sys.argv[1:] if argv is None else argv)}\n"
                         f"directory: {os.getcwd()}\n\n")
            report.write("".join(traceback.format_exception(exc)))
        saved = f"the traceback saved in {path}"
    except OSError as failure:  # a full disk: say where the bug is, at least
        frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        saved = (f"where it happened ({os.path.relpath(frame.filename)}, line {frame.lineno}; the traceback could "
                 f"not be saved: {failure.strerror})" if frame else "the message above")
    return shortened(f"a bug in harness ({what}). Please report it with the command you ran, the run's run.json "
                     f"if it wrote one, and {saved} (README, 'Reporting bugs')", MESSAGE_MAX)


M_MMAP_THRESHOLD = -3  # glibc's malloc.h


def map_large_blocks() -> None:
    """Have glibc's malloc map every block of 128 KiB or more on its own from here on, and so give it
    back when it is freed. By default, once a large block is freed, blocks up to that size come from
    the heap instead, and what is freed there stays with the process: the tables' arrays and their
    temporaries (megabytes each) left 8 to 14 MiB of a 100,000-image run's peak so. Called by this
    process only, once the images are hashed (the workers keep the default); a no-op elsewhere.
    What the pass freed on the heap is given back now too (trim_heap)."""
    if _glibc() is not None:
        _glibc().mallopt(M_MMAP_THRESHOLD, 128 * 1024)
    trim_heap()


def trim_heap() -> None:
    """Give the heap's free pages back to the system (glibc's malloc_trim). Small blocks freed by the
    pass and by the making of the tables stay with the process otherwise, and the report's large
    blocks, mapped on their own, never reuse them (megabytes at 100,000 images). A no-op elsewhere."""
    if _glibc() is not None:
        _glibc().malloc_trim(0)


@functools.lru_cache(maxsize=1)
def _glibc():
    """The C library when it is glibc on Linux (mallopt and malloc_trim are glibc's), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except (OSError, AttributeError):
        return None


def checked_output(args, out_dir: str, images, reads: dict | None = None, names=None) -> str | None:
    """`run` and `leaks` alike: the output directory checked before any work (see
    storage.check_output_dir; `names`: what its messages call each of `images`), and the hash
    cache's path (--cache, else DIR/hash-cache.sqlite; None with --no-cache), checked too."""
    from harness import storage

    storage.check_output_dir(out_dir, images=images, reads=reads, names=names)
    cache = None if args.no_cache else (args.cache or os.path.join(out_dir, storage.CACHE))
    storage.check_cache_path(cache, out_dir)
    return cache


def command_run(args) -> int:
    from harness import api, report, schema, storage
    from harness.config import load_config

    config = load_config(args.config, images=args.images, hashers=hasher_list(args.hashers), output=args.out,
                         names_folder=True)
    out_dir = args.out or default_output(config)
    with storage.removed_if_unused(out_dir, args.cache):
        cache = checked_output(args, out_dir, config.images, names=image_names(config))
        with storage.sole_writer(out_dir):  # a second command into out_dir is refused, not raced
            evaluation = api.image_pass(config, workers=args.workers, cache=cache, strict=args.strict,
                                        progress=None if not args.quiet else False, scheduler=args.scheduler,
                                        output=out_dir, strict_advice="or leave out --strict to run the other hashers")
            saved_config = config.reproducible()
            saved_config["output"] = out_dir  # the directory it was written to (--out, or the stand-in's own)
            try:
                run = report.keep_unchanged(evaluation, out_dir, saved_config)
                if run is None:  # something changed (or nothing can be kept): the tables, figures and summary are made
                    map_large_blocks()
                    results = evaluation.results()
                    trim_heap()  # what making the tables and the metrics freed, before the report writes
                    results.config = saved_config
                    report.write(results, out_dir, inputs=evaluation.inputs)
                    notes, hashers = results.notes, results.hashers.to_dict("records")
                else:
                    notes, hashers = run["notes"], run["hashers"]
            except HarnessError:  # the outputs could not be written (a full disk): what the pass noted still counts
                for note in evaluation.notes:  # e.g. that the hash cache was dropped
                    print(line("note", note), file=sys.stderr)
                raise
    if not args.quiet:
        print(text_table(os.path.join(out_dir, storage.TABLE)))
        print(f"\nwrote {out_dir}/ (summary.md, table.csv, {written_distances(out_dir)}, figures/)" if run is None else
              f"\nkept {out_dir}/: the same images, hashes and config as its last run, so the same tables and "
              "figures (run.json, config.yaml and the summary's provenance written anew)")
    unavailable = {h.get("hasher") for h in hashers if isinstance(h, dict) and h.get("status") == schema.UNAVAILABLE}
    fixes = [n for n in notes if any(str(n).startswith(f"hasher {h} unavailable") for h in unavailable)]
    for note in [n for n in notes if n not in fixes] + fixes:  # the fixes last, where they are seen
        print(line("note", note), file=sys.stderr)
    return EXIT_FAILURES if evaluation.failures else EXIT_OK


def written_distances(out_dir: str) -> str:
    """The distance table's file as written: distances.csv, or, for a table too long for CSV
    (storage.CSV_MAX_ROWS), distances.parquet alone."""
    from harness import storage

    csv = f"{storage.DISTANCES}.csv"
    return csv if os.path.isfile(os.path.join(out_dir, csv)) else f"{storage.DISTANCES}.parquet"


def image_names(config) -> list[str] | None:
    """What the output checks call each of a run's image entries: the option that gave them
    (--images), not the config's images[i], which the user did not write; None: images[i]."""
    return [config.images_option] * len(config.images) if config.images_option else None


def default_output(config) -> str:
    """Where `run` writes without --out: the config's output, or with the stand-in image its own
    directory (the stand-in's numbers must not replace a report made from the real image)."""
    from harness.images import fallback_in_use

    if fallback_in_use(config.images, config.fallback_image):
        return f"{config.output}-{config.fallback_image.rpartition(':')[2]}"
    return config.output


def _check_text(value) -> None:
    """A command-line value that is not valid UTF-8 (the system hands its bytes over as lone
    surrogates) cannot be written into run.json or config.yaml, which name the paths given."""
    if isinstance(value, str) and not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            shown = os.fsencode(value).decode("utf-8", "backslashreplace")
            raise HarnessError(f"{clipped(shown, PATH_MAX)}: not valid UTF-8; harness writes the paths it is given "
                               "into UTF-8 files (run.json, config.yaml), so rename it") from None


def text_table(path: str) -> str:
    """A CSV table as aligned text for the terminal (each column right-aligned, as pandas prints it)."""
    import csv

    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error):  # a kept set of an older version may lack it
        return "(no table.csv)"
    widths = [max(len(row[k]) if k < len(row) else 0 for row in rows) for k in range(len(rows[0]))] if rows else []
    return "\n".join(" ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in rows)


def command_leaks(args) -> int:
    from harness import leaks, storage
    from harness.errors import ConfigError

    source = args.config or "the command line"
    if not (args.config or args.train or args.test or args.split):
        raise HarnessError("leaks: nothing to audit; give --train and --test (image folders, files or hash "
                           "tables), or a config with splits (python -m harness leaks audit.yaml)")
    raw = {}
    if args.config:
        from harness.safe_yaml import read_config

        raw = read_config(args.config)
        if not isinstance(raw, dict):
            raise ConfigError(args.config, "", "a leak audit config is a mapping (splits, hashers, threshold, ...)")
    splits = dict(raw.get("splits") or {}) if isinstance(raw.get("splits") or {}, dict) else raw.get("splits")
    given: dict = {}
    options: dict = {}  # split name -> the option that gave it, which its errors name
    others = [(f"--split {name}", name, paths) for name, paths in map(_split_option, args.split)]
    for option, name, paths in [("--train", "train", args.train)] + others + [("--test", "test", args.test)]:
        if paths:
            given.setdefault(name, []).extend(paths)
            options[name] = f"{options[name]} or {option}" if name in options else option  # either gave it
    if not isinstance(splits, dict):
        options = {}  # the config's own splits are wrong: that is the error
    elif given:
        splits = merged_splits(splits, given)
    raw = {**raw, "splits": splits}
    if args.hashers is not None:
        raw = leaks.chosen_hashers(raw, hasher_list(args.hashers), keeps_min_agree=args.min_agree is None,
                                   source=source)
    if args.threshold is not None:
        raw["threshold"] = _threshold_option(args.threshold)
        raw.pop("fpr", None)
    if args.fpr is not None:
        raw["fpr"] = args.fpr
        raw.pop("threshold", None)
    if args.calibration:
        raw["calibration"] = args.calibration
    if args.min_agree is not None:
        raw["min_agree"] = args.min_agree
    if args.out:
        raw["output"] = args.out
    given_by = {"threshold": "--threshold", "fpr": "--fpr", "calibration": "--calibration", "min_agree": "--min-agree"}
    key_options = {key: option for key, option in given_by.items() if getattr(args, key) not in (None, "")}
    if args.hashers is not None and not args.config:  # with a config, they are its own hashers, named by its keys
        key_options["hashers"] = "--hashers"
    config = leaks.leak_config(raw, source, split_options=options, key_options=key_options, names_folder=True)
    out_dir = config.output
    with storage.removed_if_unused(out_dir, args.cache):
        cache = checked_output(args, out_dir, config.entries(),
                               reads={"calibration": config.calibration}, names=config.entry_names())
        with storage.sole_writer(out_dir):
            audit = leaks.find_leaks(config, workers=args.workers, scheduler=args.scheduler, cache=cache,
                                     progress=None if not args.quiet else False, output=out_dir)
            audit.save(out_dir)
    if not args.quiet:
        print(audit.answer)
        print(f"wrote {out_dir}/ (summary.md, leaks.csv, groups.csv, clean/, review.html)")
    failed = len(audit.errors)
    for note in audit.notes + ([f"{failed} {'file or folder' if failed == 1 else 'files or folders'} could not be "
                                "read, so the audit did not compare them; see errors.csv"] if failed else []):
        print(line("note", note), file=sys.stderr)
    return EXIT_FAILURES if failed else EXIT_OK


def merged_splits(configured: dict, given: dict) -> dict:
    """The config's splits with the command line's: a split given on both takes the command line's
    paths and keeps its place; a new one goes where the audit's order puts it: train first, test
    last, any other before test. The order decides which copy leaves its split (the later one)."""
    order = list(configured)
    for name in given:
        if name in order:
            continue
        if name == "train":
            order.insert(0, name)
        elif name == "test" or "test" not in order:
            order.append(name)
        else:
            order.insert(order.index("test"), name)
    return {name: given.get(name, configured.get(name)) for name in order}


def _split_option(text: str) -> tuple[str, list[str]]:
    from harness.errors import ConfigError

    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise ConfigError("--split", text, "expected NAME=PATH, e.g. --split val=data/val")
    return name, [path]


def _threshold_option(text: str):
    """--threshold 8, or --threshold pHash=8,PDQ=31."""
    from harness.errors import ConfigError

    def number(value: str, key: str) -> float:
        try:
            return float(value)
        except ValueError:
            raise ConfigError("--threshold", key, f"expected a number, got {value!r}") from None

    if "=" not in text:
        return number(text, text)
    thresholds = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if not sep:
            raise ConfigError("--threshold", part, "expected NAME=N, e.g. pHash=8,PDQ=31")
        if name.strip() in thresholds:  # which of the two was meant is not ours to guess
            raise ConfigError("--threshold", name.strip(), "given twice; give each hasher one threshold")
        thresholds[name.strip()] = number(value.strip(), name.strip())
    return thresholds


def command_report(args) -> int:
    from harness import api, report, storage

    storage.check_report_dir(args.dir)
    with storage.sole_writer(args.dir):
        map_large_blocks()
        results = api.load(args.dir)
        trim_heap()  # what reading the tables freed
        report.write(results, args.dir, rebuild=True)
    print(results.table.to_string(index=False))
    print(f"\nrebuilt {args.dir}/ (summary.md, table.csv and the other derived tables, figures/) from its saved tables")
    return EXIT_OK


VALIDATE_FAMILIES = 40  # families `validate` names, with their pair counts (the zoo has 35)


def command_validate(args) -> int:
    from harness import storage
    from harness.config import parse_config
    from harness.images import display_path, resolve_sources
    from harness.safe_yaml import read_config

    raw = read_config(args.config)
    if is_leak_config(raw):
        return validate_leaks(args, raw)
    config = parse_config(raw, args.config, images=args.images, hashers=hasher_list(args.hashers),
                          import_plugins=args.import_plugins, names_folder=True)
    storage.check_output_place(default_output(config), images=config.images,  # as `run` does, before the images
                               names=image_names(config))
    unlisted: list = []
    sources, notes = resolve_sources(config.images, config.fallback_image, config.source, config.limit, config.seed,
                                     unlisted, option=config.images_option)
    notes += [f"cannot list the folder {display_path(folder)} ({reason}): a run leaves its files out"
              for folder, reason in unlisted]
    families: dict[str, int] = {}
    for pair in config.pairs:
        families[pair.family] = families.get(pair.family, 0) + 1
    print(f"{config.source}: valid ({config.name})")
    # The first families only, each name cut: a config may hold thousands (10,000 made one line of 110 KB).
    listed = list(families.items())[:VALIDATE_FAMILIES]
    print(f"  pairs:   {len(config.pairs)} in {len(families)} families: "
          + ", ".join(f"{clipped(family)} {count}" for family, count in listed)
          + (f", and {len(families) - len(listed):,} more" if len(families) > len(listed) else ""))
    print("  hashers: " + ", ".join(h.id if h.id == h.name else f"{h.id} ({h.name})" for h in config.hashers))
    print(f"  images:  {len(sources)}: " + ", ".join(sources[:5]) + (", ..." if len(sources) > 5 else ""))
    print_plugins(config.plugins, config.plugins_imported, "run")
    for note in notes:
        print(f"  note: {note}")
    return EXIT_OK


def print_plugins(plugins: list, imported: bool, command: str) -> None:
    """validate's line on a config's plugins: (kind, import path, key) each."""
    if not plugins:
        return
    where: dict[str, list[str]] = {}
    for _, path, key in plugins:
        where.setdefault(path, []).append(key)
    named = ", ".join(f"{path} ({', '.join(keys)})" for path, keys in where.items())
    if imported:
        print(f"  plugins: imported and checked: {named}")
    else:
        print(f"  plugins: not imported: {named}; `{command}` imports them (running their module code), "
              "`validate --import-plugins` imports and checks them and their parameters")


def is_leak_config(raw) -> bool:
    """A leak audit's config (the config.yaml an audit writes too): a key only an audit's config
    has (splits, threshold, ...), and none only a run's has (one with both is a run's config with a
    stray key, refused as such)."""
    from harness import config, leaks

    leak_only = leaks.TOP_KEYS - config.TOP_KEYS
    return isinstance(raw, dict) and bool(leak_only & set(raw)) and not {"images", "sweeps"} & set(raw)


def validate_leaks(args, raw: dict) -> int:
    """`validate` of a leak audit's config: checked by the audit's own parser, each split's
    sources listed (no image is read) and the output directory checked, as `leaks` would."""
    from harness import leaks, storage
    from harness.errors import ConfigError

    if args.images is not None:
        raise ConfigError("--images", "", f"{args.config} is a leak audit's config, whose images are its splits; "
                                          "give them there (or to `leaks --train/--test`)")
    if "splits" not in raw:  # the audit takes them from --train/--test, which validate has not
        raise ConfigError(args.config, "splits", "none: a leak audit's config whose splits `leaks --train/--test` "
                                                 "gives; validate checks one that names them (splits: {train: [...], "
                                                 "test: [...]})")
    if args.hashers is not None:
        raw = leaks.chosen_hashers(raw, hasher_list(args.hashers), keeps_min_agree=True, source=args.config,
                                   advice="choose more hashers")
    plugins: list = []
    config = leaks.leak_config(raw, args.config, import_plugins=args.import_plugins, plugins=plugins,
                               names_folder=True)
    counts, notes = leaks.count_split_files(config)
    storage.check_output_place(config.output, images=config.entries(),
                               reads={"calibration": config.calibration}, names=config.entry_names())
    if config.threshold:
        how = ", ".join(f"{h} <= {value:g}" for h, value in config.threshold.items())
    else:
        how = f"fpr {config.fpr:g}" if config.fpr is not None else "from the run"
    print(f"{config.source}: valid leak audit ({config.name})")
    print("  splits:  " + ", ".join(f"{name}: {count}" for name, count in counts.items()))
    print("  hashers: " + ", ".join(h.id for h in config.hashers) + f"; threshold {how}"
          + (f"; calibration {config.calibration}" if config.calibration else "")
          + (f"; flagged when {config.min_agree} agree" if config.min_agree > 1 else ""))
    print_plugins(plugins, args.import_plugins, "leaks")
    for note in notes:
        print(f"  note: {note}")
    return EXIT_OK


def command_list(args) -> int:
    from harness import catalog

    print(catalog.describe(args.which))
    return EXIT_OK


def scheduler_option(text: str) -> str:
    """--scheduler ADDRESS: not empty (an unset shell variable would run the work here instead)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty; give the scheduler's address, e.g. tcp://10.0.0.5:8786")
    from harness import cluster

    cluster.quiet_logs()  # the command's own error line says what failed
    return text


def out_option(text: str) -> str:
    """--out DIR: not empty (an unset shell variable would write to the config's output instead)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty; give a directory, or leave --out out for the default")
    return text


def cache_option(text: str) -> str:
    """--cache PATH: not empty (an unset shell variable would use the default cache instead)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty; give a file, or leave --cache out for the default")
    return text


def workers_option(text: str) -> int | None:
    """--workers N, or auto (None)."""
    if text == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of workers or 'auto', got {text!r}") from None
    from harness.cluster import MAX_WORKERS

    if not 1 <= value <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_WORKERS}, got {value}")
    return value


def hasher_list(options: list[str] | None) -> list[str] | None:
    """--hashers "a, b" --hashers c -> ["a", "b", "c"] (each occurrence of the option, in order); an
    empty one ("" or ",") is an empty selection, which the config refuses, not all of its hashers."""
    if options is None:
        return None
    return [h.strip() for option in options for h in option.split(",") if h.strip()]


GC_YOUNG = 20_000  # the collector's first threshold in a command-line process (see entry)


def _terminate_as_interrupt() -> None:
    """SIGTERM (`kill PID`) stops this process as Ctrl-C does, cleaning up (it killed it outright,
    leaving the staging folder); a process forked from it (a worker) keeps SIGTERM's default."""
    import signal

    here = os.getpid()

    def terminated(signum, frame):
        if os.getpid() != here:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise Terminated

    signal.signal(signal.SIGTERM, terminated)


def entry() -> int:
    """The command line as a process (`python -m harness`, the `harness` script): main(), then exit quickly."""
    # The cyclic collector runs every GC_YOUNG net new container objects: at Python's 700 it ran
    # some 350 times in issue 9's job, walking pandas' and matplotlib's objects, for garbage that
    # reference counting frees anyway (0.3 to 0.4 s of CPU, about 4% of the run; a process only, the
    # Python API leaves its caller's collector alone).
    gc.set_threshold(GC_YOUNG, *gc.get_threshold()[1:])
    _terminate_as_interrupt()
    status = main()
    # The interpreter's exit collects garbage over every object pandas, pyarrow and matplotlib made
    # at import: 0.2 to 0.4 s of a run, for memory the process gives back anyway. Moving them out of
    # the collector's reach first changes nothing else (output is flushed and files closed as usual).
    gc.freeze()
    return status


if __name__ == "__main__":
    sys.exit(entry())
