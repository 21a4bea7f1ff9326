"""HTTP only: every handler is authenticated and authorized, and maps known errors once."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web
from tornado.httputil import HTTPServerRequest
from tornado.routing import HostMatches, Matcher, Rule

from . import __version__
from .credentials.vault import VaultAuthError, VaultError, VaultUnreachable
from .export.service import ExportFailed
from .hardening import boundary_status
from .service.client import ServiceRefused, ServiceUnavailable

if TYPE_CHECKING:
    from .extension import ProdDiscoveryApp

API = "/prod-discovery/api"
AUTH_RESOURCE = "prod_discovery"

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def map_errors(method: F) -> F:
    """Turn the project's known errors into 4xx/5xx JSON answers, in one place.

    Only bugs become 500. Vault failures are 502/503 because the fault lies upstream.
    """

    @functools.wraps(method)
    async def wrapper(self: APIHandler, *args: Any, **kwargs: Any) -> Any:
        try:
            return await method(self, *args, **kwargs)
        except web.HTTPError:
            raise
        except (ValueError, KeyError) as exc:
            raise web.HTTPError(400, str(exc)) from None
        except PermissionError as exc:
            raise web.HTTPError(403, str(exc)) from None
        except FileNotFoundError as exc:
            raise web.HTTPError(404, str(exc)) from None
        except VaultUnreachable as exc:
            raise web.HTTPError(503, str(exc)) from None
        except (VaultAuthError, VaultError) as exc:
            raise web.HTTPError(502, str(exc)) from None
        except ServiceRefused as exc:  # the trusted service said no: its status and reason
            raise web.HTTPError(exc.status, str(exc)) from None
        except ServiceUnavailable as exc:
            raise web.HTTPError(503, str(exc)) from None
        except ExportFailed as exc:
            raise web.HTTPError(502, str(exc)) from None

    return wrapper  # type: ignore[return-value]


class ProdDiscoveryHandler(ExtensionHandlerMixin, APIHandler):
    """Base of every handler: JSON in and out, access to the app."""

    auth_resource = AUTH_RESOURCE

    @property
    def app(self) -> ProdDiscoveryApp:
        return self.extensionapp  # type: ignore[return-value]

    def write_json(self, payload: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(payload, default=str))

    def get_json_body_dict(self) -> dict[str, Any]:
        body = self.get_json_body()
        if body is None:
            return {}
        if not isinstance(body, dict):
            raise web.HTTPError(400, "the request body must be a JSON object")
        return body


class StatusHandler(ProdDiscoveryHandler):
    """What the indicator shows: environment, active guards, Vault reachability and identity,
    and which kind of boundary protects the controls (``hardening.boundary_status``)."""

    @web.authenticated
    @authorized
    @map_errors
    async def get(self) -> None:
        app = self.app
        if app.service_client is not None:  # Vault is the trusted service's business
            vault = await app.broker.health()  # type: ignore[union-attr]
        else:
            vault = await asyncio.to_thread(app.vault.health)
        if app.vault_error and not vault.get("error"):
            vault["error"] = app.vault_error
        user = self.current_user
        # --- status: what the UI may show this user (labextension/) ---
        from .audit.api import can_read

        permissions = {"audit": can_read(self)}
        self.write_json(
            {
                "version": __version__,
                "permissions": permissions,
                "environment": {"name": app.environment_name, "color": app.environment_color},
                "guards": app.guards(),
                "paths": {**app.execution_paths.status(), "terminals": app.terminals},
                "vault": vault,
                "user": {"name": getattr(user, "username", None)},
                "boundary": boundary_status(app),
            }
        )


# --- credentials handlers (credentials/) ---
class CredentialsHandler(ProdDiscoveryHandler):
    """The caller's kernels with their credential profiles, lease ids and TTLs (never values)."""

    @web.authenticated
    @authorized
    @map_errors
    async def get(self) -> None:
        broker = self.app.broker
        owner = broker.visible_owner(self.current_user)
        kernels = [k.to_public() for k in broker.kernels(owner)]
        self.write_json({"active": broker.active, "kernels": kernels})


class CredentialsRenewHandler(ProdDiscoveryHandler):
    """Renew every renewable lease of one of the caller's kernels now."""

    @web.authenticated
    @authorized
    @map_errors
    async def post(self, kernel_id: str) -> None:
        broker = self.app.broker
        record = broker.get(kernel_id)
        owner = broker.visible_owner(self.current_user)
        if record is None or (owner is not None and record.owner != owner):
            raise FileNotFoundError(f"kernel {kernel_id} holds no credentials of yours")
        record = await broker.renew_now(kernel_id)
        self.write_json(record.to_public())


# --- export handlers (export/) ---
class ExportsHandler(ProdDiscoveryHandler):
    """Export a notebook (path relative to the server root) into a signed job bundle.

    201 with the bundle location and gate results; 422 with the gate results when refused.
    """

    @web.authenticated
    @authorized
    @map_errors
    async def post(self) -> None:
        from pathlib import Path

        from .export.service import export_for_user
        from .export.signing import SignatureError

        root = Path(self.settings.get("server_root_dir") or ".")
        body = self.get_json_body_dict()
        try:
            status, payload = await asyncio.to_thread(
                export_for_user, self.app, root, body, self.current_user
            )
        except SignatureError as exc:
            raise web.HTTPError(503, f"bundle could not be signed: {exc}") from None
        self.write_json(payload, status)


class ExportJobsHandler(ProdDiscoveryHandler):
    """Start an export job (202 with its id); the trusted service runs it when configured."""

    @web.authenticated
    @authorized
    @map_errors
    async def post(self) -> None:
        body = self.get_json_body_dict()
        job = await asyncio.to_thread(self.app.export_jobs.submit, body, self.current_user)
        self.write_json(job, 202)


class ExportJobHandler(ProdDiscoveryHandler):
    """An export job: each gate's result as it completes, then the bundle and its signer."""

    @web.authenticated
    @authorized
    @map_errors
    async def get(self, job_id: str) -> None:
        job = await asyncio.to_thread(self.app.export_jobs.status, job_id, self.current_user)
        self.write_json(job)


default_handlers: list[tuple[str, type[web.RequestHandler]]] = [
    (rf"{API}/status", StatusHandler),
    (rf"{API}/credentials", CredentialsHandler),
    (rf"{API}/credentials/(?P<kernel_id>[\w-]+)/renew", CredentialsRenewHandler),
    (rf"{API}/exports", ExportsHandler),
    (rf"{API}/export-jobs", ExportJobsHandler),
    (rf"{API}/export-jobs/(?P<job_id>[0-9a-f]{{32}})", ExportJobHandler),
]


class PrefixMatches(Matcher):
    """Matches any request whose path starts with ``prefix`` (one ``str.startswith``)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def match(self, request: HTTPServerRequest) -> dict[str, Any] | None:
        return {} if request.path.startswith(self.prefix) else None


def narrow_routes(web_app: Any, rules_before: list[Rule], prefix: str) -> bool:
    """Let only requests under ``prefix`` reach the rules this extension just added.

    Why: tornado tries each extension's routes before the server's own, so without this every
    request (each contents read, each download) is matched against all of our patterns first,
    a measurable share of an audited request. The rule jupyter_server added for us (any host,
    then our patterns) gets a path-prefix matcher instead of its any-host one; within it the
    patterns, their handlers and jupyter_server's check of their authentication are unchanged.
    Returns False, changing nothing, when the added rules are not the expected shape.
    """
    added = [r for r in web_app.default_router.rules if r not in rules_before]
    if len(added) != 1:
        return False
    rule = added[0]
    router = rule.target
    if not isinstance(rule.matcher, HostMatches) or rule.matcher.host_pattern.pattern != ".*$":
        return False
    patterns = [getattr(r.matcher, "regex", None) for r in getattr(router, "rules", ())]
    if not patterns or not all(p is not None and p.pattern.startswith(prefix) for p in patterns):
        return False
    rule.matcher = PrefixMatches(prefix)
    return True
