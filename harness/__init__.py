"""harness: measure how robust image hashes are to the edits that make near-duplicates.

    import harness
    results = harness.evaluate("configs/collection.yaml")   # -> harness.Results (DataFrames)
    results.save("reports/mine")                            # what `python -m harness run` writes
    harness.load("reports/mine")                            # read it back
    audit = harness.find_leaks({"splits": {"train": ["data/train"], "test": ["data/test"]},
                                "hashers": ["pHash"], "threshold": 8})   # copies between splits

Errors the user can fix are `harness.HarnessError` (config problems: `harness.ConfigError`),
with the same one-line messages as the command line.
"""

from harness.errors import ConfigError, HarnessError, HashError, ImageError, UnavailableError

__version__ = "0.2.0"
__all__ = ["evaluate", "load", "Results", "find_leaks", "LeakAudit", "HarnessError", "ConfigError", "ImageError", "HashError",
           "UnavailableError", "__version__"]


def __getattr__(name: str):
    # The API imports pandas and the runner: only when it is used, so `python -m harness --help`
    # and `import harness` stay fast.
    if name in ("evaluate", "load", "Results"):
        from harness import api

        return getattr(api, name)
    if name in ("find_leaks", "LeakAudit"):
        from harness import leaks

        return getattr(leaks, name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")


def __dir__() -> list[str]:
    # The names __getattr__ gives too, so that dir() and tab completion offer them.
    return sorted(set(globals()) | set(__all__))
