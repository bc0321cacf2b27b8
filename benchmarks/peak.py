"""A small launcher: runs one command and writes what the kernel accounts to that command alone.

    python -S benchmarks/peak.py RESULT_FILE COMMAND [ARGUMENT ...]

Writes "wall cpu system peak_kib status" to RESULT_FILE (seconds, KiB) and exits with the
command's status. The peak is ru_maxrss from os.wait4 on the command: the largest resident size
of the command's process and of each process it waited for (its workers), not their sum; CPU is
theirs summed. Why a launcher: Linux charges a process started by fork and exec the peak of the
memory it was forked from (exec keeps the old memory's high-water mark), so a command started
straight from a benchmark that holds 400 MiB of hashes reports at least 400 MiB, and RUSAGE_CHILDREN
gives the largest of all children so far. This launcher imports nothing but os, sys and time (run
it with -S: about 10 MiB), so the command it starts carries no more than that from its parent.
"""

import os
import sys
import time


def main() -> int:
    result, command = sys.argv[1], sys.argv[2:]
    started = time.perf_counter()
    pid = os.posix_spawnp(command[0], command, os.environ)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)  # -N: killed by signal N
    with open(result, "w") as handle:
        handle.write(f"{wall} {usage.ru_utime + usage.ru_stime} {usage.ru_stime} {usage.ru_maxrss} {code}\n")
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
