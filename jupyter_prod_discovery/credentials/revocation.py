"""Revocation: taking a kernel's leases and child token back on every stop, and retrying.

Why failed revocations are kept and retried rather than dropped: a lease Vault still holds is a
live credential. Each one stays listed (and in the crash state file) until Vault confirms it is
gone, or until a later server start revokes it as an orphan.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import hvac.exceptions

from .records import BrokerState, Lease
from .transport import VaultTransport
from .vault import VaultError, translate_error

__all__ = ["LeaseRevocation"]


class LeaseRevocation(BrokerState):
    """The broker's revocation part: per kernel, all at server stop, and retries of failures."""

    async def revoke(self, kernel_id: str, reason: str = "shutdown") -> None:
        """Revoke every lease and the child token of a kernel (idempotent).

        ``reason`` is one of shutdown, restart, dead, server_stop, reissue. After anything but
        a restart the kernel's owner is forgotten too.
        """
        record = self._kernels.pop(kernel_id, None)
        if reason != "restart":
            self._owners.pop(kernel_id, None)
        self.app.secrets.discard(kernel_id)
        if record is None:
            return
        await self._revoke_leases(kernel_id, record.leases, record.user, reason=reason)

    async def _revoke_leases(
        self, kernel_id: str, leases: list[Lease], user: Any, reason: str = "failure"
    ) -> None:
        leases = [lease for lease in leases if lease.lease_id]
        if not leases:
            self._write_state()
            return
        failed = await self._revoke_in_vault(leases)
        for lease in leases:
            err = failed.get(lease.lease_id)
            if err is None:
                self._audit_lease("revoke", kernel_id, user, lease, reason=reason)
            else:
                self._pending_revoke.append((kernel_id, lease))
                self._wake()
                self._audit_lease(
                    "failure",
                    kernel_id,
                    user,
                    lease,
                    error=f"revocation failed: {err}",
                )
                self.log.error(
                    "Revoking %s of kernel %s failed: %s", lease.display_id, kernel_id, err
                )
        self._write_state()

    async def _revoke_in_vault(self, leases: Iterable[Lease]) -> dict[str, str]:
        """Revoke in Vault, all at once; return {lease id: error} for those that failed."""
        leases = list(leases)
        try:
            vault = self.app.vault.transport
        except VaultError as exc:
            return {lease.lease_id: str(exc) for lease in leases}
        outcomes = await asyncio.gather(
            *(_revoke_one(vault, lease.kind, lease.lease_id) for lease in leases),
            return_exceptions=True,
        )
        return {
            lease.lease_id: str(translate_error(outcome, self.app.vault.url))
            for lease, outcome in zip(leases, outcomes, strict=True)
            if isinstance(outcome, Exception)
        }

    async def revoke_all(self, reason: str = "server_stop") -> None:
        """Revoke every kernel's credentials (server stop); retries failed revocations once."""
        self._stopped = True
        for kernel_id in list(self._kernels):
            await self.revoke(kernel_id, reason=reason)
        await self._retry_pending()

    async def _retry_pending(self) -> None:
        if not self._pending_revoke:
            return
        pending, self._pending_revoke = self._pending_revoke, []
        failed = await self._revoke_in_vault(lease for _, lease in pending)
        for kernel_id, lease in pending:
            if lease.lease_id in failed:
                self._pending_revoke.append((kernel_id, lease))
            else:
                self._audit_lease("revoke", kernel_id, None, lease)
        self._write_state()


async def _revoke_one(vault: VaultTransport, kind: str, lease_id: str) -> None:
    try:
        if kind == "token":
            await vault.post("auth/token/revoke-accessor", {"accessor": lease_id})
        else:
            await vault.put("sys/leases/revoke", {"lease_id": lease_id})
    except hvac.exceptions.InvalidRequest as exc:
        text = " ".join(getattr(exc, "errors", None) or []).lower()
        if "invalid" in text or "not found" in text:
            return  # already gone (expired or revoked): nothing left to revoke
        raise
