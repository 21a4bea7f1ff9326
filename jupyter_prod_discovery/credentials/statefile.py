"""The crash state file: lease ids and token accessors on disk, revoked as orphans at next start.

Why: a SIGKILLed or OOM-killed server runs no cleanup, so its kernels' credentials would live until
their TTL ends. Each server process keeps a file (mode 0600, never a secret) listing what it holds;
the next server start against the same Vault revokes what dead processes left behind.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .records import BrokerState, Lease

__all__ = ["STATE_PREFIX", "CrashStateFile"]

STATE_PREFIX = "prod-discovery-credentials-"


class CrashStateFile(BrokerState):
    """The broker's state file part: writing it after every change, and orphan revocation."""

    @property
    def state_path(self) -> Path:
        base = self.state_dir or getattr(self.app.serverapp, "runtime_dir", "") or "."
        return Path(base) / f"{STATE_PREFIX}{os.getpid()}.json"

    def _write_state(self) -> None:
        """Persist lease ids and accessors (never secrets) atomically with mode 0600."""
        entries = [
            {"kernel_id": k.kernel_id, "kind": lease.kind, "id": lease.lease_id}
            for k in self._kernels.values()
            for lease in k.leases
            if lease.lease_id
        ]
        entries += [
            {"kernel_id": kid, "kind": lease.kind, "id": lease.lease_id}
            for kid, lease in self._pending_revoke
        ]
        path = self.state_path
        try:
            if not entries:
                path.unlink(missing_ok=True)
                return
            tmp = path.with_suffix(".tmp")
            payload = {"pid": os.getpid(), "vault": self.app.vault.url, "leases": entries}
            data = json.dumps(payload).encode()  # one write, not one per JSON token
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            except FileNotFoundError:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            tmp.replace(path)
        except OSError as exc:
            self.log.error("Cannot write the credential state file %s: %s", path, exc)

    async def revoke_orphans(self) -> int:
        """Revoke what dead server processes left in their state files (at server start).

        Only files naming the same Vault address are handled; a file whose process still runs
        belongs to another live server and is left alone. Returns how many were revoked.
        """
        base = self.state_path.parent
        if not base.is_dir():
            return 0
        count = 0
        for path in sorted(base.glob(f"{STATE_PREFIX}*.json")):
            try:
                payload = json.loads(path.read_text())
                pid = int(payload.get("pid", 0))
            except (OSError, ValueError):
                continue
            if pid == os.getpid() or _process_alive(pid):
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


def _process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
