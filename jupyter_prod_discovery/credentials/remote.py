"""The broker of a server that is a client of the trusted service: it asks, it does not hold.

Why: a broker inside the single-user server needs a Vault token that can issue, renew and
revoke, and the server's user can read everything the server holds. Here the service issues on
behalf of the user it authenticated and keeps the lease book; this side keeps only what the
kernel was given (to redact those values in outputs) and what the credentials panel shows.

Same interface as :class:`.broker.CredentialBroker` for the provisioner, the REST handlers and
the export: ``issue``, ``revoke``, ``renew_now``, ``kernels``, ``get``, ``owner_of``,
``visible_owner``, ``start``, ``stop``. A heartbeat tells the service this server lives (a
silent server's kernels are revoked by the service) and refreshes the panel's TTLs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from traitlets import Float
from traitlets.config import LoggingConfigurable

from ..service.client import ServiceClient, ServiceError
from .profiles import Profile
from .records import CredentialError, user_name
from .renewal import expiry_message, warn_kernel
from .secrets import SecretRegistry

__all__ = ["RemoteCredentialBroker"]


@dataclass
class RemoteKernel:
    """What the service said of one kernel's credentials (never a value)."""

    kernel_id: str
    kernel_name: str
    owner: str | None
    public: dict[str, Any] = field(default_factory=dict)

    @property
    def profiles(self) -> list[str]:
        return list(self.public.get("profiles") or [])

    def to_public(self) -> dict[str, Any]:
        return {**self.public, "kernel_id": self.kernel_id, "owner": self.owner}


class RemoteCredentialBroker(LoggingConfigurable):
    """Kernel credentials through the trusted service (``ProdDiscoveryApp.service_url``)."""

    issue_timeout = Float(
        4.5,
        config=True,
        help="""Seconds a kernel start waits for the service before it is refused, naming the
        service. Default 4.5 (a start fails within 5 s).""",
    )
    warn_before = Float(
        60.0,
        config=True,
        help="""When a lease of a kernel can no longer be renewed (the service reports its max
        TTL reached or renewal failing), tell the notebook this many seconds before it expires
        (or at once when less is left). Default 60.""",
    )
    heartbeat_interval = Float(
        10.0,
        config=True,
        help="""Seconds between heartbeats to the service (which revokes the kernels of a server
        silent for its server_timeout, default 60). Default 10.""",
    )

    def __init__(
        self,
        client: ServiceClient,
        secrets: SecretRegistry,
        kernel_manager: Callable[[], Any] = lambda: None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.client = client
        self.secrets = secrets
        self._kernel_manager = kernel_manager  # where expiry warnings are printed
        self._warned: set[tuple[str, str]] = set()
        self._kernels: dict[str, RemoteKernel] = {}
        self._owners: dict[str, str | None] = {}
        self._pending_revoke: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None

    active = True
    profile_objects: list[Profile] = []

    # -- what the server's parts ask -----------------------------------------------------------

    def kernels(self, owner: str | None = None) -> list[RemoteKernel]:
        return [k for k in self._kernels.values() if owner is None or k.owner == owner]

    def get(self, kernel_id: str) -> RemoteKernel | None:
        return self._kernels.get(kernel_id)

    def owner_of(self, kernel_id: str) -> str | None:
        return self._owners.get(kernel_id)

    def visible_owner(self, user: Any) -> str | None:
        """Every caller of a server the service authenticated as one user is that user."""
        return None

    def outstanding(self) -> int:
        return len(self._kernels) + len(self._pending_revoke)

    async def issue(self, kernel_id: str, kernel_name: str, user: Any) -> dict[str, str]:
        """The env of a kernel start, issued by the service for the user it authenticated."""
        owner = self._owners.setdefault(kernel_id, user_name(user))
        try:
            async with asyncio.timeout(self.issue_timeout):  # not wait_for: client.arequest
                result = await self.client.issue(kernel_id, kernel_name)
        except TimeoutError:
            raise CredentialError(
                f"the Prod Discovery service at {self.client.url} did not answer within "
                f"{self.issue_timeout:g} s"
            ) from None
        except ServiceError as exc:
            raise CredentialError(str(exc)) from None
        env = {str(k): str(v) for k, v in (result.get("env") or {}).items()}
        self.secrets.set(kernel_id, result.get("secrets") or [], owner=owner)
        kernel = result.get("kernel") or {}
        self._kernels[kernel_id] = RemoteKernel(kernel_id, kernel_name, owner, kernel)
        return env

    async def revoke(self, kernel_id: str, reason: str = "shutdown") -> None:
        """Ask the service to revoke; kept for retry at each heartbeat when it cannot now."""
        self.secrets.discard(kernel_id)
        if self._kernels.pop(kernel_id, None) is None and kernel_id not in self._pending_revoke:
            return
        try:
            await self.client.revoke(kernel_id, reason)
            self._pending_revoke.pop(kernel_id, None)
        except ServiceError as exc:
            self._pending_revoke[kernel_id] = reason
            self.log.error("Revoking kernel %s through the service failed: %s", kernel_id, exc)

    async def health(self) -> dict[str, Any]:
        """Vault as this server sees it: through the service (for the status endpoint)."""
        try:
            status = await self.client.status()
        except ServiceError as exc:
            return {
                "configured": True,
                "reachable": False,
                "authenticated": False,
                "via": "service",
                "address": None,
                "identity": None,
                "error": str(exc),
            }
        active = bool(status.get("credentials", {}).get("active"))
        return {
            "configured": True,
            "reachable": True,
            "authenticated": active,
            "via": "service",
            "address": None,  # the service's Vault is not the user's business
            "identity": None,
            "principal": status.get("principal", {}).get("username"),
            "error": None if active else "the trusted service has no usable Vault connection",
        }

    async def renew_now(self, kernel_id: str) -> RemoteKernel:
        record = self._kernels.get(kernel_id)
        if record is None:
            raise FileNotFoundError(f"kernel {kernel_id} holds no credentials")
        try:
            record.public = await self.client.renew(kernel_id)
        except ServiceError as exc:
            raise CredentialError(str(exc)) from None
        return record

    # -- lifecycle -----------------------------------------------------------------------------

    async def revoke_orphans(self) -> int:
        """Nothing to do here: the service revokes the kernels of servers that went silent."""
        return 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_event_loop().create_task(self._beat_loop())

    async def beat(self) -> None:
        """One heartbeat: the service knows we live; retry revocations; refresh TTLs."""
        for kernel_id, reason in list(self._pending_revoke.items()):
            with contextlib.suppress(ServiceError):
                await self.client.revoke(kernel_id, reason)
                self._pending_revoke.pop(kernel_id, None)
        for public in await self.client.heartbeat():
            record = self._kernels.get(str(public.get("kernel_id")))
            if record is not None:
                record.public = public
                await self._warn_expiring(record)

    async def _warn_expiring(self, record: RemoteKernel) -> None:
        """The service renews; the notebook is told here, where the kernel is, when a lease
        it reports as no longer renewable is about to expire (once per lease)."""
        leases = [
            lease
            for lease in record.public.get("leases") or []
            if not lease.get("renewable")
            and lease.get("ttl_left") is not None
            and lease["ttl_left"] <= self.warn_before
            and (record.kernel_id, str(lease.get("lease_id"))) not in self._warned
        ]
        if not leases:
            return
        for lease in leases:
            self._warned.add((record.kernel_id, str(lease.get("lease_id"))))
        names = ", ".join(sorted({str(lease.get("profile")) for lease in leases}))
        left = min(int(lease["ttl_left"]) for lease in leases)
        await warn_kernel(
            self._kernel_manager(), record.kernel_id, expiry_message(names, left), self.log
        )

    async def _beat_loop(self) -> None:
        while True:
            try:
                await self.beat()
            except ServiceError as exc:
                self.log.warning("Heartbeat to the Prod Discovery service failed: %s", exc)
            await asyncio.sleep(self.heartbeat_interval)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for kernel_id in list(self._kernels):
            await self.revoke(kernel_id, reason="server_stop")
        await self.client.aclose()
