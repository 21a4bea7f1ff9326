"""The scanner: cheap prefilters, validation on small windows, context from table headers.

Presidio used naively runs every recognizer's regex over the whole text, then scores context
with an NLP pipeline. Here three class-first regular expressions (``patterns.NUMERIC``,
``UPPER``, ``HEX``), each searched only inside the runs a trivial regex finds, yield candidate
spans; only those few dozen characters go through Presidio's validators. Context comes from the
same line and, for DataFrame text and HTML tables, from the column header above the value.
Tables are read column by column first (``tables``); their settled cells are blanked for the
other passes (patterns, names, key: value pairs). Results are cached by content.

Numeric output (counters, ids, measurements, DataFrame columns of numbers) is most of what a
notebook prints, and almost none of it is personal, so a digit run costs little unless it can
be an entity: the shapes that need a context word are skipped for a whole block of text when
none of their words is in it (``_Header.has``, StringZilla's SIMD substring search on the
lower-cased block; Python's ``in`` took 2-8 us per word per 8 KB), a bare number of a length no
checksummed id has stops there, and a context is built once per value. The Luhn sum turns away
nine ids in ten before Presidio's card validator, and runs of hex digits without a separator are
not searched for MACs, UUIDs and IPv6 addresses. ``python -m benchmarks.pii_scanner --numeric``,
process CPU, best of 3, interleaved with the code before this change on the same 2-core VM (MB/s,
before -> after): 1 MB of ``row 0000012345 ...`` counter lines 2.5-3.1 -> 10.1-10.9 (3.6-4.0x;
the same text by wall clock 327-335 -> 82-86 ms), a 1 MB training log of losses, timings and
10-16 digit ids 1.4-1.5 -> 3.2-3.7 (2.3-2.5x), a 10,000-row DataFrame of id, epoch and
measurement columns 1.1-1.25 -> 2.9-3.0 (2.4-2.5x). The last two keep what no prefilter can
skip: each 9-digit number is an SSN candidate checked by Presidio's rules, each Luhn-valid id
with an issuer prefix a card, and every run goes through ``NUMERIC``. Findings are identical, byte
for byte, on 11,644 texts (the labelled sets, the benchmarks' texts, 7,500 fuzzed lines and
tables, 80 long texts with sparse context words, non-ASCII, final sigma, lone surrogates).
"""

from __future__ import annotations

import itertools
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from operator import itemgetter

from stringzilla import contains

from . import patterns as P
from .findings import Finding
from .secrets import find_credentials

__all__ = ["Scanner", "may_match"]

# Cheap gate: every pattern entity contains an ASCII digit or an '@'. Eleven ``in`` tests run
# at memchr speed (~15 us per 100 KB), ~100x faster than a character-class regex search.
_GATE_CHARS = "0123456789@"
# Names, private-key armour and tokens need an upper-case letter (or a non-ASCII one).
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def may_match(text: str) -> bool:
    """False when no pattern entity can occur in ``text`` (no ASCII digit, no '@')."""
    return any(c in text for c in _GATE_CHARS)


def may_hold_words(text: str) -> bool:
    """False when no name nor credential can occur: no ASCII capital and all ASCII."""
    return any(c in text for c in _UPPER) or not text.isascii()


# Whole-word ids with a checksum that many random numbers pass, so each also needs its context:
# (entity, digits only, shape, Presidio validator, score).
_ELEVEN = re.compile(r"(?s).{11}")
_CHECKSUMMED: tuple[tuple[str, bool, re.Pattern[str], str, float], ...] = (
    ("PL_PESEL", True, P.PESEL_RE, "pesel", 0.9),
    ("SE_PERSONNUMMER", False, P.SE_PNR_RE, "se", 0.95),
    ("IT_VAT_CODE", True, _ELEVEN, "vat", 0.85),
    ("DE_TAX_ID", True, _ELEVEN, "de_tax", 0.85),
)
_TH = re.compile(r"<th[^>]*>(.*?)</th>", re.S | re.I)
#: Least score of a table cell's finding that says what its column holds (``Scanner.value_type``):
#: the policy's default threshold, the score at which the finding is reported on its own.
CELL_MIN_SCORE = 0.5
_PHONE_BASE = {"intl": 0.75, "paren": 0.75, "sep": 0.75, "space": 0.5, "plain": 0.3}
_PRIORITY = {
    "CREDENTIAL": 9,
    "IBAN_CODE": 7,  # its digit groups can pass as a card: the whole IBAN wins
    "CREDIT_CARD": 6,
    "US_SSN": 5,
    "US_ITIN": 5,
    "PL_PESEL": 4,
    "SE_PERSONNUMMER": 4,
    "UK_NHS": 3,
    "PHONE_NUMBER": 2,
    "US_PASSPORT": 1,
}
# Identifier shapes inside one "alnum" candidate: (entity, shape, Presidio validator or None,
# score without context, score with context). Checksummed ones stand alone.
_ALNUM: tuple[tuple[str, re.Pattern[str], str | None, float, float], ...] = (
    ("ES_NIF", re.compile(r"\d{8}-?[A-Z]"), "nif", 0.85, 1.0),
    ("ES_NIE", re.compile(r"[XYZ]\d{7}-?[A-Z]"), "nie", 0.85, 1.0),
    ("FI_PERSONAL_IDENTITY_CODE", re.compile(r"\d{6}[-+A-FU-Y]\d{3}[0-9A-Y]"), "fi", 0.85, 1.0),
    ("IT_FISCAL_CODE", re.compile(r"[A-Z]{6}[0-9LMNP-V]{2}[A-Z][0-9LMNP-V]{2}[A-Z][0-9LMNP-V]{3}[A-Z]"),
     "cf", 0.85, 1.0),
    ("UK_NINO", re.compile(r"(?!BG|GB|NK|KN|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
                           r" ?\d{2} ?\d{2} ?\d{2} ?[A-D]"), None, 0.7, 0.95),
    ("MEDICAL_LICENSE", re.compile(r"[ABCDEFGHJKLMPRSTUX][A-Z9]\d{7}"), "dea", 0.6, 0.95),
    # Presidio's German ids: check digits that pass one in ten (ICAO 7-3-1, the pension and
    # health insurance numbers' weighted sums) or none (the driving licence), so their words
    # decide. Before the Italian and US shapes they share: a tie of context goes to the
    # German id, whose words are German (or say "German").
    ("DE_SOCIAL_SECURITY", re.compile(r"\d{8}[A-Z]\d{3}"), "de_sv", 0.1, 0.8),
    ("DE_ID_CARD", re.compile(r"[CFGHJKLMNPRTVWXYZ][CFGHJKLMNPRTVWXYZ0-9]{7}[0-9]|T\d{8}"),
     "de_id", 0.1, 0.8),
    ("DE_PASSPORT", re.compile(r"[CFGHJKLMNPRTVWXYZ][CFGHJKLMNPRTVWXYZ0-9]{7}[0-9]"), "de_pass",
     0.1, 0.8),
    ("DE_HEALTH_INSURANCE", re.compile(r"[A-Z]\d{9}"), "de_kv", 0.1, 0.8),
    ("DE_FUEHRERSCHEIN", re.compile(r"[A-Z]{2}\d{8}[A-Z0-9]"), None, 0.1, 0.8),
    # Presidio's Italian shapes; all but the VAT code have no checksum, and the passport and
    # the paper identity card share one shape: only their context tells them apart.
    ("IT_VAT_CODE", re.compile(r"IT\d{11}"), "vat", 0.3, 0.95),
    ("IT_DRIVER_LICENSE", re.compile(r"[A-Z]{2}\d{7}[A-Z]|U1[B-HJ-NPR-UW-Z0-9]{7}[A-Z]"), None,
     0.1, 0.8),
    ("IT_PASSPORT", re.compile(r"[A-Z]{2}\d{7}"), None, 0.1, 0.8),
    ("ES_PASSPORT", re.compile(r"[A-Z]{3}\d{6}"), None, 0.1, 0.8),
    # YYMMDD-XXXX is also the HETU's shape; the HETU's check character decides without
    # context, the words (and the Luhn digit) with it.
    ("SE_PERSONNUMMER", re.compile(r"\d{6}[-+]\d{4}"), "se", 0.3, 0.95),
    ("IT_IDENTITY_CARD", re.compile(r"[A-Z]{2} ?\d{7}|\d{7}[A-Z]{2}|[A-Z]{2}\d{5}[A-Z]{2}"), None,
     0.1, 0.8),
    ("US_PASSPORT", re.compile(r"[A-Z]\d{8}"), None, 0.1, 0.8),
    ("US_DRIVER_LICENSE", re.compile(r"[A-Z]{1,2}\d{5,14}"), None, 0.1, 0.8),
)  # fmt: skip
_URL = re.compile(r"\bhttps?://[^\s<>\"'`]+[^\s<>\"'`.,;:)\]]")
_DATE = re.compile(
    r"\b(?:\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2})?)?|\d{1,2}/\d{1,2}/\d{2,4}"
    r"|(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]* \d{1,2},? \d{4})\b"
)


class Scanner:
    """Find pattern entities (and optionally PERSON/LOCATION) in text. Pure: no I/O.

    Parameters
    ----------
    entities
        Entity types to report (default: all pattern entities).
    allow_list
        Exact values never reported (e.g. a team's support address).
    allow_patterns
        Regular expressions; a finding whose text fully matches one is dropped.
    ner
        Also run the spaCy NER model for PERSON and LOCATION (slow; off by default).
    cache_size
        Number of recent texts whose findings are kept, keyed by content.
    """

    def __init__(
        self,
        entities: Iterable[str] | None = None,
        allow_list: Iterable[str] = (),
        allow_patterns: Iterable[str] = (),
        ner: bool = False,
        cache_size: int = 512,
        names: bool = True,
        tables: bool = True,
    ) -> None:
        self.entities = (
            frozenset(entities) if entities is not None else frozenset(P.PATTERN_ENTITIES)
        )
        self.allow_list = frozenset(allow_list)
        self.allow_patterns = [re.compile(p) for p in allow_patterns]
        self.ner = ner
        self.names = names and "PERSON" in self.entities
        self.tables = tables
        self.credentials = "CREDENTIAL" in self.entities
        self._cache: OrderedDict[tuple[int, int], tuple[Finding, ...]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._v = P.validators()
        self._short_keys = tuple(k for k in P.SHORT_ID_KEYS if k[1] in self.entities)

    def scan(self, text: str) -> list[Finding]:
        """Findings in ``text``, sorted by position, overlaps resolved by score."""
        if len(text) >= 64:
            # By length and hash, not the text: 512 texts of up to megabytes would stay alive.
            # str's hash is SipHash under a per-process random key, so two texts of one length
            # collide by accident with probability 2**-64; the guard protects against accidental
            # exposure (a user set on leaking can encode the value), so that risk is accepted.
            key = (len(text), hash(text))
            with self._lock:
                hit = self._cache.get(key)
                if hit is not None:
                    self._cache.move_to_end(key)
                    return list(hit)
            found = self._scan(text)
            with self._lock:
                self._cache[key] = tuple(found)
                if len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
            return found
        return self._scan(text)

    def _scan(self, text: str) -> list[Finding]:
        out: list[Finding] = []
        digits = may_match(text)
        words = (self.names or self.credentials) and may_hold_words(text)
        scanned = text
        cells: list[Finding] = []
        if self.tables and ("<t" in text or ("\n" in text and "  " in text)):
            cells = self._tables(text)
            if cells:
                # Cells of a classified column are settled, and plain decimals of the others
                # cannot hold an entity: the other passes see blanks there.
                scanned = _mask(text, cells)
                cells = [f for f in cells if f.entity_type]
        # A keyword credential needs no capital (a ``db_password = ...`` line in a lowercase
        # config dump): its '=' or ':' opens the credential pass too.
        if self.credentials and (words or "=" in text or ":" in text):
            # On the masked text: a settled cell is redacted whole already, and blanks are
            # skipped at C speed by the marker search.
            out.extend(find_credentials(scanned))
        if digits:
            out.extend(self._patterns(scanned))
        if words and self.names:
            from .names import find_names

            out.extend(find_names(scanned))
        # key: value pairs, in dict/JSON reprs and logs; HTML escapes the quotes of its text,
        # and its tables were read by column above.
        if self.tables and ("'" in text or '"' in text or "=" in text) and not _is_html(text):
            from .names import looks_like_name
            from .tables import keyed_findings

            name_check = looks_like_name if self.names else None
            out.extend(keyed_findings(scanned, self.entities, name_check))
        if self.ner:
            from .ner import find_entities

            out.extend(f for f in find_entities(text) if f.entity_type in self.entities)
        if "URL" in self.entities and "://" in text:
            out.extend(Finding("URL", m.start(), m.end(), 0.6) for m in _URL.finditer(text))
        if "DATE_TIME" in self.entities and digits:
            out.extend(Finding("DATE_TIME", m.start(), m.end(), 0.6) for m in _DATE.finditer(text))
        if self.allow_list or self.allow_patterns:
            out = [f for f in out if not self._allowed(text[f.start : f.end])]
            cells = [f for f in cells if not self._allowed(text[f.start : f.end])]
        if not cells:
            return _resolve(out) if len(out) > 1 else out
        # Table cells do not overlap one another nor the passes that saw them blanked; only
        # URLs and dates (scanned on the original text) may overlap a cell.
        return _resolve(cells + out) if out else sorted(cells, key=_START)

    def _tables(self, text: str) -> list[Finding]:
        from .names import looks_like_name
        from .tables import column_findings, html_columns, text_columns

        out: list[Finding] = []
        tables = html_columns(text) if "<t" in text else text_columns(text)
        names = looks_like_name if self.names else None
        for cols in tables:
            out.extend(column_findings(text, cols, self.entities, self.value_type, names))
        return out

    def value_type(self, cell: str, header: str = "") -> str | None:
        """The entity one table cell validates as (a finding over most of it), or None.

        The column header is put before the cell, as on a ``key: value`` line, so that it is
        the cell's context (an NHS number is a phone number until its column says "nhs"). Only
        a finding that would be reported on its own counts (score >= ``CELL_MIN_SCORE``): a
        bare 9-digit number is an SSN at 0.3, and so is most any 9-digit number, so a column of
        microsecond timings or ids must not become an SSN column by its values alone.
        """
        cell = cell.strip()
        if not may_match(cell):
            return None
        head = header.strip().lower().replace("_", " ")[:60] + ": " if header else ""
        for f in self._patterns(head + cell):
            if (
                f.start >= len(head)
                and f.end - f.start >= len(cell) * 0.7
                and f.score >= CELL_MIN_SCORE
            ):
                return f.entity_type
        return None

    def _allowed(self, value: str) -> bool:
        return value in self.allow_list or any(p.fullmatch(value) for p in self.allow_patterns)

    def _patterns(self, text: str) -> list[Finding]:
        out: list[Finding] = []
        ents = self.entities
        if "EMAIL_ADDRESS" in ents:
            out.extend(_emails(text))
        header: _Header | None = None
        matches: list[Iterable[re.Match[str]]] = [_numeric(text)]
        if not text.isdigit():
            matches.append(_within(P.UPPER_RUN, P.UPPER, text))
            matches.append(_within(P.HEX_RUN, P.HEX, text, _HEX_SEPARATOR))
            matches.append(P.BASE58.finditer(text))
            if "::" in text:
                matches.append(P.IPV6_SHORT.finditer(text))
            if "bc1" in text:
                matches.append(P.BECH32.finditer(text))
        if self._short_keys:
            out.extend(self._short_ids(text))
        for m in itertools.chain.from_iterable(matches):
            kind = m.lastgroup
            s, e = m.span()
            if kind == "num":
                if header is None:
                    header = _Header(text)
                out.extend(self._numbers(m.group(), s, header))
            elif kind == "alnum" or kind == "alnumd":
                if header is None:
                    header = _Header(text)
                f = self._alnum(m.group(), s, header)
                if f is not None:
                    out.append(f)
            elif not _has_digit(m.group()):
                # MAC, UUID and IPv6 of hex letters only are left out on purpose: every entity
                # then holds a digit, which the raw gate (PIIPolicy.raw_gate) relies on.
                continue
            elif kind == "mac" or kind == "macsep":
                if "MAC_ADDRESS" in ents and P.presidio_check("mac", m.group()):
                    out.append(Finding("MAC_ADDRESS", s, e, 0.85))
            elif kind == "uuid":
                if "UUID" in ents:
                    out.append(Finding("UUID", s, e, 0.6))
            elif m.re is P.BASE58 or m.re is P.BECH32:
                if "CRYPTO" in ents and P.presidio_check("crypto", m.group()):
                    out.append(Finding("CRYPTO", s, e, 1.0))
            elif kind == "iban":
                if "IBAN_CODE" in ents and self._v["iban"](m.group()):
                    out.append(Finding("IBAN_CODE", s, e, 1.0))
            elif "IP_ADDRESS" in ents and self._v["ip"](m.group()):
                if header is None:
                    header = _Header(text)
                score = 0.95 if header.has(s, e, "IP_ADDRESS") else 0.8
                out.append(Finding("IP_ADDRESS", s, e, score))
        return out

    def _short_ids(self, text: str) -> list[Finding]:
        """Ids of 6 to 8 digits right after a word that names them (``P.SHORT_ID_KEYS``).

        Context first: the key words are found with ``str.find`` in the lower-cased text, and
        only the few characters after each are matched, so the numbers of a log (durations,
        counts, ports) are never looked at unless a key names them.
        """
        low = text.lower()
        if len(low) != len(text):  # a few characters lengthen when lower-cased ("İ")
            low = "".join(c if len(c.lower()) != 1 else c.lower() for c in text)
        out: list[Finding] = []
        taken: set[int] = set()
        for key, entity, fewest in self._short_keys:
            i = low.find(key)
            while i != -1:
                m = P.SHORT_ID_VALUE.match(text, i + len(key))
                if (
                    m is not None
                    and m.end("value") - m.start("value") >= fewest
                    and m.start("value") not in taken
                    and not _ID_KEY.search(m.group("rest"))
                ):
                    taken.add(m.start("value"))
                    out.append(Finding(entity, *m.span("value"), 0.75))
                i = low.find(key, i + len(key))
        return out

    def _alnum(self, w: str, offset: int, header: _Header) -> Finding | None:
        """The best-scored shape ``w`` validates as: several shapes overlap (two letters and
        seven digits are a DEA number, an Italian passport, an Italian identity card or a US
        driver licence), and the context, not the order, must decide between them."""
        best: Finding | None = None
        for entity, shape, check, bare, ctx in _ALNUM:
            if entity not in self.entities or not shape.fullmatch(w):
                continue
            value = w.replace("-", "") if check in ("nif", "nie") else w
            if check == "vat":
                value = w[2:]
            if check is not None and not P.presidio_check(check, value):
                continue
            score = bare
            if bare < 0.95 and header.has(offset, offset + len(w), entity):
                score = ctx
            if score >= 0.5 and (best is None or score > best.score):
                best = Finding(entity, offset, offset + len(w), score)
                if score >= 0.95:
                    break
        return best

    def _numbers(self, w: str, offset: int, header: _Header) -> list[Finding]:
        """Findings inside one digit run ``w`` found at ``offset``.

        The common run is a counter, an id or a measurement that is nothing personal, so the
        cheap tests come first: the count of digits, the lengths a pure digit run must have
        for each shape (a sub-pattern bounded by ``(?<!\\d)`` and ``(?!\\d)`` can only match
        such a run whole), then the context words (``_Header.has``), then the checksums.
        """
        ents = self.entities
        if w[4:5] == "-" and w[7:8] == "-" and w[:4].isdigit():  # an ISO date: skip it
            rest = w[10:]
            skip = 10 + len(rest) - len(rest.lstrip(" "))
            w, offset = w[skip:], offset + skip
        digits_only = w.isdigit()
        n_digits = len(w) if digits_only else sum(map(str.isdigit, w))
        if n_digits < 9:
            return []
        end = offset + len(w)
        has = header.has
        # Most shapes below are told by their context words alone, and in most blocks of a
        # long output none of their words is near: one test per block skips them all.
        near = header.may_hold_words(offset, _CONTEXT_ONLY)
        if digits_only and not near and len(w) != 9 and not 12 <= len(w) <= 19:
            # Then a bare number is an id only by its checksum: a card (12 to 19 digits), an
            # SSN or an ITIN (9). A counter or a 10-digit id stops here.
            return []
        cands: list[Finding] = []

        if n_digits >= 12 and "CREDIT_CARD" in ents:
            for m in P.CARD_RE.finditer(w):
                digits = m.group() if digits_only else _NON_DIGITS.sub("", m.group())
                if 12 <= len(digits) <= 19 and self._v["card"](digits):
                    sep = bool(m.group(1) or m.group(2) or m.group(3))
                    # A bare Luhn-valid number with an issuer prefix is a card (as for
                    # Presidio), unless its column or key names it an id or a time.
                    bare = 0.3 if _has_id_context(header, offset, end) else 0.6
                    score = 1.0 if sep or has(offset, end, "CREDIT_CARD") else bare
                    cands.append(
                        Finding("CREDIT_CARD", offset + m.start(), offset + m.end(), score)
                    )
        # SSN and ITIN are 9 digits, an NHS number 10.
        if "US_SSN" in ents and (len(w) == 9 or not digits_only):
            for m in P.SSN_RE.finditer(w):
                if self._v["ssn"](m.group()):
                    base = _SSN_BASE.get(m.group(1), 0.3)
                    score = min(1.0, base + (0.4 if has(offset, end, "US_SSN") else 0.0))
                    cands.append(Finding("US_SSN", offset + m.start(), offset + m.end(), score))
        if near and "UK_NHS" in ents and (len(w) == 10 or not digits_only):
            for m in P.NHS_RE.finditer(w):
                if has(offset, end, "UK_NHS") and self._v["nhs"](m.group()):
                    cands.append(Finding("UK_NHS", offset + m.start(), offset + m.end(), 0.8))
        if "US_ITIN" in ents and (len(w) == 9 or not digits_only):
            for m in P.ITIN_RE.finditer(w):
                score = (0.5 if m.group(1) else 0.3) + (0.4 if has(offset, end, "US_ITIN") else 0.0)
                cands.append(Finding("US_ITIN", offset + m.start(), offset + m.end(), score))
        for entity, needs_digits, shape, check, score in _CHECKSUMMED if near else ():
            if (
                entity in ents
                and (digits_only or not needs_digits)
                and shape.fullmatch(w)
                and has(offset, end, entity)
                and P.presidio_check(check, w)
            ):
                cands.append(Finding(entity, offset, end, score))
        if near and digits_only:
            for entity, rx in _DIGIT_IDS:
                if entity in ents and rx.fullmatch(w) and has(offset, end, entity):
                    cands.append(Finding(entity, offset, end, 0.75))
        # A pure digit run can only be a phone number of the plain kind (10 digits), which
        # needs its context.
        if "PHONE_NUMBER" in ents and (not digits_only or (near and len(w) == 10)):
            for m in P.PHONE_RE.finditer(w):
                kind = m.lastgroup if m.lastgroup != "sep_c" else "sep"
                phone_ctx = has(offset, end, "PHONE_NUMBER")
                if kind == "plain" and not phone_ctx:
                    continue
                if not self._v["phone"](m.group()):
                    continue
                base = _PHONE_BASE.get(kind or "", 0.3)
                score = min(1.0, base + (0.3 if phone_ctx else 0.0))
                cands.append(Finding("PHONE_NUMBER", offset + m.start(), offset + m.end(), score))
        return _resolve(cands) if len(cands) > 1 else cands


def _emails(text: str) -> list[Finding]:
    out: list[Finding] = []
    at = text.find("@")
    while at != -1:
        local = P.EMAIL_LOCAL.search(text, max(0, at - 64), at)
        dom = P.EMAIL_DOMAIN.match(text, at + 1)
        if local is not None and dom is not None:
            s = local.start()
            if s == 0 or not (text[s - 1].isalnum() or text[s - 1] in "._%+-"):
                out.append(Finding("EMAIL_ADDRESS", s, dom.end(), 1.0))
        at = text.find("@", at + 1)
    return out


def _has(ctx: str, entity: str) -> bool:
    return any(w in ctx for w in P.CONTEXT_WORDS.get(entity, ()))


# Each context word in UTF-8 with its cuts at a space: (word, ((before the space, after it),
# ...)), the part before in UTF-8 (it is looked for in a block of text), the part after as text
# (looked for in the header). A context is a lower-cased slice of the value's line, then " "
# and a slice of the column header, so a word in it lies in the slice, in the header, or
# across that space: its part before the space ends the slice, its part after begins the
# header (``_Header.has``).
_WORD_CUTS: dict[str, tuple[tuple[bytes, tuple[tuple[bytes, str], ...]], ...]] = {
    entity: tuple(
        (
            word.encode(),
            tuple((word[:i].encode(), word[i + 1 :]) for i, c in enumerate(word) if c == " "),
        )
        for word in words
    )
    for entity, words in P.CONTEXT_WORDS.items()
}
_NON_DIGITS = re.compile(r"\D")
_SSN_BASE = {"-": 0.85, " ": 0.6, ".": 0.6}
# Whole-run ids with no checksum: only their context tells them.
_DIGIT_IDS = (
    ("US_BANK_NUMBER", P.BANK_RE),
    ("US_PASSPORT", P.PASSPORT_DIGITS_RE),
    ("US_DRIVER_LICENSE", P.LICENSE_DIGITS_RE),
)
# The entities of a digit run found only with a context word (a plain 10-digit phone number).
_CONTEXT_ONLY = (
    "UK_NHS",
    "PHONE_NUMBER",
    *(c[0] for c in _CHECKSUMMED),
    *(e for e, _ in _DIGIT_IDS),
)


# A key that names an identifier of the thing, not the thing's number ("driver_id": a ride's
# driver), or a plural that counts them ("accounts: 66479012 rows"); "driver's" is neither.
_ID_KEY = re.compile(r"(?:^|_|\b)ids?$|(?<!['\u2019])s$", re.IGNORECASE)
_ID_CONTEXT = re.compile(r"(?:\b|_)(?:id|ids|ts|time|timestamp|epoch|seq|nonce|count|row)\b")


def _has_id_context(header: _Header, start: int, end: int) -> bool:
    """The value's key or column names it an identifier, a time or a counter."""
    return header.is_table and bool(_ID_CONTEXT.search(header.context(start, end)))


def _numeric(text: str) -> Iterator[re.Match[str]]:
    """NUMERIC's matches, searched only inside the runs NUMERIC_RUN finds (same results: a
    NUMERIC match lies inside a run; lookbehinds see the text before ``pos``, and a margin after
    the run's end lets the lookaheads see the next characters)."""
    n = len(text)
    date = P.DATE_RUN.fullmatch
    for run in P.NUMERIC_RUN.finditer(text):
        s, e = run.span()
        if not (text[s + 4 : s + 5] == "-" and date(text, s, e)):
            yield from P.NUMERIC.finditer(text, s, min(n, e + P.RUN_MARGIN))


def _within(
    runs: re.Pattern[str],
    rx: re.Pattern[str],
    text: str,
    needs: re.Pattern[str] | None = None,
) -> Iterator[re.Match[str]]:
    """``rx``'s matches inside the spans ``runs`` finds (see :func:`_numeric`); with ``needs``,
    only in the spans where ``needs`` finds something every match of ``rx`` holds."""
    n = len(text)
    for run in runs.finditer(text):
        s, e = run.start(), min(n, run.end() + 3)
        if needs is None or needs.search(text, s, e):
            yield from rx.finditer(text, s, e)


# Every HEX match holds a ':', '-' or '.' (a UUID's, a MAC's or an IPv6 address's separators),
# so a run without one, such as every long number of numeric output, is not searched.
_HEX_SEPARATOR = re.compile(r"[:.-]")


def _is_html(text: str) -> bool:
    return text.lstrip()[:1] == "<" and "</" in text


# Sort keys over thousands of table findings: C-level item getters (a named tuple's fields
# are items 1 and 2), three times cheaper than a Python function or attribute access.
_SPAN: Callable[[Finding], tuple[int, int]] = itemgetter(1, 2)
_START: Callable[[Finding], int] = itemgetter(1)
# Blanks of each short length, shared: a table's cells are a few characters each.
_BLANKS = tuple(" " * n for n in range(64))


def _has_digit(value: str) -> bool:
    return any(c in value for c in "0123456789")


def _mask(text: str, findings: list[Finding]) -> str:
    """``text`` with the findings' spans blanked (same length, so positions still hold)."""
    parts: list[str] = []
    append = parts.append
    pos = 0
    for _, start, end, _ in sorted(findings, key=_START):
        if start >= pos:
            append(text[pos:start])
            n = end - start
            append(_BLANKS[n] if n < 64 else " " * n)
            pos = end
    append(text[pos:])
    return "".join(parts)


def _resolve(cands: list[Finding]) -> list[Finding]:
    """Among overlapping findings keep the best score (then the more specific type).

    Findings are cut into clusters of transitively overlapping spans (one sort), and the
    choice is made inside each cluster, so a table of thousands of findings stays linear.
    """
    ordered = sorted(cands, key=_SPAN)
    kept: list[Finding] = []
    cluster: list[Finding] = []
    end = -1
    for f in ordered:
        if cluster and f.start >= end:
            kept.extend(_pick(cluster))
            cluster = []
        cluster.append(f)
        end = max(end, f.end) if len(cluster) > 1 else f.end
    kept.extend(_pick(cluster))
    kept.sort(key=_SPAN)
    return kept


def _pick(cluster: list[Finding]) -> list[Finding]:
    if len(cluster) < 2:
        return cluster
    kept: list[Finding] = []
    for f in sorted(
        cluster, key=lambda f: (-f.score, -_PRIORITY.get(f.entity_type, 0), f.start - f.end)
    ):
        if all(f.end <= k.start or f.start >= k.end for k in kept):
            kept.append(f)
    return kept


class _Header:
    """Context words for a span: its line so far, plus the column header above it.

    DataFrame text reprs right-align values under their column names, so the header tokens that
    overlap the value's columns name it. HTML tables give their ``<th>`` cells.

    Most numbers of a long output have no context word near them. ``has`` first asks whether
    one of an entity's words can be in the block of text (``_BLOCK`` characters) the value
    starts in, once per block and entity, with StringZilla's SIMD ``contains`` on the
    lower-cased block in UTF-8 (~0.2 us per word per 8 KB; Python's ``in`` took 2-8 us); only
    where one can does it build the value's context (once per span) and look for the words.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.html = ""
        self.line = ""
        if "<th" in text or "<TH" in text:
            self.html = " ".join(_TH.findall(text[:20000])).lower()
        else:
            nl = text.find("\n")
            if 0 < nl < 2000 and text.count("\n", nl, nl + 4000) >= 1:
                self.line = text[:nl].lower()
        self._span = (-1, -1)
        self._context = ""
        # Long texts are read in blocks; a short one (a table cell with its header) has few
        # values, and looks for the words in each value's context directly.
        self._blocks = len(text) > _BLOCKS_FROM
        self._header_words: dict[str, bool] = {}
        # The block of the last value asked about, its lower-cased text in UTF-8, per entity
        # whether one of its words can be in a context there, and the last answer of
        # ``may_hold_words`` for that block.
        self._block = -1
        self._block_low = b""
        self._block_words: dict[str, bool] = {}
        self._near_of: tuple[str, ...] = ()
        self._near = True

    @property
    def is_table(self) -> bool:
        return bool(self.html or self.line)

    def context(self, start: int, end: int) -> str:
        """The lower-cased context of ``text[start:end]``: computed once per span."""
        if (start, end) == self._span:
            return self._context
        ls = self.text.rfind("\n", 0, start) + 1
        ctx = self.text[max(ls, start - _BEFORE) : start].lower()
        if self.html:
            ctx = ctx + " " + self.html
        elif self.line and ls > 0:
            c0, c1 = start - ls, end - ls
            line = self.line
            if c0 < len(line):
                while c0 > 0 and not line[c0 - 1].isspace():
                    c0 -= 1
                while c1 < len(line) and not line[c1].isspace():
                    c1 += 1
                ctx = ctx + " " + line[c0:c1]
        self._span = (start, end)
        self._context = ctx
        return ctx

    def has(self, start: int, end: int, entity: str) -> bool:
        """Whether the context of ``text[start:end]`` holds one of ``entity``'s words."""
        if self._blocks and not self._block_may_hold(start, entity):
            return False
        return _has(self.context(start, end), entity)

    def may_hold_words(self, start: int, entities: tuple[str, ...]) -> bool:
        """False when no context of a value starting at ``start`` can hold a word of one of
        ``entities`` (the answer for the last tuple asked is kept per block)."""
        if not self._blocks:
            return True
        if start // _BLOCK != self._block or entities is not self._near_of:
            self._near = any(self._block_may_hold(start, e) for e in entities)
            self._near_of = entities
        return self._near

    def _block_may_hold(self, start: int, entity: str) -> bool:
        # A context's slice of the line is text[start - _BEFORE : start] at most: inside
        # [k * _BLOCK - _BEFORE, (k + 1) * _BLOCK) for a value that starts in block k. Lower-
        # casing a slice gives a slice of the lower-cased text (Python's only contextual case
        # mapping is the final sigma, in no context word).
        k = start // _BLOCK
        if k != self._block:
            lo = max(0, k * _BLOCK - _BEFORE)
            self._block = k
            # UTF-8 is self-synchronizing: a word's bytes are found in the block's bytes
            # exactly where the word is in the block ("surrogatepass": a lone surrogate
            # (valid JSON) becomes three bytes no word holds).
            block = self.text[lo : (k + 1) * _BLOCK].lower()
            self._block_low = block.encode("utf-8", "surrogatepass")
            self._block_words = {}
            self._near_of = ()
        hit = self._block_words.get(entity)
        if hit is None:
            low, head = self._block_low, self.html or self.line
            hit = self._in_header(entity) or any(
                contains(low, word) or any(contains(low, a) and b in head for a, b in cuts)
                for word, cuts in _WORD_CUTS.get(entity, ())
            )
            self._block_words[entity] = hit
        return hit

    def _in_header(self, entity: str) -> bool:
        hit = self._header_words.get(entity)
        if hit is None:
            head = self.html or self.line
            hit = any(word in head for word in P.CONTEXT_WORDS.get(entity, ()))
            self._header_words[entity] = hit
        return hit


# How far before a value its context reaches on its line, and the block size of the words'
# prefilter (``_Header.has``).
_BEFORE = 48
_BLOCK = 8192
_BLOCKS_FROM = 1024
