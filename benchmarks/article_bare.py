"""The article's 40 pairs with aHash and pHash, written as a bare OpenCV script.

    python benchmarks/article_bare.py [--out article_bare.csv] [--figures DIR]

The same edits as configs/lena.yaml (made with cv2 exactly as the harness's transforms
make them), hashed with cv2.img_hash and compared with its compare(). The image is
resources/lena_std.tif when present, else scikit-image's astronaut, as the harness does.
With --figures, it also draws the three figures the harness's run of this job draws, with
matplotlib directly, as a plain script would: the distances per family, a heatmap of every
pair, and side B of every pair (see draw_figures). compare.py times it against
`python -m harness run configs/lena.yaml --hashers aHash,pHash`, without figures for (b)
and with them for (e).
"""
import argparse
import csv
import os

import cv2
import numpy as np

IMAGE = "resources/lena_std.tif"


def text(image, scale):
    out = image.copy()
    cv2.putText(out, "Text", (10, round(30 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255),
                max(1, round(3 * scale)), cv2.LINE_AA)
    return out


def gamma(image, value):
    return cv2.LUT(image, np.clip((np.arange(256) / 255.0) ** value * 255.0, 0, 255).astype(np.uint8))


def jpeg(image, quality):
    return cv2.imdecode(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_COLOR)


def scale(image, factor):
    rows, cols = image.shape[:2]
    return cv2.resize(image, (max(1, int(cols * factor)), max(1, int(rows * factor))), interpolation=cv2.INTER_LINEAR)


def crop(image, d):
    return image[128 + d:384 + d, 128 + d:384 + d]


def pairs(image):
    """(family, value, side a, side b) in the config's order."""
    yield "identity", "", image, image
    yield "grayscale", "", image, cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    for factor in (0.5, 0.25, 0.125, 0.0625):
        yield "scale", factor, image, scale(image, factor)
    for kernel in range(3, 12, 2):
        yield "blur", kernel, image, cv2.blur(image, (kernel, kernel))
    for size in range(1, 8):
        yield "text", size, image, text(image, size)
    for quality in range(10, 100, 10):
        yield "jpeg", quality, image, jpeg(image, quality)
    for value in (0.2, 0.5, 0.8, 1.2, 1.5, 2.0):
        yield "gamma", value, image, gamma(image, value)
    for d in (1, 2, 4, 8, 16, 32, 64):
        yield "shift", d, crop(image, 0), crop(image, d)


def draw_figures(folder, hashers, rows, sides):
    """families.png, heatmap.png and previews.png in `folder`, at about the harness's sizes: each
    hasher's distance / 64 over each family's values (a panel per family); every pair's distance
    as a heatmap with its value written in; side B of every pair, a row per family. The previews
    are one mosaic of thumbnails, placed once (figimage): the cheapest way matplotlib has."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    os.makedirs(folder, exist_ok=True)
    families = list(dict.fromkeys(family for family, *_ in rows))
    labels = [f"{family} {value}".strip() for family, value, *_ in rows]

    figure = Figure(figsize=(14.2, 6.3), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    for axes, family in zip(figure.subplots(2, 4, sharey=True).flat, families):
        part = [row for row in rows if row[0] == family]
        for k, name in enumerate(hashers):
            axes.plot(range(len(part)), [row[2 + k] / 64 for row in part], marker="o", label=name)
        axes.set_xticks(range(len(part)), [str(row[1]) for row in part])
        axes.set_title(family)
        axes.grid(alpha=0.3)
    figure.legend(hashers, loc="outside upper center", ncols=len(hashers))
    figure.savefig(os.path.join(folder, "families.png"))

    figure = Figure(figsize=(4.1, 11.8), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    values = np.array([row[2:] for row in rows], dtype=float)
    shown = axes.imshow(values / 64, vmin=0, vmax=1, aspect="auto")
    for (i, j), value in np.ndenumerate(values):
        axes.text(j, i, f"{value:g}", ha="center", va="center", fontsize=7, color="white")
    axes.set_xticks(range(len(hashers)), hashers)
    axes.set_yticks(range(len(rows)), labels, fontsize=8)
    figure.colorbar(shown, label="distance / 64")
    figure.savefig(os.path.join(folder, "heatmap.png"))

    cell, title = 108, 14  # a thumbnail's square, and the line above it, in pixels at 72 dpi
    per_family = [[(label, side) for label, (family, *_), side in zip(labels, rows, sides) if family == f]
                   for f in families]
    columns = max(len(items) for items in per_family)
    mosaic = np.full((len(families) * (cell + title), columns * cell, 3), 255, np.uint8)
    figure = Figure(figsize=(mosaic.shape[1] / 72, mosaic.shape[0] / 72), dpi=72)
    FigureCanvasAgg(figure)
    for r, items in enumerate(per_family):
        for c, (label, side) in enumerate(items):
            height, width = side.shape[:2]
            scale = min(cell / width, cell / height)
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            thumbnail = cv2.resize(side, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST)
            top = r * (cell + title) + title
            mosaic[top:top + size[1], c * cell:c * cell + size[0]] = thumbnail[..., ::-1]
            figure.text((c + 0.5) * cell / mosaic.shape[1], 1 - (top - 2) / mosaic.shape[0], label, fontsize=6,
                        ha="center", va="bottom")
    figure.figimage(mosaic, 0, 0, origin="upper")
    figure.savefig(os.path.join(folder, "previews.png"))


parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--out", default="article_bare.csv", help="the CSV written")
parser.add_argument("--figures", metavar="DIR", help="also draw the run's three figures into DIR")
args = parser.parse_args()

if os.path.exists(IMAGE):
    image = cv2.imread(IMAGE, cv2.IMREAD_COLOR)
else:
    import skimage.data
    image = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
hashers = {"aHash": cv2.img_hash.AverageHash_create(), "pHash": cv2.img_hash.PHash_create()}

rows, sides = [], []
with open(args.out, "w", newline="") as file:
    out = csv.writer(file, lineterminator="\n")
    out.writerow(["family", "value", *hashers])
    for family, value, a, b in pairs(image):
        distances = [h.compare(h.compute(a), h.compute(b)) for h in hashers.values()]
        out.writerow([family, value, *(f"{d:g}" for d in distances)])
        rows.append((family, value, *distances))
        sides.append(b)
if args.figures:
    draw_figures(args.figures, list(hashers), rows, sides)
