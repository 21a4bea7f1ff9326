"""Who is calling the service: identity the service establishes itself, never one a body claims.

Two ways, one per topology:

- ``PeerCredentials`` (standalone): the service listens on a unix socket; the kernel tells it
  the uid of the connecting process (``SO_PEERCRED``), and the uid's name and groups come from the
  system databases. No secret exists to steal: a user's server, kernel or terminal all
  authenticate as that user, and only as that user.
- ``HubServerToken`` (JupyterHub): a single-user server presents its own ``$JUPYTERHUB_API_TOKEN``;
  the hub says whose server it belongs to (``access:servers!server=<user>/<name>``) and the
  user's groups. A user's personal token or another service's token has no such scope: 403.
  Answers are cached for ``cache_seconds`` under the token's sha256, never the token itself.
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import socket
import struct
import time
from abc import ABC, ABCMeta, abstractmethod
from typing import Any

from tornado import web
from traitlets import Float, MetaHasTraits, Unicode, default
from traitlets.config import LoggingConfigurable

from ..hub.scopes import server_owner
from .ledger import Principal

__all__ = ["ClientAuthenticator", "HubServerToken", "PeerCredentials"]


class _Meta(ABCMeta, MetaHasTraits):
    pass


class ClientAuthenticator(ABC, LoggingConfigurable, metaclass=_Meta):
    """Establishes the principal of a request to the service (contract: tests/test_service_*)."""

    @abstractmethod
    async def authenticate(self, handler: web.RequestHandler) -> Principal:
        """The caller's principal; raise ``web.HTTPError(401 or 403)`` naming why not."""

    @property
    def recheck_after(self) -> float | None:
        """Seconds after which a kept-open connection (the audit channel) must authenticate
        again, as a new request would; None when the identity is the connection's own (a unix
        socket's peer uid) and cannot change. Default None."""
        return None


def peer_uid(handler: web.RequestHandler) -> int | None:
    """The uid of the process at the other end of a unix socket request, else None."""
    stream = getattr(handler.request.connection, "stream", None)
    sock = getattr(stream, "socket", None)
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


class PeerCredentials(ClientAuthenticator):
    """Standalone: the OS user of the calling process, from the unix socket's peer credentials."""

    async def authenticate(self, handler: web.RequestHandler) -> Principal:
        uid = peer_uid(handler)
        if uid is None:
            raise web.HTTPError(401, "connect over the service's unix socket (peer credentials)")
        try:
            entry = pwd.getpwuid(uid)
        except KeyError:
            raise web.HTTPError(403, f"uid {uid} has no user name") from None
        groups = tuple(
            sorted(grp.getgrgid(g).gr_name for g in os.getgrouplist(entry.pw_name, entry.pw_gid))
        )
        return Principal(entry.pw_name, "", groups, "peer-uid")


class HubServerToken(ClientAuthenticator):
    """JupyterHub: a single-user server's own API token, checked with the hub."""

    hub_api_url = Unicode(
        config=True,
        help="The hub's API URL. Default: $JUPYTERHUB_API_URL (set for hub services).",
    )
    api_token = Unicode(
        config=True,
        help="""The service's own hub API token (to read users' groups). Default:
        $JUPYTERHUB_API_TOKEN. Never logged.""",
    )
    cache_seconds = Float(
        30.0,
        config=True,
        help="""Seconds a token's identity is reused before the hub is asked again (a stopped
        server's token stops working at most this long after). Default 30.""",
    )

    @default("hub_api_url")
    def _hub_default(self) -> str:
        return os.environ.get("JUPYTERHUB_API_URL", "")

    @default("api_token")
    def _token_default(self) -> str:
        return os.environ.get("JUPYTERHUB_API_TOKEN", "")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._cache: dict[str, tuple[float, Principal]] = {}

    @property
    def recheck_after(self) -> float | None:
        """A stopped server's token must stop working on an open channel as on requests."""
        return self.cache_seconds

    async def authenticate(self, handler: web.RequestHandler) -> Principal:
        scheme, _, token = handler.request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() not in ("token", "bearer") or not token:
            raise web.HTTPError(401, "send the server's API token: Authorization: token <token>")
        key = hashlib.sha256(token.encode()).hexdigest()
        cached = self._cache.get(key)
        now = time.monotonic()
        if cached and now - cached[0] < self.cache_seconds:
            return cached[1]
        owner = await server_owner(self.hub_api_url, self.api_token, token)
        principal = Principal(owner.user, owner.server, tuple(sorted(owner.groups)), "hub-token")
        if len(self._cache) > 10000:
            self._cache.clear()
        self._cache[key] = (now, principal)
        return principal
