"""Exact matching of secret values (credentials issued to a kernel), whatever the policy."""

from __future__ import annotations

import re
from collections.abc import Iterable

from .findings import SECRET, Finding

__all__ = ["SecretMatcher"]


class SecretMatcher:
    """One compiled alternation over all secret values.

    ``str.__contains__`` (C memmem) answers the common case, no secret in the text, in a few
    microseconds; the combined regex (longest value first) runs only when one is present.
    """

    def __init__(self, values: Iterable[str]) -> None:
        self.values = tuple(sorted({v for v in values if v}, key=len, reverse=True))
        self.max_length = len(self.values[0]) if self.values else 0
        self._regex = (
            re.compile("|".join(re.escape(v) for v in self.values)) if self.values else None
        )

    def __bool__(self) -> bool:
        return bool(self.values)

    def find(self, text: str) -> list[Finding]:
        """Every occurrence of a secret value in ``text``."""
        if self._regex is None or not any(v in text for v in self.values):
            return []
        return [Finding(SECRET, m.start(), m.end(), 1.0) for m in self._regex.finditer(text)]
