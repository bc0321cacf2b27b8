"""The benchmark job written by hand with cv2 and imagehash, as a user would instead of the harness.

    python benchmarks/handwritten_job.py [PHOTO_FOLDER] [--out detection.csv] [--workers N]

91 photographs x 4 edits x ImageHash's pHash, aHash and dHash; every pair of different
photographs is an impostor; per hasher, the threshold at 1% false positives by the
harness's rule, and each edit's detection rate at it. It does what
benchmarks/configs/issue9_job.yaml does, so compare.py can time one against the other.

Written as someone who cares about speed would write it, so that the comparison is against the
same work done well with the libraries directly: each version of a photograph is made gray once
(Pillow's RGB -> L, the conversion each ImageHash function makes itself, so the same bits) and
given to the three functions, as the harness shares one gray image per variant; the impostor
distances are counted with NumPy over all pairs at once; with --workers N (default 1) the
photographs are spread over N processes (multiprocessing.Pool), as the harness's --workers does.
breakdown.py's floor makes the harness's own calls instead.
"""
import argparse
import csv
from multiprocessing import Pool

import cv2
import imagehash
import numpy as np
from PIL import Image

from photos import folder_or_exit, photo_paths_in

FPR = 0.01
HASHERS = {"imagehash.phash": imagehash.phash, "imagehash.average_hash": imagehash.average_hash,
           "imagehash.dhash": imagehash.dhash}


def centre_crop(image, fraction):
    rows, cols = image.shape[:2]
    width, height = max(1, round(cols * fraction)), max(1, round(rows * fraction))
    left, top = int((cols - width) * 0.5), int((rows - height) * 0.5)
    return image[top:top + height, left:left + width]


EDITS = {  # the harness's jpeg, scale, blur and center_crop transforms, with their arguments
    "jpeg": lambda im: cv2.imdecode(cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, 50])[1], cv2.IMREAD_COLOR),
    "scale": lambda im: cv2.resize(im, (max(1, int(im.shape[1] * 0.5)), max(1, int(im.shape[0] * 0.5))),
                                   interpolation=cv2.INTER_LINEAR),
    "blur": lambda im: cv2.blur(im, (3, 3)),
    "crop": lambda im: centre_crop(im, 0.9),
}


def gray(bgr):
    return Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).convert("L")


def photo_hashes(path):
    """{(hasher, edit or ""): the hash's bits} of one photograph and its four edits."""
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    versions = {"": gray(image), **{edit: gray(make(image)) for edit, make in EDITS.items()}}
    return {(name, edit): function(version).hash.ravel()
            for name, function in HASHERS.items() for edit, version in versions.items()}


def threshold_at_fpr(impostor, genuine, fpr):
    """The largest observed distance below the (floor(fpr*n)+1)-th smallest impostor distance:
    a match is distance <= threshold, so at most floor(fpr*n) impostors match and ties never split."""
    impostor = np.sort(impostor)
    bound = impostor[int(np.floor(fpr * len(impostor) + 1e-9))]
    observed = np.concatenate([impostor, genuine])
    threshold = observed[observed < bound].max()
    return threshold, int(np.count_nonzero(impostor <= threshold))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", help="the photographs' folder (default: see benchmarks/photos.py)")
    parser.add_argument("--out", default="handwritten_job.csv", help="the CSV written")
    parser.add_argument("--workers", type=int, default=1, help="processes hashing the photographs (default 1)")
    args = parser.parse_args()

    paths = photo_paths_in(folder_or_exit(args.folder))
    if args.workers > 1:
        with Pool(args.workers) as pool:
            hashes = pool.map(photo_hashes, paths, chunksize=1)
    else:
        hashes = [photo_hashes(path) for path in paths]

    first, second = np.triu_indices(len(paths), 1)  # every pair of different photographs
    with open(args.out, "w", newline="") as file:
        out = csv.writer(file, lineterminator="\n")
        out.writerow(["hasher", "edit", "threshold", "impostor_pairs", "false_matches", "genuine_pairs", "detected",
                      "tpr"])
        for name in HASHERS:
            originals = np.array([photo[name, ""] for photo in hashes])
            impostor = np.count_nonzero(originals[first] != originals[second], axis=1).astype(np.float64)
            genuine = {edit: np.count_nonzero(originals != np.array([photo[name, edit] for photo in hashes]),
                                              axis=1).astype(np.float64) for edit in EDITS}
            threshold, false_matches = threshold_at_fpr(impostor, np.concatenate(list(genuine.values())), FPR)
            for edit, distances in genuine.items():
                detected = int(np.count_nonzero(distances <= threshold))
                out.writerow([name, edit, f"{threshold:g}", len(impostor), false_matches, len(distances), detected,
                              f"{detected / len(distances):.6g}"])
