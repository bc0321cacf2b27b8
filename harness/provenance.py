"""What produced a run: versions, git commit, date, command line."""

from __future__ import annotations

import datetime as dt
import functools
import importlib.metadata
import os
import platform
import subprocess
import sys

# Pillow decodes what OpenCV cannot and resizes for ImageHash, SciPy computes imagehash.phash's DCT,
# PyWavelets whash: each can change a hash. FAISS runs the audit's search, pyarrow writes the tables.
DISTRIBUTIONS = ["imghash-harness", "opencv-contrib-python-headless", "numpy", "pandas", "matplotlib",
                 "scikit-image", "pyyaml", "tensorflow", "keras", "imagehash", "pdqhash", "pillow", "scipy",
                 "pywavelets", "faiss-cpu", "pyarrow"]
# What only the tables, the report and the leak audit's search go through: no hash depends on these,
# so the hash cache's keys leave them out (upgrading matplotlib keeps a 100,000-image cache) and Dask
# workers need not match them (the search's Hamming distances are exact, with FAISS or NumPy alike).
# A module of harness not named here is in the keys, new ones included.
NOT_HASHING_DISTRIBUTIONS = ("pandas", "matplotlib", "pyyaml", "pyarrow", "faiss-cpu")
NOT_HASHING_MODULES = ("report.py", "summary.py", "figures.py", "markdown.py", "review.py", "leaks_report.py",
                       "search.py", "leaks_search.py", "__main__.py", "commands.py", "heap.py", "process.py")


def versions() -> dict:
    """Installed versions, read from package metadata so nothing heavy (TensorFlow) is imported."""
    found = {"python": platform.python_version(), "platform": platform.platform()}
    for name in DISTRIBUTIONS:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    import cv2  # the build in use, whichever distribution provides it

    found["cv2"] = cv2.__version__
    return found


def git_state() -> dict:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
        # Dirty means the code or configs differ from the commit; regenerated reports and docs do not count.
        dirty = subprocess.run(["git", "-C", here, "status", "--porcelain", "--untracked-files=no", "--",
                                ":/", ":(exclude,top)reports", ":(exclude,top)*.md"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit or None, "dirty": bool(dirty) if commit else None}


# Environment variables that change what the libraries compute on a CPU: OpenCV's IPP and vector code,
# NumPy's SIMD loops, TensorFlow's oneDNN kernels and the ISA they may use, OpenBLAS's kernels. run.json
# records each of them, null where unset, so a record says as much about an unset one as a set one.
CPU_ENVIRONMENT = ("OPENCV_IPP", "OPENCV_CPU_DISABLE", "NPY_DISABLE_CPU_FEATURES", "TF_ENABLE_ONEDNN_OPTS",
                   "ONEDNN_MAX_CPU_ISA", "OPENBLAS_CORETYPE")


def cpu_features() -> dict:
    """The processor, and the vector instructions OpenCV dispatches to on it: MarrHildrethHash and
    ColorMomentHash (and CNN embeddings) round differently with AVX-512 than without, so a
    result is only comparable bit for bit with one made on the same features. Also whether OpenCV
    runs Intel's IPP (its cubic resizes differ from OpenCV's own), NumPy's SIMD level and the
    environment variables that change either (CPU_ENVIRONMENT)."""
    import cv2

    line = cv2.getCPUFeaturesLine()  # "SSE SSE2 *AVX2 ...": starred ones are dispatched at run time
    model, flags = _cpuinfo()
    vector = sorted(f for f in flags if f.startswith(("avx", "sse4", "fma", "neon", "asimd", "sve")))
    return {"machine": platform.machine(), "model": model or platform.processor(), "cores": os.cpu_count(),
            "opencv_features": line, "opencv_dispatch": " ".join(f[1:] for f in line.split() if f.startswith("*")),
            "opencv_optimized": cv2.useOptimized(), "opencv_ipp": cv2.ipp.useIPP(),
            "opencv_ipp_version": cv2.ipp.getIppVersion(), "numpy_simd": numpy_simd(), "vector_flags": vector,
            "environment": {name: os.environ.get(name) for name in CPU_ENVIRONMENT}}


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, tuple[str, ...]]:
    """(model name, flags) from /proc/cpuinfo, read once a process: it does not change, and on a
    machine of many cores it is large while cpu_kind is asked for each chain of a run."""
    flags, model = (), ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for row in handle:
                key, _, value = row.partition(":")
                if key.strip() in ("flags", "Features") and not flags:
                    flags = tuple(value.split())
                elif key.strip() == "model name" and not model:
                    model = value.strip()
    except OSError:
        pass
    return model, flags


def numpy_simd() -> str:
    """The SIMD extensions NumPy dispatches to here (its baseline, then those enabled at run time,
    which NPY_DISABLE_CPU_FEATURES can switch off): its float loops (exp, power) round by them."""
    try:
        from numpy._core import _multiarray_umath as umath
    except ImportError:  # NumPy 1
        from numpy.core import _multiarray_umath as umath
    found = getattr(umath, "__cpu_features__", {})
    return " ".join([*getattr(umath, "__cpu_baseline__", []),
                     *(name for name in getattr(umath, "__cpu_dispatch__", []) if found.get(name))])


# What of cpu_features a result that is not bit-exact across processors depends on: not the model's
# name or the number of cores (two models with the same features compute the same), but the vector
# code OpenCV and NumPy dispatch to, IPP, the CPU's vector flags (oneDNN and OpenBLAS pick their
# kernels by them) and the environment variables that change any of these.
CPU_KIND = ("machine", "opencv_features", "opencv_optimized", "opencv_ipp", "opencv_ipp_version", "numpy_simd",
            "vector_flags")


def cpu_kind() -> dict:
    """The kind of CPU, as far as results that follow it go (CPU_KIND), each part as text: for the
    hash cache's keys of hashers and transforms that are not bit-exact across processors, and for
    the check that a Dask worker of such a run is of the client's kind."""
    import json

    features = cpu_features()
    return {**{key: features[key] if isinstance(features[key], str) else json.dumps(features[key])
               for key in CPU_KIND},
            **{name: "unset" if value is None else value for name, value in features["environment"].items()}}


def command_line() -> list[str]:
    """How the run was started, as it would be typed again: `python -m harness ...` or `python -m
    examples.leak_demo ...` for a module run with -m (sys.argv[0] is then its file), else the
    program's name and its arguments."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and getattr(spec, "name", None):
        return ["python", "-m", spec.name.removesuffix(".__main__"), *sys.argv[1:]]
    return [os.path.basename(sys.argv[0]) if sys.argv else "python", *sys.argv[1:]]


def provenance() -> dict:
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(),
        "cwd": os.getcwd(),
        "git": git_state(),
        "versions": versions(),
        "cpu": cpu_features(),
        "text": text_environment(),
    }


def text_environment() -> dict:
    """How this process turns file names and printed text into bytes: its locale and Python's
    encodings. File names a run records (and the names in a hash table) are text decoded with the
    file-system encoding, so two runs under different ones can name the same file differently."""
    import locale

    variables = {name: os.environ[name] for name in ("LANG", "LC_ALL", "LC_CTYPE", "PYTHONUTF8", "PYTHONIOENCODING")
                 if name in os.environ}
    return {"filesystem_encoding": sys.getfilesystemencoding(), "preferred_encoding": locale.getpreferredencoding(False),
            "stdout_encoding": getattr(sys.stdout, "encoding", None), "environment": variables}


def result_versions() -> dict:
    """What a decode, a transform or a hash depends on besides its inputs, for the hash cache's keys:
    the library versions (the platform and the report's libraries aside) and harness's own code (its
    report modules aside), so that an upgrade of either, even one that keeps harness's version
    number, never reuses a hash computed by the old one."""
    return {**{k: v for k, v in versions().items() if k != "platform" and k not in NOT_HASHING_DISTRIBUTIONS},
            "harness code": code_digest(hashing_only=True)}


def file_sha256(path: str) -> str:
    """The SHA-256 of a file's content (read in blocks), in hexadecimal."""
    import hashlib

    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def file_digest(path: str) -> str:
    """A digest of the content of the file at `path` (an overlay, a weights file), for the cache's
    keys; what is not a regular file (a built-in name, a missing path, a FIFO, which must not be
    read) is keyed by what it is, and the transform or hasher says what is wrong with it."""
    import stat

    try:
        status = os.stat(path)
    except (OSError, ValueError):
        return "no file"
    if not stat.S_ISREG(status.st_mode):
        return "not a regular file"
    return _content_digest(os.path.realpath(path), status.st_size, status.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _content_digest(path: str, size: int, mtime_ns: int) -> str:
    """Read once a process while the file keeps its size and time (a run keys many chains by it)."""
    try:
        return file_sha256(path)
    except OSError:
        return "unreadable"


@functools.lru_cache(maxsize=2)
def code_digest(hashing_only: bool = False) -> str:
    """A digest of harness's own source files: a run's results depend on its code (read once a process).
    hashing_only: of those a hash can depend on (all but NOT_HASHING_MODULES), for the cache's keys."""
    import hashlib

    digest = hashlib.sha256()
    for path in source_files(hashing_only):
        with open(path, "rb") as handle:
            digest.update(os.path.basename(path).encode() + handle.read())
    return digest.hexdigest()


def source_files(hashing_only: bool = False) -> list[str]:
    root = os.path.dirname(os.path.abspath(__file__))
    return [os.path.join(folder, name)
            for folder in (root, os.path.join(root, "hashers"), os.path.join(root, "transforms"))
            for name in sorted(os.listdir(folder))
            if name.endswith(".py") and not (hashing_only and folder == root and name in NOT_HASHING_MODULES)]
