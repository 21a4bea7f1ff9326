"""A bounded memo of the save guard's text scans, so a save of unchanged outputs is cheap.

JupyterLab saves the whole notebook on every save and autosave, and almost every output is the
same as at the previous save. The scan of one text (``PIIGuard.text``: findings as sent and as
displayed, the policy's verdict, the redacted text) and the policy's verdict on one place
(``PIIPolicy.scan`` with the live secrets) are pure functions of the text, how it is displayed,
the policy and the live secrets. Their results are kept, keyed by the text itself (Python's
string hash and equality: the exact content, no digest that could collide) and its display
kind, for one *generation*: the policy object and its config values, the guard's config
values, a counter the guard bumps on every trait change of either, the guard's scanner, the
secret registry and its version. A new generation empties the cache.

Only the text scans are remembered. What a save does with them (which output is rewritten, the
counts per value, the audit records with this save's cell and output numbers) is computed
afresh by the same walk as without the cache, so a hit gives exactly what a scan would.

A save takes a :class:`Memo` (:meth:`ScanCache.begin`), looks texts up through it and keeps its
own new results aside; they enter the cache only at :meth:`Memo.commit`, after the whole save
was scanned without an error and only if the generation did not change meanwhile (a secret
issued during the scan may have been missed by texts scanned before it). The cache is bounded
by ``limit`` characters (each entry charged its text, its redacted text and a fixed
``ENTRY_CHARGE``), the least recently used entries evicted first; one lock guards it, as saves
run on worker threads, possibly several at once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from traitlets import Container, Dict

from ..pii import Finding, Verdict

if TYPE_CHECKING:
    from .live import PIIGuard

__all__ = ["ENTRY_CHARGE", "Memo", "ScanCache", "generation"]

#: Characters charged per entry on top of its texts (the key, tuples and dict slot it costs).
ENTRY_CHARGE = 64
# The key "kind" of a place's verdict (``Memo.scan``): never a display kind of ``normalize``.
_PLACE = "\0place"

#: (action, findings kept, counts per entity, redacted text or None when it is the text itself)
_Entry = tuple[str, tuple[Finding, ...], dict[str, int], str | None]
_Key = tuple[str, str]


def generation(guard: PIIGuard) -> tuple[Any, ...]:
    """Everything a cached scan depends on besides the text and its kind.

    Objects compare by identity (the cache holds them, so an id is never reused). A trait set
    anew bumps ``guard.config_version``; a dict, list or set trait changed in place sends no
    event, so those values are compared by their items (:func:`_snapshot`). Only those: the
    ``repr`` of every config value cost ~42 us per call, more than a small save's whole scan,
    and the ``repr`` of the containers alone ~8 us of the ~10 us this took (against ~3 us for
    their items, measured with ``timeit`` on the default policy).
    """
    policy = guard.policy
    secrets = guard.secrets
    return (
        guard.config_version,
        policy,
        _containers(policy),
        _containers(guard),
        guard.scanner,
        secrets,
        -1 if secrets is None else secrets.version,
    )


def _containers(obj: Any) -> tuple[Any, ...]:
    names = _CONTAINER_TRAITS.get(type(obj))
    if names is None:
        names = _CONTAINER_TRAITS[type(obj)] = tuple(
            sorted(
                name
                for name, trait in obj.traits(config=True).items()
                if isinstance(trait, Container | Dict)
            )
        )
    return tuple(_snapshot(getattr(obj, name)) for name in names)


def _snapshot(value: Any) -> Any:
    """A container's items, equal to another snapshot exactly when the items are: the items of
    these traits are strings and numbers (the traits validate them so), which cannot change in
    place themselves. Anything else is compared by its ``repr``."""
    if isinstance(value, dict):
        return tuple(value.items())
    if isinstance(value, list | tuple):
        return tuple(value)
    if isinstance(value, set | frozenset):
        return frozenset(value)
    return repr(value)


#: Config traits whose values can change in place (dicts, lists, sets, tuples), per class.
_CONTAINER_TRAITS: dict[type, tuple[str, ...]] = {}


def _size(key: _Key, entry: _Entry) -> int:
    return len(key[1]) + (len(entry[3]) if entry[3] is not None else 0) + ENTRY_CHARGE


class ScanCache:
    """Text scans of earlier saves, bounded by ``limit`` characters (0: off)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._gen: tuple[Any, ...] | None = None
        self._entries: OrderedDict[_Key, _Entry] = OrderedDict()
        self._chars = 0

    @property
    def chars(self) -> int:
        """Characters charged for the entries held now."""
        return self._chars

    def __len__(self) -> int:
        return len(self._entries)

    def resize(self, limit: int) -> None:
        with self._lock:
            self.limit = limit
            self._evict()

    def begin(self, guard: PIIGuard) -> Memo | None:
        """The memo for one save, or None when the cache is off."""
        if self.limit <= 0:
            return None
        gen = generation(guard)
        with self._lock:
            if gen != self._gen:
                self._entries.clear()
                self._chars = 0
                self._gen = gen
            else:
                gen = self._gen  # compared by identity from here on
        return Memo(self, guard, gen)

    def _get(self, gen: tuple[Any, ...], key: _Key) -> _Entry | None:
        with self._lock:
            if self._gen is not gen:
                return None
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def _commit(self, gen: tuple[Any, ...], pending: dict[_Key, _Entry]) -> None:
        with self._lock:
            if self._gen is not gen:
                return  # another save began in a newer generation
            for key, entry in pending.items():
                size = _size(key, entry)
                if key in self._entries or size > self.limit:
                    continue
                self._entries[key] = entry
                self._chars += size
            self._evict()

    def _evict(self) -> None:
        while self._chars > self.limit and self._entries:
            key, entry = self._entries.popitem(last=False)
            self._chars -= _size(key, entry)


class Memo:
    """One save's view of the cache: hits from it, misses scanned and kept until ``commit``.

    Used by one thread (the save's); texts are scanned as for no kernel (every live secret).
    """

    __slots__ = ("_cache", "_gen", "_guard", "_pending", "_pending_chars")

    def __init__(self, cache: ScanCache, guard: PIIGuard, gen: tuple[Any, ...]) -> None:
        self._cache = cache
        self._guard = guard
        self._gen = gen
        self._pending: dict[_Key, _Entry] = {}
        self._pending_chars = 0

    def text(self, text: str, kind: str) -> tuple[Verdict, str]:
        """``guard.text(text, None, kind)``, from the cache when this text was scanned."""
        key = (kind, text)
        entry = self._lookup(key)
        if entry is None:
            verdict, out = self._guard.text(text, None, kind=kind)
            self._keep(key, _entry(verdict, None if out is text else out))
            return verdict, out
        return _verdict(entry), text if entry[3] is None else entry[3]

    def scan(self, text: str, judge: Callable[[str], Verdict]) -> Verdict:
        """``judge(text)``, a place's verdict (``outputs.apply_to_notebook`` passes how it
        judges one), from the cache when this text was judged."""
        key = (_PLACE, text)
        entry = self._lookup(key)
        if entry is None:
            verdict = judge(text)
            self._keep(key, _entry(verdict, None))
            return verdict
        return _verdict(entry)

    def commit(self) -> None:
        """Keep this save's new scans, unless the generation changed while it was scanned."""
        if self._pending and generation(self._guard) == self._gen:
            self._cache._commit(self._gen, self._pending)
        self._pending = {}

    def _lookup(self, key: _Key) -> _Entry | None:
        entry = self._pending.get(key)
        return entry if entry is not None else self._cache._get(self._gen, key)

    def _keep(self, key: _Key, entry: _Entry) -> None:
        size = _size(key, entry)
        if self._pending_chars + size <= self._cache.limit:
            self._pending[key] = entry
            self._pending_chars += size


def _entry(verdict: Verdict, out: str | None) -> _Entry:
    return verdict.action, tuple(verdict.findings), dict(verdict.entities), out


def _verdict(entry: _Entry) -> Verdict:
    """A fresh verdict equal to the cached one (callers may merge into it)."""
    return Verdict.known(entry[0], list(entry[1]), dict(entry[2]))
