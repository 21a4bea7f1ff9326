"""Secrets: exact values issued to a kernel (always redacted), and credential-shaped strings.

``find_credentials`` follows detect-secrets' plugins (AWS, GitHub, GitLab, Slack, Stripe,
Google, OpenAI keys, private-key armour, JWTs, passwords in URLs, and high-entropy values after a
``password=``/``token:``-like keyword) but works on any text, in one pass per family, so the
live guard, the save guard, ``scan`` and the export gate can all use it. Its entity type is
``CREDENTIAL``; like ``SECRET`` it is never less than redacted.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable

from .findings import CREDENTIAL, SECRET, Finding

__all__ = ["KEYWORD_MARKERS", "TOKEN_MARKERS", "SecretMatcher", "find_credentials", "gate_byte"]

_TOKENS = re.compile(
    r"""
    \b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b
  | \b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36}\b | \bgithub_pat_[A-Za-z0-9_]{40,255}
  | \bglpat-[A-Za-z0-9_-]{20}\b
  | \bxox[abposr]-[0-9A-Za-z-]{10,}
  | \b(?:sk|rk)_live_[0-9a-zA-Z]{24,}
  | \bAIza[0-9A-Za-z_-]{35}
  | \bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{32,}
  | \beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}
  | -----BEGIN[A-Z ]{0,20}PRIVATE[ ]KEY(?:[ ]BLOCK)?-----(?:[\s\S]{0,8000}?-----END[A-Z ]{0,20}
        PRIVATE[ ]KEY(?:[ ]BLOCK)?-----)?
  | (?<=://)[^:/\s@]{1,64}:[^@/\s]{3,128}(?=@)
    """,
    re.VERBOSE,
)
_KEYWORD = re.compile(
    r"""(?i)(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|
    client[_-]?secret|auth[_-]?key|credential)[\w-]{0,20}["']?\s*(?:=|:|=>)\s*
    (?:["']([^"'\s]{8,200})["']|([^\s"',;(){}\[\]<>]{8,200})(?![(\[.\w]))""",
    re.VERBOSE,
)
_PLACEHOLDER = re.compile(
    r"(?i)^(?:\*+|x+|\.+|<[^>]*>|\$\{?\w+\}?|%\(?\w+\)?s?|none|null|"
    r"true|false|redacted|changeme|password|secret|example\w*)$"
)


def _entropy(value: str) -> float:
    counts = Counter(value)
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


# Literal markers, one of which every token format holds: the token regex runs only when one
# is present (``in`` tests at memchr speed; the regex itself costs ~0.5 s per MB).
TOKEN_MARKERS = (
    "AKIA", "ASIA", "ABIA", "ACCA", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_",
    "glpat-", "xox", "_live_", "AIza", "sk-", "eyJ", "PRIVATE KEY", "://",
)  # fmt: skip
KEYWORD_MARKERS = ("pass", "pwd", "secret", "token", "key", "credential", "auth")


# One search over the lower-cased text says whether any marker is there at all (a log of a MB
# has none: one pass instead of two dozen ``in`` scans).
_ANY_MARKER = re.compile("|".join(re.escape(m.lower()) for m in (*TOKEN_MARKERS, *KEYWORD_MARKERS)))
_ANY_TOKEN = re.compile("|".join(re.escape(m.lower()) for m in TOKEN_MARKERS))


def find_credentials(text: str) -> list[Finding]:
    """Credential-shaped strings: provider key formats, armoured keys, JWTs, keyword values."""
    low = text.lower()
    if _ANY_MARKER.search(low) is None:
        return []
    out: list[Finding] = []
    if _ANY_TOKEN.search(low) is not None:
        out.extend(Finding(CREDENTIAL, m.start(), m.end(), 1.0) for m in _TOKENS.finditer(text))
    if not any(m in low for m in KEYWORD_MARKERS):
        return out
    for m in _KEYWORD.finditer(text):
        g = 1 if m.group(1) is not None else 2
        value = m.group(g)
        if _PLACEHOLDER.match(value) or _entropy(value) < 2.8:
            continue
        out.append(Finding(CREDENTIAL, m.start(g), m.end(g), 0.8))
    return out


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
