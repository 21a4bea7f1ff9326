"""A pure PII scanner: text in, findings out, no I/O.

``Scanner`` finds entities, ``PIIPolicy`` turns findings into an action (allow, warn, redact,
block), ``SecretMatcher`` finds exact credential values, ``redact`` applies placeholders.
"""

from __future__ import annotations

from .findings import SECRET, Finding, redact
from .policy import ACTIONS, PIIPolicy, Verdict
from .scanner import Scanner
from .secrets import SecretMatcher

__all__ = [
    "ACTIONS",
    "SECRET",
    "Finding",
    "PIIPolicy",
    "Scanner",
    "SecretMatcher",
    "Verdict",
    "redact",
]
