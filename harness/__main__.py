"""Command line: parse and dispatch only. Heavy modules are imported by the subcommand that needs them."""

from __future__ import annotations

import argparse
import os
import sys

from harness.errors import HarnessError

EPILOG = ("Exit status: 0 all done; 1 finished, but some images, transforms or hashes failed (see errors.csv); "
          "2 bad input (config, weights, output directory), nothing run.")


def add_selection(command: argparse.ArgumentParser) -> None:
    """--images and --hashers, which `run` and `validate` take alike."""
    command.add_argument("--images", nargs="+", metavar="PATH",
                         help="images that replace the config's: files, directories, globs, builtin:NAME or "
                              "builtin:skimage")
    command.add_argument("--hashers", metavar="NAME[,NAME...]",
                         help="only these of the config's hashers (comma-separated)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m harness",
        description="Measure how robust image hashes are to the edits that make near-duplicates.",
        epilog=EPILOG)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="apply a config's transforms, score distances, write the report",
                              description="Apply the config's transform sweeps to its images, score every "
                                          "pair with every hasher, and write CSV tables, figures and a summary.",
                              epilog=EPILOG)
    run.add_argument("config", metavar="CONFIG", help="YAML config, e.g. configs/lena.yaml")
    run.add_argument("--out", metavar="DIR", help="output directory (default: the config's `output`)")
    add_selection(run)
    run.add_argument("--skip-unavailable", action="store_true",
                     help="run the other hashers when one cannot (e.g. missing weights), marking it unavailable")
    run.add_argument("--workers", type=int, default=1, metavar="N",
                     help="worker processes for transforming and hashing (default 1); results do not depend on it")
    run.add_argument("--cache", metavar="PATH",
                     help="hash cache (default: DIR/hash-cache.sqlite); a stopped run started again resumes from it")
    run.add_argument("--no-cache", action="store_true", help="compute everything, keep no cache")
    run.add_argument("--quiet", action="store_true", help="no progress bar and no table at the end")

    report = commands.add_parser("report", help="rebuild every table and figure of a run from its CSVs",
                                 description="Rebuild table.csv, the figures and summary.md of an output "
                                             "directory from its saved CSVs, without recomputing anything.")
    report.add_argument("dir", metavar="DIR", help="the output directory of a run")

    validate = commands.add_parser("validate", help="check a config and count its work, without running it",
                                   description="Check a config as `run` would (keys, names, parameters, "
                                               "plugins, image sources) and summarise it; loads no model "
                                               "and reads no pixels. Exit status 0 when valid, 2 when not.")
    validate.add_argument("config", metavar="CONFIG", help="YAML config, e.g. configs/lena.yaml")
    add_selection(validate)

    listing = commands.add_parser("list", help="list the hashers and transforms a config can name",
                                  description="Every registered hasher and transform: its YAML name, what "
                                              "it does and its parameters (type, range, default).")
    listing.add_argument("which", nargs="?", choices=("hashers", "transforms"), help="list only these")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return command_run(args)
        if args.command == "report":
            return command_report(args)
        if args.command == "validate":
            return command_validate(args)
        if args.command == "list":
            return command_list(args)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `list | head` stopped reading; Python's recommended exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 2


def command_run(args) -> int:
    from harness import report, runner, schema
    from harness.config import load_config
    from harness.provenance import provenance

    config = load_config(args.config, images=args.images, hashers=hasher_list(args.hashers))
    out_dir = args.out or config.output
    report.check_writable(out_dir)
    if args.workers < 1:
        raise HarnessError(f"--workers: must be at least 1, got {args.workers}")
    cache = None if args.no_cache else (args.cache or os.path.join(out_dir, "hash-cache.sqlite"))
    started = provenance()  # the code and versions as the run starts
    result = runner.run(config, skip_unavailable=args.skip_unavailable, progress=False if args.quiet else None,
                        cache_path=cache, workers=args.workers)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    table = report.write_run(result, out_dir, started)
    if not args.quiet:
        print(table.to_string(index=False))
        print(f"\nwrote {out_dir}/ (summary.md, table.csv, distances.csv, figures/)")
    failed = result.distances["error"].ne("") & result.distances["error"].ne(schema.UNAVAILABLE)
    return 1 if failed.any() or len(result.errors) else 0


def command_report(args) -> int:
    from harness import report

    table = report.build_report(args.dir)
    print(table.to_string(index=False))
    print(f"\nrebuilt {args.dir}/ (summary.md, table.csv, figures/) from its CSVs")
    return 0


def command_validate(args) -> int:
    from harness.config import load_config
    from harness.images import resolve_sources

    config = load_config(args.config, images=args.images, hashers=hasher_list(args.hashers))
    sources, notes = resolve_sources(config.images, config.fallback_image, config.source, config.limit, config.seed)
    families: dict[str, int] = {}
    for pair in config.pairs:
        families[pair.family] = families.get(pair.family, 0) + 1
    print(f"{config.source}: valid ({config.name})")
    print(f"  pairs:   {len(config.pairs)} in {len(families)} families: "
          + ", ".join(f"{family} {count}" for family, count in families.items()))
    print("  hashers: " + ", ".join(h.id if h.id == h.name else f"{h.id} ({h.name})" for h in config.hashers))
    print(f"  images:  {len(sources)}: " + ", ".join(sources[:5]) + (", ..." if len(sources) > 5 else ""))
    for note in notes:
        print(f"  note: {note}")
    return 0


def command_list(args) -> int:
    from harness import catalog

    print(catalog.describe(args.which))
    return 0


def hasher_list(option: str | None) -> list[str] | None:
    """--hashers "a, b" -> ["a", "b"]."""
    return [h.strip() for h in option.split(",") if h.strip()] if option else None


if __name__ == "__main__":
    sys.exit(main())
