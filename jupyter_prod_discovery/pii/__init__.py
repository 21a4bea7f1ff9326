"""A pure PII scanner: text in, findings out, no I/O.

``PIIPolicy`` is the one object every check uses (live guard, save guard, ``scan``, export
gate): ``scan(text)`` / ``scan_html`` / ``scan_bundle`` give a :class:`Verdict`, and
``notebook.scan_notebook`` judges every place of a notebook. ``Scanner`` finds entities
(patterns with Presidio's validators, the names gazetteer, column-aware tables, credentials),
``SecretMatcher`` finds exact credential values, ``redact`` applies placeholders.
"""

from __future__ import annotations

from .findings import ALWAYS_REDACTED, CREDENTIAL, SECRET, Finding, placeholder, redact
from .policy import ACTIONS, DEFAULT_ENTITIES, PIIPolicy, Verdict
from .scanner import Scanner
from .secrets import SecretMatcher, find_credentials

__all__ = [
    "ACTIONS",
    "ALWAYS_REDACTED",
    "CREDENTIAL",
    "DEFAULT_ENTITIES",
    "SECRET",
    "Finding",
    "PIIPolicy",
    "Scanner",
    "SecretMatcher",
    "Verdict",
    "find_credentials",
    "placeholder",
    "redact",
]
