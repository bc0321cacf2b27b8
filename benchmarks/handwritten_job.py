"""The benchmark job written by hand with cv2 and imagehash, as a user would instead of the harness.

    python benchmarks/handwritten_job.py [PHOTO_FOLDER] [--out detection.csv]

91 photographs x 4 edits x ImageHash's pHash, aHash and dHash; every pair of different
photographs is an impostor; per hasher, the threshold at 1% false positives by the
harness's rule, and each edit's detection rate at it. It does what
benchmarks/configs/issue9_job.yaml does, so compare.py can time one against the other.

It is the plain usage a user would write, not the harness's own calls: each ImageHash function is
given an RGB PIL image, as ImageHash's examples do, and converts it to gray itself (three times a
variant), where the harness makes the gray image once per variant and shares it (the same bits).
breakdown.py's floor makes the harness's calls instead.
"""
import argparse
import csv
import itertools

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


def threshold_at_fpr(impostor, genuine, fpr):
    """The largest observed distance below the (floor(fpr*n)+1)-th smallest impostor distance:
    a match is distance <= threshold, so at most floor(fpr*n) impostors match and ties never split."""
    impostor = np.sort(impostor)
    bound = impostor[int(np.floor(fpr * len(impostor) + 1e-9))]
    observed = np.concatenate([impostor, genuine])
    threshold = observed[observed < bound].max()
    return threshold, int(np.count_nonzero(impostor <= threshold))


parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("folder", nargs="?", help="the photographs' folder (default: see benchmarks/photos.py)")
parser.add_argument("--out", default="handwritten_job.csv", help="the CSV written")
args = parser.parse_args()

originals = {name: [] for name in HASHERS}
edited = {(name, edit): [] for name in HASHERS for edit in EDITS}
for path in photo_paths_in(folder_or_exit(args.folder)):
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    versions = {edit: Image.fromarray(cv2.cvtColor(make(image), cv2.COLOR_BGR2RGB)) for edit, make in EDITS.items()}
    original = Image.fromarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    for name, hash_function in HASHERS.items():
        originals[name].append(hash_function(original))
        for edit, version in versions.items():
            edited[name, edit].append(hash_function(version))

with open(args.out, "w", newline="") as file:
    out = csv.writer(file, lineterminator="\n")
    out.writerow(["hasher", "edit", "threshold", "impostor_pairs", "false_matches", "genuine_pairs", "detected", "tpr"])
    for name, hashes in originals.items():
        impostor = np.array([a - b for a, b in itertools.combinations(hashes, 2)], dtype=np.float64)
        genuine = {edit: np.array([a - b for a, b in zip(hashes, edited[name, edit])], np.float64) for edit in EDITS}
        threshold, false_matches = threshold_at_fpr(impostor, np.concatenate(list(genuine.values())), FPR)
        for edit, distances in genuine.items():
            detected = int(np.count_nonzero(distances <= threshold))
            out.writerow([name, edit, f"{threshold:g}", len(impostor), false_matches, len(distances), detected,
                          f"{detected / len(distances):.6g}"])
