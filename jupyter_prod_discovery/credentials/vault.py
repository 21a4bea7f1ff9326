"""The server's own connection to Vault/OpenBao, on hvac.

Why a layer of our own: the broker, the export signer and the audit checkpoints all need one
authenticated, self-renewing client, and every failure must turn into a message a person can act on
(address unreachable, token invalid, role refused) instead of a stack trace from ``requests``.
The token is a secret: it is read from the environment or a file, never logged and never returned.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hvac
import hvac.exceptions
import requests
import requests.exceptions
import requests.utils
from traitlets import Bool, Enum, Float, Unicode, default, validate
from traitlets.config import LoggingConfigurable

if TYPE_CHECKING:
    from .transport import VaultTransport

__all__ = [
    "VaultAuthError",
    "VaultClient",
    "VaultError",
    "VaultIdentity",
    "VaultUnreachable",
]


class VaultError(RuntimeError):
    """Vault could not do what was asked; the message names the cause and never holds a secret."""


class VaultUnreachable(VaultError):
    """Vault did not answer (connection refused, DNS, TLS, timeout) or is sealed."""


class VaultAuthError(VaultError):
    """Vault answered but refused the server's identity (bad token, role or JWT)."""


@dataclass(frozen=True)
class VaultIdentity:
    """What the server may tell about its own Vault token: never the token itself."""

    display_name: str
    policies: list[str]
    ttl: int
    renewable: bool
    accessor: str = ""
    entity_id: str = ""
    expire_time: str | None = None
    meta: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "display_name": self.display_name,
            "policies": list(self.policies),
            "ttl": self.ttl,
            "renewable": self.renewable,
            "entity_id": self.entity_id,
            "expire_time": self.expire_time,
        }


def translate_error(exc: BaseException, address: str) -> VaultError:
    """Turn an hvac/requests exception into a VaultError with a message a person can act on."""
    if isinstance(exc, VaultError):
        return exc
    if isinstance(exc, requests.exceptions.SSLError):
        return VaultUnreachable(
            f"TLS error talking to Vault at {address}: {exc.__class__.__name__}"
        )
    if isinstance(exc, requests.exceptions.Timeout):
        return VaultUnreachable(f"Vault at {address} did not answer in time")
    if isinstance(exc, requests.exceptions.ConnectionError):
        return VaultUnreachable(
            f"Vault at {address} is unreachable (connection refused or no route)"
        )
    if isinstance(exc, hvac.exceptions.VaultDown):
        return VaultUnreachable(f"Vault at {address} is sealed or in maintenance")
    if isinstance(exc, hvac.exceptions.Forbidden):
        return VaultAuthError(f"Vault at {address} refused the request: permission denied")
    if isinstance(exc, hvac.exceptions.Unauthorized):
        return VaultAuthError(f"Vault at {address} refused the credentials: unauthorized")
    if isinstance(exc, hvac.exceptions.InvalidRequest):
        # Vault's own error strings name the problem ("role not found"); they hold no secret.
        errors = "; ".join(getattr(exc, "errors", None) or []) or "invalid request"
        return VaultError(f"Vault at {address} rejected the request: {errors}")
    if isinstance(exc, hvac.exceptions.InvalidPath):
        return VaultError(f"Vault at {address}: no such path")
    if isinstance(exc, hvac.exceptions.VaultError):
        return VaultError(f"Vault at {address} failed: {exc.__class__.__name__}")
    return VaultError(f"Vault at {address} failed: {exc.__class__.__name__}: {exc}")


def _session_for(url: str, verify: bool | str) -> tuple[requests.Session, bool | str]:
    """A requests session for ``url`` with the environment's settings resolved once.

    Why: by default requests looks the environment up again on every request (proxy variables
    and their bypass list, ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``, ``~/.netrc``), which is
    about a third of the client-side CPU of a Vault call and is paid three times per kernel
    start. The result is the same for every request to one address, so it is resolved here and
    the session stops consulting the environment. Returns the session and the ``verify`` to use.
    """
    session = requests.Session()
    settings = session.merge_environment_settings(url, {}, None, verify, None)
    auth = requests.utils.get_netrc_auth(url)
    session.trust_env = False
    session.proxies = dict(settings.get("proxies") or {})
    env_verify = settings.get("verify")
    resolved: bool | str = verify if env_verify is None else env_verify
    session.verify = resolved
    if auth:
        session.auth = auth
    return session, resolved


def _call_jwt_provider(spec: str) -> str:
    """Import and call a JWT provider; its failures become a VaultAuthError naming it."""
    from traitlets.utils.importstring import import_item

    try:
        provider = import_item(spec.replace(":", "."))
        token = provider()
    except VaultError:
        raise
    except Exception as exc:
        raise VaultAuthError(
            f"the JWT provider {spec} failed: {exc.__class__.__name__}: {exc}"
        ) from None
    if not isinstance(token, str) or not token.strip():
        raise VaultAuthError(f"the JWT provider {spec} returned no JWT")
    return token.strip()


class VaultClient(LoggingConfigurable):
    """One authenticated, self-renewing hvac client for the Jupyter server.

    Configure it as ``c.VaultClient.<trait>``. ``VAULT_ADDR`` and ``VAULT_TOKEN`` are honoured as
    defaults, like the Vault CLI and hvac do. With no address Vault is "not configured": the
    credential guard is then inactive and the status endpoint says so.
    """

    url = Unicode(
        config=True,
        help="""Address of Vault/OpenBao, e.g. https://vault.example.com:8200.
        Default: the VAULT_ADDR environment variable, or empty (Vault not configured).""",
    )

    @default("url")
    def _default_url(self) -> str:
        return os.environ.get("VAULT_ADDR", "")

    @validate("url")
    def _validate_url(self, proposal: Any) -> str:
        value = str(proposal["value"]).strip().rstrip("/")
        if value and not value.startswith(("http://", "https://")):
            from traitlets import TraitError

            raise TraitError(f"VaultClient.url must start with http:// or https://, got {value!r}")
        return value

    auth_method = Enum(
        ["token", "approle", "jwt"],
        default_value="token",
        config=True,
        help="""How the server logs in to Vault. 'token' (default): use VaultClient.token
        (VAULT_TOKEN). 'approle': log in with approle_role_id/approle_secret_id. 'jwt': log in to
        the JWT auth method with the token in jwt_path (for example a JupyterHub-issued or
        Kubernetes service-account JWT) as jwt_role.""",
    )

    token = Unicode(
        config=True,
        help="""Vault token for auth_method 'token'. Default: the VAULT_TOKEN environment
        variable. Never logged nor returned by any endpoint. Prefer the environment to a config file.""",
    )

    @default("token")
    def _default_token(self) -> str:
        return os.environ.get("VAULT_TOKEN", "")

    namespace = Unicode(
        config=True,
        help="Vault Enterprise namespace. Default: VAULT_NAMESPACE or empty (none).",
    )

    @default("namespace")
    def _default_namespace(self) -> str:
        return os.environ.get("VAULT_NAMESPACE", "")

    verify = Unicode(
        "true",
        config=True,
        help="""TLS verification: 'true' (default, system CAs), 'false' (never in production),
        or the path of a CA bundle. Default may be set with VAULT_CACERT.""",
    )

    @default("verify")
    def _default_verify(self) -> str:
        return os.environ.get("VAULT_CACERT", "true")

    timeout = Float(
        5.0,
        config=True,
        help="Seconds to wait for any Vault request before calling Vault unreachable. Default 5.",
    )

    approle_mount = Unicode("approle", config=True, help="Mount path of the AppRole auth method.")
    approle_role_id = Unicode(
        config=True, help="AppRole role_id. Default: the VAULT_ROLE_ID environment variable."
    )

    @default("approle_role_id")
    def _default_role_id(self) -> str:
        return os.environ.get("VAULT_ROLE_ID", "")

    approle_secret_id = Unicode(
        config=True,
        help="AppRole secret_id (a secret). Default: the VAULT_SECRET_ID environment variable.",
    )

    @default("approle_secret_id")
    def _default_secret_id(self) -> str:
        return os.environ.get("VAULT_SECRET_ID", "")

    jwt_mount = Unicode(
        "jwt", config=True, help="Mount path of the JWT auth method. Default 'jwt'."
    )
    jwt_role = Unicode(config=True, help="Role of the JWT auth method to log in as.")
    jwt_path = Unicode(
        config=True,
        help="""File holding the JWT to log in with, read at every login so rotated tokens are
        picked up. Default: the PROD_DISCOVERY_VAULT_JWT_PATH environment variable.""",
    )

    @default("jwt_path")
    def _default_jwt_path(self) -> str:
        return os.environ.get("PROD_DISCOVERY_VAULT_JWT_PATH", "")

    jwt_provider = Unicode(
        config=True,
        help="""Import string ('package.module:function') of a callable returning a fresh JWT,
        called at every JWT login instead of reading jwt_path: for JWTs that must be fetched,
        such as the hub-signed ones of jupyter_prod_discovery.hub.singleuser:fetch_jwt.
        Default: the PROD_DISCOVERY_VAULT_JWT_PROVIDER environment variable, or empty.""",
    )

    @default("jwt_provider")
    def _default_jwt_provider(self) -> str:
        return os.environ.get("PROD_DISCOVERY_VAULT_JWT_PROVIDER", "")

    renew_self = Bool(
        True,
        config=True,
        help="""Keep the server's own token alive: renew it (or log in again for approle/jwt)
        when less than renew_fraction of its TTL is left. Default True.""",
    )
    renew_fraction = Float(
        0.5,
        config=True,
        help="Renew the server's own token when this fraction of its TTL is left. Default 0.5.",
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._client: hvac.Client | None = None
        self._identity: VaultIdentity | None = None
        self._identity_at = 0.0
        self._last_error: str | None = None
        self._renew_task: asyncio.Task[None] | None = None
        self._transport: VaultTransport | None = None

    # -- state ----------------------------------------------------------------------------------

    @property
    def configured(self) -> bool:
        """Whether an address is set at all."""
        return bool(self.url)

    @property
    def last_error(self) -> str | None:
        """Message of the last failure, or None when the last call succeeded."""
        return self._last_error

    @property
    def client(self) -> hvac.Client:
        """The authenticated hvac client; raises VaultError before connect() succeeded."""
        if self._client is None:
            raise VaultError("Vault is not connected (VaultClient.connect() has not succeeded)")
        return self._client

    @property
    def transport(self) -> VaultTransport:
        """A lean transport for hot paths (the broker's per-kernel calls), using this client's
        current token; raises VaultError before connect() succeeded (see transport.py)."""
        self.client  # noqa: B018 - raises before connect()
        if self._transport is None:
            from .transport import VaultTransport

            session, verify = _session_for(self.url, self._verify_arg())
            self._transport = VaultTransport(
                self.url,
                token=lambda: self.client.token,
                namespace=self.namespace or None,
                verify=verify,
                timeout=self.timeout,
                hvac_client=(lambda: self.client) if session.proxies else None,
            )
        return self._transport

    def _verify_arg(self) -> bool | str:
        v = self.verify.strip()
        if v.lower() in ("", "true", "1", "yes"):
            return True
        if v.lower() in ("false", "0", "no"):
            return False
        return v

    def new_client(self, token: str | None = None) -> hvac.Client:
        """A fresh hvac client for this address; ``token`` None means no token header at all.

        Login calls must carry no token (and hvac must not fall back to ~/.vault-token), so the
        token is always passed explicitly, possibly as an empty string.
        """
        session, verify = _session_for(self.url, self._verify_arg())
        client = hvac.Client(
            url=self.url,
            token=token or "",
            namespace=self.namespace or None,
            verify=verify,
            timeout=self.timeout,
            proxies=session.proxies or None,
            session=session,
        )
        if not token:
            client.token = None
        return client

    # -- login ----------------------------------------------------------------------------------

    def _login(self) -> hvac.Client:
        if self.auth_method == "token":
            if not self.token:
                raise VaultAuthError(
                    "Vault is configured but no token is set (VAULT_TOKEN or c.VaultClient.token)"
                )
            return self.new_client(self.token)
        client = self.new_client(None)
        if self.auth_method == "approle":
            if not (self.approle_role_id and self.approle_secret_id):
                raise VaultAuthError(
                    "auth_method 'approle' needs VaultClient.approle_role_id and approle_secret_id"
                )
            client.auth.approle.login(
                role_id=self.approle_role_id,
                secret_id=self.approle_secret_id,
                mount_point=self.approle_mount,
            )
            return client
        if not (self.jwt_role and (self.jwt_path or self.jwt_provider)):
            raise VaultAuthError(
                "auth_method 'jwt' needs VaultClient.jwt_role and jwt_path or jwt_provider"
            )
        if self.jwt_provider:
            jwt = _call_jwt_provider(self.jwt_provider)
        else:
            try:
                jwt = Path(self.jwt_path).read_text().strip()
            except OSError as exc:
                raise VaultAuthError(
                    f"cannot read the JWT file {self.jwt_path}: {exc.strerror}"
                ) from None
        client.auth.jwt.jwt_login(role=self.jwt_role, jwt=jwt, path=self.jwt_mount)
        return client

    def connect(self) -> VaultIdentity:
        """Log in and check the token; raise a VaultError naming the cause on any failure.

        Called once at server start: a configured but unusable Vault must stop the server with a
        clear message rather than fail later in the middle of a kernel start.
        """
        if not self.configured:
            raise VaultError("Vault is not configured (set VAULT_ADDR or c.VaultClient.url)")
        try:
            client = self._login()
            identity = self._lookup(client)
        except (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized):
            # Vault answers 403 to a lookup with a token it does not know.
            what = "token" if self.auth_method == "token" else f"{self.auth_method} login"
            err: VaultError = VaultAuthError(
                f"Vault at {self.url} refused the server's {what}: invalid, expired or revoked"
            )
            self._last_error = str(err)
            raise err from None
        except Exception as exc:
            err = translate_error(exc, self.url)
            self._last_error = str(err)
            raise err from None
        self._client = client
        self._last_error = None
        self.log.info(
            "Connected to Vault at %s as %r (policies: %s, ttl %ss)",
            self.url,
            identity.display_name,
            ",".join(identity.policies),
            identity.ttl,
        )
        return identity

    def _lookup(self, client: hvac.Client) -> VaultIdentity:
        data = client.auth.token.lookup_self()["data"]
        identity = VaultIdentity(
            display_name=data.get("display_name") or "",
            policies=sorted(data.get("policies") or []),
            ttl=int(data.get("ttl") or 0),
            renewable=bool(data.get("renewable")),
            accessor=data.get("accessor") or "",
            entity_id=data.get("entity_id") or "",
            expire_time=data.get("expire_time"),
            meta=dict(data.get("meta") or {}),
        )
        self._identity = identity
        self._identity_at = time.monotonic()
        return identity

    def identity(self, max_age: float = 5.0) -> VaultIdentity:
        """The server's identity, looked up again when older than ``max_age`` seconds."""
        if self._identity is not None and time.monotonic() - self._identity_at < max_age:
            return self._identity
        try:
            identity = self._lookup(self.client)
        except Exception as exc:
            err = translate_error(exc, self.url)
            self._last_error = str(err)
            raise err from None
        self._last_error = None
        return identity

    def health(self) -> dict[str, Any]:
        """Reachability and identity for the status endpoint (blocking; call it from a thread)."""
        info: dict[str, Any] = {
            "configured": self.configured,
            "address": self.url or None,
            "auth_method": self.auth_method,
            "reachable": False,
            "authenticated": False,
            "identity": None,
            "error": None,
        }
        if not self.configured:
            return info
        try:
            status = self.new_client(None).sys.read_health_status(method="GET")
            payload = status.json() if hasattr(status, "json") else status
            info["reachable"] = True
            info["sealed"] = bool(payload.get("sealed", False))
            info["version"] = payload.get("version")
        except Exception as exc:
            info["error"] = str(translate_error(exc, self.url))
            return info
        try:
            info["identity"] = self.identity().to_dict()
            info["authenticated"] = True
        except VaultError as exc:
            info["error"] = str(exc)
        return info

    # -- renewal --------------------------------------------------------------------------------

    def renew(self) -> VaultIdentity:
        """Renew the server's token now, or log in again when it cannot be renewed."""
        try:
            ident = self._lookup(self.client)
            if ident.renewable:
                self.client.auth.token.renew_self()
            elif self.auth_method != "token":
                self._client = self._login()
            return self._lookup(self.client)
        except Exception as exc:
            err = translate_error(exc, self.url)
            self._last_error = str(err)
            raise err from None

    def _next_renewal_delay(self) -> float:
        ident = self._identity
        if ident is None or ident.ttl <= 0:
            return 60.0  # root-like tokens without TTL: just check reachability now and then
        return max(1.0, ident.ttl * self.renew_fraction)

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(self._next_renewal_delay())
            try:
                await asyncio.to_thread(self.renew)
            except VaultError as exc:
                self.log.warning("Renewing the server's Vault token failed: %s", exc)
                await asyncio.sleep(5)

    def start_renewal(self) -> None:
        """Start the background renewal of the server's own token (idempotent)."""
        if not self.renew_self or self._client is None or self._renew_task is not None:
            return
        ident = self._identity
        if ident is not None and ident.ttl == 0 and self.auth_method == "token":
            return  # a non-expiring token (root, periodic without TTL) needs no renewal
        self._renew_task = asyncio.get_running_loop().create_task(self._renew_loop())

    def close(self) -> None:
        """Close the transport's idle connections (server stop)."""
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()

    async def stop_renewal(self) -> None:
        """Cancel the renewal task and wait for it."""
        task, self._renew_task = self._renew_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
