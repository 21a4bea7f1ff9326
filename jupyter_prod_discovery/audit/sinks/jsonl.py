"""The embedded default sink: an append-only JSON Lines file with size-based rotation."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from jupyter_core.paths import jupyter_data_dir
from traitlets import Bool, Float, Int, Unicode, default, observe, validate
from traitlets import TraitError as _TraitError

from .base import AuditSink, SinkUnavailable

__all__ = ["JSONLSink", "segments"]


def segments(path: str | os.PathLike[str]) -> list[str]:
    """Rotated segments (oldest first) followed by the active file, those that exist."""
    p = Path(path)
    rotated = sorted(
        str(x) for x in p.parent.glob(p.name + ".*") if x.name[len(p.name) + 1 :].isdigit()
    )
    return [*rotated, str(p)] if p.exists() else rotated


def _last_line(path: str) -> str | None:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        chunk = min(size, 1 << 16)
        while True:
            f.seek(size - chunk)
            data = f.read(chunk)
            lines = [ln for ln in data.split(b"\n") if ln.strip()]
            if len(lines) > 1 or chunk == size:
                return lines[-1].decode() if lines else None
            chunk = min(size, chunk * 4)


class JSONLSink(AuditSink):
    """One JSON record per line; rotated to ``<path>.<last seq>`` past ``max_bytes``."""

    path = Unicode(
        config=True,
        help="""File the audit records are appended to. Default
        <jupyter data dir>/prod_discovery/audit.jsonl. Rotated segments are kept beside it as
        <path>.<last seq> and never deleted by the server (archiving them is an operator
        task; verify needs every segment).""",
    )
    max_bytes = Int(
        100 * 1024 * 1024,
        config=True,
        help="""Rotate the file when it grows past this many bytes. Default 104857600 (100 MB);
        0 disables rotation.""",
    )
    fsync = Bool(
        True,
        config=True,
        help="""fsync the file (see fsync_interval), so that records survive a power loss or an
        OS crash. Default True. Independently of this, records are always written to the OS
        before a batch is acknowledged, which survives a crash or SIGKILL of the server.""",
    )
    fsync_interval = Float(
        1.0,
        config=True,
        help="""Seconds between fsyncs: 0 fsyncs every batch before it is acknowledged (a
        power loss then loses no answered request, at ~1 ms of server CPU per audited request
        on ext4); the default 1.0 fsyncs at most once a second and when idle (a power loss may
        lose the last second). Must be >= 0.""",
    )
    checkpoint_path = Unicode(
        "",
        config=True,
        help="""Second place where checkpoints (seq + head hash, MACed) are appended, so that
        truncating the log is detectable. Put it on other storage than the log (another volume
        or host mount). Default '' (this sink keeps no checkpoints; use the PostgreSQL sink or
        AuditTrail.checkpoint_path).""",
    )

    @default("path")
    def _path_default(self) -> str:
        return str(Path(jupyter_data_dir()) / "prod_discovery" / "audit.jsonl")

    @validate("max_bytes")
    def _check_max_bytes(self, proposal: Any) -> int:
        if proposal["value"] < 0:
            raise _TraitError("JSONLSink.max_bytes must be >= 0")
        return int(proposal["value"])

    @validate("fsync_interval")
    def _check_fsync_interval(self, proposal: Any) -> float:
        if proposal["value"] < 0:
            raise _TraitError("JSONLSink.fsync_interval must be >= 0")
        return float(proposal["value"])

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._mirror_traits()

    _file: IO[bytes] | None = None
    _size = 0  # bytes in the file, kept here instead of asking the OS (lseek) after each write
    _dirty = False
    _unsynced = False
    _synced_at = float("-inf")  # the first sync is always due

    @property
    def name(self) -> str:
        return "jsonl"

    def open(self) -> None:
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._set_aside_partial_line()
            # Unbuffered binary append: one write(2) per batch, no text or buffer layers.
            self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115
            self._size = os.fstat(self._file.fileno()).st_size
        except OSError as exc:
            raise SinkUnavailable(f"cannot open {self.path}: {exc.strerror}") from exc

    def _set_aside_partial_line(self) -> None:
        """A crash in the middle of a write leaves a cut last line (whose request was never
        answered). Move it to ``<path>.partial-<time>`` for forensics so that the chain resumes
        after the last complete record instead of after garbage."""
        p = Path(self.path)
        if not p.exists() or p.stat().st_size == 0:
            return
        with open(p, "rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) == b"\n":
                return
            size = f.seek(0, os.SEEK_END)
            start = max(0, size - (1 << 20))
            f.seek(start)
            data = f.read()
            cut = start + data.rfind(b"\n") + 1 if b"\n" in data else start
            f.seek(cut)
            partial = f.read()
            Path(f"{self.path}.partial-{int(time.time())}").write_bytes(partial)
            f.truncate(cut)
            f.flush()
            os.fsync(f.fileno())
        self.log.warning("audit log %s ended in a cut record: set aside", self.path)

    def write(self, lines: list[str]) -> None:
        if self._dirty:
            lines = self._unwritten(lines)
        try:
            if self._file is None:
                self.open()
            assert self._file is not None
            encoded = ("\n".join(lines) + "\n").encode()
            n = self._file.write(encoded)
            if n != len(encoded):  # a regular file may take less than asked (signals, quota)
                self._write_rest(memoryview(encoded)[n or 0 :])
            self._size += len(encoded)
            self._unsynced = True
            if not self._inline:
                self._sync()
            self._dirty = False
        except (OSError, SinkUnavailable) as exc:
            self._dirty = True
            self.close()
            raise SinkUnavailable(f"cannot write {self.path}: {exc}") from exc
        if self._max_bytes and self._size >= self._max_bytes:
            self._rotate()

    def _write_rest(self, data: memoryview) -> None:
        assert self._file is not None
        while data:
            n = self._file.write(data)
            if not n:
                raise OSError(f"no progress writing {self.path}")
            data = data[n:]

    def _sync(self) -> None:
        if self._file is not None and self._unsynced:
            os.fsync(self._file.fileno())
        self._unsynced = False
        self._synced_at = time.monotonic()

    @property
    def inline(self) -> bool:
        # write() is a buffered append plus one write(2); only fsync_interval = 0 makes it
        # fsync, which must stay off the event loop.
        return self._inline

    # Plain attributes mirroring traits read on every write (a trait read costs a microsecond).
    _inline = True
    _max_bytes = 0

    @observe("fsync", "fsync_interval", "max_bytes")
    def _mirror_traits(self, change: Any = None) -> None:
        self._inline = not (self.fsync and self.fsync_interval == 0)
        self._max_bytes = self.max_bytes

    def sync(self) -> None:
        """fsync what ``write`` deferred once ``fsync_interval`` has passed since the last one.

        Runs in the writer thread while a request may be appending inline: it fsyncs a
        duplicate of the descriptor, so a concurrent rotation (which closes the file, and
        syncs it in ``close``) cannot pull the descriptor away mid-call.
        """
        if not self.fsync or not self._unsynced:
            return
        if time.monotonic() - self._synced_at < self.fsync_interval:
            return
        try:
            fd = os.dup(self._file.fileno()) if self._file is not None else -1
        except (OSError, ValueError):  # closed by a concurrent rotation, which synced it
            return
        if fd < 0:
            return
        self._unsynced = False  # cleared first: a write racing with the fsync sets it again
        try:
            os.fsync(fd)
        except OSError as exc:
            self._unsynced = True
            raise SinkUnavailable(f"cannot fsync {self.path}: {exc.strerror}") from exc
        finally:
            os.close(fd)
        self._synced_at = time.monotonic()

    def start_new_chain(self) -> str:
        """Move the file and its rotated segments to ``<path>.chain-<UTC time>`` (segments
        ``<path>.chain-<time>.<seq>``), where ``audit verify --log`` reads them as one chain;
        the next record starts a new chain in ``path``."""
        self.close()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = f"{self.path}.chain-{stamp}"
        n = 1
        while Path(target).exists() or segments(target):
            n += 1
            target = f"{self.path}.chain-{stamp}-{n}"
        for seg in segments(self.path):
            suffix = seg[len(self.path) :]  # "" for the active file, ".<seq>" for a segment
            Path(seg).replace(target + suffix)
        self.open()
        return target

    def _unwritten(self, lines: list[str]) -> list[str]:
        """After a failed write, skip what already reached the file (replay is idempotent)."""
        last = self.tail()
        done = last["seq"] if last else 0
        return [ln for ln in lines if json.loads(ln)["seq"] > done]

    def _rotate(self) -> None:
        last = self.tail()
        self.close()
        if last is not None:
            Path(self.path).replace(f"{self.path}.{last['seq']:012d}")
        self.open()

    def read_lines(self) -> Iterator[str]:
        for seg in segments(self.path):
            with open(seg, encoding="utf-8") as f:
                yield from (ln.rstrip("\n") for ln in f if ln.strip())

    def tail(self) -> dict[str, Any] | None:
        for seg in reversed(segments(self.path)):
            line = _last_line(seg)
            if line:
                try:
                    rec: dict[str, Any] = json.loads(line)
                except ValueError:
                    return None
                return rec
        return None

    def write_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if not self.checkpoint_path:
            return
        append_checkpoint(self.checkpoint_path, checkpoint)

    def read_checkpoints(self) -> list[dict[str, Any]]:
        return read_checkpoint_file(self.checkpoint_path) if self.checkpoint_path else []

    def close(self) -> None:
        if self._file is not None and self.fsync:
            with contextlib.suppress(OSError):
                self._sync()
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None


def append_checkpoint(path: str, checkpoint: dict[str, Any]) -> None:
    """Append one checkpoint line and fsync it."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(checkpoint, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_checkpoint_file(path: str) -> list[dict[str, Any]]:
    """Checkpoints from a file (missing file: none)."""
    if not Path(path).exists():
        return []
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out
