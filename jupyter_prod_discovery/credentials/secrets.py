"""The secret values issued to each kernel, in memory only, for exact redaction.

The broker records here every secret it puts into a kernel's environment; the output guard and
the export gates read it to redact or refuse those exact values. Nothing here is ever written to
disk, logged or returned by an endpoint. ``version`` changes on every update so that consumers can
cache compiled matchers cheaply.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

__all__ = ["MIN_SECRET_LENGTH", "SecretRegistry"]

# Shorter values (ports, "true", usernames like "app") would redact ordinary text everywhere.
MIN_SECRET_LENGTH = 6


class SecretRegistry:
    """Thread-safe map kernel id -> secret values, plus the user each kernel belongs to."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_kernel: dict[str, frozenset[str]] = {}
        self._owner: dict[str, str] = {}
        self._version = 0
        self._all: frozenset[str] = frozenset()

    @property
    def version(self) -> int:
        """Increases on every change."""
        return self._version

    def set(self, kernel_id: str, values: Iterable[str], owner: str | None = None) -> None:
        """Replace the secrets of ``kernel_id`` (on every start and restart)."""
        kept = frozenset(v for v in values if isinstance(v, str) and len(v) >= MIN_SECRET_LENGTH)
        with self._lock:
            self._by_kernel[kernel_id] = kept
            if owner is not None:
                self._owner[kernel_id] = owner
            self._refresh()

    def discard(self, kernel_id: str) -> None:
        """Forget a kernel's secrets (after revocation the values are useless anyway)."""
        with self._lock:
            self._by_kernel.pop(kernel_id, None)
            self._owner.pop(kernel_id, None)
            self._refresh()

    def get(self, kernel_id: str) -> frozenset[str]:
        """Secrets issued to one kernel (empty when none)."""
        return self._by_kernel.get(kernel_id, frozenset())

    def for_owner(self, owner: str) -> frozenset[str]:
        """Secrets issued to every kernel of one user (for the export gates)."""
        with self._lock:
            out: set[str] = set()
            for kid, vals in self._by_kernel.items():
                if self._owner.get(kid) == owner:
                    out |= vals
            return frozenset(out)

    def all(self) -> frozenset[str]:
        """Every live secret (the save guard redacts them all, whichever kernel printed them)."""
        return self._all

    def _refresh(self) -> None:
        self._all = frozenset().union(*self._by_kernel.values()) if self._by_kernel else frozenset()
        self._version += 1
