"""What a save wrote, digested while it is written instead of read back from the file.

Why: the record of a save names the size and sha256 of what was written. Reading the file back
once the save returned cost ~30 us of a small-notebook save on the event loop (open, fstat,
read, close and the hash, all cold: py-spy of ``benchmarks.paired --op put``, 6 December 2026),
about a sixth of what the audit and guard add to that save. The bytes pass through the contents
manager's ``atomic_writing`` (its public context manager, which every notebook and file save of
jupyter_server's file managers writes through) anyway, so the digest is taken there, on whichever
thread writes them (jupyter_server writes a notebook on a worker thread).

Exact or nothing: a digest is kept only when every byte reached the file through the proxy's
``write`` (any other attribute of the file looked up, such as ``writelines``, ``buffer``,
``fileno`` or ``seek``, marks it unknown), the text encoding writes no byte-order mark, and text
is not translated on its way (``newline`` left as the platform's ``\\n``). Otherwise the caller
falls back to hashing the file (``recording.hash_file``). The digest is of the bytes the save
wrote; ``atomic_writing`` replaces the file with exactly those bytes when its block succeeds, and
the digest is not stored when it fails.
"""

from __future__ import annotations

import codecs
import contextlib
import contextvars
import hashlib
import io
import os
from collections.abc import Iterator
from typing import Any

__all__ = ["DigestingFile", "begin", "end", "note_read", "read_size", "watch_writes", "written"]

#: Per audited write operation: OS path -> (size, sha256) of what was written there, or None
#: when something was written there that the proxy could not follow exactly.
_SINK: contextvars.ContextVar[dict[str, tuple[int, str] | None] | None] = contextvars.ContextVar(
    "prod_discovery_written", default=None
)

#: Encodings whose bytes are exactly ``str.encode``'s, without a byte-order mark or state.
_PLAIN_ENCODINGS = frozenset({"utf-8", "ascii", "latin-1", "iso8859-1"})

#: Attributes of the file a writer may read without writing around ``write``.
_HARMLESS = frozenset(
    {"name", "mode", "closed", "encoding", "errors", "flush", "readable", "writable", "isatty"}
)


class DigestingFile:
    """A file object's proxy that hashes what goes through ``write`` (text encoded as the file
    encodes it), and notes any other use of the file that could change its bytes."""

    __slots__ = ("_encoding", "_errors", "_f", "_hash", "_size", "exact")

    def __init__(self, f: Any, newline: str | None = None) -> None:
        self._f = f
        self._hash = hashlib.sha256()
        self._size = 0
        self.exact = True
        self._encoding: str | None = None
        self._errors = "strict"
        if isinstance(f, io.TextIOBase):
            enc = getattr(f, "encoding", None)
            try:
                name = codecs.lookup(enc).name if isinstance(enc, str) else ""
            except LookupError:
                name = ""
            translated = newline not in ("", "\n") and not (newline is None and os.linesep == "\n")
            if name not in _PLAIN_ENCODINGS or translated:
                self.exact = False
            self._encoding = name or "utf-8"
            self._errors = getattr(f, "errors", None) or "strict"

    def write(self, data: Any) -> Any:
        """Write through, then hash what the file took."""
        n = self._f.write(data)
        if self.exact:
            try:
                if self._encoding is not None:
                    chunk: Any = data.encode(self._encoding, self._errors)
                else:
                    chunk = memoryview(data).cast("B")
                    if isinstance(n, int) and n < len(chunk):  # an unbuffered partial write
                        chunk = chunk[:n]
                    elif n is None:  # non-blocking and nothing written
                        chunk = b""
            except Exception:
                self.exact = False
                return n
            self._hash.update(chunk)
            self._size += len(chunk)
        return n

    def __getattr__(self, name: str) -> Any:
        if name not in _HARMLESS:
            self.exact = False
        return getattr(self._f, name)

    def __enter__(self) -> DigestingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()

    def result(self) -> tuple[int, str] | None:
        """(size, sha256) of what was written, None when it cannot be known exactly."""
        return (self._size, self._hash.hexdigest()) if self.exact else None


def begin() -> dict[str, tuple[int, str] | None]:
    """Collect the digests of what the current operation writes (on this context)."""
    sink: dict[str, tuple[int, str] | None] = {}
    _SINK.set(sink)
    return sink


def end() -> None:
    """Stop collecting (set back rather than reset: see ``recording``'s wrapper)."""
    _SINK.set(None)


def written(sink: dict[str, tuple[int, str] | None], os_path: str | None) -> tuple[int, str] | None:
    """The digest of what was written at ``os_path``, None when it is not known exactly."""
    return None if os_path is None else sink.get(os_path)


def watch_writes(cm: Any) -> bool:
    """Wrap ``cm.atomic_writing`` (on the instance) to digest what goes through it while an
    operation collects (:func:`begin`); False when the manager has no ``atomic_writing``."""
    original = getattr(cm, "atomic_writing", None)
    if original is None:
        return False

    @contextlib.contextmanager
    def atomic_writing(os_path: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        sink = _SINK.get()
        if sink is None:
            with original(os_path, *args, **kwargs) as f:
                yield f
            return
        key = str(os_path)
        sink[key] = None  # written, not (yet) known: a failed block leaves it unknown
        with original(os_path, *args, **kwargs) as f:
            proxy = DigestingFile(f, kwargs.get("newline"))
            yield proxy
        sink[key] = proxy.result()

    cm.atomic_writing = atomic_writing
    return True


#: The sink's entry for the bytes a hashed read hashed: (their length, "").
_READ = "\0read"


def note_read(size: int) -> None:
    """The manager hashed ``size`` bytes it read for the current operation (see
    ``_compat.tap_hashed_bytes``)."""
    sink = _SINK.get()
    if sink is not None:
        sink[_READ] = (size, "")


def read_size(sink: dict[str, tuple[int, str] | None]) -> int | None:
    """The length of what the current read hashed, None when the manager did not say."""
    entry = sink.get(_READ)
    return None if entry is None else entry[0]
