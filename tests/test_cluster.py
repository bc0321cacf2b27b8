"""Where the work runs: worker processes and a real dask.distributed cluster on loopback.

The cluster is started as a user would start one (`dask scheduler`, `dask worker`), as separate
processes on 127.0.0.1. Its tables must equal a local run's byte for byte, and a worker killed in
the middle of a run must cost nothing but time.
"""

import functools
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

import cv2
import psutil
import pytest

from tests.conftest import ROOT, make_scene

pytest.importorskip("distributed")

TABLES = ("distances.csv", "impostors.csv", "table.csv", "thresholds.csv", "detection.csv", "roc.csv",
          "images.csv", "errors.csv", "hashers.csv", "retrieval.csv")

CONFIG = """
images: [{folder}]
seed: 5
hashers: [aHash, pHash, imagehash.dhash]
impostors: {{transformed: true, per_variant: 2}}
sweeps:
  - {{family: jpeg, b: {{jpeg: {{quality: $value}}}}, values: [80, 40, 10]}}
  - {{family: blur, b: {{gaussian_blur: {{sigma: $value}}}}, values: [1, 4]}}
  - {{family: rotate, b: {{rotate: {{angle: $value}}}}, values: [2, 8]}}
  - {{family: crop, b: {{crop: {{x: 0, y: 0, width: 200, height: 200}}}}}}
"""


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """Images (some too small for the crop, one not an image), a config, and a local run's outputs."""
    root = tmp_path_factory.mktemp("cluster")
    folder = root / "images"
    folder.mkdir()
    for seed in range(48):
        size = (150, 180) if seed % 7 == 0 else (300, 400)
        cv2.imwrite(str(folder / f"{seed:02d}.png"), make_scene(seed, *size))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    config = root / "job.yaml"
    config.write_text(CONFIG.format(folder=folder))
    local = root / "local"
    run(config, local, "--no-cache")
    return config, local


def run(config, out, *extra, popen=False):
    command = [sys.executable, "-m", "harness", "run", str(config), "--out", str(out), "--quiet", *extra]
    if popen:
        return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode in (0, 1) and "Traceback" not in done.stderr, done.stderr  # 1: the broken file
    return done


def assert_same_tables(a, b):
    for name in TABLES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def start_scheduler(tmp_path, env):
    """A dask scheduler on loopback, as a separate process: (its process, its address)."""
    scheduler_file = tmp_path / "scheduler.json"
    process = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                "--port", "0", "--no-dashboard", "--scheduler-file", str(scheduler_file)],
                               cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        # The scheduler creates the file, then writes it: an empty or partial file is read again.
        try:
            return process, json.loads(scheduler_file.read_text())["address"]
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            assert process.poll() is None, f"the dask scheduler exited with {process.returncode}"
            time.sleep(0.1)
    process.kill()
    pytest.fail(f"the dask scheduler wrote no address to {scheduler_file} in 60 s")


@pytest.fixture
def cluster(tmp_path):
    """A dask scheduler and two single-threaded workers on loopback, as separate processes."""
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    scheduler, address = start_scheduler(tmp_path, env)
    processes = [scheduler]
    for name in ("one", "two"):
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1", "--nworkers", "1",
             "--no-nanny", "--no-dashboard", "--name", name, "--local-directory", str(tmp_path / name)],
            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    from distributed import Client

    # distributed's Client gives its IO-loop thread a fixed 10 s to start (LoopRunner's AssertionError
    # otherwise): once, in a full suite on the loaded 2-core machine, it did not, before any harness
    # code ran. The fixture tries again rather than fail a test over the machine's start-up time.
    for attempt in range(3):
        try:
            with Client(address, timeout="30s") as client:
                client.wait_for_workers(2, timeout=120)
            break
        except AssertionError:
            if attempt == 2:
                raise
    yield address, processes[1:]
    for process in processes:
        process.kill()
        process.wait(timeout=30)


def test_dask_cluster_gives_the_local_tables(job, cluster, tmp_path):
    config, local = job
    address, _ = cluster
    out = tmp_path / "dask"
    run(config, out, "--scheduler", address, "--no-cache")
    assert_same_tables(out, local)
    assert json.loads((out / "run.json").read_text())["engine"] == f"dask.distributed at {address}"


def images_done(out) -> int:
    """Images whose results the run has stored (its cache's files table): progress, not time."""
    try:
        with sqlite3.connect(out / "hash-cache.sqlite", timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM files").fetchone()[0]
    except sqlite3.Error:  # not created yet
        return 0


def test_a_worker_killed_mid_run_loses_nothing(job, cluster, tmp_path):
    config, local = job
    address, workers = cluster
    out = tmp_path / "dask"
    process = run(config, out, "--scheduler", address, popen=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None and images_done(out) < 6:
        time.sleep(0.02)
    assert process.poll() is None, "the run finished before a worker could be killed"
    workers[0].send_signal(signal.SIGKILL)  # its jobs in flight go to the other worker
    assert process.wait(timeout=600) in (0, 1), process.stderr.read().decode()
    assert_same_tables(out, local)


def square(state, job):  # a job for the cluster (module level: the workers import it)
    return job * job


def test_a_job_the_cluster_loses_is_submitted_again(cluster, monkeypatch):
    """A future that comes back cancelled (a worker died holding its result after the scheduler had
    forgotten the task) is redone, not an error: here the first one is cancelled as it is sent."""
    from harness.cluster import Engine

    address, _ = cluster
    submitted = []
    submit = Engine._submit_dask

    def submit_and_lose_the_first(self, work, job):
        future = submit(self, work, job)
        submitted.append(job)
        if len(submitted) == 1:
            self._client.cancel([future])
        return future

    monkeypatch.setattr(Engine, "_submit_dask", submit_and_lose_the_first)
    with Engine(scheduler=address) as engine:
        assert list(engine.map(square, range(6))) == [0, 1, 4, 9, 16, 25]
    assert sorted(submitted) == [0, 0, 1, 2, 3, 4, 5]  # the lost one twice


def test_a_setup_the_cluster_loses_is_scattered_again_and_its_jobs_sent_again(cluster, monkeypatch):
    """Every copy of the run's scattered setup lost (here cancelled after the first job is sent; on a
    cluster, the one worker Dask's memory manager left it on, frozen past its heartbeats and removed):
    every job comes back cancelled. They are sent again with the setup scattered anew, and the run
    ends as it would have. Was: the run stopped, "the cluster lost every worker", with a healthy
    worker left."""
    from harness.cluster import Engine

    address, _ = cluster
    submitted, scattered = [], []
    submit = Engine._submit_dask

    def submit_and_lose_the_setup(self, work, job):
        future = submit(self, work, job)
        submitted.append(job)
        scattered.append(tuple(part.key for part in self._shared_setup))  # a future per part of the setup
        if len(submitted) == 1:
            self._client.cancel(list(self._shared_setup))
        return future

    monkeypatch.setattr(Engine, "_submit_dask", submit_and_lose_the_setup)
    with Engine(scheduler=address) as engine:
        assert list(engine.map(slow_square, range(6))) == [0, 1, 4, 9, 16, 25]
    assert len(set(scattered)) >= 2 and submitted.count(0) == 2  # scattered again; the first job sent twice


def slow_square(state, job):
    time.sleep(0.3)
    return job * job


def test_losing_every_worker_is_one_line_not_a_bug(cluster):
    """With every copy of the run's setup gone, the scheduler forgets its tasks: the run says so."""
    from harness.cluster import Engine
    from harness.errors import HarnessError

    address, workers = cluster
    with pytest.raises(HarnessError, match="the cluster lost every worker that held this run's work mid-run; "
                                           "run again: a hash cache keeps what was done"):
        with Engine(scheduler=address) as engine:
            for value in engine.map(slow_square, range(40)):
                if value == 0:
                    for worker in workers:
                        worker.send_signal(signal.SIGKILL)


def pretend_other_versions():  # run on each worker: as if it had another OpenCV
    import harness.provenance

    real = harness.provenance.result_versions
    harness.provenance.result_versions = lambda: {**real(), "cv2": "0.0.0"}


def test_a_worker_with_other_versions_is_refused(cluster):
    """Its hashes would differ from this machine's, and go into this machine's cache under its keys."""
    from distributed import Client

    from harness.cluster import Engine
    from harness.errors import HarnessError
    from harness.provenance import result_versions

    address, _ = cluster
    with Client(address, timeout="30s") as client:
        client.run(pretend_other_versions)
    with pytest.raises(HarnessError, match=rf"the Dask worker tcp://127\.0\.0\.1:\d+ runs other versions than this "
                                           rf"machine \(cv2 0\.0\.0 there, {result_versions()['cv2']} here\)"):
        with Engine(scheduler=address) as engine:
            list(engine.map(square, range(4)))


def unoptimized_opencv():  # run on each worker: OpenCV without IPP and its vector code, another kind of CPU
    cv2.setUseOptimized(False)


def test_a_worker_of_another_kind_of_cpu_is_refused_where_results_follow_the_cpu(cluster):
    """Where the run's results are not bit-exact across processors, a worker of another kind would mix
    its results into the tables and this machine's cache; where they are, its results are this one's."""
    from distributed import Client

    from harness.cluster import Engine
    from harness.errors import HarnessError

    address, _ = cluster
    with Client(address, timeout="30s") as client:
        client.run(unoptimized_opencv)
    with pytest.raises(HarnessError, match=r"the Dask worker tcp://127\.0\.0\.1:\d+ is another kind of CPU than this "
                                           r"machine \(.*opencv_optimized false there, true here\): this run's hashers "
                                           r"or edits are not bit-exact across processors"):
        with Engine(scheduler=address, same_cpu=True) as engine:
            list(engine.map(square, range(4)))
    with Engine(scheduler=address) as engine:
        assert list(engine.map(square, range(4))) == [0, 1, 4, 9]


CPU_RUN = """
images: [builtin:camera, builtin:coffee]
hashers: [aHash]
sweeps: [{family: edit, b: EDIT}]
"""


@pytest.mark.parametrize("edit, refused", [("{hue: {degrees: 10}}", True), ("{jpeg: {quality: 50}}", False)])
def test_a_run_whose_edits_follow_the_cpu_refuses_a_worker_of_another_kind(cluster, tmp_path, edit, refused):
    from distributed import Client

    address, _ = cluster
    with Client(address, timeout="30s") as client:
        client.run(unoptimized_opencv)
    config = tmp_path / "cpu.yaml"
    config.write_text(CPU_RUN.replace("EDIT", edit))
    command = [sys.executable, "-m", "harness", "run", str(config), "--out", str(tmp_path / "out"), "--quiet",
               "--no-cache", "--scheduler", address]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    if refused:
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert "is another kind of CPU than this machine" in done.stderr, done.stderr
    else:
        assert done.returncode == 0, done.stderr


LOGO = """
images: [builtin:astronaut, builtin:camera, builtin:coffee]
hashers: [pHash]
sweeps: [{family: logo, b: {overlay_image: {source: mark.png, size: 0.5}}}]
"""


def test_a_worker_whose_copy_of_a_named_file_differs_is_refused(cluster, tmp_path):
    """A file a config names (an overlay here, a model's weights) is read by the worker from its own
    disk, while the cache keys hold this machine's copy: a worker with another file at that path is
    refused in one line, and stores nothing (it gave other distances, under this machine's keys).
    With the same file there, the run gives the local tables."""
    address, _ = cluster
    here = tmp_path / "client"  # the workers run from tmp_path (see cluster), this run from here
    here.mkdir()
    cv2.imwrite(str(tmp_path / "mark.png"), make_scene(1, 60, 80))  # the workers' mark.png
    cv2.imwrite(str(here / "mark.png"), make_scene(2, 60, 80))  # this machine's
    (here / "c.yaml").write_text(LOGO)
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}

    def run_here(out, *extra):
        return subprocess.run([sys.executable, "-m", "harness", "run", "c.yaml", "--out", out, "--quiet", *extra],
                              cwd=here, env=env, capture_output=True, text=True, timeout=300)

    cache = here / "cache.sqlite"
    done = run_here("dask", "--cache", str(cache), "--scheduler", address)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert re.fullmatch(r"error: on the Dask worker tcp://127\.0\.0\.1:\d+: 'mark\.png' \(source of overlay_image\) "
                        r"on this worker (is not the file this run read|is [\d,]+ bytes, where the file this run "
                        r"read is [\d,]+).*; a file a config names must be at the same path with the same content on "
                        r"every worker\n", done.stderr), done.stderr
    assert not cache.exists()  # it stored nothing, so the cache file this run created is not left behind
    (here / "mark.png").write_bytes((tmp_path / "mark.png").read_bytes())
    assert run_here("local", "--no-cache").returncode == 0
    done = run_here("dask", "--cache", str(cache), "--scheduler", address)
    assert done.returncode == 0, done.stderr
    assert (here / "dask" / "distances.csv").read_bytes() == (here / "local" / "distances.csv").read_bytes()


def test_a_workers_copy_is_judged_by_its_size_before_its_content(tmp_path, monkeypatch):
    """check_files, what each worker runs first: a copy of another size than the file the run read is
    refused without being read (a worker's copy may be any file: a 6 GB one was read whole for its
    digest, to be refused); one of the same size is read and refused by its digest; the same file passes."""
    from harness import provenance
    from harness.errors import HarnessError
    from harness.imagework import check_files, plan_files

    ours = tmp_path / "mark.png"
    cv2.imwrite(str(ours), make_scene(1, 60, 80))
    files = plan_files((), ((("overlay_image", (("source", str(ours)),)),),))
    assert [(key, path, size) for key, path, _, size in files] == [
        ("source of overlay_image", str(ours), ours.stat().st_size)]
    read = []
    monkeypatch.setattr(provenance, "file_sha256", lambda path: read.append(path) or "digest of " + path)
    provenance._content_digest.cache_clear()
    check_files(files[:0])
    ours.write_bytes(ours.read_bytes() + b"appended")  # the worker's copy: another size
    with pytest.raises(HarnessError, match=rf"source of overlay_image\) on this worker is {ours.stat().st_size:,} "
                                           rf"bytes, where the file this run read is {files[0][3]:,}: .*refused unread"):
        check_files(files)
    assert read == []
    monkeypatch.undo()
    provenance._content_digest.cache_clear()
    whole = ours.read_bytes()
    ours.write_bytes(whole[:files[0][3] - 1] + b"x")  # the same size, another content
    with pytest.raises(HarnessError, match=r"on this worker is not the file this run read"):
        check_files(files)
    ours.write_bytes(whole[:files[0][3]])  # the file the run read
    check_files(files)


def test_a_port_that_never_answers_is_one_line(monkeypatch):
    """distributed's own timeout covers the connection, not the handshake (the dashboard's port hangs)."""
    import socket

    from harness import cluster
    from harness.errors import HarnessError

    monkeypatch.setattr(cluster, "CONNECT_WAIT", 2)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        address = f"tcp://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(HarnessError, match="no Dask scheduler answered within 2 s"):
            list(cluster.Engine(scheduler=address).map(square, range(1)))
        assert time.monotonic() - started < 10


def test_a_scheduler_without_workers_is_one_line(tmp_path, monkeypatch):
    """What to start, after a while for workers to join; not distributed's "No valid workers found"."""
    from harness import cluster
    from harness.errors import HarnessError

    # 2 s for workers to join, but the connection to the (live) scheduler keeps CONNECT_WAIT's own
    # 30 s: with 2 s for both, a busy machine's slow first Client() read as "no Dask scheduler answered".
    real_wait = cluster._wait_for_workers

    def wait_briefly_for_workers(client, address, named):
        monkeypatch.setattr(cluster, "CONNECT_WAIT", 2)
        return real_wait(client, address, named)

    monkeypatch.setattr(cluster, "_wait_for_workers", wait_briefly_for_workers)
    scheduler, address = start_scheduler(tmp_path, dict(os.environ))
    try:
        engine = cluster.Engine(scheduler=address)  # as the API makes it: named as its argument
        with pytest.raises(HarnessError, match=rf"^scheduler='{address}': the scheduler has no workers \(none "
                                               rf"joined within 2 s\); start some with `dask worker {address}`$"):
            list(engine.map(square, range(1)))
        assert engine._client is None  # closed: an API caller is left no open client
    finally:
        scheduler.kill()
        scheduler.wait(timeout=30)


def test_an_inproc_address_without_its_scheduler_is_one_line():
    """Only a script's own in-process cluster has one (from the command line, none ever does)."""
    from harness import cluster
    from harness.errors import HarnessError

    with pytest.raises(HarnessError, match="no scheduler of this process is there .*give the scheduler's tcp://"):
        list(cluster.Engine(scheduler="inproc://x").map(square, range(1)))


def test_an_inproc_address_of_this_processs_own_cluster_is_used():
    """An inproc:// address is looked up in distributed's registry of this process's listeners: a
    wrong one is refused at once (connecting, distributed retried past CONNECT_WAIT on a busy
    machine, and the error blamed a scheduler that does not answer), the right one is used."""
    from distributed import LocalCluster

    from harness import cluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as local:
        assert local.scheduler_address.startswith("inproc://")
        with cluster.Engine(scheduler=local.scheduler_address) as engine:
            assert list(engine.map(square, range(4))) == [0, 1, 4, 9]


def test_an_empty_scheduler_address_is_refused(tmp_path):
    """Not a local run instead (an unset shell variable, `--scheduler "$SCHEDULER"`)."""
    done = subprocess.run([sys.executable, "-m", "harness", "run", "configs/lena.yaml", "--scheduler", "",
                           "--out", str(tmp_path / "o")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "argument --scheduler: empty" in done.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("call", ["evaluate", "find_leaks"])
def test_the_api_refuses_a_count_of_workers_with_a_scheduler(call):
    """As --workers and --scheduler exclude each other: workers=2 would be ignored on the cluster."""
    import harness
    from harness.errors import HarnessError

    config = ({"images": ["builtin:astronaut"], "hashers": ["aHash"], "sweeps": [{"family": "f", "b": "grayscale"}]}
              if call == "evaluate" else
              {"splits": {"train": ["builtin:astronaut"], "test": ["builtin:coffee"]}, "threshold": 8})
    with pytest.raises(HarnessError, match=r"^workers=2 and scheduler exclude each other: a scheduler's own workers"):
        getattr(harness, call)(config, workers=2, scheduler="tcp://127.0.0.1:9")


def test_local_workers_give_the_same_tables(job, tmp_path):
    config, local = job
    out = tmp_path / "two"
    run(config, out, "--workers", "2", "--no-cache")
    assert_same_tables(out, local)


def test_no_more_local_workers_are_started_than_there_are_images():
    """Was: --workers 1000 started 1,000 processes for 13 images (37 s instead of 17)."""
    from harness import api

    config = {"name": "few", "images": ["builtin:coffee", "builtin:camera", "builtin:astronaut"],
              "hashers": ["aHash"], "sweeps": [{"family": "jpeg", "b": {"jpeg": {"quality": 50}}}]}
    results = api.evaluate(config, workers=64)
    assert results.provenance["engine"] == "3 local worker processes"
    assert results.distances.equals(api.evaluate(config, workers=1).distances)


def test_a_cluster_that_cannot_be_reached_is_one_line(job, tmp_path):
    config, _ = job
    done = subprocess.run([sys.executable, "-m", "harness", "run", str(config), "--out", str(tmp_path / "x"),
                           "--quiet", "--scheduler", "tcp://127.0.0.1:9"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("error: --scheduler tcp://127.0.0.1:9: cannot connect"), done.stderr  # as typed


def test_a_rerun_over_a_full_cache_needs_no_cluster(job, tmp_path):
    """Nothing to send, so no scheduler to reach (it may be the one a failed run lost), as a local
    run over a full cache starts no worker: the same tables, with the address unreachable."""
    config, _ = job
    readable = tmp_path / "readable.yaml"  # (the broken file is read again by every run: it is never cached)
    readable.write_text(config.read_text().replace("/images]", "/images/*.png]"))
    cache = str(tmp_path / "cache.sqlite")
    run(readable, tmp_path / "first", "--cache", cache)
    done = run(readable, tmp_path / "again", "--cache", cache, "--scheduler", "tcp://127.0.0.1:9")  # a new set
    assert "error:" not in done.stderr, done.stderr  # (status 1: the crop fails on the smaller images)
    assert_same_tables(tmp_path / "again", tmp_path / "first")
    assert json.loads((tmp_path / "again" / "run.json").read_text())["engine"] == "this process"  # nothing sent


def test_worker_processes_die_with_a_killed_parent(job, tmp_path):
    config, _ = job
    process = run(config, tmp_path / "out", "--workers", "2", "--no-cache", popen=True)
    parent = psutil.Process(process.pid)
    deadline = time.monotonic() + 120
    children = []
    while time.monotonic() < deadline and process.poll() is None:
        try:
            children = parent.children(recursive=True)  # forked workers (spawned ones, where fork is not safe)
        except psutil.Error:  # a child that ended while being listed
            continue
        if len(children) >= 2:
            break
        time.sleep(0.05)
    assert len(children) >= 2, "no worker processes were started"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(map(ended, children)):
        time.sleep(0.05)
    alive = [p.pid for p in children if not ended(p)]
    assert not alive, f"worker processes outlived their parent: {alive}"


def ended(process: psutil.Process) -> bool:
    """Whether a process has exited: gone, or a zombie. An orphan's exit is reaped by the init process
    it is handed to, and a container's init (or a pytest run as PID 1) may never reap it: psutil's
    wait_procs then took the exited worker for one still running."""
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_for_the_marker(state, job):
    """Job 0 waits (a minute at most) for the marker; each other job returns its number, leaving
    the marker first if it is told to."""
    number, marker, leaves_it = job
    if number == 0:
        for _ in range(600):
            if os.path.exists(marker):
                return "saw the marker"
            time.sleep(0.1)
        return "waited in vain"
    if leaves_it:
        open(marker, "w").close()
    return number


def test_a_long_job_first_does_not_keep_the_other_worker_waiting(tmp_path):
    """Results come back in job order, but only running jobs count against the window: while job 0
    runs, the other worker goes on through the jobs after it (before, at most `window` jobs were
    in flight counting finished ones, so job 0 would have waited for a job never sent)."""
    from harness.cluster import Engine

    last, marker = 5, str(tmp_path / "marker")  # within the finished results that may wait (Engine.BUFFERED)
    with Engine(workers=2, window=2) as engine:
        results = list(engine.map(wait_for_the_marker, [(k, marker, k == last) for k in range(last + 1)]))
    assert results == ["saw the marker", *range(1, last + 1)]


def test_each_value_is_handed_to_finished_as_soon_as_it_is_back(tmp_path):
    """`finished` sees the values after job 0 while job 0 still runs (job 0 goes on only once
    `finished` has seen them all), so a caller that stores results there loses none of them when
    the run stops; the values still leave `map` in job order."""
    from harness.cluster import Engine

    last, marker = 5, tmp_path / "marker"
    seen = []

    def finished(value):
        seen.append(value)
        if value == last:
            marker.touch()

    with Engine(workers=2, window=2) as engine:
        results = list(engine.map(wait_for_the_marker, [(k, str(marker), False) for k in range(last + 1)], finished))
    assert results == ["saw the marker", *range(1, last + 1)]
    assert seen == [*range(1, last + 1), "saw the marker"]


@functools.cache  # asked once a session, not once a test
def _unfixed_python() -> str | None:
    """A Python 3.11.0 to 3.11.4 on this machine (Debian 12's /usr/bin/python3.11 is 3.11.2), which
    lacks CPython's fix for its issue 94777: a broken process pool whose feeder thread is inside a
    write no worker will read waits for it for good. The engine unblocks it itself there, which only
    such a Python can show; harness.cluster needs nothing outside the standard library, so the
    scripts below run under it without the project's packages."""
    import shutil

    for name in ("python3.11", "/usr/bin/python3.11", "/usr/bin/python3"):
        found = shutil.which(name)
        if not found:
            continue
        try:
            said = subprocess.run([found, "-c", "import sys; print(*sys.version_info[:3])"], capture_output=True,
                                  text=True, timeout=30).stdout.split()
        except (OSError, subprocess.SubprocessError):
            continue
        if len(said) == 3 and (3, 11, 0) <= tuple(map(int, said)) < (3, 11, 5):
            return found
    return None


@pytest.fixture(params=["this Python", "Python 3.11.0-3.11.4"])
def python(request):
    """The interpreter the engine's scripts run under: this one, and an unfixed 3.11 where there is one."""
    if request.param == "this Python":
        return sys.executable
    found = _unfixed_python()
    if found is None:
        pytest.skip("no Python 3.11.0 to 3.11.4 on this machine (Debian 12's /usr/bin/python3.11 is one)")
    return found


def engine_script(tmp_path, python: str, source: str, *args, timeout: int):
    """Run `source` (a script using harness.cluster's Engine) under `python`, with `args`."""
    script = tmp_path / "engine.py"
    script.write_text(source)
    return subprocess.run([python, str(script), *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": ROOT})


STOPPED_MID_RESULT = """
from harness.cluster import Engine

def work(state, job):  # a result far larger than the pipe's buffer: a worker is killed while writing it
    return b"x" * (64 << 20)

if __name__ == "__main__":
    for attempt in range(3):
        try:
            with Engine(workers=2) as engine:
                for k, value in enumerate(engine.map(work, range(40))):
                    if k == 2:
                        raise KeyboardInterrupt
        except KeyboardInterrupt:
            print("stopped", attempt, flush=True)
"""


def test_workers_killed_mid_result_do_not_leave_the_pool_waiting(tmp_path, python):
    """Stopping the engine kills its workers; one killed while writing its result left part of a
    message in the result pipe, and the pool's manager thread (and the run with it) waited for the
    rest for good."""
    done = engine_script(tmp_path, python, STOPPED_MID_RESULT, timeout=300)
    assert done.returncode == 0 and done.stdout.split("\n")[:3] == ["stopped 0", "stopped 1", "stopped 2"], done
    assert done.stderr == "", done.stderr


STOPPED_MID_JOB = """
import signal, time
from harness.cluster import Engine

def work(state, job):  # busy: its worker reads no further job
    time.sleep(60)
    return len(job)

def stop(signum, frame):
    raise KeyboardInterrupt

if __name__ == "__main__":
    signal.signal(signal.SIGALRM, stop)
    signal.alarm(3)
    started = time.monotonic()
    try:
        with Engine(workers=2) as engine:  # jobs far larger than the pipe's buffer: the feeder blocks on the third
            list(engine.map(work, [b"x" * (16 << 20)] * 8))
    except KeyboardInterrupt:
        print("stopped after", round(time.monotonic() - started), "s", flush=True)
"""


def test_workers_killed_while_a_job_is_written_to_them_do_not_leave_the_pool_waiting(tmp_path, python):
    """Stopping the engine kills its workers; the pool's thread that writes jobs into their pipe was
    inside a write no worker would read, and the pool's shutdown waited for that thread for good: on
    Python 3.11.0 to 3.11.4 (Debian 12's 3.11.2, found by .ci/arm64), Ctrl-C or SIGTERM during a run
    with workers hung. Python 3.11.5 and later unblock it themselves (CPython issue 94777), so there
    it passes on the old code too: its case under an unfixed Python (`python`) is the one that fails."""
    done = engine_script(tmp_path, python, STOPPED_MID_JOB, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("stopped after"), done
    assert int(done.stdout.split()[2]) < 30, done.stdout  # not the workers' 60 s: they were killed
    assert done.stderr == "", done.stderr


KILLED_ONCE = """
import os, signal, sys
from harness.cluster import Engine

def work(state, job):
    if job == 5 and not os.path.exists(sys.argv[1]):  # the first time only: its worker dies holding job 5
        open(sys.argv[1], "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    if job == 7 and sys.argv[2] == "always":  # every time: a job that kills every worker that takes it
        os.kill(os.getpid(), signal.SIGKILL)
    return job * job

if __name__ == "__main__":
    with Engine(workers=2) as engine:
        print(list(engine.map(work, range(20))))
"""


@pytest.mark.parametrize("dies", ["once", "always"])
def test_a_local_worker_that_dies_has_its_jobs_redone_by_a_new_pool(tmp_path, dies, python):
    """Was: one local worker killed mid-run ended the run ("a worker process died"), as a cluster's
    lost worker does not. Now the broken pool's jobs go to a new pool, so the run ends as it would
    have; a job that kills every worker that takes it still ends the run, after POOL_RESTARTS pools."""
    done = engine_script(tmp_path, python, KILLED_ONCE, str(tmp_path / "mark"), dies, timeout=300)
    assert (tmp_path / "mark").exists()  # a worker did die
    if dies == "once":
        assert done.returncode == 0 and done.stdout == f"{[k * k for k in range(20)]}\n", done
    else:
        assert done.returncode != 0 and "harness.cluster.WorkerDied: a worker process died" in done.stderr


KILLED_WHILE_JOBS_WAIT = """
import os, signal, sys, time
from harness.cluster import Engine

def work(state, job):
    number, data = job
    if number == 5 and not os.path.exists(sys.argv[1]):  # its worker dies with jobs still being written
        open(sys.argv[1], "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.2)
    return number * number

if __name__ == "__main__":
    with Engine(workers=2) as engine:  # jobs far larger than the pipe's buffer: the feeder is inside a write
        print(list(engine.map(work, [(k, b"x" * (16 << 20)) for k in range(20)])), flush=True)
"""


def test_a_worker_that_dies_while_jobs_are_written_to_the_pool_lets_the_process_end(tmp_path, python):
    """Was, on Python 3.11.0 to 3.11.4 (Debian 12's 3.11.2): a local worker that died while the
    pool's feeder thread wrote a large job (a group of images' bytes) left that write waiting for
    good, and the broken pool's manager thread with it; the run's results were whole (a new pool
    redid the jobs) and its report written, but the interpreter's exit waited for that thread, so
    the process never ended. Python 3.11.5 and later unblock the write themselves (CPython issue
    94777), so there it passes on the old code too: its case under an unfixed Python (`python`) is
    the one that fails."""
    done = engine_script(tmp_path, python, KILLED_WHILE_JOBS_WAIT, str(tmp_path / "mark"), timeout=120)
    assert (tmp_path / "mark").exists()  # a worker did die
    assert done.returncode == 0 and done.stdout == f"{[k * k for k in range(20)]}\n", done
    assert done.stderr == "", done.stderr


KILLED_MID_RESULT = """
import gc, multiprocessing.queues, os, signal, struct, sys, time
from harness.cluster import Engine

def work(state, job):
    if job == 5 and not os.path.exists(sys.argv[1]):  # the first time only: its worker dies mid-result
        open(sys.argv[1], "w").close()
        # The worker's result queue (its only SimpleQueue): a message's header promising 1 MiB and ten
        # bytes of it, then the kill, as a worker killed while it wrote a large result leaves them.
        results, = [o for o in gc.get_objects() if isinstance(o, multiprocessing.queues.SimpleQueue)]
        with results._wlock:
            os.write(results._writer.fileno(), struct.pack("!i", 1 << 20) + b"x" * 10)
            os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.05)
    return job * job

if __name__ == "__main__":
    with Engine(workers=2) as engine:
        print(list(engine.map(work, range(20))), flush=True)
"""


def test_a_worker_that_dies_while_writing_its_result_has_its_jobs_redone(tmp_path, python):
    """Was, on every Python: a local worker that died (killed, out of memory) while it wrote its
    result left part of a message in the result pipe; the pool's manager thread waited for the
    rest for good, never took the pool for broken, and the run waited with it. Now a worker found
    dead in a pool that still stands, DEAD_WORKER_GRACE seconds on, has the pool stopped: it
    breaks, and its jobs are redone by a new one, as for any other death."""
    done = engine_script(tmp_path, python, KILLED_MID_RESULT, str(tmp_path / "mark"), timeout=120)
    assert (tmp_path / "mark").exists()  # a worker did die
    assert done.returncode == 0 and done.stdout == f"{[k * k for k in range(20)]}\n", done
    assert done.stderr == "", done.stderr


def test_large_images_are_sent_first_within_the_lookahead(tmp_path):
    """largest_first: a permutation; each time the largest image among the next `lookahead` (its
    pixels from the header, not its file size: a chessboard PNG is small on disk), and no image
    more than `lookahead` places from its own; in_order puts the outcomes back."""
    from types import SimpleNamespace

    from harness.runner import in_order, largest_first

    import numpy as np

    paths = []
    for k in range(40):
        noise = np.random.default_rng(k).integers(0, 256, (40 + k % 7, 40, 3), dtype=np.uint8)
        image = np.zeros((400, 400, 3), np.uint8) if k == 30 else noise  # 30: large, and tiny compressed
        path = tmp_path / f"{k:02d}.png"
        cv2.imwrite(str(path), image)
        paths.append(str(path))
    assert os.path.getsize(paths[30]) < max(os.path.getsize(p) for p in paths[:30])
    paths.append("builtin:astronaut")
    sized = list(largest_first(paths, 8))
    order = [number for number, _ in sized]
    assert sorted(order) == list(range(len(paths)))
    assert max(abs(place - number) for place, number in enumerate(order)) <= 8
    assert order.index(30) < 30 - 4  # sent as soon as it is among the next 8
    assert dict(sized)[30] == 400 * 400 and dict(sized)[0] == 40 * 40
    assert dict(sized)[len(paths) - 1] == 512 * 512  # a built-in image: as scikit-image's photographs mostly are
    assert [number for number, _ in largest_first(paths, 1)] == list(range(len(paths)))
    assert list(largest_first([], 4)) == []
    outcomes = [SimpleNamespace(number=number) for number in order]
    assert [o.number for o in in_order(outcomes)] == list(range(len(paths)))


def test_small_images_are_sent_together():
    """sent_together: consecutive small images' jobs go as one (a list) up to TOGETHER_PIXELS,
    TOGETHER_MOST images or TOGETHER_BYTES of files; a large image or file goes alone; a Ready
    outcome is never sent, and the group gathered before it goes first; each_outcome gives back
    one outcome per image, in order."""
    from types import SimpleNamespace

    from harness.cluster import Ready
    from harness.runner import ALONE, TOGETHER_BYTES, TOGETHER_MOST, TOGETHER_PIXELS, each_outcome, sent_together

    def job(number, data=b"x"):
        return SimpleNamespace(number=number, data=data)

    def numbers(sent):
        return [[j.number for j in part] if isinstance(part, list) else "ready" for part in sent]

    small, large = TOGETHER_PIXELS // 8, TOGETHER_PIXELS + 1
    sized = [(job(k), small) for k in range(10)] + [(job(10), large), (job(11), small), (job(12), small),
                                                     (Ready(job(13)), 0), (job(14), small)]
    sent = list(sent_together(iter(sized)))
    assert numbers(sent) == [list(range(8)), [8, 9], [10], [11, 12], "ready", [14]]
    assert numbers(sent_together((job(k), 0) for k in range(TOGETHER_MOST + 3))) == \
        [list(range(TOGETHER_MOST)), list(range(TOGETHER_MOST, TOGETHER_MOST + 3))]
    heavy = b"x" * (TOGETHER_BYTES // 2)  # few pixels in a large file: held by this process while out
    assert numbers(sent_together([(job(0, heavy), 1), (job(1, heavy), 1), (job(2, None), 1), (job(3), 1)])) == \
        [[0, 1], [2, 3]]  # a built-in image (no file) adds no bytes
    assert numbers(sent_together([(job(0), 1), (job(1, heavy + heavy), 1), (job(2), 1)])) == [[0], [1], [2]]
    # A full group (the first image, which goes alone, starts the workers) goes before the next
    # job is prepared (read, and the images ahead sized).
    pulled = []

    def prepared():
        for k in range(3):
            pulled.append(k)
            yield job(k), ALONE

    sending = sent_together(prepared())
    assert numbers([next(sending)]) == [[0]] and pulled == [0]
    results = [part if isinstance(part, list) else part.value for part in sent]
    assert [j.number for j in each_outcome(results)] == list(range(15))


def test_only_images_with_work_are_sized(tmp_path, monkeypatch):
    """Sizing an image (its header, for largest_first) only orders the workers' jobs: a first run
    with two workers sends its first image at once and sizes the others; a rerun over a full cache
    sizes none and gives the same results."""
    import numpy as np

    import harness.runner as runner
    from harness import api

    paths = []
    for k in range(5):
        path = tmp_path / f"{k}.png"
        cv2.imwrite(str(path), np.random.default_rng(k).integers(0, 256, (48, 40 + 8 * k, 3), dtype=np.uint8))
        paths.append(str(path))
    sized = []
    real_size = runner.work_size
    monkeypatch.setattr(runner, "work_size", lambda path: sized.append(path) or real_size(path))
    config = {"name": "sized", "images": paths, "hashers": ["aHash"],
              "sweeps": [{"family": "blur", "b": {"blur": {"kernel": 3}}}]}
    cache = str(tmp_path / "cache.sqlite")
    first = api.evaluate(config, workers=2, cache=cache)
    assert sorted(sized) == sorted(paths[1:])
    sized.clear()
    again = api.evaluate(config, workers=2, cache=cache)
    assert sized == []
    assert again.distances.equals(first.distances)


def test_a_server_that_is_no_scheduler_is_named_as_such():
    """A web server at the address: distributed reads its first bytes as a frame's length and fails
    to allocate exabytes. Was: "cannot connect (MemoryError: Unable to allocate 3.01 EiB ...)"."""
    import socket
    import threading

    from harness.cluster import Engine
    from harness.errors import HarnessError

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    answered = []

    def answer():
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            client.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
            answered.append(client)  # kept open, as a web server that waits for the rest

    threading.Thread(target=answer, daemon=True).start()
    address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
    try:
        with pytest.raises(HarnessError, match=r"the server there answered, but not as a Dask scheduler does; is this "
                                               r"the scheduler's address"):
            with Engine(scheduler=address) as engine:
                list(engine.map(square, [1]))
    finally:
        server.close()
        for client in answered:
            client.close()


def test_a_cluster_run_records_the_cache_counts_of_a_local_one(cluster, tmp_path):
    """run.json's `cache` counts follow the cache's state, not where the work ran: a copy of an image
    is looked up while its first is still out on a worker, and is counted once all the same."""
    import shutil

    from tests.test_cache_record import config_file, counts, images_with_a_copy

    address, _ = cluster
    paths = images_with_a_copy(tmp_path / "images")
    cache = tmp_path / "some.sqlite"
    run(config_file(tmp_path, paths[::3], "some.yaml"), tmp_path / "some", "--cache", cache)
    config = config_file(tmp_path, [tmp_path / "images"])
    records = []
    for where, extra in (("here", ["--workers", "1"]), ("dask", ["--scheduler", address])):
        copy = tmp_path / f"{where}.sqlite"
        shutil.copyfile(cache, copy)
        run(config, tmp_path / where, "--cache", copy, *extra)
        records.append(json.loads((tmp_path / where / "run.json").read_text()))
    assert records[1]["engine"] == f"dask.distributed at {address}"
    assert counts(records[0]["cache"]) == counts(records[1]["cache"]) == {
        "opened": True, "read_only": False, "images_from_cache": 4, "images_computed": 8, "hashes_from_cache": 16,
        "hashes_computed": 32, "entries_rejected": 0}
