"""The benchmark photographs: OpenCV's 91 sample images (Debian's `opencv-doc` package).

    python benchmarks/photos.py [FOLDER]      # prints the folder and how many photographs it holds

The folder is, in this order: the one given, $OPENCV_SAMPLE_DATA, or where the
package installs it. The photographs are its *.jpg then its *.png files, each
sorted by name (91 files in opencv-doc 4.x). Their licences vary, so they are
read in place and never copied into the project.
"""

from __future__ import annotations

import glob
import os
import sys

ENV_VAR = "OPENCV_SAMPLE_DATA"
PACKAGE_FOLDER = "/usr/share/doc/opencv-doc/examples/data"
PATTERNS = ("*.jpg", "*.png")
EXPECTED = 91
HOW_TO_GET = (f"install Debian's opencv-doc package (apt-get install opencv-doc, which puts them in "
              f"{PACKAGE_FOLDER}), or give the folder of an extracted copy as an argument or in ${ENV_VAR}")


def find_folder(given: str | None = None) -> str:
    """The folder of the photographs: `given`, else $OPENCV_SAMPLE_DATA, else the package's folder.

    Raises FileNotFoundError, one line naming the folder and how to get the photographs."""
    folder = given or os.environ.get(ENV_VAR) or PACKAGE_FOLDER
    if not photo_paths_in(folder):
        raise FileNotFoundError(f"no OpenCV sample photographs (*.jpg, *.png) in {folder}: {HOW_TO_GET}")
    return folder


def folder_or_exit(given: str | None = None) -> str:
    """find_folder for scripts: a missing folder ends the script with one line and status 2."""
    try:
        return find_folder(given)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


def photo_paths_in(folder: str) -> list[str]:
    """The photographs in `folder`: its *.jpg, then its *.png, each sorted (the harness's glob order)."""
    return [path for pattern in PATTERNS for path in sorted(glob.glob(os.path.join(folder, pattern)))]


def harness_images(folder: str) -> list[str]:
    """The same photographs as `--images` arguments for `python -m harness run` (glob patterns it expands)."""
    return [os.path.join(folder, pattern) for pattern in PATTERNS]


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", help=f"the photographs' folder (default: ${ENV_VAR}, else {PACKAGE_FOLDER})")
    found = folder_or_exit(parser.parse_args().folder)
    count = len(photo_paths_in(found))
    note = "" if count == EXPECTED else f" (the benchmark's figures are for {EXPECTED})"
    print(f"{found}: {count} photographs{note}")
