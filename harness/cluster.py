"""Where per-image work runs: in this process, in local worker processes, or on a
`dask.distributed` cluster. One interface for all three:

    with Engine(workers=2, scheduler=None, setup=(build_state, args)) as engine:
        for result in engine.map(work, jobs):   # results come back in the order of `jobs`
            ...

`work(state, job)` is a module-level function; `state` is what `build_state(*args)`
returned, built once per worker process (hashers and their models are loaded once,
not per job). The setup travels once per worker, not with every job: local workers get it
when they start, a Dask cluster gets it scattered to every worker once (so a large one, the
hashes a leak audit searches, costs one transfer). Results arrive in job order whatever the number of workers or
machines, so tables never depend on them. At most `window` jobs run at once (their inputs
held), and finished results wait for those before them only up to a few windows' worth, so
memory stays bounded however many jobs there are, while a long job does not keep the other
workers waiting.

Dask is used as it is (https://distributed.dask.org): a task whose worker dies is
rescheduled by the scheduler on another worker, so a killed or lost worker's jobs are
redone, not lost. Local workers die with their parent (see `die_with_parent`).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import contextvars
import multiprocessing
import os
import signal
import sys
import threading
import time
import uuid
from typing import Any, Callable, Iterable, Iterator

from harness.errors import HarnessError, shortened, shown

Setup = tuple[Callable[..., Any], tuple]  # (build_state, args): picklable, module-level


AUTO_MIN_JOBS = 32  # fewer jobs than this run in this process: starting workers would cost more than it saves
AUTO_MAX_WORKERS = 8
MAX_WORKERS = 1024  # local worker processes one machine may be asked for (each holds the hashers and its images)


def usable_cores() -> int:
    """The cores this process may run on: those it is pinned to (a container's or taskset's share),
    where the system says (Linux), else all of the machine's."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def auto_workers(jobs: int) -> int:
    """The worker processes `--workers auto` (the default) uses for `jobs` images: one per usable
    core (at most AUTO_MAX_WORKERS), none (this process) for a small run."""
    if jobs < AUTO_MIN_JOBS:
        return 1
    return max(1, min(usable_cores(), AUTO_MAX_WORKERS, jobs // (AUTO_MIN_JOBS // 2)))


class Ready:
    """A result already at hand (a cached image, say): `map` yields it in its place among the
    results without sending any work anywhere."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value


def check_workers(workers) -> int | None:
    """The API's `workers` argument: None (as many as help) or a whole number of at least 1 (a
    NumPy integer too, as in a config dict), returned as a Python int."""
    import operator

    try:
        count = None if workers is None or isinstance(workers, bool) else operator.index(workers)
    except TypeError:
        count = None
    if workers is not None and (count is None or not 1 <= count <= MAX_WORKERS):
        raise HarnessError(f"workers: expected a whole number from 1 to {MAX_WORKERS} (or None), got {workers!r}")
    return count


class Engine:
    BUFFERED = 8  # finished results waiting for those before them, in windows

    def __init__(self, workers: int = 1, scheduler: str | None = None, setup: Setup | None = None,
                 window: int | None = None, warm_up: Callable[[], None] | None = None,
                 started: Callable[[], None] | None = None, same_cpu: bool = False):
        if workers < 1:
            raise HarnessError(f"--workers: must be at least 1, got {workers}")
        self.workers, self.scheduler, self.setup = workers, scheduler, setup
        self.named = scheduler_named(scheduler)  # in the caller's context (see options_named)
        # Called in this process just before local workers are forked (what it imports they inherit),
        # and once the first job is sent elsewhere (this process is free to do other work meanwhile).
        self.warm_up, self.started = warm_up, started
        # Whether Dask workers must be of this machine's kind of CPU (provenance.cpu_kind): where a result
        # follows the CPU (a hasher or an edit not bit-exact across processors), a worker of another kind
        # would mix its results into the tables and this machine's cache, under this machine's keys.
        self.same_cpu = same_cpu
        self._sent = False
        self.window = window or max(4, 4 * workers)
        self._pool = None
        self._job_pipe = None  # this process's copy of the pool's job pipe, on Python 3.11.0 to 3.11.4 (_JobPipe)
        self._client = None
        self._local_state = None
        self._shared = None  # on Dask: what each worker checks and builds its state from (the setup) ...
        self._shared_setup = None  # ... and its future, scattered to the workers
        self._token = uuid.uuid4().hex  # names this engine's setup in the workers' state
        self._generation = 0  # local pools started before the current one (after workers died)
        self._restarts = 0
        self._dead_seen = None  # (pool, when) a worker of the pool was first seen dead while it stood (_unstick_pool)

    # --- lifecycle ---------------------------------------------------------
    def __enter__(self) -> "Engine":
        return self

    def _start_cluster(self) -> None:
        """The cluster, joined at the first job to send, as local workers are started (a rerun whose
        every image is cached needs no scheduler: it may be the one that was lost)."""
        from harness.provenance import cpu_kind, result_versions

        self._client = _connect(self.scheduler, self.named)
        try:
            self.window = max(self.window, 4 * _wait_for_workers(self._client, self.scheduler, self.named))
            # Each worker checks the versions and, where the results follow it, the kind of CPU.
            self._shared = (result_versions(), cpu_kind() if self.same_cpu else None, self.setup)
            self._shared_setup = self._client.scatter(self._shared, broadcast=True, hash=False)
        except BaseException:
            self.close()  # at once: an API caller that keeps the engine is left no open client
            raise

    def _start_pool(self, context=None) -> None:
        """Local workers, started at the first job to send (a run whose every image is cached starts
        none), or after a worker died (`context`: how they start; by default as _context says)."""
        if self.warm_up is not None:
            self.warm_up()
        # Ctrl-C is this process's to handle (it stops the workers, see close): a worker interrupted
        # inside the pool's queues printed tracebacks, or left the pool stuck for good. The workers
        # ignore SIGINT; it is blocked here while they are forked (at the first submit), so that
        # none takes one before its initializer ignores it, and this process gets it after.
        blocking = hasattr(signal, "pthread_sigmask") and threading.current_thread() is threading.main_thread()
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT}) if blocking else None
        try:
            self._pool = concurrent.futures.ProcessPoolExecutor(self.workers, mp_context=context or _context(),
                                                                initializer=_start_local_worker,
                                                                initargs=(os.getpid(), self._token, self.setup))
            self._job_pipe = _JobPipe.of(self._pool)  # before the first job: see _JobPipe
            # Every worker starts now, and loads its hashers while this process prepares the next jobs.
            starting = [self._pool.submit(_ready) for _ in range(self.workers)]
        finally:
            if mask is not None:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for started in starting:
            self._watched_result(started)

    def __exit__(self, exc_type, *exc) -> None:
        self.close(stop=exc_type is not None)

    def close(self, stop: bool = False) -> None:
        """Let the workers finish and go; with `stop` (Ctrl-C, an error: their work is not wanted),
        local workers are killed at once rather than waited for (they ignore SIGINT)."""
        if self._pool is not None:
            if stop:
                _stop_workers(self._pool)
            if self._job_pipe is not None and (stop or getattr(self._pool, "_broken", False)):
                self._job_pipe.drain()  # its workers are gone: nothing it reads was still for one of them
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
            if self._job_pipe is not None:
                self._job_pipe.close()
                self._job_pipe = None
        if self._client is not None:
            self._client.close()
            self._client = None

    @property
    def restarts(self) -> int:
        """How many times a local worker died and its pool was started again (_value)."""
        return self._restarts

    @property
    def parallel(self) -> bool:
        """Whether the work runs elsewhere (worker processes or a cluster), leaving this process free."""
        return self.workers > 1 or bool(self.scheduler)

    @property
    def kind(self) -> str:
        """Where the work ran (run.json's `engine`): this process when nothing was sent (every
        image cached), even where workers or a cluster were asked for."""
        if self.parallel and not self._sent:
            return "this process"
        if self.scheduler:
            return f"dask.distributed at {self.scheduler}"
        return f"{self.workers} local worker processes" if self.workers > 1 else "this process"

    # --- work --------------------------------------------------------------
    def map(self, work: Callable[[Any, Any], Any], jobs: Iterable[Any],
            finished: Callable[[Any], None] | None = None) -> Iterator[Any]:
        """work(state, job) for every job, yielded in job order; a `Ready` job yields its value.
        `finished(value)` is called once for each value work returns, as soon as this process sees
        it: with several workers, often before the jobs ahead of it are done. A caller that stores
        results there keeps all that was done when the run stops (Ctrl-C, a lost cluster), not
        only what had reached its turn."""
        if not self.parallel:
            for job in jobs:
                if isinstance(job, Ready):
                    yield job.value
                    continue
                if self._local_state is None:
                    self._local_state = _build(self.setup)
                value = work(self._local_state, job)
                if finished is not None:
                    finished(value)
                yield value
            return
        submit = self._submit_dask if self.scheduler else self._submit_local
        pending: collections.deque = collections.deque()  # [done, value or future] per job, in job order
        running: dict = {}  # future -> its entry in pending, for the futures whose value is not taken
        sent: dict = {}  # a Dask future's key -> its job, until its value is taken (see _value)

        def take(wait: bool) -> None:
            """The values of the running futures that are done (after waiting for one, if `wait`)."""
            if wait:
                self._wait_any(list(running))
            for future in [future for future in running if future.done()]:
                entry = running.pop(future)
                entry[:] = [True, self._value(future, work, sent)]
                if finished is not None:
                    finished(entry[1])

        for job in jobs:
            if isinstance(job, Ready):
                pending.append([True, job.value])
            else:
                if not self._sent:
                    self._sent = True
                    self._start_cluster() if self.scheduler else self._start_pool()
                    if self.started is not None:
                        self.started()
                future = submit(work, job)
                running[future] = entry = [False, future]
                pending.append(entry)
                sent[future.key if self.scheduler else future] = (job, self._generation)
            # Results leave in job order, but a long job at the head of the line must not leave the
            # other workers idle: only the jobs still running count against the window (their inputs
            # are what takes memory), and finished results (a few hashes each) wait their turn, up to
            # BUFFERED windows of them.
            while True:
                take(wait=False)
                while pending and pending[0][0]:
                    yield pending.popleft()[1]
                if len(running) < self.window and len(pending) < self.BUFFERED * self.window:
                    break
                take(wait=True)
        while pending:
            take(wait=not pending[0][0])
            while pending and pending[0][0]:
                yield pending.popleft()[1]

    LOST_TRIES = 3  # submissions of a job that a Dask cluster keeps losing, before its error stands
    POOL_RESTARTS = 3  # local pools started again in one run after a worker died, before its error stands

    def _value(self, done, work, sent: dict):
        """A done entry's value. A Dask future can come back cancelled when a worker died holding
        its result and the scheduler had already forgotten the task ("already forgotten"), which
        distributed's own retries do not cover: its job is submitted again, so a lost worker's
        images are redone, not lost. So are a local worker's: when one dies (killed, or out of
        memory), the pool breaks and fails every job it held; a new pool is started, once per
        broken one, and each of those jobs is sent to it."""
        if isinstance(done, Ready):
            return done.value
        job, generation = sent.pop(done.key if self._client is not None else done, (None, None))
        for _ in range(self.LOST_TRIES):
            try:
                return self._watched_result(done)
            except concurrent.futures.CancelledError as exc:
                if job is None:
                    raise self._lost(exc) from None
                self._scatter_again(exc)
                done = self._submit_dask(work, job)
            except WorkerDied:
                if job is None or self._restarts >= self.POOL_RESTARTS and generation == self._generation:
                    raise
                if generation == self._generation:  # the pool that broke is the current one
                    self._restart_pool()
                done, generation = self._submit_local(work, job), self._generation
        try:
            return self._watched_result(done)
        except concurrent.futures.CancelledError as exc:
            raise self._lost(exc) from None

    def _watched_result(self, done):
        """A future's result; a local one (a job sent again may still run) is waited for as the
        others are, its pool watched meanwhile (_wait_any)."""
        if self._client is None:
            self._wait_any([done])
        return _result(done)

    def _restart_pool(self) -> None:
        """A new pool of local workers in place of a broken one, spawned: forked now, a worker could
        inherit a lock that another thread of this process holds (the report's imports, loading
        meanwhile), and wait on it for good."""
        self._restarts += 1
        broken, self._pool = self._pool, None
        broken.shutdown(wait=False, cancel_futures=True)
        if self._job_pipe is not None:
            self._job_pipe.drain()  # the broken pool's threads are let end (see _JobPipe)
            self._job_pipe = None
        self._generation += 1
        self._start_pool(multiprocessing.get_context("spawn"))

    def _wait_any(self, futures: list) -> None:
        """Until one of `futures` is done."""
        if self._client is not None:
            import distributed

            try:
                distributed.wait(futures, return_when="FIRST_COMPLETED")
            except concurrent.futures.CancelledError as exc:  # taken one by one, and sent again (_value)
                if "scheduler-connection-lost" in str(exc):
                    raise self._lost(exc) from None
        else:
            while not concurrent.futures.wait(futures, timeout=self.POOL_CHECK,
                                              return_when=concurrent.futures.FIRST_COMPLETED).done:
                self._unstick_pool()

    POOL_CHECK = 1.0  # seconds between looks at a local pool's workers while its results are awaited
    DEAD_WORKER_GRACE = 5.0  # seconds a dead worker may stand in a pool not yet broken, before it is stopped

    def _unstick_pool(self) -> None:
        """Stop a pool that one of its workers died in without breaking it. A worker killed (or out of
        memory) while it wrote its result leaves part of a message in the result pipe; the pool's
        manager thread, reading it, waits for the rest for good, on every Python, so the pool never
        takes itself for broken, and the run waited with it. Any other death is seen by the manager
        thread at once (the pool breaks); a worker dead for DEAD_WORKER_GRACE seconds in a pool that
        still stands is that case: its workers are stopped as on Ctrl-C (_stop_workers: the result
        pipe ends, the read fails), the pool breaks, and its jobs are redone by a new one (_value)."""
        from multiprocessing.connection import wait

        pool = self._pool
        if pool is None or getattr(pool, "_broken", False):
            return
        try:
            sentinels = [process.sentinel for process in _processes(pool)]
        except ValueError:  # a process closed meanwhile (the pool shutting down)
            return
        if not wait(sentinels, timeout=0):  # each is ready once its process is gone; none is waited for
            self._dead_seen = None
            return
        now = time.monotonic()
        if self._dead_seen is None or self._dead_seen[0] is not pool:
            self._dead_seen = (pool, now)
        elif now - self._dead_seen[1] >= self.DEAD_WORKER_GRACE:
            self._dead_seen = None
            _stop_workers(pool)

    def _scatter_again(self, exc: BaseException) -> None:
        """The setup scattered again where the cluster lost every copy of it, so that the jobs that
        needed it can be sent again; the run's error where no worker is left to take it. Dask's
        active memory manager keeps one copy of scattered data where no task waits on the others:
        the worker holding it, frozen and then removed, took the setup with it, and every job of
        the run came back cancelled, the healthy workers' too."""
        if all(part.status == "finished" for part in self._shared_setup):  # a future per part of the tuple
            return
        try:
            if not self._client.nthreads():
                raise self._lost(exc)
            self._shared_setup = self._client.scatter(self._shared, broadcast=True, hash=False, timeout=CONNECT_WAIT)
        except HarnessError:
            raise
        except Exception:  # noqa: BLE001 -- the workers left as it was sent: the run cannot go on
            raise self._lost(exc) from None

    def _lost(self, exc: BaseException) -> HarnessError:
        """The error for a Dask run whose work was cancelled for good: the scheduler gone, or every
        worker holding the run's setup lost at once (the scheduler then forgets the tasks)."""
        what = "the connection to its scheduler" if "scheduler-connection-lost" in str(exc) else \
            "every worker that held this run's work"
        return HarnessError(f"{self.named}: the cluster lost {what} mid-run; run again: a hash "
                            "cache keeps what was done")

    def _submit_local(self, work, job):
        try:
            return self._pool.submit(_run, self._token, None, work, job)
        except concurrent.futures.process.BrokenProcessPool as exc:  # it broke since the last job: a failed
            failed = concurrent.futures.Future()  # future, taken as the pool's others are (_value)
            failed.set_exception(exc)
            return failed

    def _submit_dask(self, work, job):
        # pure=False: the same job submitted twice (a rerun) is computed, not deduplicated by key.
        return self._client.submit(_run_remote, self._token, self._shared_setup, work, job, pure=False, retries=2)


def _stop_workers(pool: concurrent.futures.ProcessPoolExecutor) -> None:
    """Kill a pool's workers, and leave its threads nothing to wait for. The standard library
    has no way to stop busy workers before Python 3.14's terminate_workers(), so this reaches into
    the pool: its process table, and the write end of its result pipe, which this process holds.
    A worker killed while it wrote a result leaves part of a message there, and the manager
    thread, reading it, would wait for the rest for good (and shutdown with it): the write end
    closed, the pipe ends, the read fails, and the pool takes itself for broken and stops. (The
    job pipe, which the pool's feeder thread may be writing into for workers now gone: see
    _JobPipe.)"""
    from multiprocessing.connection import wait

    processes = _processes(pool)
    for process in processes:
        process.kill()
    sentinels = [process.sentinel for process in processes]
    while sentinels:  # each is ready once its process is gone (a killed process: at once)
        sentinels = [s for s in sentinels if s not in wait(sentinels)]
    writer = getattr(getattr(pool, "_result_queue", None), "_writer", None)
    if writer is not None:
        writer.close()


def _processes(pool: concurrent.futures.ProcessPoolExecutor) -> list:
    """The pool's worker processes, from its process table (a copy: its manager thread changes it)."""
    return list((getattr(pool, "_processes", None) or {}).values())


class _JobPipe:
    """This process's own copy of the read end of a pool's job pipe, on Python 3.11.0 to 3.11.4
    (Debian 12's system Python is 3.11.2), to read it empty once the pool's workers are gone.
    When a pool breaks (a worker killed, or out of memory; or this process killing them: Ctrl-C,
    SIGTERM), its manager thread waits for the thread that feeds the workers their jobs, which may
    be inside a write that no worker will read now (a group of images' bytes is more than a pipe
    holds). Python 3.11.5 and later close the pipe's read end then, so that the write fails
    (CPython issue 94777); on 3.11.0 to 3.11.4 the manager thread waited for good, and with it the
    pool's shutdown (a stopped run hung) or the interpreter's exit (a run whose worker died wrote
    its report and never ended). Reading the pipe to its end lets the write finish, and the feeder
    then ends as it does after any shutdown. The copy is this process's alone, taken before the
    pool's first job: the pool's own read end is closed by the feeder when it ends, so reading or
    closing that one from here could meet a descriptor closed, and perhaps opened again for
    another file, under it."""

    def __init__(self, descriptor: int):
        self._descriptor = descriptor

    @classmethod
    def of(cls, pool) -> "_JobPipe | None":
        if sys.version_info >= (3, 11, 5):
            return None
        reader = getattr(getattr(pool, "_call_queue", None), "_reader", None)
        return cls(os.dup(reader.fileno())) if reader is not None else None

    def drain(self) -> None:
        """Read the pipe to its end (the feeder closes its write end once it has written its
        last job), on a thread of its own, and close the copy."""
        descriptor, self._descriptor = self._descriptor, None
        if descriptor is not None:
            threading.Thread(target=self._read_to_end, args=(descriptor,), daemon=True, name="job-pipe-drain").start()

    @staticmethod
    def _read_to_end(descriptor: int) -> None:
        try:
            while os.read(descriptor, 1 << 20):
                pass
        except OSError:
            pass
        finally:
            os.close(descriptor)

    def close(self) -> None:
        descriptor, self._descriptor = self._descriptor, None
        if descriptor is not None:
            os.close(descriptor)


class WorkerDied(HarnessError):
    """A local worker process died, and with it its pool (Engine._value starts another)."""


def _result(future):
    try:
        return future.result()
    except concurrent.futures.process.BrokenProcessPool:
        raise WorkerDied("a worker process died (out of memory, or killed; or, from a script of yours, the "
                         "code that starts the work is not under `if __name__ == \"__main__\":`, which worker "
                         "processes need); run again: the cache keeps what was done") from None


# --- in the worker ------------------------------------------------------------

_STATE: dict = {}


def _build(setup: Setup | None):
    if setup is None:
        return None
    build, args = setup
    return build(*args)


def _run(token: str, setup: Setup | None, work, job):
    """Runs in a worker: build the engine's state once per process, then do the job. A local
    worker built it when it started (`setup` None here); a Dask worker builds it from the
    scattered setup on its first job. One engine's state at a time: a worker serving a new
    run drops the old models."""
    if token not in _STATE:
        _STATE.clear()
        _STATE[token] = _build(setup)
    state = _STATE[token]
    if isinstance(state, _Unbuilt):
        raise state.error
    return work(state, job)


class _Unbuilt:
    """A local worker's state that could not be built (a HarnessError, such as a plugin whose file
    changed since the run imported it): each job raises it, so the run ends with its one line, not
    with a broken pool's "a worker process died"."""

    def __init__(self, error: HarnessError):
        self.error = error


def _run_remote(token: str, shared, work, job):
    """_run on a Dask worker: first, that the worker computes what this machine would. Its versions
    of harness's code and the hashing libraries must be the client's, or its hashes would differ and
    go into the client's cache under the client's keys; a problem building the state names it."""
    versions, cpu, setup = shared
    if token not in _STATE:
        from distributed import get_worker

        from harness.provenance import cpu_kind, result_versions

        here = result_versions()
        address = get_worker().address
        differ = [f"{key} {here.get(key, 'missing')} there, {value} here" for key, value in versions.items()
                  if here.get(key) != value]
        if differ:
            raise HarnessError(f"the Dask worker {address} runs other versions than this machine ("
                               f"{'; '.join(differ)}): its hashes would differ; install the same on every worker")
        here = cpu_kind() if cpu is not None else {}
        differ = [f"{key} {here.get(key, 'missing')} there, {value} here" for key, value in (cpu or {}).items()
                  if here.get(key) != value]
        if differ:
            raise HarnessError(f"the Dask worker {address} is another kind of CPU than this machine ("
                               f"{'; '.join(differ)}): this run's hashers or edits are not bit-exact across "
                               "processors (cpu_exact), so its results would differ; use workers of this "
                               "machine's kind")
        try:
            _STATE.clear()
            _STATE[token] = _build(setup)
        except HarnessError as exc:
            raise HarnessError(f"on the Dask worker {address}: {exc}") from None
    return _run(token, setup, work, job)


def _context():
    """How local workers start. Forked, they share what this process has loaded (the libraries, the
    hashers) and start in milliseconds; spawned, each imports them again (a second or more). Forking
    is safe here only before any thread that a child could inherit half-way: so not once TensorFlow
    is loaded (its thread pools), and not where fork is not the platform's way (macOS, Windows)."""
    import sys

    if sys.platform.startswith("linux") and "tensorflow" not in sys.modules:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _ready() -> bool:
    return True


def _start_local_worker(parent: int, token: str, setup: Setup | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C (see Engine._start_pool)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # one pending now is dropped
    die_with_parent(parent)
    _one_openmp_thread()
    _STATE.clear()
    try:
        _STATE[token] = _build(setup)
    except HarnessError as exc:
        _STATE[token] = _Unbuilt(exc)


def _one_openmp_thread() -> None:
    """faiss runs its searches on OpenMP threads, one a core. In a local worker, one: the workers
    share the cores already, and a worker forked from a process whose faiss had started OpenMP's
    thread pool (an API session's earlier audit) hung in its first search, waiting for threads the
    fork did not copy; with one thread, no pool is waited for."""
    import sys

    faiss = sys.modules.get("faiss")
    if faiss is not None:
        faiss.omp_set_num_threads(1)


def die_with_parent(parent: int) -> None:
    """A local worker (or the report's forked copy) exits when the process that started it is gone
    (kill -9 included): Linux's PR_SET_PDEATHSIG where available, and a watchdog thread everywhere."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(1)

    def watch():
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="die-with-parent").start()


# --- dask ----------------------------------------------------------------------

# Whether errors name the scheduler as the command line's option (`--scheduler ADDRESS`, set by the
# command line for its commands: options_named) or as the API's argument (`scheduler='ADDRESS'`).
_as_option: contextvars.ContextVar[bool] = contextvars.ContextVar("scheduler_as_option", default=False)


def scheduler_key() -> str:
    """What the user called the scheduler: the option or the argument."""
    return "--scheduler" if _as_option.get() else "scheduler"


def scheduler_named(address: str | None) -> str:
    """The scheduler's address as an error names it: as the user gave it, option or argument."""
    return f"--scheduler {address}" if _as_option.get() else f"scheduler={shown(address)}"


@contextlib.contextmanager
def options_named():
    """Within it, errors name the scheduler as the command line's --scheduler option."""
    token = _as_option.set(True)
    try:
        yield
    finally:
        _as_option.reset(token)


def _connect(address: str, named: str):
    try:
        from dask.distributed import Client
    except ImportError:
        raise HarnessError(f"{scheduler_key()} needs dask.distributed: pip install 'dask[distributed]'") from None
    if _quiet_logs:
        _quiet_dask_logs()
    if address.startswith("inproc://") and not _inproc_scheduler(address):
        raise HarnessError(f"{named}: no scheduler of this process is there (an inproc:// "
                           "address reaches only one started in the same process, such as "
                           "LocalCluster(processes=False) in a script); give the scheduler's tcp:// address")
    found: dict = {}

    def connect():
        try:
            found["client"] = Client(address, timeout="10s")
        except BaseException as exc:  # a server that is not a scheduler answers with anything (MemoryError)
            found["error"] = exc

    # distributed's timeout covers the connection, not the handshake after it: a port that accepts and
    # never answers (the scheduler's dashboard, 8787) would hang the run for good.
    waiting = threading.Thread(target=connect, daemon=True, name="dask-connect")
    waiting.start()
    waiting.join(CONNECT_WAIT)
    if waiting.is_alive():
        raise HarnessError(f"{named}: no Dask scheduler answered within {CONNECT_WAIT} s (the "
                           "scheduler's port is 8786 unless it was given another; 8787 is its dashboard)")
    if "error" in found:
        exc = found["error"]
        if isinstance(exc, KeyboardInterrupt):
            raise exc
        if isinstance(exc, MemoryError):  # distributed read the server's first bytes as a frame's length
            raise HarnessError(f"{named}: the server there answered, but not as a Dask scheduler does; is this "
                               "the scheduler's address (port 8786 unless it was given another)?") from None
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise HarnessError(f"{named}: cannot connect ({shortened(reason, 200)}); is a Dask "
                           "scheduler listening there?") from None
    return found["client"]


def _inproc_scheduler(address: str) -> bool:
    """Whether this process listens at the inproc:// `address` (distributed's registry of them), so
    that a wrong one is refused at once: connecting to one, distributed retries until its timeout,
    and on a busy machine past CONNECT_WAIT, which then blamed a scheduler that does not answer."""
    from distributed.comm.inproc import global_manager

    try:
        return global_manager.get_listener_for(address[len("inproc://"):]) is not None
    except ValueError:  # not an address of this process's form (inproc://IP/PID/N)
        return False


CONNECT_WAIT = 30  # seconds for a connection and its handshake
_quiet_logs = False  # set by the command line, whose own error line says what failed


def quiet_logs() -> None:
    """distributed logs its connection errors with tracebacks (dozens of lines when a scheduler
    dies); the command line prints one line instead."""
    global _quiet_logs
    _quiet_logs = True


def _quiet_dask_logs() -> None:
    import logging

    for name in ("distributed", "tornado"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    for name in list(logging.root.manager.loggerDict):
        if name.startswith(("distributed.", "tornado.")):
            logging.getLogger(name).setLevel(logging.CRITICAL)


def _wait_for_workers(client, address: str, named: str) -> int:
    """How many workers the cluster has, waiting up to CONNECT_WAIT for a first one (workers started
    with the scheduler join a few seconds after it). None is one line saying what to start, where
    distributed would fail the first transfer after 10 s with "No valid workers found"."""
    count = _worker_count(client)
    if count:
        return count
    try:
        client.wait_for_workers(1, timeout=CONNECT_WAIT)
    except TimeoutError:  # asyncio's and dask's timeouts are both this class on Python 3.11
        raise HarnessError(f"{named}: the scheduler has no workers (none joined within "
                           f"{CONNECT_WAIT} s); start some with `dask worker {address}`") from None
    return max(1, _worker_count(client))


def _worker_count(client) -> int:
    try:
        return len(client.scheduler_info().get("workers", {}))
    except Exception:  # informational only
        return 1
