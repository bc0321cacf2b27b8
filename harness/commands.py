"""The command line's subcommands (`run`, `leaks`, `report`, `validate`, `list`): each takes the
parsed arguments, does its work through the library, prints what the user reads and returns the
exit status. Parsing, and turning errors into one line, are `__main__`'s; heavy modules are
imported by the subcommand that needs them."""

from __future__ import annotations

import os
import sys

from harness.errors import EXIT_FAILURES, EXIT_OK, HarnessError, clipped, line
from harness.heap import map_large_blocks, trim_heap


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
    from harness.summary import local_previews

    storage.check_report_dir(args.dir)
    with storage.sole_writer(args.dir):
        map_large_blocks()
        results = api.load(args.dir)
        trim_heap()  # what reading the tables freed
        report.write(results, args.dir, rebuild=True)
    print(results.table.to_string(index=False))
    print(f"\nrebuilt {args.dir}/ (summary.md, table.csv and the other derived tables, figures/) from its saved tables")
    listed = results.provenance.get("files")
    # A set copied without it, whose summary showed it; one whose config keeps it local never did
    if isinstance(listed, list) and storage.PREVIEWS in listed and not local_previews(results.config) and \
            not os.path.isfile(os.path.join(args.dir, storage.PREVIEWS)):
        print(line("note", f"{storage.PREVIEWS}, which the set's run listed, is not in {args.dir}: summary.md no longer "
                           "shows the edits (report cannot draw them again: they are thumbnails of the images; run "
                           "the config again for them)"), file=sys.stderr)
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
    if config.plugins_imported and config.plugins:  # what `run` refuses before any work, refused here too
        from harness.runner import check_plugins

        notes += check_plugins(config, skip_unavailable=True)
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
        from harness.catalog import describe_plugins

        print(f"  plugins: imported and checked: {named}")
        # What `list` says of a built-in, for each plugin: its distance and parameters as harness reads them.
        for text in describe_plugins([(kind, path) for kind, path, _ in plugins])[1:]:
            print("  " + text if text else text)
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
    if args.import_plugins and plugins:  # what `leaks` refuses before any work, refused here too
        from harness.runner import check_plugins

        check_plugins(leaks._as_run_config(config), skip_unavailable=False)
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


def hasher_list(options: list[str] | None) -> list[str] | None:
    """--hashers "a, b" --hashers c -> ["a", "b", "c"] (each occurrence of the option, in order); an
    empty one ("" or ",") is an empty selection, which the config refuses, not all of its hashers."""
    if options is None:
        return None
    return [h.strip() for option in options for h in option.split(",") if h.strip()]
