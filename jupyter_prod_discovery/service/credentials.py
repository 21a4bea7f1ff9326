"""Kernel credentials issued by the service: the broker runs here, with the only Vault token.

Why the existing :class:`~..credentials.broker.CredentialBroker` and not a second one: issuing,
renewal, revocation and the crash journal are the same work wherever they run; what changes is
who holds the Vault token and who is trusted to say who asks. Here the principal comes from
:mod:`.identity`, profiles are enforced against it, and every kernel is keyed by
``<user>/<server id>/<kernel id>``, so that one user's server can neither see nor revoke
another's kernels whatever ids it learns from the trail.

Dead servers. Each server sends a heartbeat (``POST /api/heartbeat``); a server silent for
``server_timeout`` seconds is presumed dead (SIGKILL, OOM, node lost) and the service revokes its
kernels' credentials itself: orphan cleanup no longer waits for that user's server to start
again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass, replace
from typing import Any

from traitlets import Float, Unicode
from traitlets.config import LoggingConfigurable

from ..audit.trail import user_info
from ..credentials.broker import CredentialBroker
from ..credentials.profiles import Profile
from ..credentials.records import AccessDenied, KernelCredentials, Lease
from ..credentials.secrets import SecretRegistry
from ..credentials.statefile import STATE_PREFIX, process_alive, read_state
from ..credentials.vault import VaultClient
from .ledger import AuditLedger, Principal
from .vault_policy import KERNEL_POLICY

__all__ = ["CredentialDesk", "Requester", "kernel_key"]


@dataclass(frozen=True)
class Requester:
    """The user a kernel is issued for, in the shape the broker's selectors read."""

    username: str
    groups: list[str]


def kernel_key(principal: Principal, server_id: str, kernel_id: str) -> str:
    """The service-wide id of one server's kernel: a principal can only ever name its own."""
    return f"{principal.username}/{server_id}/{kernel_id}"


class _LedgerAudit:
    """The broker's ``app.audit``: its credential events go into the service's own chain."""

    def __init__(self, ledger: AuditLedger) -> None:
        self._ledger = ledger

    def record(self, kind: str, data: dict[str, Any], *, user: Any = None) -> int:
        payload = {k: v for k, v in data.items() if v is not None}
        payload["server_id"] = "prod-discovery-service"
        payload["user"] = (
            user_info(user)
            if not isinstance(user, Requester)
            else {"username": user.username, "groups": list(user.groups)}
        )
        self._ledger.record_local(kind, payload)
        return 0


class _Host:
    """What the broker reaches through ``self.app``: Vault, the audit, the secret registry."""

    def __init__(self, vault: VaultClient, ledger: AuditLedger) -> None:
        self.vault = vault
        self.vault_error: str | None = None
        self.audit = _LedgerAudit(ledger)
        self.secrets = SecretRegistry()
        self.serverapp = None


class CredentialDesk(LoggingConfigurable):
    """Issues, lists, renews and revokes kernels' credentials for authenticated servers."""

    server_timeout = Float(
        60.0,
        config=True,
        help="""Seconds without a heartbeat after which a server is presumed dead and the
        service revokes its kernels' credentials. Servers beat every ServiceClient.
        heartbeat_interval (default 10). Default 60.""",
    )

    kernel_token_policy = Unicode(
        KERNEL_POLICY,
        config=True,
        help="""Policy every kernel child token gets instead of Vault's 'default' policy (which
        lets a token look up and renew any lease whose id it knows). Default
        'prod-discovery-kernel' (lookup, renew and revoke itself; `hub setup-service` writes it,
        and the service's own token must hold it). '' keeps the profiles as configured.""",
    )

    def __init__(self, vault: VaultClient, ledger: AuditLedger, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.host = _Host(vault, ledger)
        self.broker = CredentialBroker(parent=self, app=self.host)  # type: ignore[arg-type]
        self.broker.observe(self._harden_profiles, "profiles")
        self._harden_profiles()
        self._seen: dict[tuple[str, str], float] = {}
        self._reaper: asyncio.Task[None] | None = None

    def _harden_profiles(self, change: Any = None) -> None:
        """Child tokens for kernels never carry Vault's ``default`` policy (it lets a token look
        up and renew any lease whose id it knows), only their profile's policies and
        ``kernel_token_policy`` (manage itself)."""
        if not self.kernel_token_policy:
            return
        kernel_policy = self.kernel_token_policy

        def harden(profile: Profile) -> Profile:
            if profile.type != "token":
                return profile
            policies = tuple(dict.fromkeys((*profile.policies, kernel_policy)))
            return replace(profile, no_default_policy=True, policies=policies)

        self.broker.transform_profiles(harden)

    @property
    def active(self) -> bool:
        return self.broker.active

    async def start(self) -> None:
        if self.broker.active:
            self.adopt()
            await self.broker.revoke_orphans()  # what could not be adopted
            self.broker.start()
        self._reaper = asyncio.create_task(self._reap_loop())

    def adopt(self) -> int:
        """Take over the leases a previous service process left in its journal.

        Why adopt rather than revoke: a restart of the service (an upgrade, a crash) must not
        cut every running kernel off its data. The previous process's journal (same Vault, its
        process gone) lists each lease with its kernel key, profile, TTL and renewability;
        they are renewed at the next renewal pass (which also finds any that expired meanwhile)
        and their servers are given ``server_timeout`` to beat again before the reaper revokes
        them. Returns how many leases were adopted.
        """
        base = self.broker.state_path.parent
        if not base.is_dir():
            return 0
        adopted = 0
        now = time.time()
        for path in sorted(base.glob(f"{STATE_PREFIX}*.jsonl")):
            try:
                payload = read_state(path)
                pid = int(payload.get("pid") or 0)
            except (OSError, ValueError):
                continue
            if (
                pid == os.getpid()
                or process_alive(pid)
                or payload.get("vault") != self.host.vault.url
            ):
                continue
            rows = payload.get("leases", [])
            if not all(str(r.get("kernel_id", "")).count("/") >= 2 and r.get("id") for r in rows):
                continue  # not a journal of this service: left whole to revoke_orphans
            for row in rows:
                key = str(row["kernel_id"])
                user, server_id, _ = key.split("/", 2)
                lease = Lease(
                    profile=str(row.get("profile") or ""),
                    kind=str(row.get("kind")),
                    lease_id=str(row["id"]),
                    request_id="",
                    ttl=int(row.get("ttl") or 0),
                    renewable=bool(row.get("renewable", True)),
                    expires_at=now,  # unknown: renewed at the next pass
                )
                self.broker.adopt(key, user, lease)  # journaled as ours
                self._seen[(user, server_id)] = time.monotonic()
                adopted += 1
            path.unlink(missing_ok=True)  # every lease in it is in our journal now
        if adopted:
            self.log.warning("Adopted %d lease(s) of a previous service process", adopted)
        return adopted

    async def stop(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        await self.broker.stop()

    # -- requests of one principal -------------------------------------------------------------

    def beat(self, principal: Principal, server_id: str) -> list[dict[str, Any]]:
        """A server is alive; returns its kernels' public records (TTLs for its panel)."""
        self._seen[(principal.username, server_id)] = time.monotonic()
        return [self._public(k, principal, server_id) for k in self._of(principal, server_id)]

    async def issue(
        self, principal: Principal, server_id: str, kernel_id: str, kernel_name: str
    ) -> tuple[dict[str, str], list[str], dict[str, Any]]:
        """Env to inject, the secret values in it, the public record."""
        self._seen[(principal.username, server_id)] = time.monotonic()
        key = kernel_key(principal, server_id, kernel_id)
        env = await self.broker.issue(
            key, kernel_name, Requester(principal.username, list(principal.groups))
        )
        record = self.broker.get(key)
        secrets = sorted(self.host.secrets.get(key))
        public = (
            self._public(record, principal, server_id)
            if record
            else {
                "kernel_id": kernel_id,
                "kernel_name": kernel_name,
                "owner": principal.username,
                "profiles": [],
                "leases": [],
            }
        )
        return env, secrets, public

    async def revoke(
        self, principal: Principal, server_id: str, kernel_id: str, reason: str
    ) -> bool:
        key = kernel_key(principal, server_id, kernel_id)
        known = self.broker.get(key) is not None
        await self.broker.revoke(key, reason=reason)
        return known

    async def renew(self, principal: Principal, server_id: str, kernel_id: str) -> dict[str, Any]:
        key = kernel_key(principal, server_id, kernel_id)
        if self.broker.get(key) is None:
            raise FileNotFoundError(f"kernel {kernel_id} holds no credentials of yours")
        return self._public(await self.broker.renew_now(key), principal, server_id)

    # -- a promoted job's clean run ---------------------------------------------------------------

    def check_declared(self, principal: Principal, kernel_name: str, names: list[str]) -> None:
        """Raise unless every declared profile exists and applies to ``principal``: a job can
        declare only roles its author holds (AccessDenied: 403, ValueError: 400)."""
        known = {p.name: p for p in self.broker.profile_objects}
        for name in names:
            profile = known.get(name)
            if profile is None:
                raise ValueError(f"unknown credential profile {name!r}")
            if not profile.applies_to(kernel_name, principal.username, principal.groups):
                raise AccessDenied(
                    f"credential profile {name!r} does not apply to {principal.username!r}"
                )

    def profile_type(self, name: str) -> str:
        return next((p.type for p in self.broker.profile_objects if p.name == name), "")

    async def issue_run(
        self, principal: Principal, run_id: str, kernel_name: str, names: list[str]
    ) -> tuple[str, dict[str, str]]:
        """Credentials of the declared profiles only, for one clean run: (kernel key, env).

        The key's server part (``export-run``) never beats, so the dead-server reaper leaves it
        alone; :meth:`revoke_run` ends it, and the journal holds it until then (a crash of the
        service revokes it at the next start like any orphan).
        """
        self.check_declared(principal, kernel_name, names)
        key = kernel_key(principal, "export-run", run_id)
        if not names:
            return key, {}
        env = await self.broker.issue(
            key, kernel_name, Requester(principal.username, list(principal.groups)), only=names
        )
        return key, env

    async def revoke_run(self, key: str) -> None:
        await self.broker.revoke(key, reason="shutdown")

    def _of(self, principal: Principal, server_id: str) -> list[KernelCredentials]:
        prefix = f"{principal.username}/{server_id}/"
        return [k for k in self.broker.kernels() if k.kernel_id.startswith(prefix)]

    @staticmethod
    def _public(record: KernelCredentials, principal: Principal, server_id: str) -> dict[str, Any]:
        public = record.to_public()
        public["kernel_id"] = record.kernel_id.split("/", 2)[2]
        return public

    # -- dead servers --------------------------------------------------------------------------

    async def _reap_loop(self) -> None:
        while True:
            await asyncio.sleep(min(5.0, self.server_timeout / 4))
            try:
                await self.reap()
            except Exception:
                self.log.exception("Revoking the credentials of dead servers failed")

    async def reap(self) -> int:
        """Revoke every kernel of servers silent for longer than ``server_timeout``."""
        now = time.monotonic()
        dead = {k for k, seen in self._seen.items() if now - seen > self.server_timeout}
        revoked = 0
        for record in list(self.broker.kernels()):
            user, server_id, _ = record.kernel_id.split("/", 2)
            if (user, server_id) in dead:
                await self.broker.revoke(record.kernel_id, reason="server_gone")
                revoked += 1
        for key in dead:
            self._seen.pop(key, None)
        if revoked:
            self.log.warning("Revoked the credentials of %d kernel(s) of dead servers", revoked)
        return revoked
