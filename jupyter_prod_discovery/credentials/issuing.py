"""Issuing: a kernel start's credentials, one Vault call per selected profile, by profile type.

Why calls that are never cancelled, with a deadline: a kernel start must fail within
``issue_timeout`` when Vault does not answer, yet a call already sent may still succeed after the
start gave up; the call then revokes what it issued itself (``abandoned``), so a timed-out start
leaks nothing. The calls run on the event loop (``transport``), all profiles of a start at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from .profiles import Profile, ProfileError, select_profiles
from .records import (
    AccessDenied,
    BrokerState,
    CredentialError,
    KernelCredentials,
    Lease,
    user_groups,
    user_name,
)
from .transport import VaultTransport
from .vault import VaultError, translate_error

__all__ = ["CredentialIssuing"]


class CredentialIssuing(BrokerState):
    """The broker's issuing part: :meth:`issue` and the per-type Vault calls behind it."""

    async def issue(
        self, kernel_id: str, kernel_name: str, user: Any, only: Iterable[str] | None = None
    ) -> dict[str, str]:
        """Issue every selected profile for a kernel start or restart; return the env to inject.

        ``only`` narrows the selection to the named profiles (a promoted job's declared roles:
        its clean run gets those and nothing else the user could have).

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
        if only is not None:
            wanted = set(only)
            selected = [p for p in selected if p.name in wanted]
        if not selected and self.active and self.deny_without_profile:
            denial = AccessDenied(
                f"no credential profile applies to user {owner!r} "
                f"(groups: {', '.join(groups) or 'none'}); ask your platform team for access"
            )
            self._audit("failure", kernel_id, user, error=str(denial))
            raise denial
        if not selected or not self.active:
            return {}
        abandoned = asyncio.Event()  # set when the start gives up: late calls revoke their own
        issued: list[Lease] = []
        calls: list[asyncio.Task[tuple[dict[str, str], set[str]]]] = []
        try:
            vault = self.app.vault.transport
            # One call per profile, all at once: the start waits for the slowest call (a
            # database user takes a few ms to create) instead of the sum of them. Never
            # cancelled: a call Vault already received may still issue, and must then revoke.
            calls = [
                asyncio.ensure_future(
                    self._issue_profile(vault, profile, kernel_id, owner, issued, abandoned)
                )
                for profile in selected
            ]
            # A failing call does not end the wait: the others finish (within the deadline) so
            # that what they issued is revoked before the start is answered.
            _, pending = await asyncio.wait(calls, timeout=self.issue_timeout)
            if pending:
                raise TimeoutError
            failures = _failures(calls)
            if failures:
                raise _one_error(failures)
            results = [call.result() for call in calls]
        except asyncio.CancelledError:
            # The start itself was cancelled: nothing may stay issued.
            self._abandon(abandoned, calls)
            self._keep(asyncio.ensure_future(self._revoke_leases(kernel_id, list(issued), user)))
            raise
        except Exception as exc:
            self._abandon(abandoned, calls)
            leases = list(issued)
            if isinstance(exc, TimeoutError):
                err: VaultError = CredentialError(
                    f"Vault at {self.app.vault.url} did not issue the kernel's credentials "
                    f"within {self.issue_timeout:g} s"
                )
            elif isinstance(exc, VaultError):
                err = exc
            else:
                err = CredentialError(f"issuing credentials failed: {exc}")
            await self._revoke_leases(kernel_id, leases, user)
            self._audit("failure", kernel_id, user, error=str(err))
            if self.start_without_credentials:
                self.log.error(
                    "Kernel %s starts WITHOUT credentials (start_without_credentials): %s",
                    kernel_id,
                    err,
                )
                return {}
            raise err from None
        env: dict[str, str] = {}
        secrets: set[str] = set()
        for part_env, part_secrets in results:  # in profile order: later profiles win
            env.update(part_env)
            secrets |= part_secrets
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
        self._wake()
        self.app.secrets.set(kernel_id, secrets, owner=owner)
        for lease in issued:
            self._audit_lease(
                "issue",
                kernel_id,
                user,
                lease,
                request_id=lease.request_id,
                ttl=lease.ttl,
            )
        if self._stopped:  # the server stopped while we were issuing
            await self.revoke(kernel_id, reason="server_stop")
        return env

    def _abandon(self, abandoned: asyncio.Event, calls: list[asyncio.Task[Any]]) -> None:
        """Give up a start: from here on a call that completes revokes what it issued itself;
        those still running are kept to their end and their outcome taken up."""
        abandoned.set()
        for call in calls:
            if call.done():
                _consume(call)  # a failure already reported (or beside a timeout): taken up
            else:
                self._keep(call)
                call.add_done_callback(_consume)

    async def _issue_profile(
        self,
        vault: VaultTransport,
        profile: Profile,
        kernel_id: str,
        owner: str | None,
        issued: list[Lease],
        abandoned: asyncio.Event,
    ) -> tuple[dict[str, str], set[str]]:
        """One profile's Vault call and env; its lease joins ``issued``.

        Every lease has exactly one owner: ``issued`` (and so the caller) while the start is
        waiting, or this call itself once the start gave up (``abandoned``), which then revokes
        it here, so a start that timed out or failed leaks nothing.
        """
        try:
            values, secret_fields, lease = await self._issue_one(vault, profile, kernel_id, owner)
        except ProfileError as exc:
            raise CredentialError(str(exc)) from None
        except Exception as exc:
            err = translate_error(exc, self.app.vault.url)
            raise CredentialError(f"credential profile {profile.name!r}: {err}") from None
        if lease is not None:
            if abandoned.is_set():
                # Revoked like any other lease: audited, and kept for retry if Vault refuses.
                await self._revoke_leases(kernel_id, [lease], owner)
                raise CredentialError("the kernel start gave up waiting")
            issued.append(lease)
        values = {**values, "kernel_id": kernel_id, "user": owner or ""}
        try:
            rendered = profile.render(values)
        except ProfileError as exc:
            raise CredentialError(str(exc)) from None
        secrets = {str(values[f]) for f in secret_fields if values.get(f)}
        for var, value in rendered.items():
            # A value built from a secret field (a DSN with the password) is a secret too.
            if profile.fields_of(var) & secret_fields:
                secrets.add(value)
        return rendered, secrets

    async def _issue_one(
        self, vault: VaultTransport, profile: Profile, kernel_id: str, owner: str | None
    ) -> tuple[dict[str, Any], set[str], Lease | None]:
        now = time.time()
        if profile.type == "token":
            ttl = profile.ttl or self.default_token_ttl
            params: dict[str, Any] = {
                "policies": list(profile.policies) or ["default"],
                "no_parent": False,
                "no_default_policy": profile.no_default_policy,
                "ttl": ttl,
                "meta": {"user": owner or "", "kernel_id": kernel_id, "profile": profile.name},
                "display_name": f"kernel-{kernel_id[:8]}",
            }
            if profile.explicit_max_ttl:
                params["explicit_max_ttl"] = profile.explicit_max_ttl
            if profile.num_uses:
                params["num_uses"] = profile.num_uses
            response = _answer(await vault.post("auth/token/create", params))
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
            response = _answer(await vault.get(f"{profile.mount}/creds/{profile.role}"))
        elif profile.type == "kv":
            response = _answer(await vault.get(f"{profile.mount}/data/{profile.path}"))
            data = dict((response.get("data") or {}).get("data") or {})
            return data, {k for k, v in data.items() if isinstance(v, str)}, None
        else:
            read = await vault.get(profile.path)
            if read is None:
                raise CredentialError(
                    f"credential profile {profile.name!r}: Vault path {profile.path!r} is empty"
                )
            response = read
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


def _failures(calls: list[asyncio.Task[Any]]) -> list[BaseException]:
    """Every finished call's error, in profile order, each one retrieved.

    Why all of them: a start with several failing profiles must name each (the first one alone
    hides the others' causes), and an error nobody retrieved is logged by asyncio as "Task
    exception was never retrieved" when the task is collected, in whatever runs next.
    """
    return [exc for call in calls if not call.cancelled() and (exc := call.exception()) is not None]


def _one_error(failures: list[BaseException]) -> BaseException:
    """The error a start raises for its failed profiles: the only one, or one naming them all."""
    if len(failures) == 1:
        return failures[0]
    if not all(isinstance(exc, VaultError) for exc in failures):
        # A bug in one call (not a Vault refusal) stays visible as itself.
        return next(exc for exc in failures if not isinstance(exc, VaultError))
    causes = "; ".join(dict.fromkeys(str(exc) for exc in failures))  # duplicates once
    return CredentialError(f"{len(failures)} credential profiles failed: {causes}")


def _consume(call: asyncio.Future[Any]) -> None:
    """Retrieve a late call's outcome (it revoked its own lease) so asyncio does not log it."""
    if not call.cancelled():
        call.exception()


def _answer(response: dict[str, Any] | None) -> dict[str, Any]:
    if response is None:
        raise CredentialError("Vault sent an empty answer")
    return response


def _seconds(duration: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if duration[-1] in units:
        return int(duration[:-1]) * units[duration[-1]]
    return int(duration)
