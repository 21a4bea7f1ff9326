"""Renewal: keeping each kernel's leases alive while it runs, and warning before they end.

Why one background pass rather than a timer per lease: a single task under the broker's lock
renews what is due, warns about what cannot be renewed any more, retries failed revocations and
revokes for kernels the kernel manager dropped without a cleanup, so none of these race each other.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .records import BrokerState, KernelCredentials, Lease
from .vault import VaultError, translate_error

__all__ = ["WARNING_CODE", "LeaseRenewal", "expiry_message", "warn_kernel"]

SERVER_SECRET_ENV = ("VAULT_TOKEN", "BAO_TOKEN", "VAULT_SECRET_ID", "VAULT_ROLE_ID")
WARNING_CODE = """\
def _prod_discovery_warn(message={message!r}):
    import sys
    print(message, file=sys.stderr, flush=True)
_prod_discovery_warn()
try:
    _ip = get_ipython()
    def _prod_discovery_pre_run(*_args, _m={message!r}, _ip=_ip):
        import sys
        print(_m, file=sys.stderr, flush=True)
        _ip.events.unregister("pre_run_cell", _prod_discovery_pre_run)
    _ip.events.register("pre_run_cell", _prod_discovery_pre_run)
except Exception:
    pass
del _prod_discovery_warn
"""


class LeaseRenewal(BrokerState):
    """The broker's renewal part: the background pass, on-demand renewal and kernel warnings."""

    async def renew_now(self, kernel_id: str) -> KernelCredentials:
        """Renew every renewable lease of a kernel at once (REST); raise VaultError on failure."""
        record = self._kernels.get(kernel_id)
        if record is None:
            raise FileNotFoundError(f"kernel {kernel_id} holds no credentials")
        errors = await self._renew_leases(record, [ls for ls in record.leases if ls.renewable])
        if errors:
            raise VaultError("; ".join(errors))
        return record

    async def _renew_leases(self, record: KernelCredentials, leases: list[Lease]) -> list[str]:
        if not leases:
            return []
        results = await self._renew_in_vault(leases)
        errors: list[str] = []
        for lease, (duration, request_id, err) in zip(leases, results, strict=True):
            if err is not None:
                errors.append(f"{lease.profile}: {err}")
                if not lease.failing:
                    lease.failing = True
                    self._audit_lease(
                        "failure",
                        record.kernel_id,
                        record.user,
                        lease,
                        error=f"renewal failed: {err}",
                    )
                continue
            lease.failing = False
            now = time.time()
            if duration < lease.ttl * 0.9 or (
                lease.max_expires_at and now + lease.ttl >= lease.max_expires_at
            ):
                lease.capped = True
            lease.expires_at = now + duration
            self._audit_lease(
                "renew",
                record.kernel_id,
                record.user,
                lease,
                request_id=request_id,
                ttl=duration,
            )
        return errors

    async def _renew_in_vault(self, leases: list[Lease]) -> list[tuple[int, str, str | None]]:
        """Renew in Vault, all at once: (new duration, request id, error or None) per lease."""
        try:
            vault = self.app.vault.transport
        except VaultError as exc:
            return [(0, "", str(exc)) for _ in leases]

        async def renew(lease: Lease) -> tuple[int, str, str | None]:
            try:
                if lease.kind == "token":
                    token_body = {"accessor": lease.lease_id, "increment": f"{lease.ttl}s"}
                    response = await vault.post("auth/token/renew-accessor", token_body) or {}
                    duration = int(response["auth"]["lease_duration"])
                else:
                    lease_body = {"lease_id": lease.lease_id, "increment": lease.ttl}
                    response = await vault.put("sys/leases/renew", lease_body) or {}
                    duration = int(response["lease_duration"])
                return duration, response.get("request_id") or "", None
            except Exception as exc:
                return 0, "", str(translate_error(exc, self.app.vault.url))

        return list(await asyncio.gather(*map(renew, leases)))

    async def _tick(self) -> None:
        now = time.time()
        for record in list(self._kernels.values()):
            due = [
                lease
                for lease in record.leases
                if lease.renewable
                and not lease.capped
                and lease.expires_at
                and lease.expires_at - now <= lease.ttl * self.renew_fraction
            ]
            if due:
                await self._renew_leases(record, due)
            now = time.time()
            expiring = [
                lease
                for lease in record.leases
                if lease.expires_at
                and not lease.warned
                and (lease.capped or lease.failing or not lease.renewable)
                and lease.expires_at - now <= self.warn_before
            ]
            if expiring and record.kernel_id in self._kernels:
                await self._warn_expiring(record, expiring)
        await self._retry_pending()
        await self._reap_dead_kernels()

    async def _warn_expiring(self, record: KernelCredentials, leases: list[Lease]) -> None:
        now = time.time()
        names = ", ".join(sorted({lease.profile for lease in leases}))
        left = max(0, round(min(lease.expires_at for lease in leases) - now))
        message = expiry_message(names, left)
        for lease in leases:
            lease.warned = True
            self._audit_lease(
                "expiring",
                record.kernel_id,
                record.user,
                lease,
                ttl=max(0, round(lease.expires_at - now)),
            )
        await self.notify_kernel(record.kernel_id, message)

    async def notify_kernel(self, kernel_id: str, message: str) -> bool:
        """Print ``message`` to the kernel's stderr now and at the start of the next cell.

        A silent execute from a server-side client: its own output reaches no notebook (the
        frontend ignores output of other clients' requests), so the code also registers a
        one-shot ``pre_run_cell`` hook that prints during the user's next execution, where the
        notebook does show it. Non-IPython kernels only get the immediate print.
        """
        km = getattr(self.app.serverapp, "kernel_manager", None)
        return await warn_kernel(km, kernel_id, message, self.log)

    async def _reap_dead_kernels(self) -> None:
        """Revoke for kernels the kernel manager dropped without a cleanup (safety net)."""
        km = getattr(self.app.serverapp, "kernel_manager", None)
        if km is None:
            return
        now = time.time()
        pending = getattr(km, "_pending_kernels", {})
        for kernel_id, record in list(self._kernels.items()):
            if kernel_id in km or kernel_id in pending or now - record.issued_at < 10:
                continue
            self.log.warning(
                "Kernel %s is gone without cleanup: revoking its credentials", kernel_id
            )
            await self.revoke(kernel_id, reason="dead")

    def _wake(self) -> None:
        """Give the background pass work (a kernel holds credentials, a revocation waits):
        run it, unless it runs already or the broker was not started or is stopping."""
        if not self._running or self._stopped:
            return
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        """Renew, warn, retry and reap every ``check_interval`` while there is anything to;
        then end (:meth:`_wake` runs it again).

        Why it ends instead of sleeping on: an idle server then holds neither a task nor a timer
        of ours. A sleeping timer sits at the top of the event loop's heap, under which every
        request's cancelled timeouts pile up (asyncio drops cancelled timers only from the top),
        and each new timeout is then sorted into the heap by Python comparisons; and anyio walks
        every live task at each hand-off to a worker thread. On 6 December 2026 the two cost an
        idle server ~400 bytecodes per contents request (``python -m benchmarks.opcodes``).
        """
        while self._kernels or self._pending_revoke:
            await asyncio.sleep(self.check_interval)
            try:
                async with self._lock:
                    await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.exception("Credential renewal pass failed")

    def start(self) -> None:
        """Start renewing (idempotent): the pass runs whenever the broker holds anything."""
        self._running = True
        if self._kernels or self._pending_revoke:
            self._wake()


def expiry_message(profiles: str, seconds_left: int) -> str:
    """What a notebook is told when credentials are about to expire for good."""
    return (
        f"[Prod Discovery] The credentials of profile(s) {profiles} expire in {seconds_left} s "
        "and cannot be renewed. Save your work; restart the kernel to get new credentials."
    )


async def warn_kernel(km: Any, kernel_id: str, message: str, log: Any) -> bool:
    """Print ``message`` in kernel ``kernel_id`` of kernel manager ``km`` now, and again at the
    start of its next cell (see :meth:`LeaseRenewal.notify_kernel`); False when it could not."""
    if km is None or kernel_id not in km:
        return False
    client = km.get_kernel(kernel_id).client()
    try:
        client.start_channels()
        msg_id = client.execute(
            WARNING_CODE.format(message=message), silent=True, store_history=False
        )
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            reply = await client.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
            if reply.get("parent_header", {}).get("msg_id") == msg_id:
                return bool(reply.get("content", {}).get("status") == "ok")
    except Exception as exc:
        log.warning("Could not warn kernel %s about expiring credentials: %s", kernel_id, exc)
    finally:
        client.stop_channels()
    return False
