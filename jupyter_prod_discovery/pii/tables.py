"""Column-aware tables: find DataFrame text and HTML tables, classify each column, report cells.

The idea of presidio-structured: a table says what its values are in its header, and a column
holds one kind of value. Each column is classified from its header and, failing that, from a
sample of its cells (names by the gazetteer, emails, phones, cards... by the scanner's own
validators); the policy then applies to every cell of the column alike, so a phone number that
``phonenumbers`` does not know, or a surname missing from the gazetteer, is redacted with its
neighbours instead of standing alone in the clear.

Pure functions over the text; positions are character offsets into it.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .findings import Finding

__all__ = ["CLEAN", "Column", "classify_header", "column_findings", "html_columns", "text_columns"]

# Header (lower case, separators as spaces) -> entity. First match wins, so the specific
# ("email address", "ip addr") come before the general ("address").
HEADER_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p), e)
    for p, e in (
        (r"\be ?mail|\bmail\b|courriel|correo", "EMAIL_ADDRESS"),
        (r"\bip\b|ip ?addr|remote addr|client ip|src ip|dst ip", "IP_ADDRESS"),
        (r"\bmac\b", "MAC_ADDRESS"),
        (r"\biban\b", "IBAN_CODE"),
        (r"\bssn\b|social security", "US_SSN"),
        (r"\bitin\b", "US_ITIN"),
        (r"\bnino\b|national insurance|\bni (number|no)\b", "UK_NINO"),
        (r"\bnhs\b", "UK_NHS"),
        # German ids: health insurance before the pension insurance's "versicherungsnummer".
        (r"steuer ?id|steueridentifikation|identifikationsnummer|\bidnr\b", "DE_TAX_ID"),
        (r"krankenversicher|versichertennummer|\bkvnr\b|gesundheitskarte", "DE_HEALTH_INSURANCE"),
        (
            r"rentenversicherung|sozialversicherung|versicherungsnummer|\brvnr\b|\bsvnr\b",
            "DE_SOCIAL_SECURITY",
        ),
        (r"personalausweis|ausweis", "DE_ID_CARD"),
        (r"reisepass|passnummer", "DE_PASSPORT"),
        (r"f(?:ü|ue)hrerschein|fahrerlaubnis", "DE_FUEHRERSCHEIN"),
        # Italian ids before the generic words their headers may also hold.
        (r"passaporto", "IT_PASSPORT"),
        (r"patente", "IT_DRIVER_LICENSE"),
        (r"identit|\bid card\b|\bcie\b", "IT_IDENTITY_CARD"),
        (r"partita iva|\bp ?iva\b|\bvat\b", "IT_VAT_CODE"),
        (r"pasaporte", "ES_PASSPORT"),
        (r"personnummer|samordningsnummer", "SE_PERSONNUMMER"),
        (r"passport", "US_PASSPORT"),
        (r"driv|licen[cs]e|\bdl\b", "US_DRIVER_LICENSE"),
        (r"\bdea\b|medical", "MEDICAL_LICENSE"),
        (r"account|acct|\bbank\b|routing", "US_BANK_NUMBER"),
        (r"card|\bcc\b|\bpan\b", "CREDIT_CARD"),
        (r"phone|\btel\b|mobile|\bcell\b|\bfax\b|telefon|t[ée]l[ée]phone", "PHONE_NUMBER"),
        (r"pesel", "PL_PESEL"),
        (r"\bnif\b|\bdni\b", "ES_NIF"),
        (r"\bnie\b", "ES_NIE"),
        (r"codice fiscale|fiscal code|\bcf\b", "IT_FISCAL_CODE"),
        (r"hetu|henkil", "FI_PERSONAL_IDENTITY_CODE"),
        (r"wallet|\bbtc\b|bitcoin", "CRYPTO"),
        (r"\bdob\b|birth|geburt|nacimiento|naissance|nascita", "DATE_OF_BIRTH"),
        (
            r"\bname\b|first ?name|last ?name|surname|given|forename|full ?name|"
            r"vorname|nachname|nombre|apellido|pr[ée]nom|\bnom\b|cognome|\bnome\b|"
            r"customer$|patient$|contact$|employee$|owner$|holder",
            "PERSON",
        ),
        (
            r"address|street|\bcity\b|\btown\b|\bzip\b|post ?code|postal|\bstate\b|country|"
            r"county|province|\baddr\b|stadt|ciudad|ville|citt",
            "LOCATION",
        ),
    )
)
# Header words that say a column is *not* personal even if a rule above matches a part.
NOT_PERSONAL = re.compile(
    r"\b(id|ids|count|num rows|ts|timestamp|time|type|status|code name|file ?name|host ?name|"
    r"user ?name|table|column|model|class|key|hash|version|dtype|service|product|company|"
    r"project|team|app|application|node|pod|namespace|bucket|queue|topic|job|task|feature|"
    r"metric|package|module|function|field|sheet|database|schema|index|branch|repo|region)\b"
)
# Entities whose cells are personal whatever their shape once the header says so.
FREE_FORM = frozenset({"PERSON", "DATE_OF_BIRTH", "LOCATION"})
EMPTY = frozenset({"", "nan", "none", "nat", "<na>", "null", "-", "...", "n/a"})
SAMPLE = 20


@dataclass
class Column:
    """One table column: its header text and the (start, end) span of each of its cells."""

    header: str
    cells: list[tuple[int, int]] = field(default_factory=list)


def classify_header(header: str) -> str | None:
    """The entity a column header names, or None."""
    h = re.sub(r"([a-z])([A-Z])", r"\1 \2", header.strip())
    h = re.sub(r"[_\-./]+", " ", h.lower())
    if not h:
        return None
    for rx, entity in HEADER_RULES:
        if rx.search(h):
            if entity in FREE_FORM and NOT_PERSONAL.search(h):
                return None
            return entity
    return None


# --- DataFrame text reprs ------------------------------------------------------------------
_HEAD_TOKEN = re.compile(r"\S+(?: \S+)*")


def text_columns(text: str) -> Iterator[list[Column]]:
    """The columns of each pandas-style text table in ``text`` (blocks of right-aligned rows).

    A block is a header line with 2+ names separated by 2+ spaces, followed by rows of the
    same width. Each column ends where its right-aligned header ends; a cell is the text
    between the previous column's end and its own.
    """
    pos = 0
    for block in text.split("\n\n"):
        start = pos
        pos += len(block) + 2
        lines = block.split("\n")
        if len(lines) < 2:
            continue
        head = lines[0].rstrip(" \\")
        tokens = list(_HEAD_TOKEN.finditer(head))
        if len(tokens) < 2 or not head.startswith(" "):
            continue
        width = len(head)
        ends = [t.end() for t in tokens]
        cols = [Column(t.group()) for t in tokens]
        offset = start + len(lines[0]) + 1
        rows = 0
        for line in lines[1:]:
            if len(line.rstrip(" \\")) == width and not line.startswith(" "):
                label_end = len(line.split(" ", 1)[0])
                left = label_end
                for col, end in zip(cols, ends, strict=True):
                    cell = line[left:end]
                    stripped = cell.strip()
                    if stripped:
                        s = left + cell.index(stripped)
                        col.cells.append((offset + s, offset + s + len(stripped)))
                    left = end
                rows += 1
            offset += len(line) + 1
        if rows:
            yield cols


# --- HTML tables ------------------------------------------------------------------------------
# A cell whose content holds no tag (what pandas writes); cells with markup inside are left to
# the pattern pass (their row is skipped, since its cells no longer line up with the header).
_CELL = re.compile(r"<t[hd](?=[\s>])[^>]*>([^<]*)</t[hd]>")
_ROW = re.compile(r"<tr\b")
_TAG = re.compile(r"<[^>]+>")


def html_columns(text: str) -> Iterator[list[Column]]:
    """The columns of each HTML table: the last header row names them, body rows fill them.

    Tables are found with ``str.find`` and their cells with one regex pass each (a lazy
    ``<table.*?</table>`` regex alone costs more than the whole pattern scan of the table).
    """
    start = text.find("<table")
    while start != -1:
        end = text.find("</table>", start)
        end = len(text) if end == -1 else end
        cols = _table_columns(text, start, end)
        if cols:
            yield cols
        start = text.find("<table", end)


def _table_columns(text: str, start: int, end: int) -> list[Column]:
    head_end = text.find("</thead>", start, end)
    rows = [m.start() for m in _ROW.finditer(text, start, end)]
    if not rows:
        return []
    rows.append(end)
    cols: list[Column] = []
    header_done = False
    for r0, r1 in itertools.pairwise(rows):
        cells = list(_CELL.finditer(text, r0, r1))
        if not header_done or (head_end != -1 and r0 < head_end):
            cols = [Column(_TAG.sub("", c.group(1)).strip()) for c in cells]
            header_done = True
            continue
        if len(cells) != len(cols):
            continue
        for col, c in zip(cols, cells, strict=True):
            s, e = c.span(1)
            if s == e:
                continue
            if text[s].isspace() or text[e - 1].isspace():
                value = text[s:e]
                s += len(value) - len(value.lstrip())
                e -= len(value) - len(value.rstrip())
                if s >= e:
                    continue
            col.cells.append((s, e))
    return cols


# --- classification --------------------------------------------------------------------------
def column_findings(
    text: str,
    columns: list[Column],
    entities: frozenset[str],
    value_type: Callable[[str, str], str | None],
    is_name: Callable[[str], bool] | None,
) -> list[Finding]:
    """Findings for every cell of each column classified as an entity in ``entities``.

    ``value_type(cell, header)`` is the scanner's verdict on one cell (the entity it validates as, or
    None); ``is_name(cell)`` the gazetteer's (None: no gazetteer). A column is classified by its header when the
    header names an entity and the sampled cells do not contradict it (for shaped entities at
    least one cell must validate), else by its cells when most sampled cells agree.
    """
    out: list[Finding] = []
    for col in columns:
        values = [(s, e) for s, e in col.cells if e - s > 5 or text[s:e].lower() not in EMPTY]
        if not values:
            continue
        sample = [text[s:e] for s, e in values[:SAMPLE]]
        by_header = classify_header(col.header)
        entity: str | None = None
        score = 0.85
        if by_header in FREE_FORM:
            if plausible(by_header, sample, is_name):
                entity = by_header
        else:
            types = [value_type(v, col.header) for v in sample]
            hits = {t: types.count(t) for t in set(types) if t}
            best = max(hits, key=lambda k: hits[k]) if hits else None
            cells_say = best if best is not None and hits[best] * 2 > len(sample) else None
            # A weak header ("passport") yields to cells that validate as a more specific
            # entity (an Italian passport's shape, with the header as its context).
            if by_header is not None and (
                hits.get(by_header) or (by_header in _WEAK and cells_say is None)
            ):
                entity = by_header
                score = 0.8
            elif cells_say is not None:
                entity, score = best, 0.7
            elif is_name is not None and sum(map(is_name, sample)) * 10 >= len(sample) * 6:
                entity = "PERSON"
        # Findings are built by the thousand here: tuple.__new__ skips the named tuple's
        # Python-level __new__ (a fifth of this function's time on a 1,000-row table).
        new = tuple.__new__
        if entity is None or entity not in entities:
            # Not personal: plain decimals in it can hold no entity either (no entity is a run
            # of 7 digits or fewer with at most one dot, but for the short ids a key word
            # names, and a column's key word is its header, classified above); the pattern
            # pass may skip them.
            out.extend(
                new(Finding, (CLEAN, s, e, 0.0))
                for s, e in values
                if e - s <= 15 and _PLAIN(text, s, e)
            )
            continue
        if entity in _WEAK and by_header == entity:
            shape = _WEAK[entity]
            out.extend(
                new(Finding, (entity, s, e, score)) for s, e in values if shape.match(text[s:e])
            )
        else:
            out.extend(new(Finding, (entity, s, e, score)) for s, e in values)
    return out


# --- key: value pairs (dict and JSON reprs, logs) ---------------------------------------------
# A quoted or bare key, then a quoted value or a bare word: {'first_name': 'Maria'},
# "city": "Lyon", last_name=Garcia.
_KEYED = re.compile(
    r"""(?:(["'])([A-Za-z][\w .-]{0,40}?)\1|\b([A-Za-z][\w.-]{0,40}))\s*(?::|=|=>)\s*"""
    r"""(?:(["'])([^"'\n]{1,80}?)\4|([^\s"',;)}\]]{1,40}))"""
)
# Words one of which every personal key holds (see HEADER_RULES): the pairs are looked for
# only around them (found with ``str.find``: a regex alternation of words would try every
# position), so a log of ``rows=12`` pairs costs a few memchr-speed scans.
_KEY_WORDS = (
    "name", "birth", "dob", "city", "address", "street", "zip", "post", "country", "town",
    "nombre", "prenom", "prénom", "nom", "customer", "patient", "contact", "holder", "county",
    "province", "stadt", "ciudad", "ville", "citt",
)  # fmt: skip


def _key_word_hits(low: str) -> list[tuple[int, int]]:
    hits: list[tuple[int, int]] = []
    for w in _KEY_WORDS:
        i = low.find(w)
        while i != -1:
            hits.append((i, i + len(w)))
            i = low.find(w, i + len(w))
    hits.sort()
    return hits


def keyed_findings(
    text: str, entities: frozenset[str], is_name: Callable[[str], bool] | None
) -> list[Finding]:
    """Values whose key names a personal field (PERSON, DATE_OF_BIRTH, LOCATION), as a column
    header would: the same classification as :func:`classify_header`."""
    out: list[Finding] = []
    seen = -1
    n = len(text)
    for h0, h1 in _key_word_hits(text.lower()):
        if h0 < seen:
            continue
        for m in _KEYED.finditer(text, max(0, h0 - 42), min(n, h1 + 130)):
            ks, ke = m.span(2) if m.group(2) is not None else m.span(3)
            if ks > h0:
                break
            if ke < h1:
                continue
            seen = m.end()
            entity = classify_header(text[ks:ke])
            g = 5 if m.group(5) is not None else 6
            value = m.group(g).strip()
            if entity not in FREE_FORM or entity not in entities or not value:
                break
            if value.lower() in EMPTY or not plausible(entity, [value], is_name):
                break
            out.append(Finding(entity, m.start(g), m.end(g), 0.85))
            break
    return out


# Marks a cell the pattern pass may skip (never reported: scanners drop it).
CLEAN = ""
_PLAIN = re.compile(r"[-+]?\d{1,7}(?:\.\d{1,7})?").fullmatch


_WORDY = re.compile(r"[^\W\d_][^\W\d_ .,'-]*(?:[ .,'-]+[^\W\d_][^\W\d_.,'-]*)*\.?")
_WORD_RE = re.compile(r"[^\W\d_]+")


def plausible(entity: str, values: list[str], is_name: Callable[[str], bool] | None) -> bool:
    """Whether the values named ``entity`` by a header or key look like one.

    A header says what a column should hold, not what it holds: "Service Name" holds product
    names, "state" may hold "running". Names: at least 3 in 10 hold a known name; places: most
    are words starting with a capital or a digit (street numbers); dates of birth: most hold a
    digit. Without a gazetteer (``is_name`` None) a header or key naming a person is believed.
    """
    if not values:
        return False
    if entity == "PERSON":
        if is_name is None:
            return not all(_numeric(v) for v in values)
        return sum(map(is_name, values)) * 10 >= len(values) * 3
    if entity == "LOCATION":
        ok = sum(1 for v in values if v[:1].isupper() or (v[:1].isdigit() and _WORD_RE.search(v)))
        return ok * 2 > len(values)
    if entity == "DATE_OF_BIRTH":
        return sum(1 for v in values if any(c.isdigit() for c in v)) * 2 > len(values)
    return True


def _numeric(v: str) -> bool:
    return bool(re.fullmatch(r"[-+]?[\d.,]+", v.strip()))


# Entities with no checksum: a named column's cells need only the entity's shape.
_WEAK: dict[str, re.Pattern[str]] = {
    "US_BANK_NUMBER": re.compile(r"\d{8,17}$"),
    "US_DRIVER_LICENSE": re.compile(r"[A-Z0-9]{1,3}[- ]?\d[\d -]{3,15}[A-Z0-9]?$"),
    "US_PASSPORT": re.compile(r"[A-Z]?\d{8,9}$"),
    "US_ITIN": re.compile(r"9\d{2}[- ]?\d{2}[- ]?\d{4}$"),
    "MEDICAL_LICENSE": re.compile(r"[A-Z][A-Z9]\d{7}$"),
    "UK_NINO": re.compile(r"[A-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D]$"),
    "IT_DRIVER_LICENSE": re.compile(r"(?:[A-Z]{2}\d{7}[A-Z]|U1[A-Z0-9]{7}[A-Z])$"),
    "IT_PASSPORT": re.compile(r"[A-Z]{2}\d{7}$"),
    "ES_PASSPORT": re.compile(r"[A-Z]{3}\d{6}$"),
    "IT_IDENTITY_CARD": re.compile(r"(?:[A-Z]{2} ?\d{7}|\d{7}[A-Z]{2}|[A-Z]{2}\d{5}[A-Z]{2})$"),
}
