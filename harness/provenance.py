"""What produced a run: versions, git commit, date, command line."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import subprocess
import sys

DISTRIBUTIONS = ["harness", "opencv-contrib-python-headless", "numpy", "pandas", "matplotlib",
                 "scikit-image", "pyyaml", "tensorflow", "keras", "imagehash", "pdqhash"]


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


def provenance() -> dict:
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": [os.path.basename(sys.argv[0])] + sys.argv[1:],
        "git": git_state(),
        "versions": versions(),
    }
