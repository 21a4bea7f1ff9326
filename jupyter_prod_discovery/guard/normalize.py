"""Text as the browser shows it, with a way back to the characters that were sent.

A value can reach the screen without appearing as itself in what the kernel sent: fullwidth
digits (NFKC), zero-width or soft-hyphen characters inside it, ANSI colour codes, a backspace or
carriage return that overwrites a placeholder (JupyterLab applies them when it renders a stream),
HTML entities, tags or comments between its characters, Markdown emphasis, LaTeX spacing
commands. ``render`` returns what the frontend displays plus a map; the guard scans both the raw
text and the rendered one, and a finding in the rendered text is mapped back to the range of raw
characters that produced it, which is what gets redacted: the original value never leaves.

Each stage keeps a :class:`SpanMap` (runs of output positions and the source positions they came
from); ``SpanMap.span`` maps an output range to the smallest source range holding every character
that produced it, and stages compose by mapping through each in reverse. Text that needs no
rendering (ASCII with no control character, in a kind that renders as itself) costs one
``isascii`` and one regex search, and ``render`` returns None.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from collections.abc import Callable
from html import unescape

__all__ = ["KINDS", "Rendered", "SpanMap", "active_reason", "kind_of", "needs_render", "render"]

#: Ways a text is displayed: as is (streams, text/plain, tracebacks), or through a renderer.
KINDS = ("plain", "html", "markdown", "latex")

# C0 controls except tab and newline, DEL and C1 controls; ESC starts ANSI sequences.
_CTRL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_ANSI = (
    r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[PX^_][^\x1b]*(?:\x1b\\)?"
    r"|[ -/]*[0-~])?|\x9b[0-?]*[ -/]*[@-~]"
)
# What the character pass rewrites: escape sequences, controls other than \t \n \r \b (kept for
# the overstrike pass), and every non-ASCII character.
_SPECIAL = re.compile(_ANSI + r"|[\x00-\x07\x0b\x0c\x0e-\x1f\x7f-\x9f]|[^\x00-\x7f]+")
_DASHES = frozenset("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d")
# Invisible characters that are not in category Cf but render as nothing (or as blank).
_INVISIBLE = frozenset("\u034f\u115f\u1160\u17b4\u17b5\u3164\uffa0\u2800")

_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.S)
_RAWTEXT = re.compile(
    r"<(script|style|template|textarea|title)\b[^>]*>.*?(?:</\1\s*>|\Z)", re.S | re.I
)
_TAG = re.compile(r"</?([A-Za-z][A-Za-z0-9:-]*)(?:[^>\"']|\"[^\"]*\"|'[^']*')*>|<![^>]*>|<\?[^>]*>")
_ENTITY = re.compile(r"&(?:#[0-9]{1,8};?|#[xX][0-9a-fA-F]{1,7};?|[A-Za-z][A-Za-z0-9]{1,31};?)")
_BLOCK = frozenset(
    [
        "address",
        "article",
        "aside",
        "blockquote",
        "br",
        "dd",
        "details",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "li",
        "main",
        "nav",
        "ol",
        "p",
        "pre",
        "section",
        "summary",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "ul",
    ]
)
_MD_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
_MD_MARKUP = re.compile(r"[*_~`]+")
_TEX_COMMAND = re.compile(r"\\(?:[A-Za-z]+\*?|[,;:! >]|(?=[^A-Za-z]))")
_TEX_MARKUP = re.compile(r"[{}$^_]+")

# Constructs with which rendered content computes or fetches text the guard cannot see.
_ACTIVE_HTML = re.compile(
    r"<\s*(?:script|iframe|object|embed|link|meta|base|frame|frameset|applet|portal|math)\b"
    r"|\son[a-z]+\s*=|javascript:|vbscript:|srcdoc\s*=|@import|\bexpression\s*\(",
    re.I,
)
_STYLE = re.compile(
    r"<style\b[^>]*>(.*?)(?:</style\s*>|\Z)|\sstyle\s*=\s*(\"[^\"]*\"|'[^']*')", re.S | re.I
)
_TEX_ACTIVE = re.compile(
    r"\\(?:unicode|char|href|class|style|cssId|require|data|html|mmlToken|begingroup|def|newcommand|renewcommand|let|csname|string|symbol)\b"
)


class SpanMap:
    """Output positions of one stage -> source positions (runs of step 1, or 0 for expansions)."""

    __slots__ = ("_ns", "_rs", "_st", "length")

    def __init__(self) -> None:
        self._ns: list[int] = []
        self._rs: list[int] = []
        self._st: list[int] = []
        self.length = 0

    def add(self, n: int, src: int, step: int = 1) -> None:
        """``n`` output characters from ``src`` (step 1: one each; step 0: all from ``src``)."""
        if n <= 0:
            return
        ns, rs, st = self._ns, self._rs, self._st
        if ns and step == 1 and st[-1] == 1 and rs[-1] + self.length - ns[-1] == src:
            self.length += n
            return
        ns.append(self.length)
        rs.append(src)
        st.append(step)
        self.length += n

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The source range holding every character that produced output ``[start, end)``."""
        ns, rs, st = self._ns, self._rs, self._st
        i = max(bisect_right(ns, start) - 1, 0)
        lo, hi = None, None
        while i < len(ns) and ns[i] < end:
            a = max(start, ns[i])
            b = min(end, ns[i + 1] if i + 1 < len(ns) else self.length)
            if b > a:
                first = rs[i] + (a - ns[i]) * st[i]
                last = rs[i] + (b - 1 - ns[i]) * st[i]
                lo = first if lo is None else min(lo, first)
                hi = last if hi is None else max(hi, last)
            i += 1
        if lo is None or hi is None:
            return start, end
        return lo, hi + 1


class Rendered:
    """A rendered text and the stages that map it back to the raw text."""

    __slots__ = ("maps", "text")

    def __init__(self, text: str, maps: list[SpanMap]) -> None:
        self.text = text
        self.maps = maps

    def source(self, start: int, end: int) -> tuple[int, int]:
        """Raw range of rendered ``[start, end)``."""
        for m in reversed(self.maps):
            start, end = m.span(start, end)
        return start, end


def needs_render(text: str, kind: str = "plain") -> bool:
    """False when ``text`` displays as itself: then scanning the raw text is enough."""
    if kind == "plain":
        return not text.isascii() or _CTRL.search(text) is not None
    return True


def kind_of(mime: str) -> str | None:
    """How a MIME type is displayed: a :data:`KINDS` entry, or None when not as text."""
    if mime in ("text/html", "image/svg+xml", "application/xhtml+xml"):
        return "html"
    if mime == "text/markdown":
        return "markdown"
    if mime == "text/latex":
        return "latex"
    return None


def active_reason(text: str, kind: str) -> str | None:
    """Why content of this kind can show text that is not in it (None: it cannot).

    HTML and SVG: scripts, event handlers, frames, external style sheets, and CSS that
    generates text (``content``, CSS escapes, which hide a property name). LaTeX: MathJax
    commands that build characters from codes or inject HTML. Markdown may embed HTML.
    """
    if kind in ("html", "markdown"):
        m = _ACTIVE_HTML.search(text)
        if m is not None:
            return "script or active element"
        if "<style" in text.lower() or "style" in text.lower():
            for s in _STYLE.finditer(text):
                css = (s.group(1) or s.group(2) or "").lower()
                if "content" in css or "\\" in css or "&" in css:
                    return "style sheet generating text"
        return None
    if kind == "latex" and _TEX_ACTIVE.search(text):
        return "LaTeX command building characters"
    return None


# --- stages -------------------------------------------------------------------------------
def _regex_stage(
    text: str, pattern: re.Pattern[str], repl: Callable[[re.Match[str]], str]
) -> tuple[str, SpanMap]:
    """Replace each match by ``repl(match)``; replacement characters map to the whole match."""
    out: list[str] = []
    m_ = SpanMap()
    pos = 0
    for m in pattern.finditer(text):
        s, e = m.span()
        out.append(text[pos:s])
        m_.add(s - pos, pos)
        r = repl(m)
        if r:
            out.append(r)
            if len(r) == e - s and r == m.group():
                m_.add(len(r), s)
            else:
                m_.add(len(r), s, 0)
        pos = e
    out.append(text[pos:])
    m_.add(len(text) - pos, pos)
    return "".join(out), m_


def _chars(text: str) -> tuple[str, SpanMap]:
    """Characters one by one: needs a per-character map only for the special ones."""
    out: list[str] = []
    sm = SpanMap()
    pos = 0
    for m in _SPECIAL.finditer(text):
        s, e = m.span()
        if s > pos:
            out.append(text[pos:s])
            sm.add(s - pos, pos)
        g = m.group()
        if g[0] == "\x1b" or g[0] == "\x9b" or (len(g) == 1 and ord(g) < 0xA0):
            pos = e
            continue
        for k, c in enumerate(g):
            r = _char_one(c)
            if r:
                out.append(r)
                sm.add(len(r), s + k, 1 if len(r) == 1 else 0)
        pos = e
    if pos < len(text):
        out.append(text[pos:])
        sm.add(len(text) - pos, pos)
    return "".join(out), sm


def _char_one(c: str) -> str:
    cat = unicodedata.category(c)
    if cat in ("Cf", "Cc", "Mn", "Me", "Zl", "Zp", "Cs", "Co", "Cn") or c in _INVISIBLE:
        return ""
    if c in _DASHES:
        return "-"
    if cat.startswith("Z"):
        return " "
    d = unicodedata.decimal(c, None)
    if d is not None:
        return str(d)
    return unicodedata.normalize("NFKC", c)


def _overstrike(text: str) -> tuple[str, SpanMap]:
    """Backspace deletes the character before it, carriage return rewinds the line.

    As JupyterLab renders streams (``removeOverwrittenChars``): ``\\r+\\n`` is a line break;
    after a lone ``\\r`` the new characters overwrite the start of the line, the rest stays.
    """
    sm = SpanMap()
    out: list[str] = []
    pos = 0
    n_out = 0
    for line in text.split("\n"):
        end = pos + len(line)
        if "\r" not in line and "\b" not in line:
            out.append(line)
            sm.add(len(line), pos)
            n_out += len(line)
        else:
            cells: list[tuple[str, int]] = []  # (char, raw index) of the line as shown
            col = 0
            i = pos
            stripped = line.rstrip("\r")
            for c in stripped:
                if c == "\r":
                    col = 0
                elif c == "\b":
                    if col > 0:
                        col -= 1
                        del cells[col]
                else:
                    if col < len(cells):
                        cells[col] = (c, i)
                    else:
                        cells.append((c, i))
                    col += 1
                i += 1
            for c, r in cells:
                out.append(c)
                sm.add(1, r)
            n_out += len(cells)
        if end < len(text):
            out.append("\n")
            sm.add(1, end)
            n_out += 1
        pos = end + 1
    return "".join(out), sm


def _tag(m: re.Match[str]) -> str:
    name = (m.group(1) or "").lower()
    return "\n" if name in _BLOCK else ""


def _entity(m: re.Match[str]) -> str:
    s = m.group()
    r = unescape(s if s.endswith(";") else s + ";")
    if r == s + ";" or r == s:  # unknown entity: shown as is
        return s
    return r


def render(text: str, kind: str = "plain") -> Rendered | None:
    """What the frontend shows for ``text`` displayed as ``kind``; None when it is ``text``."""
    if kind == "plain" and not needs_render(text):
        return None
    maps: list[SpanMap] = []
    cur = text
    if kind in ("html", "markdown"):
        for pattern, repl in (
            (_COMMENT, lambda m: ""),
            (_RAWTEXT, lambda m: ""),
            (_TAG, _tag),
        ):
            if "<" in cur:
                cur, sm = _regex_stage(cur, pattern, repl)
                maps.append(sm)
        if kind == "markdown":
            if "\\" in cur:
                cur, sm = _regex_stage(cur, _MD_ESCAPE, lambda m: m.group(1))
                maps.append(sm)
            cur, sm = _regex_stage(cur, _MD_MARKUP, lambda m: "")
            maps.append(sm)
        if "&" in cur:
            cur, sm = _regex_stage(cur, _ENTITY, _entity)
            maps.append(sm)
    elif kind == "latex":
        cur, sm = _regex_stage(cur, _TEX_COMMAND, lambda m: "")
        maps.append(sm)
        cur, sm = _regex_stage(cur, _TEX_MARKUP, lambda m: "")
        maps.append(sm)
        cur = cur.replace("~", " ")
    if not cur.isascii() or _CTRL.search(cur) is not None:
        cur, sm = _chars(cur)
        maps.append(sm)
        if "\r" in cur or "\b" in cur:
            cur, sm = _overstrike(cur)
            maps.append(sm)
    if cur == text:
        return None
    return Rendered(cur, maps)
