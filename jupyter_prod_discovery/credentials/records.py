"""What the credential broker keeps per kernel: leases, kernel records, and who asked.

Why a module of its own: the issuing, renewal and revocation modules all read and update these
records, and REST shows them through ``to_public``, which is the one place deciding what may leave
the server (never a token).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .vault import VaultError

if TYPE_CHECKING:
    import asyncio
    import logging
    from collections.abc import Iterable
    from pathlib import Path

    from ..extension import ProdDiscoveryApp
    from .profiles import Profile

__all__ = [
    "AccessDenied",
    "BrokerState",
    "CredentialError",
    "KernelCredentials",
    "Lease",
    "user_groups",
    "user_name",
]


class CredentialError(VaultError):
    """Credentials could not be issued; the message names the profile and the cause."""


class AccessDenied(CredentialError):
    """No profile applies to this user and policy refuses a kernel without one."""


@dataclass
class Lease:
    """One revocable thing issued to a kernel: a Vault lease or a child token (by accessor)."""

    profile: str
    kind: str  # "lease" or "token"
    lease_id: str  # the Vault lease id, or the token accessor
    request_id: str
    ttl: int
    renewable: bool
    expires_at: float  # wall-clock seconds; 0 for secrets without a lease (kv)
    max_expires_at: float = 0.0  # 0: unknown
    capped: bool = False  # Vault granted less than asked: the max TTL is reached
    warned: bool = False
    failing: bool = False
    token: str = field(default="", repr=False)  # in memory only, for renewal

    @property
    def display_id(self) -> str:
        return f"accessor:{self.lease_id}" if self.kind == "token" else self.lease_id

    def to_public(self, now: float) -> dict[str, Any]:
        """What REST may show: never the token."""
        return {
            "profile": self.profile,
            "lease_id": self.display_id,
            "ttl_left": max(0, round(self.expires_at - now)) if self.expires_at else None,
            "renewable": self.renewable and not self.capped,
        }


@dataclass
class KernelCredentials:
    """The credentials of one kernel (between a start and the matching stop)."""

    kernel_id: str
    kernel_name: str
    owner: str | None
    profiles: list[str]
    leases: list[Lease]
    secrets: set[str] = field(default_factory=set, repr=False)
    issued_at: float = field(default_factory=time.time)
    user: Any = field(default=None, repr=False)

    def to_public(self) -> dict[str, Any]:
        now = time.time()
        return {
            "kernel_id": self.kernel_id,
            "kernel_name": self.kernel_name,
            "owner": self.owner,
            "profiles": list(self.profiles),
            "leases": [lease.to_public(now) for lease in self.leases if lease.lease_id],
        }


def user_name(user: Any) -> str | None:
    """The username of a jupyter_server User (or a plain string)."""
    if user is None:
        return None
    if isinstance(user, str):
        return user
    return getattr(user, "username", None) or getattr(user, "name", None)


def user_groups(user: Any) -> list[str]:
    """Groups of a user: JupyterHub's hub_user model when present; plain token auth has none."""
    hub_user = getattr(user, "hub_user", None)
    if isinstance(hub_user, dict) and isinstance(hub_user.get("groups"), list):
        return [str(g) for g in hub_user["groups"]]
    groups = getattr(user, "groups", None)
    if isinstance(groups, list | tuple | set | frozenset):
        return [str(g) for g in groups]
    return []


class BrokerState:
    """What the broker's parts (issuing, revocation, state file, renewal) share, for typing.

    Why: the parts are mixins of :class:`~.broker.CredentialBroker`, split out to keep each module
    readable; they read one another's bookkeeping. This class declares it for the type checker
    only and holds nothing at run time, so the broker stays one object with one set of traits.
    """

    if TYPE_CHECKING:
        app: ProdDiscoveryApp
        log: logging.Logger
        _profiles: list[Profile]
        _kernels: dict[str, KernelCredentials]
        _owners: dict[str, str | None]
        _pending_revoke: list[tuple[str, Lease]]
        _task: asyncio.Task[None] | None
        _background: set[asyncio.Future[Any]]
        _lock: asyncio.Lock
        _running: bool
        _stopped: bool
        # traits of CredentialBroker
        start_without_credentials: bool
        issue_timeout: float
        default_token_ttl: str
        renew_fraction: float
        check_interval: float
        warn_before: float
        state_dir: str
        deny_without_profile: bool

        @property
        def active(self) -> bool: ...
        @property
        def state_path(self) -> Path: ...
        def _audit(self, action: str, kernel_id: str, user: Any = None, **data: Any) -> None: ...
        def _audit_lease(
            self, action: str, kernel_id: str, user: Any, lease: Lease, **data: Any
        ) -> None: ...
        def _write_state(self) -> None: ...
        def _wake(self) -> None: ...
        def _remove_state(self) -> None: ...
        def _keep(self, task: asyncio.Future[Any]) -> None: ...
        async def _revoke_in_vault(self, leases: Iterable[Lease]) -> dict[str, str]: ...
        async def _revoke_leases(
            self, kernel_id: str, leases: list[Lease], user: Any, reason: str = "failure"
        ) -> None: ...
        async def revoke(self, kernel_id: str, reason: str = "shutdown") -> None: ...
        async def revoke_all(self, reason: str = "server_stop") -> None: ...
        async def _retry_pending(self) -> None: ...
