"""How many bytes the hash cache takes per cached hash: a real run's cache file, measured.

    python benchmarks/cache_size.py                 # 667 images x 5 items x 3 hashers = 10,005 hashes
    python benchmarks/cache_size.py --images 6667   # about 100,000

Runs issue 9's job as scale.py does (`python -m harness run`, 4 edits, ImageHash's pHash, aHash and
dHash: 64-bit hashes) on N generated 256x256 JPEGs (made once, kept in the temporary folder as
scale.py keeps them) with `--cache FILE`, then reads the cache: its size on disk (the SQLite file,
and its write-ahead log if one is left) over the number of cached hashes, and what one entry's
columns hold (its key's three texts, its dtype and shape, the 8 bytes of the hash). The size
includes the files table (one row per image) and the primary key's index, which repeats each
entry's key. A benchmark prints figures; nothing here asserts.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile

from scale import CONFIG, ROOT, generate
from timing import child_environment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=667, help="generated images (default 667: 10,005 hashes)")
    parser.add_argument("--data", help="where the images are kept (default: harness-scale-images in the "
                                       "temporary folder, as scale.py)")
    args = parser.parse_args()
    data = args.data or os.path.join(tempfile.gettempdir(), "harness-scale-images")
    generate(data, args.images)
    with tempfile.TemporaryDirectory() as scratch:
        config = os.path.join(scratch, "job.yaml")
        with open(config, "w") as handle:
            handle.write(CONFIG.format(folder=data, count=args.images))
        cache = os.path.join(scratch, "hash-cache.sqlite")
        subprocess.run([sys.executable, "-m", "harness", "run", config, "--out", os.path.join(scratch, "out"),
                        "--cache", cache, "--quiet", "--workers", "1"], cwd=ROOT, env=child_environment(),
                       check=True)
        size = sum(os.path.getsize(path) for path in (cache, cache + "-wal") if os.path.exists(path))
        db = sqlite3.connect(cache)
        hashes, images = (db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in ("hashes", "files"))
        key, rest, data_bytes = db.execute(
            "SELECT avg(length(hasher) + length(image) + length(item)), avg(length(dtype) + length(shape) + "
            "coalesce(length(extras), 0)), avg(length(data)) FROM hashes").fetchone()
        db.close()
    print(f"hash cache of issue 9's job on {images:,} generated images: {hashes:,} cached 64-bit hashes "
          f"(5 items x 3 hashers an image)")
    print(f"  {size:,} bytes on disk: {size / hashes:.0f} bytes per cached hash, {size / images:,.0f} per image")
    print(f"  an entry's columns: key {key:.0f} bytes (hasher key, image id, item), dtype/shape/extras "
          f"{rest:.0f}, hash {data_bytes:.0f}; the primary key's index holds the key again")


if __name__ == "__main__":
    main()
