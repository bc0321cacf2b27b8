"""Markdown text made safe from what files and configs say, names shown as they are stored
(`visible`, for the review page too), and the provenance section a summary ends with.

No pandas and nothing heavy: an unchanged rerun writes its summary's provenance with this alone.
"""

from __future__ import annotations

import re
import unicodedata

from harness.storage import RUN

# Enough to stop links and images (they need brackets), emphasis, code, tables, strike-through and
# GitHub's maths ($x^2$); and raw HTML: a '<' that could open a tag, a comment, a declaration or
# an autolink (a letter, '/', '!' or '?' after it; an e-mail autolink needs an '@', escaped below),
# and a '&' that could start an entity. A backslash escape rather than &lt;, so that the source
# reads as the page does, "pHash <= 12".
_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_\[\]|~$]|<(?=[A-Za-z/!?])|&(?=[#A-Za-z0-9]))")
# GitHub's extended autolinks need no brackets: "https://x", "www.x", "a@b.c". A backslash before
# the ':', the '.' or the '@' stops them, and renders as nothing.
_AUTOLINK = re.compile(r"[A-Za-z0-9](:)//|(?<![A-Za-z0-9])[Ww][Ww][Ww](\.)|(@)")
# What makes a block of a line's start: a heading, a list item, a setext underline, a quote.
# A line of dashes with spaces between ("-- -") is a thematic break too.
_BLOCK_START = re.compile(r"(#)#{0,5}(?: |$)|([-+])(?: |$)|\d{1,9}([.)])(?: |$)|(=)=*$|(-)-*$"
                          r"|(-)(?:[ \t]*-){2,}[ \t]*$|(>)")
# Whitespace a line of prose may hold and that reads the same as one space: spaces and line
# breaks (an error message of several lines). Every other invisible character is shown (visible).
_SPACES = re.compile(r"[^\S\t\x0b\x0c\x1c-\x1f\x85\u2028\u2029]+")
# Characters shown as escapes: controls (Cc), format characters such as the bidi overrides
# that can make a name read backwards (Cf), lone surrogates (Cs) and line/paragraph
# separators. Zero-width joiners in emoji are Cf too: such a name shows its \u200d, which
# is the price of a name that reads as it is stored.
HIDDEN = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def visible(value, plain=lambda text: text, escape=lambda text: text) -> str:
    """The text of a name as a person should see it: undecodable bytes and invisible characters
    as backslash escapes; the result always encodes as UTF-8. `plain` and `escape` map the
    ordinary runs and each escape (an HTML page escapes the one and marks the other, so that
    an escaped tab and a name holding a backslash and a 't' do not look the same)."""
    # Undecodable bytes: as os.fsdecode holds them, surrogates \udc80-\udcff (shown as \x80-\xff)
    text = value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)
    if all(unicodedata.category(c) not in HIDDEN for c in text):
        return plain(text)
    parts, start = [], 0
    for at, c in enumerate(text):
        if unicodedata.category(c) in HIDDEN:
            # \xNN is an undecodable byte only: a character U+0080-U+00FF (a C1 control, a soft
            # hyphen) is \u00NN, which Python's own escape would also write as \xNN.
            shown = (f"\\x{ord(c) - 0xdc00:02x}" if "\udc80" <= c <= "\udcff"
                     else f"\\u{ord(c):04x}" if 0x80 <= ord(c) <= 0xff
                     else c.encode("unicode_escape").decode("ascii"))
            parts += [plain(text[start:at]) if start < at else "", escape(shown)]
            start = at + 1
    return "".join(parts) + plain(text[start:])


def number(value, digits: int = 6) -> str:
    """A number as the summaries and the review page print it: with thousands separators, as their
    counts are ("1,240" beside "4,203 impostor pairs", not "1240"); a whole number without a
    decimal point; any other to `digits` significant digits, but never fewer than its whole part
    has, so never as an exponent ("12,345.6" at 6 digits, "12,346" at 4, not "1.235e+04").
    The CSV tables keep metrics.format_number's plain digits: they are read by programs."""
    value = float(value) + 0.0  # + 0.0: -0.0 (a negated zero distance) prints as 0
    if value.is_integer():
        return f"{value:,.0f}"
    whole = len(f"{abs(value):.0f}") if 1 <= abs(value) < float("inf") else 0
    return f"{value:,.{max(digits, whole)}g}"


def md(text) -> str:
    """Text from a file or a config, safe in Markdown anywhere on a line: one line, invisible
    characters as escapes (a bidi override cannot make it read backwards), Markdown's punctuation
    and what could open HTML backslash-escaped, autolinks and a block marker at its start defused.
    No name can become a link, an image, raw HTML, emphasis, a heading, a list item or a table
    break."""
    one_line = _one_line(text)
    escaped = _MARKDOWN_PUNCTUATION.sub(r"\\\1", one_line)
    escaped = _AUTOLINK.sub(_backslash_group, escaped)
    block = _BLOCK_START.match(escaped)
    return _backslash_group(block) + escaped[block.end():] if block else escaped


def code(text) -> str:
    """Text from a file or a config as an inline code span, shown exactly as it is: inside a code
    span a backslash is a backslash (md's escapes would show), so only the fence needs care: one
    backtick longer than any run of backticks in the text. Not for table cells (a '|' still splits
    a cell there)."""
    one_line = _one_line(text)
    fence = "`" * (max((len(run) for run in re.findall(r"`+", one_line)), default=0) + 1)
    pad = " " if one_line[:1] == "`" or one_line[-1:] == "`" else ""
    return f"{fence}{pad}{one_line}{pad}{fence}"


def _one_line(text) -> str:
    """Text on one line, its spaces and line breaks as one space, every other invisible
    character as an escape (visible): what md and code both start from."""
    return visible(_SPACES.sub(" ", str(text)).strip(" "))


def _backslash_group(match: re.Match) -> str:
    """The matched text with a backslash before its captured group."""
    at = match.start(match.lastindex) - match.start()
    return match.group(0)[:at] + "\\" + match.group(0)[at:]


PROVENANCE_HEADING = "## Provenance"


def cpu_line(cpu: dict) -> str:
    """What of run.json's cpu record the results that are not bit-exact follow, in a few words: the
    vector code OpenCV dispatches to, whether it runs Intel's IPP (its cubic resizes are its own),
    NumPy's SIMD level. A run.json of an older version holds only the first."""
    parts = [f"OpenCV dispatching to {md(cpu.get('opencv_dispatch') or 'baseline only')}"]
    if "opencv_ipp" in cpu:
        # getIppVersion() reads "ippIP AVX-512F/CD/BW/DQ/VL (k0) 2021.11.0 (-) Feb  1 2024": its code path, version
        found = re.match(r"\S+ (.+?) \(\w+\) (\S+)", str(cpu.get("opencv_ipp_version") or ""))
        parts.append("IPP off" if not cpu["opencv_ipp"] else
                     f"IPP {md(found[2])} ({md(found[1])})" if found else "IPP on")
    if cpu.get("numpy_simd"):
        parts.append(f"NumPy's SIMD up to {md(str(cpu['numpy_simd']).split()[-1])}")
    return f"CPU {md(cpu.get('machine', '?'))} with " + ", ".join(parts)


def cache_line(record) -> str | None:
    """run.json's `cache` record in one sentence: how many hashes this run computed and how many it
    read from the hash cache (and which); None for a record of an older version (it has none)."""
    if not isinstance(record, dict):
        return None
    from harness.cache import CACHE_COUNTS

    counts = {key: record.get(key) for key in CACHE_COUNTS}
    if not all(isinstance(value, int) and not isinstance(value, bool) for value in counts.values()):
        return None
    computed = f"Hashes: {counts['hashes_computed']:,} computed in this run"
    path = record.get("path")
    if not isinstance(path, str):
        return f"{computed}; no hash cache was used."
    if not record.get("opened"):
        return f"{computed}; the hash cache {code(path)} could not be used (the notes say why)."
    images = (f"images: {counts['images_computed']:,} hashed in this run, wholly or partly, "
              f"{counts['images_from_cache']:,} read wholly from the cache")
    rejected = (f"; {counts['entries_rejected']:,} of its entries did not check out and were computed again"
                if counts["entries_rejected"] else "")
    return (f"{computed}, {counts['hashes_from_cache']:,} read from the hash cache {code(path)}"
            f"{' (read-only)' if record.get('read_only') else ''} ({images}{rejected}).")


def provenance_lines(provenance: dict, command: str = "run") -> list[str]:
    """The summary's last section: what produced the set (command, date, commit, versions, CPU);
    `command`: the harness command that runs its config.yaml again (`run`, or `leaks` for an audit)."""
    versions = provenance.get("versions", {})
    if not versions:
        return []
    git = provenance.get("git") or {}
    cpu = provenance.get("cpu", {})
    lines = [PROVENANCE_HEADING, "",
             f"Produced by {code(' '.join(provenance.get('command', [])))} on {md(provenance.get('date', '?'))}, "
             f"git commit {md(git.get('commit') or 'unknown')}"
             f"{' (uncommitted changes)' if git.get('dirty') else ''}. "
             f"Python {md(versions.get('python'))}, OpenCV {md(versions.get('cv2'))}, "
             f"NumPy {md(versions.get('numpy'))}, TensorFlow {md(versions.get('tensorflow', 'not installed'))}"
             + (f"; {cpu_line(cpu)}" if cpu else "")
             + f". The resolved config is in `config.yaml` (run it again with `python -m harness {command} "
               f"DIR/config.yaml`); all versions and CPU features are in `{RUN}`.", ""]
    cache = cache_line(provenance.get("cache"))  # none in a run.json of an older version: nothing said
    return lines + ([cache, ""] if cache else [])
