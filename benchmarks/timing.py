"""How the benchmarks start the commands they time: with Python's defaults, as a user's shell would.

A machine may set PYTHONDONTWRITEBYTECODE (this project's build machines do): Python then compiles
every module of a source checkout again in each process (about 0.1 s for the harness's own), which
no installed copy and no default setup pays. The timed commands run without it; the benchmark
says so when it was set.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass

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


LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peak.py")


@dataclass(frozen=True)
class Usage:
    """What the kernel accounts to one command and the processes it waited for (see peak.py)."""

    wall: float  # seconds, from its start to its exit
    cpu: float  # user + system seconds, summed over its processes
    system: float  # the system seconds alone
    peak_mib: float  # the largest resident size of a single one of its processes
    status: int  # its exit status (-N: killed by signal N)


def measured(command: list[str], **run) -> tuple[Usage, subprocess.CompletedProcess]:
    """Run `command` (subprocess.run's keyword arguments: cwd, env, stdout, stderr) as a fresh process
    started by benchmarks/peak.py, a launcher of about 10 MiB, so that its peak is its own and not
    this process's (a child of this process is charged this process's peak: see peak.py)."""
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, "usage")
        done = subprocess.run([sys.executable, "-S", LAUNCHER, path, *command], **run)
        if not os.path.exists(path):
            raise RuntimeError(f"{LAUNCHER} could not run {command[0]} (status {done.returncode})")
        with open(path) as handle:
            wall, cpu, system, peak_kib, status = handle.read().split()
    return Usage(float(wall), float(cpu), float(system), int(peak_kib) / 1024, int(status)), done
