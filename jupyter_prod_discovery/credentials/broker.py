"""The credential broker: issues, renews and revokes each kernel's Vault credentials.

Why one broker per server rather than logic in the provisioner: a provisioner lives and dies with
one kernel process, but leases must outlive a restart (to be revoked then), be renewed by one
background task, be listed over REST and be revoked all at once on server stop. The provisioner
only calls :meth:`CredentialBroker.issue` and :meth:`CredentialBroker.revoke`.

Bookkeeping happens on the event loop thread; only Vault I/O runs in worker threads. Secret values
stay in memory (``app.secrets`` for the output guard, the child token for renewal); the state file
holds lease ids and token accessors only, so that the next server start can revoke what a
SIGKILLed server left behind. Short TTLs remain the last line of defence: a server that is killed
and never started again leaves its leases to expire on their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hvac
import hvac.exceptions
from traitlets import Bool, Float, List, TraitError, Unicode, observe, validate
from traitlets.config import LoggingConfigurable

from .profiles import Profile, ProfileError, parse_profiles, select_profiles
from .vault import VaultError, translate_error

if TYPE_CHECKING:
    from ..extension import ProdDiscoveryApp

__all__ = ["CredentialBroker", "CredentialError", "KernelCredentials", "Lease"]

STATE_PREFIX = "prod-discovery-credentials-"
# The server's own secrets must never leak into kernels through the inherited environment.
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


class CredentialError(VaultError):
    """Credentials could not be issued; the message names the profile and the cause."""


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


class CredentialBroker(LoggingConfigurable):
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
        self._lock = asyncio.Lock()
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

    def outstanding(self) -> int:
        """Leases and tokens issued and not yet revoked (including failed revocations)."""
        issued = sum(1 for k in self._kernels.values() for lease in k.leases if lease.lease_id)
        return issued + len(self._pending_revoke)

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
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            payload = {"pid": os.getpid(), "vault": self.app.vault.url, "leases": entries}
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(payload, f)
            tmp.replace(path)
        except OSError as exc:
            self.log.error("Cannot write the credential state file %s: %s", path, exc)

    # -- audit ----------------------------------------------------------------------------------

    def _audit(self, action: str, kernel_id: str, user: Any = None, **data: Any) -> None:
        event = {"action": action, "kernel_id": kernel_id, **data}
        try:
            self.app.audit.record("credential", event, user=user)
        except Exception:  # the audit layer must never break credential handling
            self.log.exception("Recording the credential audit event failed")

    # -- issuing --------------------------------------------------------------------------------

    async def issue(self, kernel_id: str, kernel_name: str, user: Any) -> dict[str, str]:
        """Issue every selected profile for a kernel start or restart; return the env to inject.

        On restart the kernel keeps its first owner (restarts may be triggered by anyone with
        access, or by the auto-restarter with no request at all). Raises CredentialError naming
        the cause; what was issued before the failure is revoked first.
        """
        owner = self._owners.get(kernel_id) if kernel_id in self._owners else user_name(user)
        if kernel_id not in self._owners:
            self._owners[kernel_id] = owner
        if kernel_id in self._kernels:  # a start without a cleanup (should not happen): no leak
            await self.revoke(kernel_id, reason="reissue")
        groups = user_groups(user)
        selected = select_profiles(self._profiles, kernel_name, owner, groups)
        if not selected and self.active and self.deny_without_profile:
            denial = CredentialError(
                f"no credential profile applies to user {owner!r} "
                f"(groups: {', '.join(groups) or 'none'}); ask your platform team for access"
            )
            self._audit("failure", kernel_id, user, error=str(denial))
            raise denial
        if not selected or not self.active:
            return {}
        abandoned = threading.Event()
        issued: list[Lease] = []
        secrets: set[str] = set()
        try:
            env = await asyncio.wait_for(
                asyncio.to_thread(
                    self._issue_sync, kernel_id, owner, selected, issued, secrets, abandoned
                ),
                timeout=self.issue_timeout,
            )
        except (TimeoutError, Exception) as exc:
            abandoned.set()
            if isinstance(exc, TimeoutError):
                err: VaultError = CredentialError(
                    f"Vault at {self.app.vault.url} did not issue the kernel's credentials "
                    f"within {self.issue_timeout:g} s"
                )
            elif isinstance(exc, VaultError):
                err = exc
            else:
                err = CredentialError(f"issuing credentials failed: {exc}")
            await self._revoke_leases(kernel_id, list(issued), user)
            self._audit("failure", kernel_id, user, error=str(err))
            if self.start_without_credentials:
                self.log.error(
                    "Kernel %s starts WITHOUT credentials (start_without_credentials): %s",
                    kernel_id,
                    err,
                )
                return {}
            raise err from None
        record = KernelCredentials(
            kernel_id=kernel_id,
            kernel_name=kernel_name,
            owner=owner,
            profiles=[p.name for p in selected],
            leases=issued,
            secrets=secrets,
            user=user,
        )
        self._kernels[kernel_id] = record
        self._write_state()
        self.app.secrets.set(kernel_id, secrets, owner=owner)
        for lease in issued:
            self._audit(
                "issue",
                kernel_id,
                user,
                profile=lease.profile,
                lease_id=lease.display_id,
                request_id=lease.request_id,
                ttl=lease.ttl,
            )
        if self._stopped:  # the server stopped while we were issuing
            await self.revoke(kernel_id, reason="server_stop")
        return env

    def _issue_sync(
        self,
        kernel_id: str,
        owner: str | None,
        selected: list[Profile],
        issued: list[Lease],
        secrets: set[str],
        abandoned: threading.Event,
    ) -> dict[str, str]:
        env: dict[str, str] = {}
        client = self.app.vault.client
        for profile in selected:
            if abandoned.is_set():
                break
            try:
                values, secret_fields, lease = self._issue_one(client, profile, kernel_id, owner)
            except ProfileError as exc:
                raise CredentialError(str(exc)) from None
            except Exception as exc:
                err = translate_error(exc, self.app.vault.url)
                raise CredentialError(f"credential profile {profile.name!r}: {err}") from None
            if lease is not None:
                issued.append(lease)
            values = {**values, "kernel_id": kernel_id, "user": owner or ""}
            rendered = profile.render(values)
            field_secrets = {str(values[f]) for f in secret_fields if values.get(f)}
            secrets |= field_secrets
            for var, value in rendered.items():
                # A value built from a secret field (a DSN with the password) is a secret too.
                if profile.fields_of(var) & secret_fields:
                    secrets.add(value)
                env[var] = value
        if abandoned.is_set():
            # The start gave up waiting: revoke here, the caller no longer sees these leases.
            self._revoke_sync([lease for lease in issued])
            issued.clear()
        return env

    def _issue_one(
        self, client: hvac.Client, profile: Profile, kernel_id: str, owner: str | None
    ) -> tuple[dict[str, Any], set[str], Lease | None]:
        now = time.time()
        if profile.type == "token":
            ttl = profile.ttl or self.default_token_ttl
            response = client.auth.token.create(
                policies=list(profile.policies) or ["default"],
                no_default_policy=profile.no_default_policy,
                ttl=ttl,
                explicit_max_ttl=profile.explicit_max_ttl or None,
                num_uses=profile.num_uses or None,
                meta={"user": owner or "", "kernel_id": kernel_id, "profile": profile.name},
                display_name=f"kernel-{kernel_id[:8]}",
            )
            auth = response["auth"]
            duration = int(auth.get("lease_duration") or 0)
            token_lease = Lease(
                profile=profile.name,
                kind="token",
                lease_id=auth["accessor"],
                request_id=response.get("request_id") or "",
                ttl=duration,
                renewable=bool(auth.get("renewable")),
                expires_at=now + duration if duration else 0.0,
                max_expires_at=now + _seconds(profile.explicit_max_ttl)
                if profile.explicit_max_ttl
                else 0.0,
                token=auth["client_token"],
            )
            values = {
                "token": auth["client_token"],
                "accessor": auth["accessor"],
                "vault_addr": self.app.vault.url,
                "ttl": str(duration),
            }
            return values, {"token"}, token_lease
        if profile.type == "database":
            response = client.secrets.database.generate_credentials(
                name=profile.role, mount_point=profile.mount
            )
        elif profile.type == "kv":
            response = client.secrets.kv.v2.read_secret_version(
                path=profile.path, mount_point=profile.mount, raise_on_deleted_version=True
            )
            data = dict((response.get("data") or {}).get("data") or {})
            return data, {k for k, v in data.items() if isinstance(v, str)}, None
        else:
            response = client.read(profile.path)
            if response is None:
                raise CredentialError(
                    f"credential profile {profile.name!r}: Vault path {profile.path!r} is empty"
                )
        data = dict(response.get("data") or {})
        secret_fields = {k for k, v in data.items() if isinstance(v, str)}
        lease_id = response.get("lease_id") or ""
        duration = int(response.get("lease_duration") or 0)
        lease: Lease | None = None
        if lease_id:
            lease = Lease(
                profile=profile.name,
                kind="lease",
                lease_id=lease_id,
                request_id=response.get("request_id") or "",
                ttl=duration,
                renewable=bool(response.get("renewable")),
                expires_at=now + duration if duration else 0.0,
            )
        return data, secret_fields, lease

    # -- revocation -----------------------------------------------------------------------------

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
        failed = await asyncio.to_thread(self._revoke_sync, leases)
        for lease in leases:
            err = failed.get(lease.lease_id)
            if err is None:
                self._audit(
                    "revoke",
                    kernel_id,
                    user,
                    profile=lease.profile,
                    lease_id=lease.display_id,
                )
            else:
                self._pending_revoke.append((kernel_id, lease))
                self._audit(
                    "failure",
                    kernel_id,
                    user,
                    profile=lease.profile,
                    lease_id=lease.display_id,
                    error=f"revocation failed: {err}",
                )
                self.log.error(
                    "Revoking %s of kernel %s failed: %s", lease.display_id, kernel_id, err
                )
        self._write_state()

    def _revoke_sync(self, leases: Iterable[Lease]) -> dict[str, str]:
        """Revoke in Vault; return {lease id: error} for those that failed (blocking)."""
        failed: dict[str, str] = {}
        try:
            client = self.app.vault.client
        except VaultError as exc:
            return {lease.lease_id: str(exc) for lease in leases}
        for lease in leases:
            try:
                _revoke_in_vault(client, lease.kind, lease.lease_id)
            except Exception as exc:
                failed[lease.lease_id] = str(translate_error(exc, self.app.vault.url))
        return failed

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
        failed = await asyncio.to_thread(self._revoke_sync, [lease for _, lease in pending])
        for kernel_id, lease in pending:
            if lease.lease_id in failed:
                self._pending_revoke.append((kernel_id, lease))
            else:
                self._audit(
                    "revoke", kernel_id, None, profile=lease.profile, lease_id=lease.display_id
                )
        self._write_state()

    def revoke_orphans(self) -> int:
        """Revoke what dead server processes left in their state files (blocking; at start).

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
            failed = self._revoke_sync(leases)
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

    # -- renewal --------------------------------------------------------------------------------

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
        results = await asyncio.to_thread(self._renew_sync, leases)
        errors: list[str] = []
        for lease, (duration, request_id, err) in zip(leases, results, strict=True):
            if err is not None:
                errors.append(f"{lease.profile}: {err}")
                if not lease.failing:
                    lease.failing = True
                    self._audit(
                        "failure",
                        record.kernel_id,
                        record.user,
                        profile=lease.profile,
                        lease_id=lease.display_id,
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
            self._audit(
                "renew",
                record.kernel_id,
                record.user,
                profile=lease.profile,
                lease_id=lease.display_id,
                request_id=request_id,
                ttl=duration,
            )
        return errors

    def _renew_sync(self, leases: list[Lease]) -> list[tuple[int, str, str | None]]:
        out: list[tuple[int, str, str | None]] = []
        try:
            client = self.app.vault.client
        except VaultError as exc:
            return [(0, "", str(exc)) for _ in leases]
        for lease in leases:
            try:
                if lease.kind == "token":
                    response = client.auth.token.renew_accessor(
                        lease.lease_id, increment=f"{lease.ttl}s"
                    )
                    duration = int(response["auth"]["lease_duration"])
                else:
                    response = client.sys.renew_lease(lease.lease_id, increment=lease.ttl)
                    duration = int(response["lease_duration"])
                out.append((duration, response.get("request_id") or "", None))
            except Exception as exc:
                out.append((0, "", str(translate_error(exc, self.app.vault.url))))
        return out

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
        message = (
            f"[Prod Discovery] The credentials of profile(s) {names} expire in {left} s and "
            "cannot be renewed. Save your work; restart the kernel to get new credentials."
        )
        for lease in leases:
            lease.warned = True
            self._audit(
                "expiring",
                record.kernel_id,
                record.user,
                profile=lease.profile,
                lease_id=lease.display_id,
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
                    return reply.get("content", {}).get("status") == "ok"
        except Exception as exc:
            self.log.warning(
                "Could not warn kernel %s about expiring credentials: %s", kernel_id, exc
            )
        finally:
            client.stop_channels()
        return False

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

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.check_interval)
            try:
                async with self._lock:
                    await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.exception("Credential renewal pass failed")

    def start(self) -> None:
        """Start the background renewal task (idempotent)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Stop renewing and revoke everything (server stop)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.revoke_all()


def _revoke_in_vault(client: hvac.Client, kind: str, lease_id: str) -> None:
    try:
        if kind == "token":
            client.auth.token.revoke_accessor(lease_id)
        else:
            client.sys.revoke_lease(lease_id)
    except hvac.exceptions.InvalidRequest as exc:
        text = " ".join(getattr(exc, "errors", None) or []).lower()
        if "invalid" in text or "not found" in text:
            return  # already gone (expired or revoked): nothing left to revoke
        raise


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


def _seconds(duration: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if duration[-1] in units:
        return int(duration[:-1]) * units[duration[-1]]
    return int(duration)
