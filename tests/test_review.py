"""The leak audit's review page: what it contains (parsed here) and how it renders (in headless Chromium).

The browser tests drive the system's Chromium through Playwright (no browser download:
`executable_path`); they skip, saying why, where Chromium or Playwright is missing.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from harness.review import (THUMBNAIL_BYTES, THUMBNAIL_SIDE, make_thumbnail, review_page, sort_pairs)
from tests.conftest import make_scene

HASHERS = {"pHash": 64.0, "PDQ": 256.0, "imagehash.dhash": 64.0}
THRESHOLDS = {"pHash": 12, "PDQ": 90, "imagehash.dhash": 12}
# Names a page must show as text, never as markup, and never mangle (no "/": they are file names).
SCRIPT_NAME = "<script>alert(1).png"
HANDLER_NAME = "<img src=x onerror=alert(2)>.png"
QUOTE_NAME = "it's \"quoted\" & <b>bold.png"
BIDI_NAME = "photo\u202egnp.exe"  # a right-to-left override would make it read "photoexe.png"
NON_UTF8_NAME = os.fsdecode(b"caf\xe9.png")  # a Latin-1 file name on a UTF-8 system


class Elements(HTMLParser):
    """Every start tag of a page, with its attributes, and the text inside <style>."""

    def __init__(self, page: str):
        super().__init__(convert_charrefs=True)
        self.tags, self.style, self._in_style = [], "", False
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.style += data

    def all(self, tag: str, cls: str | None = None) -> list[dict]:
        return [a for t, a in self.tags if t == tag and (cls is None or cls in (a.get("class") or "").split())]


def jpeg_of(seed: int, size=(120, 160)) -> bytes:
    ok, data = cv2.imencode(".jpg", make_scene(seed, *size), [cv2.IMWRITE_JPEG_QUALITY, 80])
    return data.tobytes()


def pairs_frame(rows) -> pd.DataFrame:
    # Object columns: pandas 3's default string dtype (Arrow) refuses the lone surrogates that
    # stand for a file name's undecodable bytes (os.fsdecode), so a caller keeps names as objects.
    frame = pd.DataFrame(rows, columns=["split_a", "file_a", "split_b", "file_b", *HASHERS, "agree"], dtype=object)
    return frame.astype({**{name: float for name in HASHERS}, "agree": int})


def sample_pairs() -> pd.DataFrame:
    """Six flagged pairs whose review order is known: see test_order_is_nearest_normalised_then_agreement."""
    nan = np.nan
    return pairs_frame([
        ("train", "a/far.png", "test", "b/far.png", 12, nan, nan, 1),  # nearest 12/64 = 0.1875
        ("train", "a/pdq.png", "test", "b/pdq.png", nan, 8, nan, 1),  # 8/256 = 0.03125: PDQ's scale counts
        ("train", "a/two.png", "test", "b/two.png", 2, nan, 2, 2),  # 2/64 = 0.03125, two agree: before pdq
        ("train", "a/same.png", "val", "c/same.png", 0, 0, 0, 3),  # 0
        ("train", "a/zeta.png", "test", "b/zeta.png", 4, 16, nan, 2),  # 4/64 = 16/256 = 0.0625, tie broken by name
        ("train", "a/alpha.png", "test", "b/alpha.png", 4, nan, 9, 2),  # 0.0625
    ])


def thumbnails_by_seed(files):
    """A thumbnail function: a real JPEG for each file (a distinct scene per file); it records its calls."""
    seeds = {file: seed for seed, file in enumerate(files)}
    calls = []

    def thumbnail(file):
        calls.append(file)
        return jpeg_of(seeds[file])
    thumbnail.calls = calls
    return thumbnail


def page_of(pairs: pd.DataFrame, **options) -> str:
    files = sorted(set(pairs["file_a"]) | set(pairs["file_b"]), key=repr)
    options.setdefault("title", "Leak review")
    options.setdefault("notes", ["3 files in test are in train."])
    return review_page(pairs, options.pop("thumbnail", thumbnails_by_seed(files)), hashers=HASHERS, **options)


def card_files(page: str) -> list[str]:
    """The file_b of every card, in page order, as the page's text shows it."""
    return re.findall(r'<span class="name">([^<]*)</span></figcaption></figure>\n</div>', page)


# ---------------------------------------------------------------- order, content, escaping (no browser)

def test_order_is_nearest_normalised_then_agreement():
    ordered = sort_pairs(sample_pairs(), HASHERS)
    assert list(ordered["file_b"]) == ["c/same.png", "b/two.png", "b/pdq.png", "b/alpha.png", "b/zeta.png",
                                       "b/far.png"]
    assert ordered["nearest"].tolist() == [0, 2 / 64, 8 / 256, 4 / 64, 4 / 64, 12 / 64]
    assert card_files(page_of(sample_pairs())) == ["same.png", "two.png", "pdq.png", "alpha.png", "zeta.png",
                                                    "far.png"]


def test_the_same_pairs_give_the_same_bytes_in_any_row_order():
    pairs = sample_pairs()
    page = page_of(pairs)
    assert page == page_of(pairs)
    assert page == page_of(pairs.sample(frac=1, random_state=3).reset_index(drop=True))


def test_distances_agreement_and_legend_are_shown():
    page = page_of(sample_pairs(), thresholds=THRESHOLDS)
    first = page[page.index('<article class="pair" id="pair-1">'):page.index('<article class="pair" id="pair-2">')]
    assert "3 of 3 hashers" in first and "c/</span>" in first and ">val</span>" in first
    second = page[page.index('id="pair-2"'):page.index('id="pair-3"')]
    assert "2 of 3 hashers" in second
    assert '<tr class="nearest"><th>pHash</th><td>2</td><td>(0.031)</td></tr>' in second
    assert '<tr class="none"><th>PDQ</th><td>&mdash;</td><td></td></tr>' in second
    assert "<b>PDQ</b> 0&ndash;256, flags at &le;&nbsp;90" in page
    assert "All 6 flagged pairs are shown, closest first." in page
    assert '<p class="answer">3 files in test are in train.</p>' in page


def test_a_distance_beyond_its_threshold_is_shown_greyed_and_changes_no_order():
    """A near miss is evidence for the reviewer, not a failure to hash: shown, marked "not flagged",
    and left out of the order and the bold distance, which come from the flagging distances."""
    pairs = sample_pairs()
    pairs.loc[pairs["file_b"] == "b/two.png", "PDQ"] = 91.0  # beyond PDQ's 90
    pairs.loc[pairs["file_b"] == "b/far.png", "imagehash.dhash"] = 13.0  # 13/64 would not be the nearest anyway
    page = page_of(pairs, thresholds=THRESHOLDS)
    assert card_files(page) == card_files(page_of(sample_pairs(), thresholds=THRESHOLDS))
    second = page[page.index('id="pair-2"'):page.index('id="pair-3"')]
    assert '<tr class="unflagged"><th>PDQ</th><td>91</td><td>not flagged</td></tr>' in second
    assert '<tr class="nearest"><th>pHash</th><td>2</td><td>(0.031)</td></tr>' in second
    assert "<dt>not flagged</dt>" in page


def test_a_group_column_is_shown_when_present():
    page = page_of(sample_pairs().assign(group=[7, 7, 8, 9, 10, 11]))
    assert '<span class="group">group 9</span>' in page.split('id="pair-2"')[0]  # same.png's card
    assert "<dt>group</dt>" in page
    assert "group" not in page_of(sample_pairs()).split("<main")[1]


def test_the_cap_shows_the_closest_pairs_and_counts_the_rest():
    pairs = sample_pairs()
    files = sorted(set(pairs["file_a"]) | set(pairs["file_b"]))
    thumbnail = thumbnails_by_seed(files)
    page = page_of(pairs, max_pairs=2, thumbnail=thumbnail, full_table="leaks.csv")
    assert page.count('<article class="pair"') == 2
    assert card_files(page) == ["same.png", "two.png"]
    assert "The 2 closest of 6 flagged pairs are shown; the other 4 are not shown here (leaks.csv lists every pair)." \
        in page
    assert sorted(thumbnail.calls) == ["a/same.png", "a/two.png", "b/two.png", "c/same.png"]  # only what is shown


def test_each_file_is_thumbnailed_once():
    pairs = pairs_frame([("train", "a.png", "test", f"copy{i}.png", i, np.nan, np.nan, 1) for i in range(4)])
    thumbnail = thumbnails_by_seed(["a.png", *(f"copy{i}.png" for i in range(4))])
    page = page_of(pairs, thumbnail=thumbnail)
    assert sorted(thumbnail.calls) == ["a.png", "copy0.png", "copy1.png", "copy2.png", "copy3.png"]
    assert len(Elements(page).all("img")) == 8


def test_a_missing_thumbnail_shows_a_placeholder():
    pairs = sample_pairs()
    page = page_of(pairs, thumbnail=lambda file: None if file == "b/two.png" else jpeg_of(len(file)))
    elements = Elements(page)
    placeholders = elements.all("div", "missing")
    assert len(placeholders) == 1 and placeholders[0]["aria-label"] == "test: b/two.png"
    assert "no preview<br>(unreadable)" in page
    assert len(elements.all("img")) == 2 * len(pairs) - 1


def test_no_pairs_gives_a_page_that_says_so():
    page = page_of(pairs_frame([]))
    assert "No pair was flagged." in page and '<article class="pair"' not in page


def test_names_from_files_are_text_never_markup():
    pairs = pairs_frame([
        ("train", SCRIPT_NAME, "test", QUOTE_NAME, 1, np.nan, np.nan, 1),
        ("train", f"folder/{HANDLER_NAME}", "val", "x.png", 1.5, np.nan, np.nan, 1),
        ("<i>split</i>", BIDI_NAME, "test", NON_UTF8_NAME, 2, np.nan, np.nan, 1),
        ("train", b"raw\xff\xfe.png", "test", "two\nlines.png", 3, np.nan, np.nan, 1),
    ])
    page = page_of(pairs, title="<script>t</script>", notes=["<img src=x onerror=alert(1)>"])
    page.encode("utf-8")  # every character can be written: no lone surrogate is left
    elements, cards = Elements(page), Elements(page[page.index("<main"):])
    assert not elements.all("script") and not cards.all("b") and not cards.all("i")
    assert [a["src"][:5] for a in elements.all("img")] == ["data:"] * 8  # the names' and the note's <img> are text
    assert '<span class="name">&lt;script&gt;alert(1).png</span>' in page
    assert '<span class="folder">folder/</span><span class="name">&lt;img src=x onerror=alert(2)&gt;.png</span>' \
        in page
    assert "it&#x27;s &quot;quoted&quot; &amp; &lt;b&gt;bold.png" in page
    assert "&lt;i&gt;split&lt;/i&gt;" in page
    assert "\u202e" not in page  # the override is shown, not obeyed,
    assert 'photo<span class="esc">\\u202e</span>gnp.exe' in page  # and marked as an escape
    assert 'caf<span class="esc">\\xe9</span>.png' in page  # the undecodable byte, as a marked escape
    assert 'raw<span class="esc">\\xff</span><span class="esc">\\xfe</span>.png' in page
    assert 'two<span class="esc">\\n</span>lines.png' in page
    assert 'alt="train: &lt;script&gt;alert(1).png"' in page


def test_an_escape_and_a_name_holding_its_text_look_different():
    pairs = pairs_frame([("train", "a\\tb.png", "test", "a\tb.png", 1, np.nan, np.nan, 1),
                         ("train", "c\\x80.png", "test", b"c\x80.png", 2, np.nan, np.nan, 1)])
    page = page_of(pairs, title="review\tpage")
    assert '<span class="name">c\\x80.png</span>' in page  # a backslash, an 'x', an '8' and a '0'
    assert '<span class="name">c<span class="esc">\\x80</span>.png</span>' in page  # a byte that is no UTF-8
    controls = page_of(pairs_frame([("train", "c\x85.png", "test", b"c\x85.png", 1, np.nan, np.nan, 1)]))
    assert '<span class="name">c<span class="esc">\\u0085</span>.png</span>' in controls  # a C1 control character
    assert '<span class="name">c<span class="esc">\\x85</span>.png</span>' in controls  # the byte 0x85
    assert '<span class="name">a\\tb.png</span>' in page  # a backslash and a 't': as they are
    assert '<span class="name">a<span class="esc">\\t</span>b.png</span>' in page  # a tab: a marked escape
    assert "<title>review\\tpage</title>" in page  # a title holds text only: the escape, unmarked


def test_the_page_loads_nothing_and_allows_only_its_own_style():
    page = page_of(sample_pairs())
    elements = Elements(page)
    (policy,) = [a["content"] for t, a in elements.tags if t == "meta" and a.get("http-equiv") ==
                 "Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'none'" and directives["img-src"] == "data:"
    digest = base64.b64encode(hashlib.sha256(elements.style.encode()).digest()).decode()
    assert directives["style-src"] == f"'sha256-{digest}'"  # the one stylesheet, and nothing else
    assert page.index("Content-Security-Policy") < page.index("<style>")  # in force before anything loads
    links = [(tag, key, value) for tag, attrs in elements.tags for key, value in attrs.items()
             if key in ("src", "href", "srcset", "action", "poster", "data")]
    assert links and all(value.startswith("data:image/jpeg;base64,") for _, _, value in links)
    assert not elements.all("script") and not any(k.startswith("on") for _, a in elements.tags for k in a)


def test_bad_input_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="lacks the column.*agree"):
        page_of(sample_pairs().drop(columns="agree"))
    with pytest.raises(ValueError, match="lacks the column.*PDQ"):
        page_of(sample_pairs().drop(columns="PDQ"))
    with pytest.raises(ValueError, match="max_pairs"):
        page_of(sample_pairs(), max_pairs=0)
    with pytest.raises(ValueError, match="neither JPEG nor PNG"):
        page_of(sample_pairs(), thumbnail=lambda file: b"GIF89a...")
    with pytest.raises(ValueError, match="over 65536"):
        page_of(sample_pairs(), thumbnail=lambda file: b"\xff\xd8\xff" + bytes(THUMBNAIL_BYTES))


# ---------------------------------------------------------------- thumbnails

def test_thumbnails_are_small_jpegs_of_the_image(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (1500, 2400, 3), dtype=np.uint8)  # JPEG's worst case
    cv2.imwrite(str(tmp_path / "big.png"), noise)
    data = make_thumbnail(str(tmp_path / "big.png"))
    assert data.startswith(b"\xff\xd8\xff") and len(data) < THUMBNAIL_BYTES / 2
    thumb = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert thumb.shape == (100, THUMBNAIL_SIDE, 3)  # the longer side bounded, the aspect kept
    assert make_thumbnail(str(tmp_path / "big.png")) == data  # deterministic

    scene = make_scene(5, 300, 200)
    cv2.imwrite(str(tmp_path / "scene.png"), scene)
    thumb = cv2.imdecode(np.frombuffer(make_thumbnail(str(tmp_path / "scene.png")), np.uint8), cv2.IMREAD_COLOR)
    expected = cv2.resize(scene, (107, 160), interpolation=cv2.INTER_AREA)
    assert thumb.shape == expected.shape and np.abs(thumb.astype(int) - expected).mean() < 3  # JPEG's loss only


def test_small_images_are_not_enlarged(tmp_path):
    cv2.imwrite(str(tmp_path / "small.png"), make_scene(1, 40, 50))
    thumb = cv2.imdecode(np.frombuffer(make_thumbnail(str(tmp_path / "small.png")), np.uint8), cv2.IMREAD_COLOR)
    assert thumb.shape == (40, 50, 3)


def test_a_card_gives_each_images_size_and_shows_a_tiny_one_enlarged(tmp_path):
    """A 1 x 1 image was one dot in an empty frame, a 10000 x 20 strip a hairline, and no card said
    how large either image was; a file gone since its hashes were made read "unreadable"."""
    from harness.review import NOT_FOUND, UNREADABLE, Thumbnail, image_thumbnail

    cv2.imwrite(str(tmp_path / "dot.png"), np.full((1, 1, 3), 200, np.uint8))
    cv2.imwrite(str(tmp_path / "wide.png"), np.full((20, 1000, 3), 90, np.uint8))
    (tmp_path / "text.png").write_text("not an image")
    dot = image_thumbnail(str(tmp_path / "dot.png"))
    assert isinstance(dot, Thumbnail) and (dot.width, dot.height) == (1, 1)
    assert image_thumbnail(str(tmp_path / "text.png")) == UNREADABLE
    assert image_thumbnail(str(tmp_path / "gone.png")) == NOT_FOUND
    pairs = pd.DataFrame({"split_a": ["train", "train"], "file_a": ["dot.png", "wide.png"],
                          "split_b": ["test", "test"], "file_b": ["text.png", "gone.png"],
                          "pHash": [2.0, 3.0], "agree": [1, 1]})
    page = review_page(pairs, lambda file: image_thumbnail(str(tmp_path / file)), hashers={"pHash": 64.0}, title="t")
    assert '<img class="small" src="data:image/jpeg' in page and page.count('class="small"') == 1  # the dot only
    assert "1 &times; 1 px" in page and "1,000 &times; 20 px" in page
    assert "no preview<br>(unreadable)" in page and "no preview<br>(not found)" in page
    assert "1 of 1 hasher</span>" in page
    assert "How to read a card" not in review_page(pairs.iloc[:0], lambda file: None, hashers={"pHash": 64.0}, title="t")


def test_unreadable_files_have_no_thumbnail(tmp_path):
    (tmp_path / "text.png").write_text("not an image")
    ok, jpeg = cv2.imencode(".jpg", make_scene(2))
    (tmp_path / "cut.jpg").write_bytes(jpeg.tobytes()[:400])
    assert make_thumbnail(str(tmp_path / "text.png")) is None
    assert make_thumbnail(str(tmp_path / "cut.jpg")) is None
    assert make_thumbnail(str(tmp_path / "absent.png")) is None


def test_the_page_size_is_bounded_by_the_cap(tmp_path):
    noise = np.random.default_rng(1)
    files = []
    for i in range(30):
        files.append(tmp_path / f"{i}.png")
        cv2.imwrite(str(files[-1]), noise.integers(0, 256, (400, 400, 3), dtype=np.uint8))
    pairs = pairs_frame([("train", str(files[i]), "test", str(files[i + 15]), i, np.nan, np.nan, 1)
                         for i in range(15)])
    page = review_page(pairs, make_thumbnail, hashers=HASHERS, title="t", max_pairs=10)
    thumbnails = sum(len(make_thumbnail(str(f))) for i in range(10) for f in (files[i], files[i + 15]))
    assert page.count('<article class="pair"') == 10
    # The images, base64-encoded, plus a bounded amount of text per pair and for the page.
    assert len(page.encode()) < thumbnails * 4 / 3 + 10 * 1500 + 8000


# ---------------------------------------------------------------- in a real browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("no Chromium installed (Debian: apt-get install chromium); the review page's browser tests "
                    "need it")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e "
                                   "'.[test]')")
    with sync_api.sync_playwright() as playwright:
        # The system's Chromium: Playwright downloads no browser of its own.
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        yield browser
        browser.close()


def open_page(browser, path: Path):
    """Open a page file; returns (page, requests the page made, console messages, dialogs, requests that
    reached the network layer). Every request but the page's own is aborted, so nothing leaves the machine."""
    context = browser.new_context()
    requests, console, dialogs, sent = [], [], [], []
    context.on("request", lambda request: requests.append(request.url))

    def route(route):
        sent.append(route.request.url)
        if route.request.url == path.as_uri():
            route.continue_()
        else:
            route.abort()
    context.route("**/*", route)
    page = context.new_page()
    page.on("console", lambda message: console.append(message.text))
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(path.as_uri())  # waits for the load event: every image has loaded or failed
    return page, requests, console, dialogs, sent


@pytest.fixture
def rendered(tmp_path, browser):
    """A page of real files on disk, odd names and an unreadable file among them, opened in Chromium."""
    names = ["plain.png", SCRIPT_NAME, HANDLER_NAME, QUOTE_NAME, BIDI_NAME, NON_UTF8_NAME, "tall.png", "gray.png",
             "unreadable.png"]
    folder = tmp_path / "data"
    folder.mkdir()
    for seed, name in enumerate(names):
        for split, edit in (("train", 0), ("test", 1)):
            image = make_scene(seed, *((300, 90) if name == "tall.png" else (120, 160)))
            if name == "gray.png":
                image = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
            path = folder / split / name
            path.parent.mkdir(exist_ok=True)
            if name == "unreadable.png" and split == "test":
                path.write_text("not an image")
            else:  # Python writes, so that any name works (cv2.imwrite takes no undecodable name)
                path.write_bytes(cv2.imencode(".png", cv2.add(image, edit))[1].tobytes())
    pairs = pairs_frame([("train", f"train/{name}", "test", f"test/{name}", seed, np.nan, seed + 1, 2)
                         for seed, name in enumerate(names)])
    html = review_page(pairs, lambda file: make_thumbnail(os.path.join(folder, file)), hashers=HASHERS,
                       title="Leak review <test>", notes=[f"{len(names)} pairs"], thresholds=THRESHOLDS)
    page_file = tmp_path / "review.html"
    page_file.write_text(html, encoding="utf-8")
    page, requests, console, dialogs, sent = open_page(browser, page_file)
    yield page, names, page_file, requests, console, dialogs, sent
    page.context.close()


def test_every_pair_renders_with_its_images(rendered):
    page, names, *_ = rendered
    assert page.locator("article.pair").count() == len(names)
    images = page.evaluate("Array.from(document.images, i => [i.complete, i.naturalWidth, i.naturalHeight])")
    assert len(images) == 2 * len(names) - 1  # one file could not be read
    assert all(complete and width > 0 and height > 0 for complete, width, height in images)  # none broken
    assert max(max(w, h) for _, w, h in images) == THUMBNAIL_SIDE
    placeholder = page.locator(".frame.missing")
    assert placeholder.count() == 1 and placeholder.inner_text() == "no preview\n(unreadable)"
    assert placeholder.bounding_box()["height"] > 100  # as tall as a picture's frame: a visible placeholder
    # The stylesheet applied (a wrong hash in the policy would have blocked it): cards are boxes side by side.
    assert page.evaluate("getComputedStyle(document.querySelector('article.pair')).borderTopLeftRadius") == "8px"
    boxes = [page.locator("article.pair").nth(i).bounding_box() for i in range(2)]
    assert boxes[0]["y"] == boxes[1]["y"] and boxes[1]["x"] > boxes[0]["x"] + boxes[0]["width"]


def test_names_show_as_text_in_review_order(rendered):
    page, names, *_ = rendered
    shown = page.eval_on_selector_all("article.pair figure:last-child .name", "spans => spans.map(s => s.textContent)")
    visible = [name.replace("\u202e", "\\u202e").replace(NON_UTF8_NAME, "caf\\xe9.png") for name in names]
    assert shown == visible  # distances grow with the seed, so the order is the order of `names`
    assert page.evaluate("document.scripts.length") == 0
    assert page.locator("article.pair b, article.pair i").count() == 0  # the names' tags stayed text
    assert page.title() == "Leak review <test>"
    assert page.locator("article.pair").first.locator(".split").all_inner_texts() == ["train", "test"]


def test_a_phone_shows_whole_cards_without_scrolling_sideways(rendered):
    page, *_ = rendered
    page.set_viewport_size({"width": 360, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    card = page.locator("article.pair").first.bounding_box()
    assert card["x"] >= 0 and card["x"] + card["width"] <= 360


def test_the_page_attempts_no_request(rendered):
    page, names, page_file, requests, console, dialogs, sent = rendered
    assert requests == [page_file.as_uri()] and sent == [page_file.as_uri()]
    assert console == [] and dialogs == []  # no policy violation reported, no script ran


def test_the_policy_blocks_what_an_edited_page_would_load(tmp_path, browser):
    """The checks above can fail: a page that loads something is caught, and the policy is what stops it."""
    html = page_of(sample_pairs())
    external = '<img src="http://127.0.0.1:9/x.png"><link rel="stylesheet" href="https://example.invalid/a.css">'
    edited = tmp_path / "edited.html"
    edited.write_text(html.replace('<main class="pairs">', external + '<main class="pairs">'), encoding="utf-8")
    page, requests, console, dialogs, sent = open_page(browser, edited)
    assert {"http://127.0.0.1:9/x.png", "https://example.invalid/a.css"} <= set(requests)  # attempted
    assert sent == [edited.as_uri()]  # but the policy stopped both before the network
    assert sum("Content Security Policy" in message for message in console) == 2
    page.context.close()

    unprotected = tmp_path / "unprotected.html"
    unprotected.write_text(edited.read_text().replace('http-equiv="Content-Security-Policy"', 'name="off"'))
    page, requests, console, dialogs, sent = open_page(browser, unprotected)
    assert {"http://127.0.0.1:9/x.png", "https://example.invalid/a.css"} <= set(sent)  # without it they go out
    page.context.close()


def test_the_demo_audit_writes_a_page_and_its_screenshot(tmp_path, browser):
    from examples.leak_demo import COPIES, WINDOW, main

    assert main([str(tmp_path)]) == 0
    page_file = tmp_path / "audit" / "review.html"
    page, requests, console, dialogs, sent = open_page(browser, page_file)
    flagged = pd.read_csv(tmp_path / "audit" / "leaks.csv").drop_duplicates(["file_a", "file_b"])
    assert page.locator("article.pair").count() == len(flagged) >= len(COPIES) - 1  # a mirrored copy is missed
    assert page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    assert requests == [page_file.as_uri()] and console == []
    page.context.close()
    screenshot = cv2.imread(str(tmp_path / "audit" / "review.png"))
    assert screenshot.shape == (WINDOW[1], WINDOW[0], 3)
    assert screenshot.std() > 20  # the page is drawn (a blank page would be one colour)
