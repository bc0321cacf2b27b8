"""The leak audit's review page: flagged pairs side by side, for a person to confirm by eye.

`review_page` renders one self-contained HTML page as a string (the caller writes it):
thumbnails are embedded as data: URIs, the CSS is inline, there is no script, and a
Content-Security-Policy meta tag forbids loading anything else, so the page opens offline
and cannot leak the file names it shows to the network. Every text that comes from the data
(split and file names, notes) is HTML-escaped, and characters a person could not see or
that could not be written as UTF-8 (control and bidi characters, the undecodable bytes of
a non-UTF-8 file name) are shown as Python-style escapes (\\xff, \\u202e).

The same input gives the same bytes: nothing depends on the clock or on dict order, and
the thumbnails are deterministic JPEGs.

`make_thumbnail` is the thumbnail maker: the project's reader, a shrink with
cv2.INTER_AREA to at most THUMBNAIL_SIDE pixels a side, JPEG quality THUMBNAIL_QUALITY.
"""

from __future__ import annotations

import base64
import hashlib
import html
import math
import os
from typing import Callable, Mapping, NamedTuple, Sequence

import cv2
import pandas as pd

from harness.errors import HarnessError
from harness.images import read_image
from harness.markdown import number, visible

PAIR_COLUMNS = ("split_a", "file_a", "split_b", "file_b")
AGREE = "agree"
GROUP = "group"  # optional: shown on the card when present
NEAREST = "nearest"  # added by sort_pairs: the pair's smallest normalised distance
UNFLAGGED = "unflagged:"  # + a hasher: its distance where it is beyond the threshold (review_page)
MAX_PAIRS = 200  # pairs shown by default; with THUMBNAIL_BYTES this bounds the page (about 10 MB at worst)
THUMBNAIL_SIDE = 160
THUMBNAIL_QUALITY = 80
# The largest thumbnail review_page embeds. A 160x160 JPEG at quality 80 of pure noise is
# about 20 KB; anything far above that is a caller's bug that would make the page huge.
THUMBNAIL_BYTES = 64 * 1024
# Sort key of a pair no hasher has a distance for (it cannot be flagged, but sorts last if given).
_NO_DISTANCE = math.inf


class Thumbnail(NamedTuple):
    """A thumbnail's JPEG (or PNG) bytes, and the size of the image it shows, in pixels."""

    data: bytes
    width: int
    height: int


NOT_FOUND = "not found"  # why a card has no preview: the file is gone
UNREADABLE = "unreadable"  # or not an image, or too large to read


def make_thumbnail(path: str, *, max_side: int = THUMBNAIL_SIDE, quality: int = THUMBNAIL_QUALITY) -> bytes | None:
    """A small JPEG of the image file at `path`, or None when it cannot be read (see image_thumbnail)."""
    thumbnail = image_thumbnail(path, max_side=max_side, quality=quality)
    return thumbnail.data if isinstance(thumbnail, Thumbnail) else None


def image_thumbnail(path: str, *, max_side: int = THUMBNAIL_SIDE, quality: int = THUMBNAIL_QUALITY) -> Thumbnail | str:
    """A small JPEG of the image file at `path` with the image's size, or why there is none
    (NOT_FOUND, UNREADABLE).

    Read with harness.images.read_image (so exactly the pixels the hashers saw), shrunk with
    cv2.INTER_AREA so that its longer side is at most `max_side` (never enlarged: the page scales a
    small one up), encoded as JPEG. Only the thumbnail is kept.
    """
    try:
        pixels, _ = read_image(path)
    except HarnessError:  # unreadable, not an image, too large: the page shows a placeholder
        return UNREADABLE if os.path.lexists(path) else NOT_FOUND
    rows, cols = pixels.shape[:2]
    scale = max_side / max(rows, cols)
    if scale < 1:
        size = (max(1, round(cols * scale)), max(1, round(rows * scale)))
        pixels = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return Thumbnail(data.tobytes(), cols, rows) if ok else UNREADABLE


def sort_pairs(pairs: pd.DataFrame, hashers: Mapping[str, float]) -> pd.DataFrame:
    """The pairs in review order, with a `nearest` column: the pair's smallest normalised distance.

    A hasher's normalised distance is distance / hashers[name] (its distance_max), clipped to
    [0, 1], so that hashers with different ranges compare. Order: `nearest` ascending (closest
    copies first), then more hashers agreeing first, then split and file names, so the order
    is total and does not depend on the input's row order.
    """
    _check_pairs(pairs, hashers)
    normalised = pd.DataFrame({name: (pairs[name].astype(float) / scale).clip(0, 1)
                               for name, scale in hashers.items()}, index=pairs.index)
    out = pairs.assign(**{NEAREST: normalised.min(axis=1, skipna=True).fillna(_NO_DISTANCE)})
    # Sorting on the shown text of the names keeps the order total for any name, bytes included.
    keys = {f"_{column}": out[column].map(visible) for column in PAIR_COLUMNS}
    out = out.assign(_agree=-out[AGREE].astype(int), **keys)
    out = out.sort_values([NEAREST, "_agree", *keys], kind="mergesort")
    return out.drop(columns=["_agree", *keys]).reset_index(drop=True)


def review_page(pairs: pd.DataFrame, thumbnail: Callable[[str], bytes | Thumbnail | str | None], *,
                hashers: Mapping[str, float], title: str, notes: Sequence[str] = (),
                thresholds: Mapping[str, float] | None = None,
                max_pairs: int = MAX_PAIRS, full_table: str = "leaks.csv") -> str:
    """The review page as an HTML string.

    pairs: one row per flagged pair: split_a, file_a, split_b, file_b, one distance column per
        hasher named as in `hashers` (NaN where that hasher could not hash a file; with
        `thresholds`, a distance beyond one is shown greyed as "not flagged", else NaN there
        too), agree (how many hashers flagged it) and optionally group.
    thumbnail: file -> JPEG (or PNG) bytes of at most THUMBNAIL_BYTES, or a Thumbnail (the bytes and
        the image's size, which the card shows: e.g. image_thumbnail), or where there is none, a
        placeholder's reason (NOT_FOUND, UNREADABLE) or None (unreadable). Called once per file shown.
    hashers: distance column -> that hasher's distance_max, in the order the cards list them.
    title: the page's title; notes: lines under it, the first one (the answer) set larger.
    thresholds: hasher -> the distance at or below which it flags a pair: for the legend, and
        to tell a flagging distance from one beyond it (order and bold use the flagging ones).
    max_pairs: how many pairs are shown (the closest, see sort_pairs); the rest are counted
        in a note that points to `full_table`, which lists them all.

    The page's size is bounded by max_pairs * 2 * THUMBNAIL_BYTES (base64 adds a third) plus
    about 1.5 KB of text per pair.
    """
    if not isinstance(max_pairs, int) or max_pairs < 1:
        raise ValueError(f"max_pairs must be a positive integer, got {max_pairs!r}")
    _check_pairs(pairs, hashers)
    # A distance beyond its hasher's threshold is shown, greyed, as evidence (a near miss is not a
    # failure to hash); the order and the bold distance come from the flagging distances only.
    flagging = pairs.copy()
    for name, threshold in (thresholds or {}).items():
        if name in hashers:
            distance = flagging[name].astype(float)
            flagging[UNFLAGGED + name] = distance.where(distance > threshold)
            flagging[name] = distance.where(~(distance > threshold))
    ordered = sort_pairs(flagging, hashers)
    shown = ordered.head(max_pairs)
    images = _Thumbnails(thumbnail)
    # Records, not itertuples: a hasher's name ("imagehash.phash") need not be an identifier.
    cards = [_card(rank, row, hashers, images) for rank, row in enumerate(shown.to_dict("records"), 1)]
    body = "\n".join([
        _header(title, notes, len(shown), len(ordered), full_table),
        _legend(hashers, thresholds or {}, has_group=GROUP in pairs.columns) if len(ordered) else "",  # no card to read
        '<main class="pairs">',
        *cards,
        "</main>",
    ])
    return _document(title, body)


def _check_pairs(pairs: pd.DataFrame, hashers: Mapping[str, float]) -> None:
    if not hashers:
        raise ValueError("hashers must name at least one distance column")
    missing = [c for c in (*PAIR_COLUMNS, AGREE, *hashers) if c not in pairs.columns]
    if missing:
        raise ValueError(f"pairs lacks the column(s) {', '.join(missing)}; it has {', '.join(map(str, pairs.columns))}")
    reserved = [c for c in (*PAIR_COLUMNS, AGREE, GROUP, NEAREST) if c in hashers]
    if reserved:
        raise ValueError(f"a hasher's distance column cannot be named {', '.join(reserved)}")
    bad = {name: scale for name, scale in hashers.items() if not (scale > 0 and math.isfinite(scale))}
    if bad:
        raise ValueError(f"distance_max must be positive and finite, got {bad}")


class _Thumbnails:
    """Each file's thumbnail as (a data: URI, the image's (width, height) or None), or the reason
    there is none, asked for once per file."""

    def __init__(self, thumbnail: Callable[[str], bytes | Thumbnail | str | None]):
        self.thumbnail, self.uris = thumbnail, {}

    def __call__(self, file) -> tuple[str, tuple[int, int] | None] | str:
        if file not in self.uris:
            made = self.thumbnail(file)
            if made is None or isinstance(made, str):
                self.uris[file] = made or UNREADABLE
            elif isinstance(made, Thumbnail):
                self.uris[file] = (_data_uri(file, made.data), (made.width, made.height))
            else:
                self.uris[file] = (_data_uri(file, made), None)
        return self.uris[file]


def _data_uri(file, data: bytes) -> str:
    if len(data) > THUMBNAIL_BYTES:
        raise ValueError(f"the thumbnail of {visible(file)} is {len(data)} bytes, over {THUMBNAIL_BYTES}")
    if data.startswith(b"\xff\xd8\xff"):
        mime = "image/jpeg"
    elif data.startswith(b"\x89PNG\r\n\x1a\n"):
        mime = "image/png"
    else:
        raise ValueError(f"the thumbnail of {visible(file)} is neither JPEG nor PNG (first bytes {data[:8].hex(' ')})")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _text(value) -> str:
    """Any text from the data, safe in element content: invisible characters as marked escapes."""
    return visible(value, _escaped, lambda escape: f'<span class="esc">{_escaped(escape)}</span>')


def _escaped(text: str) -> str:
    return html.escape(text, quote=True)


def _number(value: float) -> str:
    return number(value, 4)  # as the summary's tables write it (a distance of 12,345.6 was 1.235e+04)


def _header(title: str, notes: Sequence[str], shown: int, total: int, full_table: str) -> str:
    lines = [f"<h1>{_text(title)}</h1>"]
    lines += [f'<p class="{"answer" if i == 0 else "note"}">{_text(note)}</p>' for i, note in enumerate(notes)]
    if total == 0:
        count = "No pair was flagged."
    elif total == 1:
        count = "The one flagged pair is shown."
    elif shown == total:
        count = f"All {total:,} flagged pairs are shown, closest first."
    else:
        count = (f"The {shown:,} closest of {total:,} flagged pairs are shown; the other {total - shown:,} "
                 f"are not shown here ({_text(full_table)} lists every pair).")
    lines.append(f'<p class="count">{count}</p>')
    return '<header class="page">\n' + "\n".join(lines) + "\n</header>"


def _legend(hashers: Mapping[str, float], thresholds: Mapping[str, float], has_group: bool) -> str:
    scales = []
    for name, scale in hashers.items():
        flagged = f", flags at &le;&nbsp;{_number(thresholds[name])}" if name in thresholds else ""
        scales.append(f'<span class="hasher"><b>{_text(name)}</b> 0&ndash;{_number(scale)}{flagged}</span>')
    group = "<dt>group</dt><dd>the pair&rsquo;s group id in the table.</dd>\n" if has_group else ""
    unflagged = ("<dt>not flagged</dt><dd>this hasher&rsquo;s distance is beyond its threshold: it did not flag "
                 "the pair.</dd>\n<dt>&mdash;</dt><dd>this hasher could not hash one of the two files.</dd>"
                 if thresholds else
                 "<dt>&mdash;</dt><dd>this hasher did not flag the pair, or could not hash one of its files.</dd>")
    return f"""<section class="legend" aria-label="How to read a card">
<h2>How to read a card</h2>
<dl>
<dt>left | right</dt><dd>split and file of the pair&rsquo;s two images (split_a, file_a | split_b, file_b).</dd>
<dt>distances</dt><dd>each hasher&rsquo;s distance between the two images (0: the same hash), and in brackets
that distance divided by the hasher&rsquo;s maximum (1: as far apart as possible).
Ranges: {" &middot; ".join(scales)}.</dd>
{unflagged}
<dt>k of {len(hashers)}</dt><dd>how many hashers flagged the pair (agree).</dd>
{group}<dt>order</dt><dd>closest first: by the pair&rsquo;s smallest divided distance (in bold), then more hashers
agreeing, then split and file names.</dd>
<dt>no preview</dt><dd>the file was not found, or could not be read, when this page was made.</dd>
<dt>W &times; H px</dt><dd>the image&rsquo;s size; one smaller than half a preview is shown enlarged.</dd>
</dl>
</section>"""


def _card(rank: int, fields: dict, hashers: Mapping[str, float], images: _Thumbnails) -> str:
    agree, total = int(fields[AGREE]), len(hashers)
    tags = [f'<span class="rank">#{rank}</span>',
            f'<span class="agree{" all" if agree == total else ""}">{agree} of {total} '
            f'hasher{"s" if total > 1 else ""}</span>']
    if GROUP in fields and not _missing(fields[GROUP]):
        tags.append(f'<span class="group">group {_text(fields[GROUP])}</span>')
    sides = [_side(fields[f"split_{s}"], fields[f"file_{s}"], images) for s in "ab"]
    distances = []
    for name, scale in hashers.items():
        value, unflagged = fields[name], fields.get(UNFLAGGED + name)
        if _missing(value) and not _missing(unflagged):
            distances.append(f'<tr class="unflagged"><th>{_text(name)}</th><td>{_number(float(unflagged))}</td>'
                             f"<td>not flagged</td></tr>")
        elif _missing(value):
            distances.append(f'<tr class="none"><th>{_text(name)}</th><td>&mdash;</td><td></td></tr>')
        else:
            value = float(value)
            normalised = min(max(value / scale, 0.0), 1.0)  # as sort_pairs computes it
            nearest = ' class="nearest"' if normalised == fields[NEAREST] else ""
            distances.append(f"<tr{nearest}><th>{_text(name)}</th><td>{_number(value)}</td>"
                             f"<td>({normalised:.3f})</td></tr>")
    return (f'<article class="pair" id="pair-{rank}">\n<header>{" ".join(tags)}</header>\n'
            f'<div class="sides">\n{sides[0]}\n{sides[1]}\n</div>\n'
            f'<table class="distances">{"".join(distances)}</table>\n</article>')


def _missing(value) -> bool:
    return value is None or bool(pd.isna(value))


def _side(split, file, images: _Thumbnails) -> str:
    made = images(file)
    folder, slash, name = (os.fsdecode(file) if isinstance(file, bytes) else str(file)).rpartition("/")
    path = (f'<span class="folder">{_text(folder + slash)}</span>' if slash else "") + \
        f'<span class="name">{_text(name)}</span>'
    label = _escaped(f"{visible(split)}: {visible(file)}")
    size = ""
    if isinstance(made, str):
        picture = f'<div class="frame missing" role="img" aria-label="{label}">no preview<br>({_text(made)})</div>'
    else:
        uri, pixels = made
        # An image smaller than half a thumbnail is scaled up, its pixels kept square: a 1 x 1 image
        # was one dot in an empty frame.
        small = pixels is not None and max(pixels) < THUMBNAIL_SIDE // 2
        enlarged = ' class="small"' if small else ""
        picture = f'<div class="frame"><img{enlarged} src="{uri}" alt="{label}"></div>'
        size = f'<span class="size">{pixels[0]:,} &times; {pixels[1]:,} px</span>' if pixels is not None else ""
    return (f'<figure>{picture}<figcaption><span class="split">{_text(split)}</span> {path}{size}</figcaption>'
            "</figure>")



_CSS = """
:root { color-scheme: light; --ink: #1d2430; --muted: #667085; --line: #d9dee7; --paper: #f5f7fa;
        --accent: #2458c6; --warn: #a15c00; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px 28px 40px; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto,
       "DejaVu Sans", sans-serif; color: var(--ink); background: var(--paper); }
header.page { max-width: 1180px; }
h1 { font-size: 22px; margin: 0 0 6px; }
h2 { font-size: 13px; margin: 0 0 6px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); }
p { margin: 4px 0; }
p.answer { font-size: 17px; font-weight: 600; }
p.note { color: var(--muted); }
p.count { margin-top: 8px; }
.legend { max-width: 1180px; margin: 16px 0 20px; padding: 12px 16px; background: #fff;
          border: 1px solid var(--line); border-radius: 8px; font-size: 13px; }
.legend dl { display: grid; grid-template-columns: max-content 1fr; gap: 3px 14px; margin: 0; }
.legend dt { font-weight: 600; }
.legend dd { margin: 0; }
.legend .hasher { white-space: nowrap; }
main.pairs { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(372px, 100%), 1fr)); gap: 16px;
             max-width: 1180px; }
article.pair { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px 8px; }
article.pair > header { display: flex; gap: 8px; align-items: baseline; margin-bottom: 8px; font-size: 13px; }
.rank { font-weight: 700; }
.agree { padding: 0 7px; border-radius: 9px; background: #fff4e0; color: var(--warn); }
.agree.all { background: #e6eefc; color: var(--accent); }
.group { color: var(--muted); margin-left: auto; }
.sides { display: grid; grid-template-columns: 1fr 1fr; gap: 10px; }
figure { margin: 0; min-width: 0; }
.frame { height: 164px; display: flex; align-items: center; justify-content: center;
         background: #eef1f5; border-radius: 4px; overflow: hidden; }
.frame img { max-width: 100%; max-height: 100%; display: block; }
.frame img.small { width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated; }
.size { display: block; color: var(--muted); font-variant-numeric: tabular-nums; }
.frame.missing { border: 2px dashed #c3c9d4; color: var(--muted); text-align: center; font-size: 13px; }
figcaption { margin-top: 5px; font-size: 12px; line-height: 1.35; overflow-wrap: break-word; }
.split { display: inline-block; padding: 0 6px; border-radius: 3px; background: var(--ink); color: #fff;
         font-weight: 600; }
.folder { color: var(--muted); }
.name { display: block; font-weight: 600; }
table.distances { width: 100%; border-collapse: collapse; margin-top: 8px; font-size: 12px;
                  font-variant-numeric: tabular-nums; }
table.distances th { text-align: left; font-weight: 400; color: var(--muted); }
table.distances td { text-align: right; }
table.distances th, table.distances td { padding: 2px 4px; border-top: 1px solid #eef0f4; }
table.distances tr.nearest th, table.distances tr.nearest td { font-weight: 700; color: var(--ink); }
table.distances tr.none td, table.distances tr.unflagged td { color: var(--muted); }
.esc { padding: 0 2px; border-radius: 2px; background: #fde7e7; color: #8f1d1d; font-family: ui-monospace, monospace; }
@media (max-width: 480px) { body { padding: 14px 10px 28px; } .legend { padding: 10px; }
                            .legend .hasher { white-space: normal; } }
"""
# A hash source for the one inline stylesheet, not 'unsafe-inline': nothing else can style
# the page. No script-src at all: the page has no script, and none may run.
_CSP = ("default-src 'none'; img-src data:; style-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'")


def _document(title: str, body: str) -> str:
    digest = base64.b64encode(hashlib.sha256(_CSS.encode("utf-8")).digest()).decode("ascii")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP.format(digest=digest)}">
<meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_escaped(visible(title))}</title>
<style>{_CSS}</style>
</head>
<body>
{body}
</body>
</html>
"""


__all__ = ["review_page", "sort_pairs", "make_thumbnail", "MAX_PAIRS", "THUMBNAIL_SIDE", "THUMBNAIL_QUALITY",
           "THUMBNAIL_BYTES"]
