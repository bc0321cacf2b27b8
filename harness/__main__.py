"""Command line: parse the arguments, dispatch to harness.commands, and turn what goes wrong into one
line and an exit status. Heavy modules are imported by the subcommand that needs them."""

from __future__ import annotations

import argparse
import gc
import os
import sys

# pyarrow's own allocator (mimalloc) keeps what it frees for itself: at 100,000 images the Parquet
# tables and pandas' text columns left some 50 MiB that NumPy and Python could not reuse, the largest
# part of the run's peak. With the system allocator there is one heap. Set before pandas imports
# pyarrow; a user's own setting stands.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

from harness import __version__
from harness.errors import (EXIT_BAD_INPUT, EXIT_BROKEN_PIPE, EXIT_BUG, EXIT_INTERRUPTED, EXIT_TERMINATED,
                            MESSAGE_MAX, PATH_MAX, HarnessError, Terminated, clipped, line, shortened)

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
                               "parameters as `run` does, loading each plugin hasher (prepare()) and trying it on "
                               "two made-up images; importing runs the plugins' module code")

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
                                  description="Every hasher and transform harness has: its YAML name, what "
                                              "it does and its parameters (type, range, default). A "
                                              "plugin (package.module:Name) is not listed: `list` reads "
                                              "no config and imports no code; `validate CONFIG "
                                              "--import-plugins` lists a config's plugins the same way.")
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
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (Terminated)
        return _stopped(exc)
    except BrokenPipeError:  # e.g. `list | head` stopped reading; Python's recommended handling
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except OSError as exc:  # the system, not the input or the code: a full disk, a file vanished
        print(line("error", os_error_line(exc)), file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:  # a bug: one line here, the traceback in a file
        from harness import process

        if process.signalled() is not None:  # not a bug: a library made the signal's KeyboardInterrupt its own error
            return _stopped(process.signalled())
        print(line("error", bug_line(exc, argv)), file=sys.stderr)
        return EXIT_BUG
    return EXIT_BAD_INPUT


def _stopped(why) -> int:
    """The line and status of a command stopped by Ctrl-C or SIGTERM (`why`: the KeyboardInterrupt,
    or the signal's number)."""
    import signal

    if isinstance(why, Terminated) or why == signal.SIGTERM:
        print("terminated", file=sys.stderr)
        return EXIT_TERMINATED
    print("interrupted", file=sys.stderr)
    return EXIT_INTERRUPTED


def dispatch(args) -> int:
    from harness import commands

    return {"run": commands.command_run, "report": commands.command_report, "validate": commands.command_validate,
            "list": commands.command_list, "leaks": commands.command_leaks}[args.command](args)


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


GC_YOUNG = 20_000  # the collector's first threshold in a command-line process (see entry)


def _terminate_as_interrupt() -> None:
    """SIGTERM (`kill PID`) stops this process as Ctrl-C does, cleaning up (it killed it outright,
    leaving the staging folder); a process forked from it (a worker) keeps SIGTERM's default.
    Either signal is recorded as it is taken (process.signalled), for where a library turns the
    KeyboardInterrupt into an error of its own."""
    import signal

    from harness import process

    here = os.getpid()

    def terminated(signum, frame):
        if os.getpid() != here:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        process.signalled(signum)
        raise Terminated

    def interrupted(signum, frame):
        if os.getpid() == here:
            process.signalled(signum)
        signal.default_int_handler(signum, frame)

    signal.signal(signal.SIGTERM, terminated)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not where it is ignored (`cmd &` in a script)
        signal.signal(signal.SIGINT, interrupted)


def _writable_output() -> None:
    """Text the terminal's encoding cannot write (a label 'Qualité' under LC_ALL=C or
    PYTHONIOENCODING=ascii) is printed with backslash escapes: it had ended a finished run with
    exit 3, "a bug in harness", after every output was written."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)  # a replaced stream may have none
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


def entry() -> int:
    """The command line as a process (`python -m harness`, the `harness` script): main(), then exit quickly."""
    # The cyclic collector runs every GC_YOUNG net new container objects: at Python's 700 it ran
    # some 350 times in issue 9's job, walking pandas' and matplotlib's objects, for garbage that
    # reference counting frees anyway (0.3 to 0.4 s of CPU, about 4% of the run; a process only, the
    # Python API leaves its caller's collector alone).
    gc.set_threshold(GC_YOUNG, *gc.get_threshold()[1:])
    _terminate_as_interrupt()
    from harness import process

    try:
        _writable_output()
        process.enable()
        status = main()
    except KeyboardInterrupt as exc:  # a signal before main() answers them (parsing the arguments): one line too
        status = _stopped(exc)
    process.outputs_final()  # the status is decided: a signal while the interpreter exits must not replace it
    # The interpreter's exit collects garbage over every object pandas, pyarrow and matplotlib made
    # at import: 0.2 to 0.4 s of a run, for memory the process gives back anyway. Moving them out of
    # the collector's reach first changes nothing else (output is flushed and files closed as usual).
    gc.freeze()
    return status


if __name__ == "__main__":
    sys.exit(entry())
