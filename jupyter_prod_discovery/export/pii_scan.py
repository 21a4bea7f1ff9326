"""Alternative PII scanners for the ``no_pii`` gate, behind a small protocol.

By default the gate asks the shared ``PIIPolicy`` (the same object as the live guard, the save
guard and ``scan``). ``NoPIIGate.scanner_class`` replaces it with any class instantiated as
``cls(entities=...)`` with ``scan(text) -> list[finding]``: :class:`ProjectPIIScanner` (the
project's policy restricted to some entity types) or :class:`PatternPIIScanner`, a
dependency-free fallback (US SSN, e-mail address, Luhn-valid payment card). A finding is an
object or dict with an ``entity_type`` (or ``type``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

__all__ = ["PIIScanner", "PatternPIIScanner", "ProjectPIIScanner", "finding_type"]


@runtime_checkable
class PIIScanner(Protocol):
    def scan(self, text: str) -> list[Any]:
        """Findings in ``text`` (empty when none)."""


def finding_type(finding: Any) -> str:
    if isinstance(finding, dict):
        return str(finding.get("entity_type") or finding.get("type") or "PII")
    return str(getattr(finding, "entity_type", None) or getattr(finding, "type", None) or "PII")


_SSN = re.compile(r"\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b")
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
_CARD = re.compile(r"\b(?:\d[ -]?){13,19}\b")
# Documentation examples rejected as SSNs by design (as in Presidio).
_SSN_EXAMPLES = {"078-05-1120", "123-45-6789"}


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


class ProjectPIIScanner:
    """The project's PII policy (``jupyter_prod_discovery.pii.PIIPolicy``) behind this protocol.

    ``entities`` restricts the policy's entity types (default: all of them); findings are the
    ones the policy keeps (at or above threshold).
    """

    def __init__(self, entities: Iterable[str] = ()) -> None:
        from ..pii import PIIPolicy

        ents = list(entities)
        self._policy = PIIPolicy(entities=ents) if ents else PIIPolicy()

    def scan(self, text: str) -> list[Any]:
        return list(self._policy.scan(text).findings)


class PatternPIIScanner:
    """Pattern-only scanner: US_SSN, EMAIL_ADDRESS, CREDIT_CARD (Luhn-checked)."""

    def __init__(self, entities: Iterable[str] = ()) -> None:
        self.entities = frozenset(entities)

    def scan(self, text: str) -> list[dict[str, Any]]:
        found = self._scan(text)
        return [f for f in found if not self.entities or f["entity_type"] in self.entities]

    def _scan(self, text: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for m in _SSN.finditer(text):
            if m.group() not in _SSN_EXAMPLES:
                out.append({"entity_type": "US_SSN", "start": m.start(), "end": m.end()})
        for m in _EMAIL.finditer(text):
            out.append({"entity_type": "EMAIL_ADDRESS", "start": m.start(), "end": m.end()})
        for m in _CARD.finditer(text):
            digits = re.sub(r"\D", "", m.group())
            if 13 <= len(digits) <= 19 and _luhn(digits):
                out.append({"entity_type": "CREDIT_CARD", "start": m.start(), "end": m.end()})
        return out
