"""The crash state file: lease ids and token accessors on disk, revoked as orphans at next start.

Why: a SIGKILLed or OOM-killed server runs no cleanup, so its kernels' credentials would live until
their TTL ends. Each server process keeps a file (mode 0600, never a secret) listing what it holds;
the next server start against the same Vault revokes what dead processes left behind.

Why a journal: the file is appended to, one line per change (``{"add": [...]}`` or
``{"remove": [...]}``, after a first line naming the process and the Vault), instead of being
rewritten and renamed into place: creating and renaming a file costs about 0.3 ms of CPU here, a
share of every kernel start, while an append costs a few microseconds. A line is written with one
``write`` on an ``O_APPEND`` descriptor, so a crash leaves at most a cut last line, which the
reader skips. The journal is rewritten (compacted) when it holds far more lines than live leases.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .records import BrokerState, Lease

__all__ = ["STATE_PREFIX", "CrashStateFile", "process_alive", "read_state"]

STATE_PREFIX = "prod-discovery-credentials-"
_COMPACT_LINES = 256  # rewrite once the journal has this many lines more than live entries

# kernel id, kind, lease id or accessor, profile, requested TTL, renewable: enough for a trusted
# service restarted in place of a dead one to adopt and keep renewing what it left.
Entry = tuple[str, str, str, str, int, bool]


class CrashStateFile(BrokerState):
    """The broker's state file part: the journal of every change, and orphan revocation."""

    _journal_fd: int | None = None
    _journal_lines = 0
    _journaled: frozenset[Entry] = frozenset()

    @property
    def state_path(self) -> Path:
        base = self.state_dir or getattr(self.app.serverapp, "runtime_dir", "") or "."
        return Path(base) / f"{STATE_PREFIX}{os.getpid()}.jsonl"

    def _live_entries(self) -> frozenset[Entry]:
        live = {_entry(k.kernel_id, lease) for k in self._kernels.values() for lease in k.leases}
        live.update(_entry(kid, lease) for kid, lease in self._pending_revoke)
        return frozenset(e for e in live if e[2])

    def _write_state(self) -> None:
        """Append what changed since the last call (lease ids and accessors, never secrets)."""
        live = self._live_entries()
        added, removed = live - self._journaled, self._journaled - live
        if not added and not removed:
            return
        try:
            if self._journal_fd is None or self._journal_lines > len(live) + _COMPACT_LINES:
                self._rewrite_journal(live)
            else:
                lines = _changes(added, removed)
                os.write(self._journal_fd, lines)
                self._journal_lines += lines.count(b"\n")
            self._journaled = live
        except OSError as exc:
            self._close_journal()
            self.log.error("Cannot write the credential state file %s: %s", self.state_path, exc)

    def _rewrite_journal(self, live: frozenset[Entry]) -> None:
        """Start the journal afresh with the live entries (atomically: a new file renamed)."""
        path = self.state_path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        head = {"pid": os.getpid(), "vault": self.app.vault.url}
        data = json.dumps(head).encode() + b"\n" + _changes(live, frozenset())
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        try:
            os.write(fd, data)
            tmp.replace(path)
        except OSError:
            os.close(fd)
            raise
        self._close_journal()
        self._journal_fd, self._journal_lines = fd, data.count(b"\n")

    def _close_journal(self) -> None:
        fd, self._journal_fd = self._journal_fd, None
        self._journaled = frozenset()
        if fd is not None:
            os.close(fd)

    def _remove_state(self) -> None:
        """Server stop, everything revoked: the journal goes (kept if anything is left)."""
        if self._live_entries():
            return
        self._close_journal()
        self.state_path.unlink(missing_ok=True)

    async def revoke_orphans(self) -> int:
        """Revoke what dead server processes left in their state files (at server start).

        Only files naming the same Vault address are handled; a file whose process still runs
        belongs to another live server and is left alone. Returns how many were revoked.
        """
        base = self.state_path.parent
        if not base.is_dir():
            return 0
        count = 0
        for path in sorted(base.glob(f"{STATE_PREFIX}*.json*")):
            try:
                payload = read_state(path)
                pid = int(payload.get("pid", 0))
            except (OSError, ValueError):
                continue
            if pid == os.getpid() or process_alive(pid):
                continue
            if payload.get("vault") != self.app.vault.url:
                continue
            leases = [
                Lease(
                    profile="",
                    kind=str(e.get("kind")),
                    lease_id=str(e.get("id")),
                    request_id="",
                    ttl=0,
                    renewable=False,
                    expires_at=0.0,
                )
                for e in payload.get("leases", [])
                if e.get("id")
            ]
            failed = await self._revoke_in_vault(leases)
            for lease, entry in zip(leases, payload.get("leases", []), strict=False):
                if lease.lease_id not in failed:
                    count += 1
                    self._audit(
                        "orphan_revoke",
                        str(entry.get("kernel_id", "")),
                        None,
                        lease_id=lease.display_id,
                    )
            if failed:
                self.log.error(
                    "%d orphaned lease(s) in %s could not be revoked; kept for the next start",
                    len(failed),
                    path,
                )
                continue
            path.unlink(missing_ok=True)
        if count:
            self.log.warning("Revoked %d credential(s) orphaned by a crashed server", count)
        return count


def _entry(kernel_id: str, lease: Lease) -> Entry:
    return (kernel_id, lease.kind, lease.lease_id, lease.profile, lease.ttl, lease.renewable)


def _changes(added: frozenset[Entry], removed: frozenset[Entry]) -> bytes:
    """Journal lines: one ``add`` line with the added entries, one ``remove`` line with the
    removed lease ids (a line only where there is something)."""
    lines = b""
    if added:
        rows = [
            {"kernel_id": kid, "kind": kind, "id": i, "profile": p, "ttl": t, "renewable": r}
            for kid, kind, i, p, t, r in sorted(added)
        ]
        lines += json.dumps({"add": rows}).encode() + b"\n"
    if removed:
        lines += json.dumps({"remove": sorted(e[2] for e in removed)}).encode() + b"\n"
    return lines


def read_state(path: Path) -> dict[str, Any]:
    """A state file as one snapshot ``{"pid", "vault", "leases"}``: the journal replayed.

    Also reads the single-object files of earlier versions. A cut last line (a crash in the
    middle of an append) is skipped; a file without a readable first line raises ValueError.
    """
    lines = path.read_bytes().split(b"\n")
    head = json.loads(lines[0])
    if not isinstance(head, dict):
        raise ValueError(f"{path}: not a credential state file")
    leases: dict[str, dict[str, Any]] = {}
    for row in head.get("leases", []):  # an earlier version's snapshot
        leases[str(row.get("id"))] = row
    for raw in lines[1:]:
        try:
            change = json.loads(raw)
        except ValueError:
            continue
        for row in change.get("add", []) if isinstance(change, dict) else []:
            leases[str(row.get("id"))] = row
        for lease_id in change.get("remove", []) if isinstance(change, dict) else []:
            leases.pop(str(lease_id), None)
    return {"pid": head.get("pid"), "vault": head.get("vault"), "leases": list(leases.values())}


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a journal of a live process is not an orphan's)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
