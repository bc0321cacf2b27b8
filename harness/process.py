"""What the command-line process (`python -m harness`) does that a Python session using the API
does not: it writes progress as lines where stderr is no terminal (runner.progress_bar: a log
file's reader saw nothing until the end, where a notebook calling evaluate(progress=None) asked
for a bar on a terminal only), and it answers Ctrl-C and SIGTERM, once its outputs are in place,
not at all.

Until an output set is swapped in (storage.OutputSet.commit), either signal stops the command and
the set it was making is removed, the old one left as it was (`interrupted`, status 130). From the
swap on, the command's outcome is decided: its outputs are complete, and a signal then (while the
old set is cleaned up, the table printed or the interpreter exits) made the command report an
interruption of a run that had finished, or, once Python had restored the default handlers at
exit, killed it silently with status 130 or 143. The Python API never changes its caller's
signal handling or progress: only `python -m harness` enables these (entry).
"""

from __future__ import annotations

_enabled = False


def enable() -> None:
    """Called once by the command-line process, before its command runs."""
    global _enabled
    _enabled = True


def is_command_line() -> bool:
    return _enabled


def outputs_final() -> None:
    """The command's outputs are (about to be) in place: from now on, Ctrl-C and SIGTERM are ignored
    (the handlers are process-wide, so no thread takes them; SIG_IGN also outlasts the interpreter's
    exit, which puts back the default of a signal it had given a handler). Only in the main thread
    of a process that enabled it."""
    import signal
    import threading

    if _enabled and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
