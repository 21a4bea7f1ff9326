"""The redaction modifier: live secrets never reach the audit log.

Runs as a jupyter_events modifier on every audit schema, before validation and before the
record is chained; the trail's fast path first calls :meth:`RedactionModifier.leaks` on the
event's canonical data (a substring search per live secret, in its JSON-escaped form), and only
data that holds a secret is redacted and checked again before it is sealed. Any string field
containing a value from ``app.secrets.all()`` has that value masked; code text that contained
one is flagged ``code_redacted`` so that compliance knows the stored code is not verbatim (its ``code_sha256`` is still of the original, which lets an
investigator holding the original prove it). PII values cannot enter through the schemas: the
``pii`` schema only admits entity types and integer counts, and no schema accepts output text.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["MASK", "RedactionModifier"]

MASK = "[REDACTED]"


class RedactionModifier:
    """Callable jupyter_events modifier masking every live secret value in an event."""

    def __init__(self, secrets: Callable[[], frozenset[str]]) -> None:
        self._secrets = secrets
        # (secrets, longest first): one attribute, so threads never see a mismatched pair.
        self._sorted: tuple[frozenset[str], tuple[str, ...]] = (frozenset(), ())
        # (secrets, each as it appears inside a JSON string), likewise.
        self._escaped: tuple[frozenset[str], tuple[str, ...]] = (frozenset(), ())

    def leaks(self, line: str) -> bool:
        """Whether serialized data (canonical JSON, not ASCII-escaped) holds a live secret.

        Exact for string values: a value containing a secret contains its JSON-escaped form.
        A match across JSON syntax is a false alarm that only costs a redaction pass.
        """
        values = self._secrets()
        if not values:
            return False
        seen, escaped = self._escaped
        if values is not seen:
            escaped = tuple(json.dumps(v, ensure_ascii=False)[1:-1] for v in values if v)
            self._escaped = (values, escaped)
        return any(e in line for e in escaped)

    def __call__(self, schema_id: str, data: dict[str, Any]) -> dict[str, Any]:
        values = self._secrets()
        if not values:
            return data
        seen, ordered = self._sorted
        if values is not seen:  # sorted once per change of the secrets, not per field
            ordered = tuple(sorted(values, key=len, reverse=True))
            self._sorted = (values, ordered)
        return _redact_dict(data, ordered)


def _redact_dict(data: dict[str, Any], values: tuple[str, ...]) -> dict[str, Any]:
    """A copy of ``data`` with secrets masked (the caller's objects are never changed)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, str):
            masked = _mask(value, values)
            out[key] = masked
            if key == "code" and masked != value:
                out["code_redacted"] = True
        elif isinstance(value, dict):
            out[key] = _redact_dict(value, values)
        elif isinstance(value, list):
            out[key] = [
                _redact_dict(v, values)
                if isinstance(v, dict)
                else (_mask(v, values) if isinstance(v, str) else v)
                for v in value
            ]
        else:
            out[key] = value
    return out


def _mask(text: str, values: tuple[str, ...]) -> str:
    out = text
    # Longest first (the caller's order), so that a secret containing another is masked whole.
    for secret in values:
        if secret in out:
            out = out.replace(secret, MASK)
    return out
