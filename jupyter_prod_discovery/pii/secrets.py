"""Exact matching of secret values (credentials issued to a kernel), whatever the policy."""

from __future__ import annotations

import re
from collections.abc import Iterable

from .findings import SECRET, Finding

__all__ = ["SecretMatcher", "gate_byte"]

# Characters that can only reach a message's text through themselves in its packed JSON (no
# ``\\uXXXX`` escape, no control character), rarest in program output first: one of them,
# taken from a secret, marks any part of that secret in raw bytes (see ``gate_byte``).
_RARE_FIRST = "`~^|{}[]<>$#!?;%&*+=_QZXJKVWYqzxjkvFGHBPUCDMLTRSNOIAEwybfgpumcdlhrsnioate-:,./'\" \\"
_RANK = {c: i for i, c in enumerate(_RARE_FIRST)}


def gate_byte(secret: str) -> bytes | None:
    """One byte string whose absence from raw JSON proves no part of ``secret`` is there.

    A secret with an ASCII digit or '@' needs none (b""): the guard's raw gate already looks
    for those. Otherwise the rarest printable character of the secret, UTF-8 encoded: in packed
    JSON without ``\\u`` escapes every printable character of the text appears as itself, so
    text holding any fragment of the secret that includes this character holds the byte. None
    when the secret has no usable character (only control characters): no raw gate is
    possible then and every message must be decoded.
    """
    if any(c.isascii() and (c.isdigit() or c == "@") for c in secret):
        return b""
    usable = [c for c in secret if c.isprintable()]
    if not usable:
        return None
    return min(usable, key=lambda c: _RANK.get(c, -1 if not c.isascii() else 999)).encode()


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
        self.multiline = any("\n" in v for v in self.values)
        # Bytes whose absence from a message's raw JSON rules out every secret and every
        # fragment of one (see ``gate_byte``); None when some secret cannot be gated that way.
        gates = [gate_byte(v) for v in self.values]
        self.gate: tuple[bytes, ...] | None = (
            None if any(g is None for g in gates) else tuple({g for g in gates if g})
        )

    def __bool__(self) -> bool:
        return bool(self.values)

    def find(self, text: str) -> list[Finding]:
        """Every occurrence of a secret value in ``text``."""
        if self._regex is None or not any(v in text for v in self.values):
            return []
        return [Finding(SECRET, m.start(), m.end(), 1.0) for m in self._regex.finditer(text)]
