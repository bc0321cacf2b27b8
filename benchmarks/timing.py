"""How the benchmarks start the commands they time: with Python's defaults, as a user's shell would.

A machine may set PYTHONDONTWRITEBYTECODE (this project's build machines do): Python then compiles
every module of a source checkout again in each process (about 0.1 s for the harness's own), which
no installed copy and no default setup pays. The timed commands run without it; the benchmark
says so when it was set.
"""

from __future__ import annotations

import os

UNSET = ("PYTHONDONTWRITEBYTECODE",)
# Settings a timed command inherits that change how many threads the libraries start: named in the
# header when set, so that a printed figure says what it was measured with.
THREADS = ("OPENCV_FOR_THREADS_NUM", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def child_environment() -> dict[str, str]:
    """This process's environment, less the settings that would time something a user does not run."""
    return {key: value for key, value in os.environ.items() if key not in UNSET}


def usable_cores() -> int:
    """The cores this process may run on (its affinity where the system says), not the machine's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cpu_bounds(cpus: list[float], walls: list[float]) -> list[float]:
    """Per pair: one run's CPU time spread over the usable cores, against the other's wall time.
    However the work is shared, the first run cannot take less wall time than that share (a child
    process not waited for, uncounted, would make the bound lower, not higher)."""
    return [cpu / usable_cores() / wall for cpu, wall in zip(cpus, walls)]


def environment_note() -> str:
    """One line for the benchmark's header: what was left out of the timed commands' environment, and
    the thread settings they inherit."""
    dropped = [key for key in UNSET if key in os.environ]
    note = (f"environment: {', '.join(dropped)} unset for the timed commands (Python's default: cached bytecode)"
            if dropped else "environment: Python's defaults (cached bytecode)")
    threads = [f"{key}={os.environ[key]}" for key in THREADS if key in os.environ]
    return note + (f"; set for them: {', '.join(threads)}" if threads else "")
