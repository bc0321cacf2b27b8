"""Figures: matplotlib (Agg) figures built from a run's tables. Pure: tables in, figures out;
the report saves them. One colour per hasher, the same in every figure.

Cheap to draw, because a report draws several at the end of every run:
- a `matplotlib.figure.Figure` on an Agg canvas, not pyplot (no figure manager to import or feed);
- each figure is drawn once, when it is saved. `tight_layout`, constrained layout and
  `bbox_inches="tight"` each lay out every tick label to measure it, which costs as much as the
  draw itself; `_Layout` places the axes instead, sizing each margin from the widths of its texts
  read off the font (a glyph-metrics call per string, no Text layout);
- no figure per family: figures/families.png holds every family's panel, up to MAX_PANELS
  families (and the colour tables up to MAX_TABLE_ROWS rows): past that a figure draws the first
  ones and says how many it leaves out; the tables hold every number.
Text from configs and file names (families, labels, hashers, parameter names) goes through
`_plain`, so a `$` is drawn as a dollar sign and `$...$` is never read as math.
"""

from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.grouping import hasher_groups
from harness.markdown import number
from harness.metrics import hasher_order, hasher_rows, impostor_distances, roc_curve
from harness.schema import MAX_PANELS, PREVIEW_COLUMNS, UNAVAILABLE, first_seen

DPI = 110  # every figure is laid out and drawn at its own resolution
PREVIEW_DPI = 72  # photographs compress poorly in PNG: a lower resolution keeps a large grid small
PREVIEW_TITLE = 8  # points: 8 pixels tall at PREVIEW_DPI, the least that reads without zooming

# Twenty hues that are not grey (grey is the impostors' colour): tab20's strong shades, then its
# light ones, with the grey pair (14, 15) replaced by two of tab20b's.
_GREY_PAIR = (14, 15)

_PAD = 0.1  # inches between neighbouring panels' decorations, and around the figure
_POINT = 1 / 72  # inches
_TICK = (3.5 + 3.5) * _POINT  # matplotlib's default tick length plus the label's pad
_LABEL_PAD = 4 * _POINT  # default axis-label pad
_TITLE_PAD = 6 * _POINT  # default title pad
PANEL = (3.1, 2.2)  # one panel of a grid figure, inches (the axes box, without its labels)
# A panel costs about a tenth of a second to build and draw, and a figure's pixels grow with its
# rows: 1,000 single-pair families made three figures 76,000 pixels tall each, 2 minutes and 2 GiB
# for the report. So a grid figure (and previews.png) draws its first MAX_PANELS families, 16 rows
# of 4 (the zoo has 35), and a colour table its first MAX_TABLE_ROWS rows (the zoo's heatmap has
# 96), each saying how many it leaves out and which table holds their numbers. previews.png's row of
# a family shows at most PREVIEW_COLUMNS of its pairs, evenly spaced: one sweep of 1,000 values made
# a row 115,000 pixels wide. (Both limits are in harness.schema: the runner keeps thumbnails only
# of the pairs drawn, config.preview_pairs.)
MAX_TABLE_ROWS = 200


@dataclass(frozen=True)
class SweepAxis:
    """How a family's x axis reads: the swept parameter(s), and whether the config gave labels."""

    title: str  # e.g. "jpeg quality"
    labelled: bool  # the config gave `labels:`: tick labels are those, not the raw values
    stronger: str | None = None  # "lower" or "higher": which way the swept parameters make the edit stronger


def sweep_axes(config: dict) -> dict[str, SweepAxis]:
    """Per family of a (resolved) config: its x axis, read from the sweeps' `$value` parameters."""
    axes = {}
    for sweep in config.get("sweeps", []) if isinstance(config, dict) else []:
        if not isinstance(sweep, dict) or "family" not in sweep:
            continue
        swept: dict[str, list[str]] = {}  # transform -> its swept parameters
        for side in (sweep.get("a"), sweep.get("b")):
            for step in side if isinstance(side, list) else [side]:
                if isinstance(step, dict) and len(step) == 1:
                    (name, params), = step.items()
                    keys = [k for k, v in (params or {}).items() if v == "$value"] if isinstance(params, dict) else []
                    for key in keys:
                        swept.setdefault(str(name), [])
                        if key not in swept[str(name)]:
                            swept[str(name)].append(key)
        # "jpeg quality", "center_crop dx, dy"; "gamma" rather than "gamma gamma"; with the unit the
        # parameters count in, where they have one: "blur kernel (px)", "rotate angle (degrees)"
        title = "; ".join((name if keys == [name] else f"{name} {', '.join(keys)}") + _unit(name, keys)
                          for name, keys in swept.items())
        axes[str(sweep["family"])] = SweepAxis(title or "value", "labels" in sweep, _stronger(swept))
    return axes


def _unit(name: str, keys: list[str]) -> str:
    """" (px)" where the swept parameters `keys` of transform `name` all count in one unit (params.Unit),
    else "". Only registered transforms are looked up, as in _stronger."""
    from harness.params import param_specs
    from harness.transforms import TRANSFORMS

    specs = {spec.name: spec for spec in param_specs(TRANSFORMS.get(name))} if name in TRANSFORMS else {}
    units = {specs[key].unit if key in specs else None for key in keys}
    unit = units.pop() if len(units) == 1 else None
    return f" ({unit})" if unit else ""


def _stronger(swept: dict[str, list[str]]) -> str | None:
    """The way every swept parameter makes its edit stronger, where all agree (see params.Stronger).
    Only registered transforms are looked up: drawing a report imports no plugin."""
    from harness.params import param_specs
    from harness.transforms import TRANSFORMS

    directions = set()
    for name, keys in swept.items():
        specs = {spec.name: spec for spec in param_specs(TRANSFORMS.get(name))} if name in TRANSFORMS else {}
        directions |= {specs[key].stronger if key in specs else None for key in keys}
    return directions.pop() if len(directions) == 1 else None


def left_out(count: int, limit: int, what: str, where: str | None) -> str | None:
    """What a figure that draws only the first `limit` of `count` `what` ("families") says, or None
    where it draws them all: how many are left out, and the table (`where`) that holds their numbers."""
    if count <= limit:
        return None
    return (f"the first {limit} of {count:,} {what} are drawn; the other {count - limit:,} are not"
            + (f" (their numbers are in {where})" if where else ""))


def _first_families(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The rows of `frame`'s first MAX_PANELS families (by first appearance: the config's order;
    `frame` itself where it has no more), and how many families it has."""
    families = first_seen(frame["family"])
    if len(families) <= MAX_PANELS:
        return frame, len(families)
    return frame[frame["family"].isin(families[:MAX_PANELS])], len(families)


# The characters of a name (a family, a label, a hasher) a figure draws, its middle cut to "…" (its
# start and end kept: two labels may differ at either): no figure shows more legibly, and a
# 200,000-character family name as a tick label took 16 GB.
NAME_DRAWN_MAX = 100


# Fonts for the scripts DejaVu Sans (matplotlib's) lacks, Chinese, Japanese and Korean above all,
# used where installed: matplotlib draws each character from the first font of the list that has it.
# With none installed the list is DejaVu Sans alone, and every figure the same bytes as without it.
FALLBACK_FONTS = ("Noto Sans CJK JP", "Noto Sans CJK SC", "Noto Sans CJK TC", "Noto Sans CJK KR", "Source Han Sans",
                  "WenQuanYi Zen Hei", "WenQuanYi Micro Hei", "Droid Sans Fallback", "Noto Sans", "Noto Sans Arabic",
                  "Noto Sans Hebrew", "Noto Sans Devanagari", "Noto Sans Thai")


@functools.lru_cache(maxsize=1)
def font_families() -> tuple[str, ...]:
    """The fonts the report draws its text with: DejaVu Sans, then the FALLBACK_FONTS installed."""
    from matplotlib import font_manager

    installed = {font.name for font in font_manager.fontManager.ttflist}
    return ("DejaVu Sans", *(name for name in FALLBACK_FONTS if name in installed))


def undrawable(texts) -> list[str]:
    """The characters of `texts` (in order, each once) that no font of font_families() has: the
    figures draw them as empty boxes (and matplotlib warned once per character and figure)."""
    wanted = dict.fromkeys(c for text in texts for c in str(text) if not c.isascii() and c.isprintable()
                           and not c.isspace())
    if not wanted:
        return []
    from matplotlib import font_manager, ft2font

    with quiet_font_lookups():
        fonts = [ft2font.FT2Font(font_manager.findfont(font_manager.FontProperties(family=name)))
                 for name in font_families()]
    return [c for c in wanted if not any(font.get_char_index(ord(c)) for font in fonts)]


@contextlib.contextmanager
def quiet_font_lookups():
    """matplotlib's font lookups without their log lines: a fallback font that has no weight
    "normal" (WenQuanYi Zen Hei's is 500) logged "findfont: Failed to find font weight normal"
    on stderr some ten times a report, for a font it then uses all the same."""
    import logging

    logger = logging.getLogger("matplotlib.font_manager")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _plain(text) -> str:
    """Text from a config or a file name as matplotlib draws it literally, at most NAME_DRAWN_MAX
    characters. The report draws with `text.parse_math` off (report._report_style): the text as it
    is. Elsewhere (these functions called from a notebook) every `$` is escaped: a string with no
    unescaped dollar pair is not mathtext, and matplotlib unescapes `\\$` when it draws plain text
    ("cost $5 and $6" stays that, "$\\frac$" cannot raise). Was: escaped in the report too, where
    nothing unescapes it, so a title read "cost \\$5"."""
    import matplotlib

    text = str(text)
    if len(text) > NAME_DRAWN_MAX:  # cut in the middle: labels often differ only at their end, their {value}
        end = (NAME_DRAWN_MAX - 1) * 2 // 5
        text = text[:NAME_DRAWN_MAX - 1 - end] + "…" + text[-end:]
    return text.replace("$", r"\$") if matplotlib.rcParams["text.parse_math"] else text


# --- a figure, and where its axes go ---------------------------------------------

def save_png(figure, path) -> None:
    """Draw `figure` once, at its own size and resolution, and write it as an RGB PNG. The
    figures are opaque, so matplotlib's alpha channel is dropped, and zlib runs at level 3:
    both smaller and about twice as fast to write as matplotlib's RGBA at level 6 (photographs
    especially). Nothing but the pixels and the resolution is written (no timestamp, no
    software name), so a rebuilt figure is byte-identical."""
    from PIL import Image

    figure.canvas.draw()
    pixels = np.asarray(figure.canvas.buffer_rgba())[..., :3]
    Image.fromarray(pixels).save(path, format="png", compress_level=3, dpi=(figure.dpi, figure.dpi))


def warm_up() -> None:
    """Draw a small figure with text, axes and a legend, and throw it away: the first figure of a
    process loads the fonts and fills matplotlib's caches (a fifth of a second). Done while the
    workers hash, before the report forks, it is paid once and off the report's path."""
    figure = _figure(dpi=30)
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], label="warm-up 0.5")
    axes.set_xlabel("x")
    axes.set_title("warm-up")
    axes.legend()
    figure.canvas.draw()


def _figure(dpi: int = DPI):
    """An empty figure on an Agg canvas, sized later by `_Layout`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4, 3), dpi=dpi)
    FigureCanvasAgg(figure)
    return figure


def _notice_figure(lines: list[str]):
    """A figure that only says why it has nothing to draw: a run whose figure would be empty
    still gets its file (summary.md links it), and the reader learns why, not a blank image."""
    figure = _figure()
    fonts = _Fonts(figure)
    text = _wrap("\n".join(lines), 9, 1.5 * PANEL[0], fonts)
    width, height = fonts.size(text, 9)
    width, height = width + 2 * _PAD, height + 2 * _PAD
    figure.set_size_inches(width, height)
    figure.text(_PAD / width, 1 - _PAD / height, text, fontsize=9, va="top")
    return figure


class _Fonts:
    """The size of a string as Agg draws it, in inches, from the font's glyph metrics alone."""

    def __init__(self, figure):
        from matplotlib.backends.backend_agg import RendererAgg

        self.renderer = RendererAgg(1, 1, figure.dpi)  # measures only; the draw makes its own
        self.dpi = figure.dpi
        self._cache: dict = {}

    def size(self, text: str, fontsize: float, rotation: float = 0.0, mathtext: bool = False) -> tuple[float, float]:
        """(width, height) of the text's bounding box, rotated by `rotation` degrees."""
        key = (text, fontsize, mathtext)
        if key not in self._cache:
            from matplotlib.font_manager import FontProperties

            prop = FontProperties(size=fontsize)
            lines = [text] if mathtext else text.split("\n")
            widths = [self.renderer.get_text_width_height_descent(line, prop, mathtext)[0] for line in lines]
            line = self.renderer.get_text_width_height_descent("lp", prop, False)[1]  # what Text uses
            height = line * (1 + 1.2 * (len(lines) - 1))  # matplotlib's default line spacing
            if mathtext:
                height = max(height, self.renderer.get_text_width_height_descent(text, prop, True)[1])
            self._cache[key] = (max(widths, default=0.0) / self.dpi, height / self.dpi)
        width, height = self._cache[key]
        cos, sin = abs(math.cos(math.radians(rotation))), abs(math.sin(math.radians(rotation)))
        return width * cos + height * sin, width * sin + height * cos


@dataclass
class _Extent:
    """How far an axes' texts reach beyond its box, in inches."""

    left: float = 0.0
    right: float = 0.0
    top: float = 0.0
    bottom: float = 0.0


def _tick_labels(axis) -> list[tuple[float, str]]:
    """(axis fraction, label) of the major ticks the draw will show: the axis' own locator and
    formatter, as `Axis._update_ticks` calls them."""
    if not axis.get_major_ticks(1)[0].get_visible():
        return []
    locs = axis.get_majorticklocs()
    labels = axis.get_major_formatter().format_ticks(locs)
    transform = axis.get_transform()  # linear or log: the scale's own
    low, high = transform.transform(sorted(axis.get_view_interval()))
    span = high - low
    shown = []
    for loc, label in zip(locs, labels):
        fraction = (transform.transform(loc) - low) / span if span else 0.5
        if label and -1e-10 <= fraction <= 1 + 1e-10:  # the draw's test, with its rounding slack
            shown.append((float(1 - fraction if axis.get_inverted() else fraction), label))
    return shown


def _extent(ax, fonts: _Fonts, width: float, height: float) -> _Extent:
    """What `ax`'s tick labels, axis labels and title need around its box (`width` x `height`
    inches), as the draw will place them: tick labels past the tick and its pad, the axis label
    past those, the title above the top decorations."""
    from matplotlib.cbook import is_math_text

    extent = _Extent()
    if ax.axison:
        for axis, across in ((ax.xaxis, width), (ax.yaxis, height)):
            tick = axis.get_major_ticks(1)[0]
            text = tick.label2 if tick.label2.get_visible() and not tick.label1.get_visible() else tick.label1
            far = axis.get_ticks_position() in ("top", "right")  # else bottom / left
            reach = 0.0  # beyond the box, across the axis
            if text.get_visible():
                for fraction, label in _tick_labels(axis):
                    math = text.get_parse_math() and is_math_text(label)  # as the tick label will be drawn
                    w, h = fonts.size(label, text.get_fontsize(), text.get_rotation(), math)
                    along, out = (w, h) if axis is ax.xaxis else (h, w)
                    reach = max(reach, out + _TICK)
                    # Along the axis a label may run past the box's ends (rotated x labels do).
                    align = {"left": 0.0, "center": 0.5, "right": 1.0}.get(text.get_horizontalalignment(), 0.5) \
                        if axis is ax.xaxis else 0.5
                    before, after = along * align - fraction * across, along * (1 - align) - (1 - fraction) * across
                    if axis is ax.xaxis:
                        extent.left, extent.right = max(extent.left, before), max(extent.right, after)
            label = axis.label
            if label.get_text() and label.get_visible():
                w, h = fonts.size(label.get_text(), label.get_fontsize(), label.get_rotation())
                reach += (h if axis is ax.xaxis else w) + _LABEL_PAD
            side = ("top" if far else "bottom") if axis is ax.xaxis else ("right" if far else "left")
            setattr(extent, side, max(getattr(extent, side), reach))
    title = ax.title
    if title.get_text():
        extent.top += fonts.size(title.get_text(), title.get_fontsize())[1] + _TITLE_PAD
    return extent


class _Layout:
    """Axes in rows and columns of given sizes (inches), each far enough from its neighbours and
    the figure's edges for its tick labels, axis labels and title. `place` then sizes the figure
    and sets every axes' position. Written by hand because matplotlib's layouts measure by laying
    out every text, which costs a draw (see the module's docstring)."""

    def __init__(self, figure, grid: list[list], widths: list[float], heights: list[float]):
        self.figure, self.grid, self.heights = figure, grid, heights
        self.fonts = _Fonts(figure)
        extents = [[_extent(ax, self.fonts, widths[c], heights[r]) if ax is not None else None
                    for c, ax in enumerate(row)] for r, row in enumerate(grid)]
        cells = [(r, c, e) for r, row in enumerate(extents) for c, e in enumerate(row) if e is not None]
        left = [max([e.left for _, k, e in cells if k == c], default=0.0) for c in range(len(widths))]
        right = [max([e.right for _, k, e in cells if k == c], default=0.0) for c in range(len(widths))]
        self.top = [max([e.top for k, _, e in cells if k == r], default=0.0) for r in range(len(heights))]
        self.bottom = [max([e.bottom for k, _, e in cells if k == r], default=0.0) for r in range(len(heights))]
        self.xs, cursor = [], _PAD
        for c, width in enumerate(widths):
            cursor += left[c]
            self.xs.append((cursor, width))
            cursor += width + right[c] + _PAD
        self.width = cursor

    def place(self, header: float = 0.0, footer: float = 0.0) -> tuple[float, float]:
        """Size the figure, keeping `header` and `footer` inches free above and below the axes;
        returns the figure's (width, height) in inches."""
        ys, cursor = [], _PAD + header
        for r, height in enumerate(self.heights):
            cursor += self.top[r]
            ys.append(cursor)
            cursor += height + self.bottom[r] + _PAD
        total = cursor + footer
        self.figure.set_size_inches(self.width, total)
        for r, row in enumerate(self.grid):
            for c, ax in enumerate(row):
                if ax is not None:
                    x, width = self.xs[c]
                    ax.set_position([x / self.width, 1 - (ys[r] + self.heights[r]) / total,
                                     width / self.width, self.heights[r] / total])
        return self.width, total


def _panels(count: int, ylim: tuple[float, float] | None = None):
    """One axes per item, four to a row: (figure, flat list of axes, grid rows for `_Layout`).
    With `ylim`, every panel gets those y limits before anything is plotted. Panels that should
    agree get the same limits rather than shared axes: matplotlib keeps shared axes in step after
    every artist added to any of them, which grows with the square of the panels (seconds for
    the zoo's 35 families)."""
    figure = _figure()
    columns = min(4, max(1, count))
    axes = [figure.add_axes((0, 0, 1, 1)) for _ in range(count)]
    for ax in axes:
        if ylim is not None:
            ax.set_ylim(*ylim)  # also stops autoscaling y for every line and band added
    rows = [axes[i:i + columns] + [None] * (columns - len(axes[i:i + columns])) for i in range(0, count, columns)]
    return figure, axes, rows


def _place_panels(figure, rows: list[list], legend: tuple[list[str], list[str]] | None = None,
                  note: str | None = None) -> None:
    """Lay out a grid of panels, the hashers' legend (`(hashers, shown)`) above it and a note below."""
    layout = _Layout(figure, rows, [PANEL[0]] * len(rows[0]), [PANEL[1]] * len(rows))
    header, box = 0.0, None
    if legend is not None:
        box = _figure_legend(figure, *legend, layout.width, layout.fonts)
        header = box.get_window_extent(layout.fonts.renderer).height / figure.dpi + _PAD
    if note:  # as wide as the panels: a one-panel figure is narrower than most notes
        note = _wrap(note, 8, layout.width - 2 * _PAD, layout.fonts)
    footer = layout.fonts.size(note, 8)[1] + _PAD if note else 0.0
    width, height = layout.place(header, footer)
    if box is not None:
        box.set_bbox_to_anchor((0.5, 1 - _PAD / height), transform=figure.transFigure)
    if note:
        figure.text(_PAD / width, _PAD / height, note, fontsize=8, color="0.4", va="bottom")


def _most_characters(width: float, fontsize: float) -> int:
    """More characters than one line `width` inches wide holds at `fontsize` points: as many as would
    fit at a twentieth of an em each (the narrowest glyphs are wider)."""
    return 1 + int(width * 72 / (fontsize * 0.05))


def _longest_fitting(text: str, fontsize: float, width: float, fonts: _Fonts, suffix: str = "",
                     prefix: str | None = None) -> int:
    """The most characters of `text` (at least 1) that, followed by `suffix`, fit in `width` inches,
    found by bisection (a text's width grows with its characters), among at most _most_characters:
    a character at a time from the end, a 2,000-character name took minutes to wrap. With `prefix`,
    the most of its last characters that fit after `prefix`."""
    low, high = 1, min(len(text), _most_characters(width, fontsize))
    while low < high:
        middle = (low + high + 1) // 2
        part = text[:middle] + suffix if prefix is None else prefix + text[-middle:]
        if fonts.size(part, fontsize)[0] > width:
            high = middle - 1
        else:
            low = middle
    return low


def _wrap(text: str, fontsize: float, width: float, fonts: _Fonts) -> str:
    """`text` in lines at most `width` inches wide, broken between words (a word wider than that
    alone, such as a long hasher id, is broken inside)."""
    lines = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if line and fonts.size(candidate, fontsize)[0] > width:
                lines.append(line)
                candidate = word
            while len(candidate) > 1 and fonts.size(candidate, fontsize)[0] > width:  # one word too wide
                cut = _longest_fitting(candidate[:-1], fontsize, width, fonts)
                # After a hyphen, dot, underscore or slash where one fits ("imagehash.", "sixty-").
                cut = max([k + 1 for k in range(cut) if candidate[k] in "-._/"] or [cut])
                lines.append(candidate[:cut])
                candidate = candidate[cut:]
            line = candidate
        lines.append(line)
    return "\n".join(lines)


# Below this, a distance is floating-point noise (1 - a peak correlation of 1 gives 6e-15), printed
# as the 0 it stands for rather than as "6.13e-15"; a real distance is never that small.
_NOISE = 1e-12


def _number(value: float, digits: int) -> str:
    """A figure's number to `digits` significant digits, 0 where it is only noise around 0."""
    return "0" if abs(value) < _NOISE else f"{value:.{digits}g}"


def _title(ax, text: str, fontsize: float = 11) -> None:
    """A panel's title, literal, at a fixed height above the box: `_Layout` has made room for it.
    (Left to matplotlib, its height is found by measuring every y tick label at each draw.) A
    title wider than the panel (a long family name or hasher id) is wrapped to its width, on two
    lines at most, the second cut with an ellipsis: it would run over its neighbour's."""
    ax.set_title(_fit(_plain(text), fontsize, PANEL[0], _Fonts(ax.figure)), fontsize=fontsize, y=1.0)


def _fit(text: str, fontsize: float, width: float, fonts: _Fonts, lines: int = 2) -> str:
    """`text` wrapped to `width` inches on at most `lines` lines (two or more). Where more would be
    needed, the last line is the text's end after an ellipsis: labels that differ only at their end
    (their {value}) must not read alike (cut at the end, two thumbnails both read "Cost $5 & 10%
    <b>bold</b> a_b $x^2…"). Only as much of `text` is wrapped as `lines` lines could hold (a
    200,000-character family name was wrapped whole before being cut)."""
    wrapped = _wrap(text[:lines * (1 + _most_characters(width, fontsize))], fontsize, width, fonts).split("\n")
    if len(wrapped) <= lines:
        return "\n".join(wrapped)
    head = wrapped[:lines - 1]
    rest = text[len(" ".join(head)):].lstrip()  # what the first lines do not show
    end = rest[-_longest_fitting(rest, fontsize, width, fonts, prefix="…"):].lstrip()
    return "\n".join(head + ["…" + end])


def _colour(hashers: list[str], hasher: str):
    """One colour per hasher, the same in every figure; tab20 when tab10 would repeat."""
    import matplotlib

    k = hashers.index(hasher)
    if len(hashers) <= 10:
        return f"C{k}" if k != 7 else matplotlib.colormaps["tab20b"](0)  # C7 is grey: the impostors'
    # tab20 pairs a strong and a light shade of each hue: all strong ones first, then the light.
    index = (2 * k) % 20 + (k // 10) % 2
    if index in _GREY_PAIR:
        return matplotlib.colormaps["tab20b"](0 if index == 14 else 8)
    return matplotlib.colormaps["tab20"](index)


# Every hasher has a marker shape as well as its colour. Two hashers whose lines coincide (aHash
# and pHash both detecting every JPEG copy) would otherwise show as one: a later hasher is drawn
# over an earlier one, with a smaller marker of another shape and a thinner line, so the earlier
# one's marker and line still show around it. And past ten hashers tab20's light shades sit next
# to their strong ones: the shapes keep two lines from differing by a shade alone.
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "p")
_MARKER_SIZES = (8.0, 4.0)  # points: the first hasher's marker, the last one's
_LINE_WIDTHS = (2.6, 1.2)  # points: the first hasher's line, the last one's


def _marker(hashers: list[str], hasher: str) -> str:
    """A hasher's marker: one of ten shapes, shifted by one every ten hashers so that two hashers
    of one hue (see _colour) never share a shape."""
    k = hashers.index(hasher)
    return _MARKERS[(k + k // 10) % len(_MARKERS)]


def _drawn_order(hashers: list[str], hasher: str, sizes: tuple[float, float]) -> float:
    """From sizes[0] for the first hasher (drawn first, underneath) down to sizes[1] for the last."""
    return sizes[0] - (sizes[0] - sizes[1]) * hashers.index(hasher) / max(1, len(hashers) - 1)


def _line_style(hashers: list[str], hasher: str) -> dict:
    """A hasher's line: its colour, its marker, and marker size and line width shrinking with its
    place in the drawing order (see _MARKERS)."""
    return {"color": _colour(hashers, hasher), "marker": _marker(hashers, hasher),
            "markersize": _drawn_order(hashers, hasher, _MARKER_SIZES),
            "linewidth": _drawn_order(hashers, hasher, _LINE_WIDTHS)}


def _dodge(present: list[str], hasher: str, span: float = 0.5) -> float:
    """How far from its category's tick a hasher's point sits: the hashers `present` side by side
    over `span` (in category widths), so equal rates at one point do not stack into one marker."""
    return (present.index(hasher) - (len(present) - 1) / 2) * span / max(1, len(present))


def _figure_legend(figure, hashers: list[str], shown: list[str], width: float, fonts: _Fonts):
    """The hashers' legend above the panels: at most six to a row, fewer where six would be wider
    than the figure (`width` inches), so many hashers make a taller legend, not a wider figure."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], **_line_style(hashers, h)) for h in shown]
    columns = max(1, min(6, len(shown)))
    while True:
        legend = figure.legend(handles, [_plain(h) for h in shown], loc="upper center", ncol=columns)
        if columns == 1 or legend.get_window_extent(fonts.renderer).width / figure.dpi <= width - 2 * _PAD:
            return legend
        legend.remove()
        columns -= 1


# --- the families: distance against strength -------------------------------------

def _geometric(xs: np.ndarray) -> bool:
    """True for sweeps that grow by a roughly constant factor over a wide range
    (1, 2, 4, ... 64 or 3/4, 1/2, ... 1/32): those read best on a log axis."""
    if len(xs) < 3 or xs.min() <= 0 or xs.max() / xs.min() < 8:
        return False
    ratios = xs[1:] / xs[:-1]
    return ratios.min() > 1.2 and ratios.max() / ratios.min() < 1.6


def _value_axis(ax, rows: pd.DataFrame, axis: SweepAxis | None) -> None:
    """Ticks at the swept values (log-spaced when the sweep is geometric), labelled with the config's
    labels where it gives them; the mildest strength on the left (by the parameter's declared
    direction, else as the config lists it first), and the axis named after the swept parameter."""
    in_order = rows.drop_duplicates("x")  # config order: mildest first
    xs = in_order["x"].to_numpy(dtype=float)
    ordered = np.sort(xs)
    if _geometric(ordered):
        ax.set_xscale("log")
    labelled = axis is not None and axis.labelled
    if labelled:
        by_x = dict(zip(xs, _tick_texts(list(in_order["label"]))))
        labels = [by_x[x] for x in ordered]
    else:
        labels = [_value_text(x) for x in ordered]
    slanted = max(len(label) for label in labels) > 5
    # Short labels too close to sit level stand upright: a slanted label still spans its neighbour's place.
    along = _panel_positions(ordered, ax.get_xscale() == "log")
    upright = not slanted and _crowded(along, labels)
    rotation = 35 if slanted else 90 if upright else 0
    # Where even so they would touch (twenty gamma values; noise sigmas 0, 1, 2, 4 at one end of a
    # linear axis), every tick stays and only some are labelled: the first, the last, and between
    # them each one far enough from the last labelled.
    room = _LABEL_ROOM.get(rotation) or _level_room(labels)
    labels = [label if keep else "" for label, keep in zip(labels, _labelled(along, room, ordered))]
    ax.set_xticks(ordered, [_plain(label) for label in labels], fontsize=8,
                  rotation=rotation, ha="right" if slanted else "center",
                  rotation_mode="anchor" if slanted else "default")
    ax.minorticks_off()
    stronger = axis.stronger if axis is not None else None
    if stronger == "lower" or (stronger is None and len(xs) > 1 and xs[0] > xs[-1]):
        ax.invert_xaxis()  # e.g. JPEG quality: strength grows as the value falls
    ax.set_xlabel(_plain(axis.title if axis is not None else "value"), fontsize=9)


def _panel_positions(ordered: np.ndarray, log: bool) -> np.ndarray:
    """Where ticks at the sorted values `ordered` sit on a panel PANEL[0] wide, in inches from the first."""
    if len(ordered) < 2:
        return np.zeros(len(ordered))
    xs = np.log(ordered) if log else ordered
    span = (xs[-1] - xs[0]) * 1.1  # and matplotlib's margins of 5% on each side
    return (xs - xs[0]) / span * PANEL[0] if span else np.zeros(len(xs))


def _level_room(labels: list[str]) -> float:
    """Inches between two ticks for their labels, written level, not to touch: the widest label at
    about 0.07 inch a character in 8-point text, and a gap."""
    return 0.07 * max(len(label) for label in labels) + 0.06


# Inches between two ticks for their 8-point labels not to touch, by rotation: upright, a line's
# height and a gap; slanted at 35 degrees, parallel labels a line's height apart across them.
_LABEL_ROOM = {90: 0.16, 35: 0.22}


def _crowded(along: np.ndarray, labels: list[str]) -> bool:
    """Whether two neighbouring tick labels at `along` (inches, `_panel_positions`), written level,
    would touch (Copydays' crop ladder: 10%, 15%, 20%, ... 80%)."""
    return len(along) > 1 and bool(np.diff(along).min() < _level_room(labels))


def _value_text(x: float) -> str:
    """A swept value as a tick label: as :g writes it where that is the value (0.5, 2, 1e-05), else
    in full (0.001953125, which :g rounds to 0.00195312, a value the sweep does not have)."""
    short = f"{x:g}"
    if float(short) == x:
        return short
    text = repr(float(x))
    return text[:-2] if text.endswith(".0") else text


def _labelled(along: np.ndarray, room: float, values: np.ndarray | None = None) -> list[bool]:
    """Which ticks at `along` (inches, increasing) get their label so that no two labelled ones are
    closer than `room`. Ticks evenly spaced (a sweep in even steps, or in a constant factor on a
    log axis) get every k-th label, k as small as the room allows, starting where the labelled
    `values` are roundest (quality 10, 20, ..., 100 of 5, 10, ..., 100): labels 100, 85, 75, 65
    read as uneven steps. Other ticks: the first and the last always, the others from the first on
    where they are far enough from the one labelled before (and from the last)."""
    gaps = np.diff(along)
    if len(along) > 2 and gaps.min() > 0 and gaps.max() <= gaps.min() * 1.01 and gaps.min() < room:
        stride = int(np.ceil(room / gaps.min() - 1e-9))
        if stride < len(along):
            places = _places(values) if values is not None else 0
            phase = max(range(stride), key=lambda start: (_roundness(values[start::stride], places)
                                                          if values is not None else 0, -start))
            return [k >= phase and (k - phase) % stride == 0 for k in range(len(along))]
    keep = [False] * len(along)
    last = None
    for k, position in enumerate(along):
        if last is None or (position - last >= room and along[-1] - position >= room) or k == len(along) - 1:
            keep[k], last = True, position
    return keep


def _places(values: np.ndarray) -> int:
    """The decimal places the finest of `values` needs (at most 12)."""
    texts = [repr(float(v)) for v in values]
    return min(12, max(12 if "e" in text else len(text.split(".")[1].rstrip("0")) for text in texts))


def _roundness(values: np.ndarray, places: int) -> float:
    """How round a set of tick values reads: per value, its trailing zeros in units of 10**-places
    (10 and 20 one, 100 two, for whole values) and half a point for a 5."""
    score = 0.0
    for v in values:
        whole = abs(int(round(float(v) * 10 ** places)))
        zeros = 0
        while whole and whole % 10 == 0:
            whole, zeros = whole // 10, zeros + 1
        score += zeros + (0.5 if whole % 5 == 0 and whole else 0)
    return score


def _tick_texts(labels: list[str]) -> list[str]:
    """The config's labels as tick labels: the words every label starts with dropped ("Downscale to
    1/2", "Downscale to 1/4" -> "1/2", "1/4"; the axis is named after the parameter), then cut to
    14 characters so that a panel's ticks never crowd."""
    words = [str(label).split(" ") for label in labels]
    common = 0
    while len(labels) > 1 and all(len(w) > common + 1 for w in words) and len({w[common] for w in words}) == 1:
        common += 1
    return [_short(" ".join(w[common:])) for w in words]


def _category_ticks(ax, labels: list[str]) -> None:
    """Ticks 0, 1, ... labelled with the pairs' labels, in full; slanted when there are several."""
    several = len(labels) > 1
    ax.set_xticks(np.arange(len(labels)), [_plain(label) for label in labels], fontsize=8,
                  rotation=20 if several else 0, ha="right" if several else "center",
                  rotation_mode="anchor" if several else "default")


def _short(label: str) -> str:
    return label if len(label) <= 14 else label[:13] + "…"


def _usable_rows(distances: pd.DataFrame, column: str) -> pd.Series:
    """`column` of the rows without an error: its values only (a mask's `.loc` would also make an
    index of the rows kept, 9 MiB for a million)."""
    return pd.Series(distances[column].array[(distances["error"] == "").to_numpy()], name=column)


def _groups(frame: pd.DataFrame, column: str) -> dict:
    """The rows of `frame` per value of `column`, in order of appearance: one pass, where
    filtering once per value would scan the frame again for each."""
    return {key: part for key, part in frame.groupby(column, sort=False, observed=True)}


BAR_MARKER = 5.0  # points: the marker on a bar's top


def _plot_family(ax, rows: pd.DataFrame, family: str, hashers: list[str], axis: SweepAxis | None) -> None:
    """One family's panel of the overview: `rows` are its rows of the curves table."""
    numeric = rows["x"].notna().all() and rows["value"].nunique() > 1
    per_hasher = _groups(rows, "hasher")
    if not numeric:  # one point (identity, grayscale) or non-numeric values: grouped bars
        labels = first_seen(rows["label"])
        present = [h for h in hashers if h in per_hasher]
        width = 0.8 / max(1, len(present))
        for slot, hasher in enumerate(present):
            part = per_hasher[hasher].set_index("label").reindex(labels)
            positions = np.arange(len(labels)) + (slot - (len(present) - 1) / 2) * width
            heights = part["median"].to_numpy(dtype=float)
            ax.bar(positions, np.nan_to_num(heights), width, color=_colour(hashers, hasher))
            # The inter-quartile range over images as a whisker, as the lines' band elsewhere.
            low, high = (part[c].to_numpy(dtype=float) for c in ("q25", "q75"))
            high = np.where(part["images"].to_numpy(dtype=float) > 1, high, np.nan)
            _whiskers(ax, positions, heights, low, high, _colour(hashers, hasher))
            # The hasher's marker on its bar's top, as in the legend (bars of two shades of one hue
            # differ by it), and the value over it (and over its whisker): a zero bar is invisible.
            ax.plot(positions, heights, linestyle="none", marker=_marker(hashers, hasher), markersize=BAR_MARKER,
                    color=_colour(hashers, hasher), markeredgecolor="white", markeredgewidth=0.5,
                    clip_on=False)  # whole at a height of 0
            for x, height, top in zip(positions, heights, np.fmax(heights, high)):
                if np.isfinite(height):  # upright where more than six bars share a group: level ones would touch
                    ax.annotate(_number(height, 2), (x, top), ha="center", va="bottom", fontsize=7,
                                rotation=90 if len(present) > 6 else 0, xytext=(0, BAR_MARKER / 2 + 1),
                                textcoords="offset points")
        _category_ticks(ax, labels)
    else:
        ordered = rows.sort_values("x", kind="stable")
        x, median, q25, q75 = (ordered[c].to_numpy(dtype=float) for c in ("x", "median", "q25", "q75"))
        several = ordered["images"].to_numpy(dtype=float) > 1
        at_hasher = ordered.groupby("hasher", sort=False, observed=True).indices  # positions, in x order
        bands = []
        for hasher in [h for h in hashers if h in at_hasher]:
            at = at_hasher[hasher]
            ax.plot(x[at], median[at], **_line_style(hashers, hasher))
            if several[at].any():
                bands.append((x[at], q25[at], q75[at], _colour(hashers, hasher)))
        _bands(ax, bands, alpha=0.2)
        _value_axis(ax, rows, axis)
    _title(ax, family)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)


def _bands(ax, bands: list[tuple], alpha: float) -> None:
    """Filled bands `(x, low, high, colour)` under the lines, as one collection: the same picture as
    a `fill_between` each, which builds a collection and rescales the axes every time (hundreds
    in the zoo's figures). A gap (NaN) splits a band, as it does in `fill_between`."""
    from matplotlib.collections import PolyCollection

    polygons, colours = [], []
    for x, low, high, colour in bands:
        finite = np.isfinite(x) & np.isfinite(low) & np.isfinite(high)
        for run in np.split(np.arange(len(x)), np.flatnonzero(np.diff(finite.astype(int))) + 1):
            run = run[finite[run]]
            if len(run) > 1:  # one point has no area
                polygons.append(np.concatenate([np.column_stack([x[run], high[run]]),
                                                np.column_stack([x[run][::-1], low[run][::-1]])]))
                colours.append(colour)
    if polygons:
        ax.add_collection(PolyCollection(polygons, facecolors=colours, alpha=alpha, linewidths=0))


def _whiskers(ax, x: np.ndarray, middle: np.ndarray, low: np.ndarray, high: np.ndarray, colour) -> None:
    """An interval at each point from `low` to `high` (none where either is NaN), where points stand
    apart (one strength, or named values): a band between them would join what is not joined, and
    was not drawn at all, so a single-value family showed no interval."""
    shown = np.isfinite(low) & np.isfinite(high) & np.isfinite(middle)
    if shown.any():  # one collection, no line or container of its own: the axes' lines stay the hashers'
        ax.vlines(x[shown], low[shown], high[shown], colors=[colour], linewidth=1.5, alpha=0.6)


def _y_limit(curves: pd.DataFrame) -> float:
    top = np.nanmax(curves[["median", "q75"]].to_numpy(dtype=float), initial=0.0)
    return max(0.05, min(1.0, top * 1.15))


def _missing_note(shown: set, hashers: list[str]) -> str | None:
    missing = [h for h in hashers if h not in shown]
    return f"not shown (no distances, e.g. unavailable): {', '.join(_plain(h) for h in missing)}" if missing else None


def overview_figure(curves: pd.DataFrame, hashers: list[str], sweep: dict | None = None):
    """Per family: the distance (median over images, inter-quartile band) against the edit's strength."""
    drawn, count = _first_families(curves)
    families = _groups(drawn, "family")
    top = _y_limit(curves)  # the same in every panel, with room below 0: a point at 0 is drawn whole
    figure, axes, rows = _panels(len(families), ylim=(-0.03 * top, top))
    for ax, (family, part) in zip(axes, families.items()):
        _plot_family(ax, part, family, hashers, (sweep or {}).get(family))
    for row in rows:
        row[0].set_ylabel("distance / max", fontsize=9)
    present = set(curves["hasher"])
    notes = [_missing_note(present, hashers), left_out(count, MAX_PANELS, "families", "table.csv")]
    _place_panels(figure, rows, (hashers, [h for h in hashers if h in present]),
                  "; ".join(note for note in notes if note) or None)
    return figure


# --- detection --------------------------------------------------------------------

def detection_figure(detection: pd.DataFrame, operating_point: str, hashers: list[str], sweep: dict | None = None):
    """The key figure: per family, the share of edited copies still matched at the chosen
    false-positive rate, against the edit's strength; band = 95% Wilson interval."""
    chosen = detection[detection["operating_point"] == operating_point].copy()
    # A hasher without a threshold at this rate detects nothing by default: a line at 0 would read
    # as a hasher that fails every edit. It is not drawn; the note names it.
    unthresholded = [h for h in hashers if h in set(chosen["hasher"])
                     and chosen.loc[chosen["hasher"] == h, "threshold"].isna().all()]
    chosen = chosen[~chosen["hasher"].isin(unthresholded)]
    if chosen.empty:  # not one hasher to draw: no panel, and the figure says why
        return _notice_figure([f"No hasher has a threshold at {_plain(operating_point)}, so no edited copy counts "
                               "as detected and there is no line to draw.",
                               f"No threshold: {', '.join(map(_plain, unthresholded))}."])
    chosen["x"] = pd.to_numeric(chosen["value"], errors="coerce")
    drawn, count = _first_families(chosen)
    families = _groups(drawn, "family")
    figure, axes, rows = _panels(len(families), ylim=(-0.03, 1.03))
    for ax, (family, part_rows) in zip(axes, families.items()):
        numeric = part_rows["x"].notna().all() and part_rows["value"].nunique() > 1
        positions = {label: k for k, label in enumerate(first_seen(part_rows["label"]))}
        ordered = part_rows.sort_values("x", kind="stable") if numeric else part_rows
        x = (ordered["x"] if numeric else ordered["label"].map(positions)).to_numpy(dtype=float)
        tpr, low, high = (ordered[c].to_numpy(dtype=float) for c in ("tpr", "tpr_low", "tpr_high"))
        resolved = ordered["resolved"].to_numpy(dtype=bool)
        at_hasher = ordered.groupby("hasher", sort=False, observed=True).indices  # positions, in x order
        bands, present = [], [h for h in hashers if h in at_hasher]
        for hasher in present:
            at = at_hasher[hasher]
            shift = 0.0 if numeric else _dodge(present, hasher)  # categories: side by side, not stacked
            ax.plot(x[at] + shift, tpr[at], "-" if resolved[at].all() else "--", **_line_style(hashers, hasher))
            if numeric:
                bands.append((x[at] + shift, low[at], high[at], _colour(hashers, hasher)))
            else:  # separate categories have no band between them: a whisker each
                _whiskers(ax, x[at] + shift, tpr[at], low[at], high[at], _colour(hashers, hasher))
        _bands(ax, bands, alpha=0.15)
        if numeric:
            _value_axis(ax, part_rows, (sweep or {}).get(family))
        else:
            _category_ticks(ax, list(positions))
            ax.set_xlim(-0.5, len(positions) - 0.5)
        _title(ax, family)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    for row in rows:
        row[0].set_ylabel(f"detected at {_plain(operating_point)}", fontsize=9)
    notes = ([] if chosen["resolved"].all() else ["dashed: too few impostor pairs to resolve this false-positive rate"])
    missing = _missing_note(set(detection["hasher"]), hashers)  # an unavailable hasher has no rows at all
    if missing:
        notes.append(missing)
    if unthresholded:
        notes.append(f"not drawn, no threshold at {_plain(operating_point)}: {', '.join(map(_plain, unthresholded))}")
    if count > MAX_PANELS:
        notes.append(left_out(count, MAX_PANELS, "families", "detection.csv"))
    _place_panels(figure, rows, (hashers, [h for h in hashers if h in set(chosen["hasher"])]),
                  "; ".join(notes) or None)
    return figure


def detection_matrix(detection: pd.DataFrame, operating_point: str, hashers: list[str]) -> pd.DataFrame:
    """Mean detection rate over each family's strengths: families x hashers."""
    chosen = detection[detection["operating_point"] == operating_point]
    # No threshold, no rate: NaN (a grey cell), not the 0 its empty matches would give.
    rates = chosen.assign(tpr=chosen["tpr"].where(chosen["threshold"].notna()))
    matrix = rates.pivot_table(index="family", columns="hasher", values="tpr", aggfunc="mean", sort=False,
                               dropna=False)
    return matrix.reindex(columns=[h for h in hashers if h in set(chosen["hasher"])])


def _colour_table(figure, values: np.ndarray, rows: list[str], columns: list[str], cmap, cells: list[list[str]],
                  cell_size: tuple[float, float], colour_label: str, title: str | None = None, shade=None,
                  note: str | None = None):
    """A table as coloured cells with text in each, column names on top (slanted when many), row
    names on the left and a colour bar on the right: the heatmap and the detection matrix. `note`
    is written below it."""
    fonts = _Fonts(figure)
    ax = figure.add_axes((0, 0, 1, 1))
    image = ax.imshow(values, aspect="auto", cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    slanted = len(columns) > 4 or any(fonts.size(c, 8)[0] > cell_size[0] for c in columns)
    ax.set_xticks(range(len(columns)), [_plain(c) for c in columns], fontsize=8, rotation=40 if slanted else 0,
                  ha="left" if slanted else "center", rotation_mode="anchor" if slanted else "default")
    ax.set_yticks(range(len(rows)), [_plain(r) for r in rows], fontsize=8)
    ax.xaxis.tick_top()
    for i, row in enumerate(cells):
        for j, text in enumerate(row):
            if text:
                dark = shade is not None and np.isfinite(shade[i, j]) and shade[i, j] < 0.6
                ax.text(j, i, _plain(text), ha="center", va="center", fontsize=7,
                        color="white" if dark else "black")
    bar = figure.add_axes((0, 0, 1, 1))
    figure.colorbar(image, cax=bar, label=colour_label)
    bar.tick_params(labelsize=8)
    # The colour bar's label runs along it: the table is at least that tall.
    height = max(cell_size[1] * len(rows), fonts.size(colour_label, bar.yaxis.label.get_fontsize())[0] + 0.2)
    layout = _Layout(figure, [[ax, bar]], [cell_size[0] * len(columns), 0.15], [height])
    if title:
        # Above the column names, at a fixed place (the automatic one measures those names); as wide
        # as the table and its colour bar, or wrapped (one or two columns are narrower than a title).
        title = _wrap(title, 9, cell_size[0] * len(columns) + 0.8, fonts)
        top = _extent(ax, fonts, cell_size[0] * len(columns), height).top
        ax.set_title(title, fontsize=9, y=1.0, pad=top / _POINT + 4)
        layout.top[0] += fonts.size(title, 9)[1] + 4 * _POINT
    if note:  # as wide as the table and its colour bar: a table of one column is narrower than a note
        note = _wrap(note, 8, layout.width - 2 * _PAD, fonts)
        width, height = layout.place(footer=fonts.size(note, 8)[1] + _PAD)
        figure.text(_PAD / width, _PAD / height, note, fontsize=8, color="0.4", va="bottom")
    else:
        layout.place()
    return ax


def detection_matrix_figure(detection: pd.DataFrame, operating_point: str, hashers: list[str]):
    """Every hasher against every family at a glance: the mean share of copies detected."""
    matrix = detection_matrix(detection, operating_point, hashers)
    cut = left_out(len(matrix), MAX_TABLE_ROWS, "families", "detection.csv")
    matrix = matrix.iloc[:MAX_TABLE_ROWS]
    values = matrix.to_numpy(dtype=float)
    # A rate behind a threshold too few impostor pairs resolve is starred, as detection.png dashes its line.
    chosen = detection[detection["operating_point"] == operating_point]
    unresolved = set(chosen.loc[~chosen["resolved"].astype(bool), "hasher"])
    starred = [" *" if hasher in unresolved else "" for hasher in matrix.columns]
    cells = [[f"{100 * v:.0f}{star}" if np.isfinite(v) else "none" for v, star in zip(row, starred)]
             for row in values]
    notes = ["*: too few impostor pairs to resolve this false-positive rate" if unresolved & set(matrix.columns)
             else None, _missing_note(set(chosen["hasher"]), hashers), cut]
    figure = _figure()
    _colour_table(figure, np.ma.masked_invalid(values), list(matrix.index), list(matrix.columns),
                  matplotlib_colormap("RdYlGn").with_extremes(bad="0.85"), cells, (0.42, 0.3),
                  f"copies detected at {_plain(operating_point)}\n(mean over strengths; cells in %; none: no threshold)",
                  note="; ".join(note for note in notes if note) or None)
    return figure


# --- distances of copies and of different images -----------------------------------

LEGEND_HEADROOM = 1.7  # a histogram's y axis over its tallest bar: the top band holds the legend
HISTOGRAM_BINS = 128  # bins of a histogram of whole distances at most (of any other: 50)


def histogram_figure(distances: pd.DataFrame, impostors: pd.DataFrame, points: dict, hashers: list[str],
                     units: dict[str, str] | None = None):
    """Per hasher: how far apart copies (genuine) and different images (impostors) are; `units`: what
    a hasher's distance counts, where it counts something (a Hamming distance: "bits"), for its axis."""
    shown = [h for h in hashers if h in points]
    figure, axes, rows = _panels(len(shown))
    unresolved = False  # a threshold is drawn whose rate is not resolved
    for ax, hasher in zip(axes, shown):  # one hasher's distances at a time (400,000 at 100,000 images)
        genuine = hasher_rows(distances, hasher, ["distance"])["distance"].to_numpy(dtype=float)
        impostor = impostor_distances(impostors, hasher)
        both = np.concatenate([genuine, impostor])
        # A few huge distances (ColorMomentHash on flat images reaches 1e12) would squash every
        # bin into one: only for such a tail the axis stops early, and the title says what is cut.
        # (`both` is this loop's own: the percentile may reorder it rather than copy it.)
        low, high, p90 = float(both.min()), float(both.max()), float(np.percentile(both, 90, overwrite_input=True))
        if p90 > 0 and high > 50 * p90:
            high = 3 * p90
        beyond = int(np.count_nonzero(both > high))
        integral = high - low <= 1024 and all(np.all(np.mod(both[start:start + 65536], 1) == 0)
                                              for start in range(0, len(both), 65536))
        del both
        # Integral distances: bins of whole steps, at most HISTOGRAM_BINS of them (one a bit over 576
        # bits of MarrHildrethHash drew the copies as spikes too thin to see).
        step = max(1, math.ceil((high - low + 1) / HISTOGRAM_BINS))
        bins = np.arange(low - 0.5, high + step + 0.5, step) if integral else np.linspace(low, high, 51)
        if len(impostor):  # (a density of nothing is 0/0)
            ax.hist(impostor, bins=bins, density=True, histtype="stepfilled", color="0.85", edgecolor="0.45",
                    linewidth=0.6, label=f"impostors ({len(impostor):,})")
        # One filled outline rather than a bar per bin (hundreds for a long hash): the same picture,
        # and cheap to draw and for the legend to avoid.
        ax.hist(genuine, bins=bins, density=True, histtype="stepfilled", alpha=0.6, linewidth=0,
                color=_colour(hashers, hasher), label=f"copies ({len(genuine):,})")
        # One line per threshold, with a legend entry in its style for every operating point at it:
        # two points at one threshold (fpr=0.001 and a fixed 10) drew one line over the other, and one
        # of them hid; one label naming both widened the legend past its panel.
        at: dict[float, list] = {}
        for point in points[hasher]:
            if np.isfinite(point.threshold):
                at.setdefault(float(point.threshold), []).append(point)
        for k, (threshold, named) in enumerate(at.items()):  # up to the legend's band (below), not through it
            # Too few impostor pairs to measure the rate: the line only sits below the closest
            # different images, and says so (grey, starred; the note says what the star means),
            # as detection.png dashes such rates. A word in the label would widen the legend
            # past its panel.
            resolved = all(point.resolved for point in named)
            unresolved = unresolved or not resolved
            style = {"color": "black" if resolved else "0.55", "linestyle": ["-", "--", ":", "-."][k % 4],
                     "linewidth": 1}
            labels = [f"{_plain(point.name)}: {number(threshold)}" + ("" if point.resolved else " *")
                      for point in named]
            ax.axvline(threshold, ymax=1 / LEGEND_HEADROOM, label=labels[0], **style)
            for label in labels[1:]:  # the legend's entry only: the line is drawn once
                ax.plot([], [], label=label, **style)
        _title(ax, hasher + (f" ({beyond:,} beyond {number(high)} not shown)" if beyond else ""),
               10 if not beyond else 8)
        unit = (units or {}).get(hasher)
        ax.set_xlabel(f"distance ({unit})" if unit else "distance", fontsize=9)
        ax.tick_params(labelsize=8)
        # The legend gets a band of its own above the tallest bar ("best" placement still covered the
        # impostors' peak or the copies' spike at 0 in half the panels).
        ax.set_ylim(0, ax.get_ylim()[1] * LEGEND_HEADROOM)
        ax.legend(fontsize=7, loc="upper center", ncol=2, frameon=False, columnspacing=1.0, handlelength=1.5)
    for row in rows:
        row[0].set_ylabel("density", fontsize=9)
    _place_panels(figure, rows, note="* grey: unresolved, too few impostor pairs (for precision=, too few copies "
                                     "matched) to measure the rate" if unresolved else None)
    return figure


def roc_figure(distances: pd.DataFrame, impostors: pd.DataFrame, hashers: list[str]):
    """Per family: true-positive rate against false-positive rate (log axis), one line per hasher."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    # Each family's curve per hasher, made one hasher at a time from its rows grouped by pair (the
    # curves are as many points as distinct distances; the distances are not kept).
    curve_of: dict[object, dict[str, tuple]] = {}  # family -> hasher -> (false-, true-positive rates)
    present, measured, floor = set(), set(), 1.0  # hashers and families with copies; the smallest rate measured
    for groups in hasher_groups(distances):
        impostor = impostor_distances(impostors, groups.hasher)
        for family, genuine in groups.families():
            present.add(groups.hasher)
            measured.add(family)
            if len(impostor):
                _, fpr, tpr = roc_curve(genuine, impostor)
                curve_of.setdefault(family, {})[groups.hasher] = (fpr, tpr)
                floor = min(floor, 1.0 / len(impostor))
    if not curve_of:  # every impostor pair excluded (or none measured): no false-positive rate to draw against
        return _notice_figure(["There are no impostor pairs (pairs of different images) to measure false "
                               "matches on, so there is no ROC curve to draw."])
    families = [f for f in first_seen(_usable_rows(distances, "family")) if f in measured]
    cut = left_out(len(families), MAX_PANELS, "families", "roc.csv, their areas and equal error rates")
    families = families[:MAX_PANELS]
    figure, axes, rows = _panels(len(families), ylim=(-0.03, 1.03))
    # A rate of 0 has no place on a log axis: the curves draw it at the left edge, half the smallest
    # rate measured, and the edge's tick says "0". Decades only otherwise, written as the operating
    # points are (0.001, not 10^-3): a minor tick is a whole tick object to build and draw, hundreds
    # over a grid of log axes, and mathtext labels cost a parser. A decade closer to the edge than
    # a third of a decade would write its label over the "0".
    edge = floor / 2
    ticks = [edge] + [10.0 ** d for d in range(int(np.floor(np.log10(edge))), 1)
                      if 10.0 ** d >= edge * 10 ** (1 / 3) or d == 0]  # 1, the right edge, always
    for ax, family in zip(axes, families):
        ax.set_xscale("log")  # the same x axis in every panel
        ax.set_xlim(edge, 1.0)
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: "0" if value == edge else f"{value:g}"))
        ax.xaxis.set_minor_locator(NullLocator())
        for hasher in [h for h in hashers if h in curve_of.get(family, {})]:
            fpr, tpr = curve_of[family][hasher]
            fpr = np.maximum(fpr, edge)  # 0 at the edge, for every hasher (the nonzero rates are at least `floor`)
            # A curve's markers at even distances along it, not at its points (as many as distinct distances).
            ax.step(fpr, tpr, where="post", markevery=0.12, **_line_style(hashers, hasher))
        _title(ax, family)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        ax.set_xlabel("false-positive rate", fontsize=9)
    for row in rows:
        row[0].set_ylabel("true-positive rate", fontsize=9)
    _place_panels(figure, rows, (hashers, [h for h in hashers if h in present]), cut)
    return figure


# --- the whole table as colour ------------------------------------------------------

def matplotlib_colormap(name: str):
    import matplotlib

    return matplotlib.colormaps[name]


def heatmap_figure(distances: pd.DataFrame):
    hashers = hasher_order(distances)
    labels = first_seen(distances["label"])
    norm, raw, unavailable = label_medians(distances, hashers, labels)
    cut = left_out(len(labels), MAX_TABLE_ROWS, "pairs", "table.csv")
    labels, norm, raw = labels[:MAX_TABLE_ROWS], norm[:MAX_TABLE_ROWS], raw[:MAX_TABLE_ROWS]
    # A cell without a number says why, as table.csv does: the hasher is unavailable, or every distance failed.
    cells = [[_number(raw[i, j], 3) if np.isfinite(raw[i, j]) else (UNAVAILABLE if unavailable[j] else "error")
              for j in range(len(hashers))] for i in range(len(labels))]
    figure = _figure()
    # Unavailable or failed cells: grey, not a colour on the scale.
    colours = matplotlib_colormap("viridis").with_extremes(bad="0.85")
    _colour_table(figure, np.ma.masked_invalid(norm), labels, hashers, colours, cells, (0.9, 0.28),
                  "normalised distance (distance / max)",
                  title="median distance per pair over images\n(cell text: raw distance)", shade=norm, note=cut)
    return figure


def label_medians(distances: pd.DataFrame, hashers: list[str], labels: list) -> tuple:
    """(normalised, raw) median distance per label (rows) and hasher (columns), NaN where none, as
    pandas' groupby median gives them; and per hasher whether it could not run here. From each
    hasher's rows grouped by pair (grouping repeats pandas' arithmetic), one hasher at a time; a
    label that several pairs share takes their rows together, with pandas."""
    norm, raw = (np.full((len(labels), len(hashers)), np.nan) for _ in range(2))
    row_of = {label: row for row, label in enumerate(labels)}
    unavailable = []
    for column, groups in enumerate(hasher_groups(distances, hashers)):
        unavailable.append(groups.unavailable)
        pair_labels = groups.keys["label"].tolist()
        if len(set(pair_labels)) == len(pair_labels):
            rows = [row_of[label] for label in pair_labels]
            raw[rows, column] = groups.medians()
            norm[rows, column] = groups.medians(groups.sorted_column(distances["distance_norm"]))
            continue
        part = hasher_rows(distances, groups.hasher, ["label", "distance", "distance_norm"])
        medians = part.groupby("label", sort=False, observed=True)[["distance_norm", "distance"]].median()
        medians = medians.reindex(labels).to_numpy(dtype=float)
        norm[:, column], raw[:, column] = medians[:, 0], medians[:, 1]
    return norm, raw, unavailable


# --- what the edits look like -------------------------------------------------------

FAILED_TILE = "edit failed"  # written on the grey tile that stands for a side B the edit could not make


# What previews.png (its heading) and the summary (under it) say of a family with more pairs than a row shows.
THINNED = f"{PREVIEW_COLUMNS} pairs of a family that has more, from its first value to its last, evenly spaced"


def preview_scope(table: pd.DataFrame) -> tuple[int, int]:
    """How many families a run's table (a row per pair) has, and the most pairs one of them has:
    what previews.png, and the summary under it, say the figure leaves out (config.preview_pairs)."""
    if table.empty:
        return 0, 0
    sizes = table.groupby("family", sort=False, observed=True).size()
    return len(sizes), int(sizes.max())


def previews_figure(previews, families: int = 0, widest: int = 0, dpi: int = PREVIEW_DPI):
    """Side B of each pair for the first image (a grey tile saying the edit failed where there is
    no B: the untouched image there would pass for the edit), one row per family: the article's
    imshow previews, saved. `previews` holds the pairs config.preview_pairs chose; `families` and
    `widest` say how many families the run has and the most pairs one has (where larger than what
    `previews` holds, the heading says what is left out). Each thumbnail is resized to the pixels it fills (area
    averaging to shrink, as a photograph should be; nearest neighbour to enlarge, showing the
    pixels) and placed on the figure as it is (`figimage`): no axes to build and no resampling
    in the draw, which for dozens of pairs cost more than every other figure together."""
    import cv2

    per_family: dict[str, list] = {}
    for pair, _, side in previews:
        per_family.setdefault(pair.family, []).append((pair, side))
    count = max(families, len(per_family))
    per_family = dict(list(per_family.items())[:MAX_PANELS])  # a row per family: the first MAX_PANELS
    columns = max(len(items) for items in per_family.values())
    thinned = widest > PREVIEW_COLUMNS
    figure = _figure(dpi)
    fonts = _Fonts(figure)
    cell, gap = round(1.5 * dpi), round(_PAD * dpi)  # pixels: a thumbnail's width, and the space around
    heading = (f"Side B of {'the pairs' if thinned else 'every pair'}"
               + (f" of the first {MAX_PANELS} of {count:,} families" if count > MAX_PANELS else "") + " (first image)"
               + (f"\n{THINNED}" if thinned else ""))
    header = math.ceil(fonts.size(heading, 9)[1] * dpi) + 2 * gap
    rows = []  # per family: [(title, thumbnail or None)], and the row's height in pixels
    for family in per_family:
        row = []
        for pair, side in per_family[family]:
            thumbnail = None  # a failed edit: a grey tile, drawn below
            if side is not None:
                height, width = side.shape[:2]
                scale = min(cell / width, 1.5 * cell / height)  # portrait at most 1.5 times as tall
                size = (max(1, round(width * scale)), max(1, round(height * scale)))
                thumbnail = cv2.resize(side, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST)
                thumbnail = thumbnail[..., ::-1] if thumbnail.ndim == 3 else np.stack([thumbnail] * 3, axis=-1)
            # Within its thumbnail's width, on two lines at most, the second its end after '…' (_fit):
            # never over the next thumbnail.
            row.append((_fit(_plain(pair.label), PREVIEW_TITLE, cell / dpi, fonts), thumbnail))
        rows.append((row, max([t.shape[0] if t is not None else cell * 3 // 4 for _, t in row])))
    # Titles of PREVIEW_TITLE points (a 6-point title was 4 pixels tall at 72 dpi: unreadable), on two
    # lines where one is too wide for a thumbnail: every row then leaves room for two.
    two = any("\n" in title for row, _ in rows for title, _ in row)
    line = math.ceil(fonts.size("Side B\nSide B" if two else "Side B", PREVIEW_TITLE)[1] * dpi) + 2
    width = max(gap + columns * (cell + gap), math.ceil(fonts.size(heading, 9)[0] * dpi) + 2 * gap)  # a row of one
    height = header + sum(line + row_height + gap for _, row_height in rows)
    figure.set_size_inches(width / dpi, height / dpi)
    figure.text(0.5, 1 - gap / height, heading, fontsize=9, ha="center", va="top")
    top = height - header  # pixels from the bottom, as figimage and figure.text count
    for row, row_height in rows:
        for k, (title, thumbnail) in enumerate(row):
            left = gap + k * (cell + gap)
            figure.text((left + cell / 2) / width, (top - line + 1) / height, title, fontsize=PREVIEW_TITLE,
                        ha="center", va="bottom", linespacing=1.2)
            if thumbnail is None:
                thumbnail = _failed_tile(cell, cell * 3 // 4)
                figure.text((left + cell / 2) / width, (top - line - thumbnail.shape[0] / 2) / height, FAILED_TILE,
                            fontsize=7, color="0.3", ha="center", va="center")
            # Centred in its cell, its top under the title.
            figure.figimage(thumbnail, left + (cell - thumbnail.shape[1]) // 2,
                            top - line - thumbnail.shape[0], origin="upper")
        top -= line + row_height + gap
    return figure


def _failed_tile(width: int, height: int) -> np.ndarray:
    """A light grey tile with a darker frame (RGB pixels), where an edit gave no image to show."""
    tile = np.full((height, width, 3), 224, np.uint8)
    tile[[0, -1], :] = tile[:, [0, -1]] = 150
    return tile
