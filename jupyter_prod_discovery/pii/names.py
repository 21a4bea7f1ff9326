"""Person names without a model: a multi-locale gazetteer, and the rules that use it in prose.

Why a gazetteer and not NER by default: a spaCy model reads ~20 k characters/s, a thousand
times slower than the pattern scan, and misses bare names in table cells (no sentence around
them). The name lists come from Faker (MIT licence, maintained, a pure-Python wheel that needs
no download at run time): first and last names of its ~80 locales, compiled by its authors from
census and civil-registry statistics (the US lists from the Census Bureau and the SSA). Faker is
only read for its lists, its generator is never instantiated. Names that are also common
English or technical words (``Will``, ``Max``, ``Long``, ``Case``...) are dropped, so that
technical output stays quiet.

In prose a name is two adjacent capitalised words, the first a known first name and the
second a known last name (or any capitalised word that is not a common word), or a title
(``Mr``, ``Dr``...) before a capitalised word. Tables use :func:`looks_like_name` per cell.
"""

from __future__ import annotations

import importlib
import itertools
import pkgutil
import re
from functools import cache

from .findings import Finding

__all__ = ["find_names", "gazetteer", "looks_like_name"]

# Capitals of Latin-1 and Latin Extended-A (Ł, Ś, Ž...), then letters that are not ASCII
# capitals: "Zieliński", "Müller", "O'Brien" and "Jean-Luc" are words, "INFO" and "McKinsey"'s
# inner capital end one.
_UP = "A-ZÀ-ÖØ-ÞĀ-ž"
_LO = "^\\W\\d_A-Z"
_WORD = rf"[{_UP}][{_LO}]+(?:[-'][{_UP}]?[{_LO}]+)?"
_WORD_FULL = re.compile(_WORD)
# A capitalised word standing alone (not inside an identifier, path or address).
# Class first, lookbehind after the first letter, so the engine's prefix scan skips the rest.
CAPWORD = re.compile(rf"[{_UP}](?<![\w.@/\\-].)[{_LO}]+(?:[-'][{_UP}]?[{_LO}]+)?(?![\w@/\\])")
# Honorifics before a surname ("Dr Okafor", "Mrs. Nowak").
TITLES = frozenset(
    {
        "Mr",
        "Mrs",
        "Ms",
        "Miss",
        "Mx",
        "Dr",
        "Prof",
        "Sir",
        "Dame",
        "Herr",
        "Frau",
        "Mme",
        "Sr",
        "Sra",
    }
)

# Common English and technical words that are also names in some locale's list.
COMMON = frozenset(
    """
    A About After All Also An And Any Apple April Are Array Art As At August Average Back Bad
    Base Be Bear Before Best Bill Black Blue Bold Bond Boolean Both Brand Brown But By Call Can
    Case Cash Cell Center Chase Check Child Christmas Class Clear Close Code Cold Color Column
    Common Config Cook Count Cross Data Date Dawn Day Dear Default Delta Do Done Down Each
    Early East Echo Else End Error Even Every Fair Faith Fall False Field File Fine First Fish
    Fleet For Ford Form Found Frame Free French Friday From Full Gay General Get Given Glass Go
    Gold Good Grace Grant Gray Great Green Grey Guy Hall Hand Hard Has Have He Head Her Here
    High Hill His Holiday Home Hope How However If Image In Index Info Input Is It Its Ivy Jack
    Jan January Joy July June Just Key Kind King Lake Land Last Law Lead Left Less Level Light
    Like Line Link List Little Live Local Long Love Low Main Major Man March Mark Marsh Mason
    Master Max May Mean Message Mid Min Miss Mode Model Monday More Most Much Name New News
    Next Nice No None North Not Note November Now Null Number Object October Of Ok Old On One
    Only Open Or Order Other Our Out Output Page Paris Park Path Peace Pop Post Power Price
    Prince Print Read Record Red Reed Rich Right River Rock Root Rose Row Run Sale Same Sat
    Saturday Say See Self September Series Server Set Shape Short Should Show Side Silver Size
    Small Snow So Some South Spring Star Start State Status Step Still Stone Story Strong Sum
    Summer Sunday Table Temple Test Text That The Then There They This Thursday Time To Top
    Total Town Train True Tuesday Type Under Union Up Use User Value Van Version Via Victory
    Wall War Was Water Way We Wednesday Well West What When Where Which White Why Will Win
    Winter With Wood Word Work World Yes Young You Your
    """.split()  # noqa: SIM905 (a word list reads best as words)
)


@cache
def gazetteer() -> tuple[frozenset[str], frozenset[str]]:
    """(first names, last names) of every Faker locale, minus :data:`COMMON` words.

    Loaded once (~0.15 s, ~21 k first and ~23 k last names in Latin script).
    """
    first, last = gazetteer_all()
    return first - COMMON, last - COMMON


@cache
def gazetteer_all() -> tuple[frozenset[str], frozenset[str]]:
    """(first names, last names) of every Faker locale, common words included (Mark, White):
    for places where the layout already says "a name is here" (quoted pairs in a row repr)."""
    import faker.providers.person as person

    first: set[str] = set()
    last: set[str] = set()
    for mod in pkgutil.iter_modules(person.__path__):
        provider = getattr(
            importlib.import_module(f"{person.__name__}.{mod.name}"), "Provider", None
        )
        if provider is None:
            continue
        for attr, value in provider.__dict__.items():
            into = first if "first_name" in attr else last if "last_name" in attr else None
            if into is not None and isinstance(value, dict | list | tuple | set | frozenset):
                into.update(v for v in value if isinstance(v, str))
    # Slavic surnames agree with gender; the lists hold the masculine form (Wiśniewski).
    last.update(n[:-1] + "a" for n in list(last) if n.endswith(("ski", "cki", "dzki")))
    word = re.compile(rf"{_WORD}$")
    return (
        frozenset(n for n in first if word.match(n)),
        frozenset(n for n in last if word.match(n)),
    )


def find_names(text: str) -> list[Finding]:
    """PERSON spans in prose: known first name + last name, a title + capitalised word, or two
    quoted words side by side as a row repr prints them ('Maria', 'Garcia').

    One pass finds the capitalised words (each regex pass over a text costs about a
    millisecond per 200 KB even when it finds nothing); every rule then reads that list. They
    are read as runs (words one space apart); inside a run a name starts at a known first
    name, so "Customer John Smith" yields "John Smith".
    """
    first, _ = gazetteer()
    last = gazetteer_all()[1]  # after a sure first name, Brown and White are surnames
    out: list[Finding] = []
    caps = list(CAPWORD.finditer(text))
    run: list[re.Match[str]] = []
    for m in caps:
        if run and m.start() != run[-1].end() + 1:
            _names_in_run(run, first, last, out)
            run = []
        run.append(m)
    if run:
        _names_in_run(run, first, last, out)
    quoted = "'" in text or '"' in text
    for a, b in itertools.pairwise(caps):
        gap = text[a.end() : b.start()]
        if a.group() in TITLES and gap in (" ", ". ") and b.group() not in COMMON:
            out.append(Finding("PERSON", a.start(), b.end(), 0.85))
        elif quoted and _quoted_pair(text, a, b, gap):
            out.append(Finding("PERSON", a.start(), a.end(), 0.85))
            out.append(Finding("PERSON", b.start(), b.end(), 0.85))
    return out


def _quoted_pair(text: str, a: re.Match[str], b: re.Match[str], gap: str) -> bool:
    """'Maria', 'Garcia': quoted words side by side are a strong sign, so names that are also
    words ('Mark', 'White') count, and one known half vouches for an unknown other ('Olumide',
    'Okafor')."""
    q = text[a.start() - 1 : a.start()]
    if (
        q not in ("'", '"')
        or gap not in (f"{q}, {q}", f"{q},{q}")
        or text[b.end() : b.end() + 1] != q
    ):
        return False
    first_all, last_all = gazetteer_all()
    x, y = a.group(), b.group()
    return (x in first_all and (y in last_all or y in first_all or _surname_like(y))) or (
        y in last_all and x not in COMMON and _surname_like(x)
    )


def _names_in_run(
    run: list[re.Match[str]], first: frozenset[str], last: frozenset[str], out: list[Finding]
) -> None:
    words = [m.group() for m in run]
    i = 0
    while i < len(words) - 1:
        a, b = words[i], words[i + 1]
        if a in first and (b in last or b in first or _surname_like(b)):
            score = 0.85 if (b in last or b in first) else 0.6
            j = i + 1
            if j + 1 < len(words) and words[j + 1] in last:
                j += 1
            out.append(Finding("PERSON", run[i].start(), run[j].end(), score))
            i = j + 1
        else:
            i += 1


# Endings of English common nouns and adjectives ("Forest Classifier", "Max Pooling"): an
# unknown word with one is not taken for a surname. Known surnames (Miller) are in the lists.
_NOT_SURNAME = re.compile(
    r"(?:er|ier|or|ing|tion|sion|ment|ness|ity|ive|al|ous|ic|ics|ure|ance|ence|ist|ism|able|"
    r"ible|ary|ory|ate|ize|ise|ed|ly|s)$"
)


def _surname_like(word: str) -> bool:
    return len(word) > 2 and word not in COMMON and not _NOT_SURNAME.search(word)


def looks_like_name(cell: str) -> bool:
    """A table cell holding a name: 1-4 capitalised words, at least one a known name (common
    words included: a cell under a name header may well hold 'Mark' or 'White')."""
    words = cell.replace(",", " ").split()
    if not 1 <= len(words) <= 4:
        return False
    first, last = gazetteer_all()
    known = False
    for w in words:
        if not _WORD_FULL.fullmatch(w):
            return False
        known = known or w in first or w in last
    return known
