"""The credential broker: issues, renews and revokes each kernel's Vault credentials.

Why one broker per server rather than logic in the provisioner: a provisioner lives and dies with
one kernel process, but leases must outlive a restart (to be revoked then), be renewed by one
background task, be listed over REST and be revoked all at once on server stop. The provisioner
only calls :meth:`CredentialBroker.issue` and :meth:`CredentialBroker.revoke`.

Everything happens on the event loop thread, Vault calls included (``transport``: pooled
asyncio connections, several calls in flight at once, no worker threads). Secret values
stay in memory (``app.secrets`` for the output guard, the child token for renewal); the state file
holds lease ids and token accessors only, so that the next server start can revoke what a
SIGKILLed server left behind. Short TTLs remain the last line of defence: a server that is killed
and never started again leaves its leases to expire on their own.

The broker is one object assembled from parts, each in a module named for what it holds:
:mod:`.issuing` (per profile type), :mod:`.revocation`, :mod:`.statefile` (crash state file and
orphan revocation) and :mod:`.renewal` (background renewal and expiry warnings); the kernel
records live in :mod:`.records`. This module holds the configuration (``c.CredentialBroker.*``),
the bookkeeping the parts share and the lifecycle.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from traitlets import Bool, Float, List, TraitError, Unicode, observe, validate
from traitlets.config import LoggingConfigurable

from .issuing import CredentialIssuing
from .profiles import Profile, ProfileError, parse_profiles
from .records import CredentialError, KernelCredentials, Lease
from .records import user_groups as user_groups  # re-exported: imported from here
from .records import user_name as user_name
from .renewal import WARNING_CODE as WARNING_CODE
from .renewal import LeaseRenewal
from .revocation import LeaseRevocation
from .statefile import STATE_PREFIX as STATE_PREFIX
from .statefile import CrashStateFile

if TYPE_CHECKING:
    from ..extension import ProdDiscoveryApp

__all__ = ["CredentialBroker", "CredentialError", "KernelCredentials", "Lease"]

# The server's own secrets must never leak into kernels through the inherited environment.
SERVER_SECRET_ENV = ("VAULT_TOKEN", "BAO_TOKEN", "VAULT_SECRET_ID", "VAULT_ROLE_ID")


class CredentialBroker(
    CredentialIssuing, LeaseRevocation, CrashStateFile, LeaseRenewal, LoggingConfigurable
):
    """Issues short-lived Vault credentials per kernel and revokes them when the kernel goes.

    Configure it as ``c.CredentialBroker.<trait>``.
    """

    profiles: List[Any] = List(
        config=True,
        help="""Credential profiles: a list of dicts, each mapping one Vault source to kernel
        environment variables. Keys: name, type ('token', 'database', 'kv' or 'read'), env
        ({VAR: template}; templates use response fields such as '{username}', values without
        braces are static), optional kernel_specs / users / groups selectors (a profile without
        users and groups applies to everyone), and per type: token -> policies, ttl,
        explicit_max_ttl, num_uses, no_default_policy; database -> mount (default 'database'),
        role; kv -> mount (default 'secret'), path; read -> path. Default [] (no credentials).
        Validated at startup: an invalid profile stops the server naming the profile and field.""",
    )

    @validate("profiles")
    def _validate_profiles(self, proposal: Any) -> list[Any]:
        try:
            parse_profiles(proposal["value"])
        except ProfileError as exc:
            raise TraitError(f"CredentialBroker.profiles: {exc}") from None
        return list(proposal["value"])

    @observe("profiles")
    def _profiles_changed(self, change: Any) -> None:
        # Applies to the next kernel start; running kernels keep what they were issued.
        self._profiles: list[Profile] = parse_profiles(change["new"])

    start_without_credentials = Bool(
        False,
        config=True,
        help="""What to do when Vault is unreachable or refuses at kernel start. False (default):
        fail closed, the kernel does not start and the user sees the cause. True: start the
        kernel without credentials and log and audit the failure.""",
    )
    issue_timeout = Float(
        4.5,
        config=True,
        help="""Seconds a kernel start waits for all its credentials before failing with
        'Vault did not answer in time'. Default 4.5 (a start fails within 5 s).""",
    )
    default_token_ttl = Unicode(
        "1h",
        config=True,
        help="""TTL of child tokens whose profile sets no ttl (a Vault duration: '15m', '1h').
        Default '1h'. Child tokens are renewed while the kernel runs.""",
    )
    renew_fraction = Float(
        0.5,
        config=True,
        help="""Renew a lease when less than this fraction of its TTL is left (0 < x < 1).
        Default 0.5.""",
    )

    @validate("renew_fraction")
    def _validate_fraction(self, proposal: Any) -> float:
        value = float(proposal["value"])
        if not 0.0 < value < 1.0:
            raise TraitError(f"CredentialBroker.renew_fraction must be in (0, 1), got {value}")
        return value

    check_interval = Float(
        1.0,
        config=True,
        help="""Seconds between two passes of the background renewal task. Default 1.""",
    )
    warn_before = Float(
        60.0,
        config=True,
        help="""When a lease cannot be renewed any more (max TTL reached, Vault refusing or
        down), tell the user in the notebook this many seconds before it expires (or at once
        when less is left). Default 60.""",
    )
    state_dir = Unicode(
        config=True,
        help="""Directory of the crash-safety state file (lease ids and token accessors only,
        never secrets; mode 0600), one file per server process. At start the server revokes
        the leases listed by files of dead server processes against the same Vault.
        Default: the Jupyter server's runtime directory.""",
    )

    deny_without_profile = Bool(
        False,
        config=True,
        help="""Refuse to start a kernel for a user whom no profile selects (by user name or
        JupyterHub group), with a message naming the user and their groups, instead of starting
        it without credentials. Default False. Set True on JupyterHub, where profiles are
        selected by hub group and a user in no group should learn why they have no data.""",
    )

    shared_identity = Bool(
        None,
        allow_none=True,
        config=True,
        help="""Whether every authenticated caller is the same person, so REST lists and renews
        all kernels. None (default): automatic, True when the server uses jupyter_server's own
        token/password identity provider (a single-user server, where token requests get random
        anonymous names), False otherwise (JupyterHub: callers see only their own kernels).""",
    )

    def visible_owner(self, user: Any) -> str | None:
        """The owner whose kernels ``user`` may see over REST; None means all kernels."""
        shared = self.shared_identity
        if shared is None:
            idp = getattr(self.app.serverapp, "identity_provider", None)
            shared = type(idp).__module__.startswith("jupyter_server.")
        return None if shared else (user_name(user) or "")

    def __init__(self, app: ProdDiscoveryApp, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.app = app
        self._profiles = parse_profiles(self.profiles)
        self._kernels: dict[str, KernelCredentials] = {}
        self._owners: dict[str, str | None] = {}  # survives restarts: the kernel's first owner
        self._pending_revoke: list[tuple[str, Lease]] = []  # revocation failed: retried
        self._task: asyncio.Task[None] | None = None
        # Calls that outlive the start that made them (a late issue revoking its own lease).
        self._background: set[asyncio.Future[Any]] = set()
        self._lock = asyncio.Lock()
        self._running = False  # renewal started (start); its pass runs only while needed
        self._stopped = False

    # -- state ----------------------------------------------------------------------------------

    @property
    def active(self) -> bool:
        """Whether credentials can be issued: Vault configured and connected at start."""
        vault = self.app.vault
        return vault.configured and self.app.vault_error is None

    @property
    def profile_objects(self) -> list[Profile]:
        return list(self._profiles)

    def kernels(self, owner: str | None = None) -> list[KernelCredentials]:
        """Kernels holding credentials, optionally only those of ``owner``."""
        return [k for k in self._kernels.values() if owner is None or k.owner == owner]

    def get(self, kernel_id: str) -> KernelCredentials | None:
        return self._kernels.get(kernel_id)

    def owner_of(self, kernel_id: str) -> str | None:
        return self._owners.get(kernel_id)

    def transform_profiles(self, transform: Callable[[Profile], Profile]) -> None:
        """Apply ``transform`` to every configured profile (until the profiles change): how a
        host such as the trusted service enforces its own rules on what is configured."""
        self._profiles = [transform(p) for p in self._profiles]

    def adopt(self, kernel_id: str, owner: str, lease: Lease) -> KernelCredentials:
        """Take over ``lease`` of kernel ``kernel_id`` (issued by an earlier process): kept,
        journaled and renewed from now on like one issued here."""
        record = self._kernels.get(kernel_id)
        if record is None:
            record = self._kernels[kernel_id] = KernelCredentials(kernel_id, "", owner, [], [])
            self._owners[kernel_id] = owner
        record.leases.append(lease)
        if lease.profile and lease.profile not in record.profiles:
            record.profiles.append(lease.profile)
        self._write_state()
        self._wake()
        return record

    def outstanding(self) -> int:
        """Leases and tokens issued and not yet revoked (including failed revocations)."""
        issued = sum(1 for k in self._kernels.values() for lease in k.leases if lease.lease_id)
        return issued + len(self._pending_revoke)

    # -- audit ----------------------------------------------------------------------------------

    def _audit(self, action: str, kernel_id: str, user: Any = None, **data: Any) -> None:
        event = {"action": action, "kernel_id": kernel_id, **data}
        try:
            self.app.audit.record("credential", event, user=user)
        except Exception:  # the audit layer must never break credential handling
            self.log.exception("Recording the credential audit event failed")

    def _audit_lease(
        self, action: str, kernel_id: str, user: Any, lease: Lease, **data: Any
    ) -> None:
        """A credential event about one lease: its profile and display id, never the secret."""
        self._audit(
            action, kernel_id, user, profile=lease.profile, lease_id=lease.display_id, **data
        )

    def _keep(self, task: asyncio.Future[Any]) -> None:
        """Hold a reference to a task that must run to its end (the loop keeps only weak ones)."""
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- lifecycle ------------------------------------------------------------------------------

    async def stop(self) -> None:
        """Stop renewing and revoke everything (server stop)."""
        self._running = False
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._background:  # late calls finish (and revoke) within their own timeout
            await asyncio.wait(list(self._background))
        await self.revoke_all()
        self._remove_state()
