"""HTTP only: the service's REST API. Every endpoint but the public key and head authenticates.

- ``GET  /api/status``                      the caller's principal, ledger and Vault state
- ``GET  /api/audit/public-key``            the signing key (PEM, key id): public
- ``GET  /api/audit/head``                  the signed head (seq, hash, time): public
- ``GET  /api/audit/stream``                where this server's stream stands (to resume)
- ``POST /api/audit/events``                JSON lines from ``X-Prod-Discovery-Server``
- ``GET  /api/audit/channel`` (Upgrade)     the same, kept open: lines in, acks out
- ``POST /api/audit/session``               this server's stream MAC key (issued once)
- ``POST /api/heartbeat``                   the server lives; its kernels' public records
- ``POST /api/credentials``                 ``{kernel_id, kernel_name}``: issue
- ``POST /api/credentials/<id>/renew``      renew now
- ``DELETE /api/credentials/<id>?reason=``  revoke
- ``POST /api/exports``                     submit a notebook for promotion: 202, the job
- ``GET  /api/exports/<id>``                the job: each gate as it completes, then the bundle
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tornado import web

from ..credentials.records import AccessDenied
from ..credentials.vault import VaultError, VaultUnreachable
from .channel_server import ChannelHandler
from .credentials import CredentialDesk
from .exports import ExportDesk, ExportInvalid, TooManyJobs
from .identity import ClientAuthenticator
from .ledger import AuditLedger, LedgerError, LedgerUnavailable, Principal

__all__ = ["SERVER_HEADER", "make_handlers"]

SERVER_HEADER = "X-Prod-Discovery-Server"
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
_REASONS = {"shutdown", "restart", "dead", "server_stop", "failure", "reissue"}


def map_errors(method: F) -> F:
    """Known errors to 4xx/5xx JSON, once; only bugs become 500."""

    @functools.wraps(method)
    async def wrapper(self: _Base, *args: Any, **kwargs: Any) -> Any:
        try:
            return await method(self, *args, **kwargs)
        except web.HTTPError:
            raise
        except LedgerError as exc:
            raise web.HTTPError(400, str(exc)) from None
        except FileNotFoundError as exc:
            raise web.HTTPError(404, str(exc)) from None
        except (LedgerUnavailable, VaultUnreachable) as exc:
            raise web.HTTPError(503, str(exc)) from None
        except AccessDenied as exc:  # policy: no profile applies, override not allowed
            raise web.HTTPError(403, str(exc)) from None
        except ExportInvalid as exc:
            raise web.HTTPError(400, str(exc)) from None
        except TooManyJobs as exc:
            raise web.HTTPError(429, str(exc)) from None
        except VaultError as exc:  # Vault refused or failed (translate_error strips tokens)
            raise web.HTTPError(502, str(exc)) from None

    return wrapper  # type: ignore[return-value]


class _Base(web.RequestHandler):
    principal: Principal

    @property
    def ledger(self) -> AuditLedger:
        ledger: AuditLedger = self.settings["ledger"]
        return ledger

    @property
    def desk(self) -> CredentialDesk:
        desk: CredentialDesk = self.settings["desk"]
        return desk

    def check_xsrf_cookie(self) -> None:  # API clients only, no cookies are ever set
        return

    async def prepare(self) -> None:
        if getattr(self, "public", False):
            return
        auth: ClientAuthenticator = self.settings["authenticator"]
        self.principal = await auth.authenticate(self)
        if self.principal.username in self.settings.get("refused_users", ()):
            # The sandbox account runs promoted notebooks' code: it is nobody's client.
            raise web.HTTPError(403, f"{self.principal.username!r} may not use this service")

    @property
    def server_id(self) -> str:
        sid = self.request.headers.get(SERVER_HEADER, "")
        if not sid or len(sid) > 200 or "/" in sid:
            raise web.HTTPError(400, f"send the server's id in {SERVER_HEADER}")
        return sid

    def body_dict(self) -> dict[str, Any]:
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            raise web.HTTPError(400, "the request body must be JSON") from None
        if not isinstance(body, dict):
            raise web.HTTPError(400, "the request body must be a JSON object")
        return body

    def write_json(self, payload: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(payload))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = exc.log_message if isinstance(exc, web.HTTPError) and exc.log_message else ""
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": status_code, "message": message or self._reason}))


class StatusHandler(_Base):
    @map_errors
    async def get(self) -> None:
        self.write_json(
            {
                "principal": self.principal.to_json(),
                "ledger": self.ledger.status(),
                "credentials": {"active": self.desk.active},
            }
        )


class PublicKeyHandler(_Base):
    public = True

    async def get(self) -> None:
        signer = self.ledger.signer
        self.write_json(
            {
                "algorithm": "ed25519",
                "key_id": signer.key_id,
                "public_key_pem": signer.public_key_pem(),
            }
        )


class HeadHandler(_Base):
    public = True

    async def get(self) -> None:
        self.write_json(self.ledger.signed_head())


class StreamHandler(_Base):
    @map_errors
    async def get(self) -> None:
        self.write_json(
            {"last_server_seq": self.ledger.stream_position(self.principal, self.server_id)}
        )


class SessionHandler(_Base):
    @map_errors
    async def post(self) -> None:
        key = await self.ledger.session_key(self.principal, self.server_id)
        self.write_json({"key": key.hex()})


class EventsHandler(_Base):
    @map_errors
    async def post(self) -> None:
        lines = self.request.body.decode("utf-8", "replace").split("\n")
        result = await self.ledger.append(self.principal, self.server_id, lines)
        self.write_json(result)


class HeartbeatHandler(_Base):
    @map_errors
    async def post(self) -> None:
        self.write_json({"kernels": self.desk.beat(self.principal, self.server_id)})


class CredentialsHandler(_Base):
    @map_errors
    async def post(self) -> None:
        body = self.body_dict()
        kernel_id, kernel_name = body.get("kernel_id"), body.get("kernel_name", "")
        if not isinstance(kernel_id, str) or not kernel_id or "/" in kernel_id:
            raise web.HTTPError(400, "kernel_id must be a non-empty string without '/'")
        if not isinstance(kernel_name, str):
            raise web.HTTPError(400, "kernel_name must be a string")
        env, secrets, public = await self.desk.issue(
            self.principal, self.server_id, kernel_id, kernel_name
        )
        self.write_json({"env": env, "secrets": secrets, "kernel": public})


class CredentialHandler(_Base):
    @map_errors
    async def delete(self, kernel_id: str) -> None:
        reason = self.get_query_argument("reason", "shutdown")
        if reason not in _REASONS:
            raise web.HTTPError(400, f"reason must be one of {sorted(_REASONS)}")
        known = await self.desk.revoke(self.principal, self.server_id, kernel_id, reason)
        self.write_json({"revoked": known})


class ExportsHandler(_Base):
    @map_errors
    async def post(self) -> None:
        exports: ExportDesk = self.settings["exports"]
        job = exports.create(self.principal, self.server_id, self.body_dict())
        self.set_header("Location", self.request.path.rstrip("/") + "/" + job.id)
        self.write_json(job.to_json(), status=202)


class ExportHandler(_Base):
    @map_errors
    async def get(self, job_id: str) -> None:
        exports: ExportDesk = self.settings["exports"]
        self.write_json(exports.get(self.principal, job_id).to_json())


class RenewHandler(_Base):
    @map_errors
    async def post(self, kernel_id: str) -> None:
        self.write_json(await self.desk.renew(self.principal, self.server_id, kernel_id))


def make_handlers(prefix: str) -> list[tuple[str, type[web.RequestHandler]]]:
    p = "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"
    return [
        (p + "api/status", StatusHandler),
        (p + "api/audit/public-key", PublicKeyHandler),
        (p + "api/audit/head", HeadHandler),
        (p + "api/audit/stream", StreamHandler),
        (p + "api/audit/events", EventsHandler),
        (p + "api/audit/channel", ChannelHandler),
        (p + "api/audit/session", SessionHandler),
        (p + "api/heartbeat", HeartbeatHandler),
        (p + "api/credentials", CredentialsHandler),
        (p + r"api/credentials/(?P<kernel_id>[\w-]+)/renew", RenewHandler),
        (p + r"api/credentials/(?P<kernel_id>[\w-]+)", CredentialHandler),
        (p + "api/exports", ExportsHandler),
        (p + r"api/exports/(?P<job_id>[0-9a-f]{32})", ExportHandler),
    ]
