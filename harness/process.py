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
_signalled: int | None = None  # SIGINT or SIGTERM, once the command line's handler has taken one


def enable() -> None:
    """Called once by the command-line process, before its command runs."""
    global _enabled
    _enabled = True


def is_command_line() -> bool:
    return _enabled


def signalled(signum: int | None = None) -> int | None:
    """Record that the command line's handler took SIGINT or SIGTERM (with `signum`); the one taken,
    or None. Its KeyboardInterrupt may not reach the command: a C extension's import turns it into
    its own error (numpy's: an ImportError, "PyCapsule_Import could not import module datetime"),
    which had ended a stopped command as "a bug in harness", status 3."""
    global _signalled
    if signum is not None:
        _signalled = signum
    return _signalled


def stop_if_signalled() -> None:
    """Stop now where a signal was taken but its KeyboardInterrupt was lost on the way (see
    `signalled`): before an output set is swapped in, a run stopped by the user must not
    replace the previous outputs as if it had finished."""
    import signal

    from harness.errors import Terminated

    if _signalled is not None:
        raise Terminated() if _signalled == signal.SIGTERM else KeyboardInterrupt()


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
