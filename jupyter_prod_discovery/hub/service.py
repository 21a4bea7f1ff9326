"""The JupyterHub managed service that issues per-user JWTs to single-user servers.

Run by the hub (``c.JupyterHub.services``, see :func:`jupyter_prod_discovery.hub.config.
configure_hub`) as ``python -m jupyter_prod_discovery.hub.service``. Endpoints, under the
service prefix (``/services/prod-discovery-jwt/``):

- ``GET  jwks.json``: the public keys (JWKS), unauthenticated: Vault's ``jwks_url``.
- ``POST token``: ``Authorization: token $JUPYTERHUB_API_TOKEN`` of a single-user server. The
  hub tells who owns that token and which server it belongs to; the answer is
  ``{"jwt": ..., "expires_at": ...}`` for that user and server only.

Why the server's own API token is the credential: the hub already minted it for exactly one
user's server, with the ``access:servers!server=<user>/<name>`` scope, and revokes it when the
server stops. A user's personal API token or another service's token carries no such scope and
gets 403, so a JWT always names the owner of a running server, never a name from the request.
Groups and the admin flag are read from the hub at issue time, so a group change applies at the
server's next Vault login.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import Any
from urllib.parse import urlparse

from tornado import web
from tornado.ioloop import IOLoop

from .issuer import JWTIssuer
from .scopes import server_of_scopes, server_owner

__all__ = ["SERVICE_NAME", "TokenHandler", "main", "make_app", "server_of_scopes"]

SERVICE_NAME = "prod-discovery-jwt"


class _Base(web.RequestHandler):
    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = exc.log_message if isinstance(exc, web.HTTPError) and exc.log_message else ""
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": status_code, "message": message or self._reason}))


class JWKSHandler(_Base):
    """The public keys; Vault fetches them (jwks_url) to verify the JWTs."""

    def get(self) -> None:
        issuer: JWTIssuer = self.settings["issuer"]
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "max-age=60")
        self.finish(json.dumps(issuer.jwks()))


class TokenHandler(_Base):
    """Issue a JWT for the user and server that own the presented server API token."""

    async def post(self) -> None:
        auth = self.request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() not in ("token", "bearer") or not token.strip():
            raise web.HTTPError(401, "send the server's API token: Authorization: token <token>")
        owner = await server_owner(
            self.settings["hub_api_url"], self.settings["api_token"], token.strip()
        )
        user_name, server_name, groups = owner.user, owner.server, list(owner.groups)
        admin = owner.admin
        issuer: JWTIssuer = self.settings["issuer"]
        claims_jwt = issuer.issue(user_name, groups, server_name, admin)
        claims = issuer.verify(claims_jwt)
        issuer.log.info(
            "Issued JWT %s for user %r server %r (groups: %s)",
            claims["jti"],
            user_name,
            server_name,
            ",".join(groups) or "-",
        )
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps({"jwt": claims_jwt, "expires_at": claims["exp"]}))


def make_app(issuer: JWTIssuer, prefix: str, hub_api_url: str, api_token: str) -> web.Application:
    """The tornado application of the service (routes under ``prefix``)."""
    prefix = "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"
    return web.Application(
        [
            (prefix + "jwks.json", JWKSHandler),
            (prefix + r"\.well-known/jwks.json", JWKSHandler),
            (prefix + "token", TokenHandler),
        ],
        issuer=issuer,
        hub_api_url=hub_api_url,
        api_token=api_token,
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the managed service (configuration from the JUPYTERHUB_* environment)."""
    import logging

    logging.basicConfig(level=logging.INFO, format="[%(levelname)s %(name)s] %(message)s")
    api_url = os.environ.get("JUPYTERHUB_API_URL", "")
    api_token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
    service_url = os.environ.get("JUPYTERHUB_SERVICE_URL", "")
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", f"/services/{SERVICE_NAME}/")
    if not (api_url and api_token and service_url):
        print(
            "prod-discovery-jwt: run me as a JupyterHub managed service "
            "(JUPYTERHUB_API_URL, JUPYTERHUB_API_TOKEN and JUPYTERHUB_SERVICE_URL are not set)",
            file=sys.stderr,
        )
        return 2
    issuer = JWTIssuer()
    issuer.log = logging.getLogger(SERVICE_NAME)
    app = make_app(issuer, prefix, api_url, api_token)
    url = urlparse(service_url)
    # On Kubernetes the service URL names the hub's Service, which the pod cannot bind.
    bind_ip = os.environ.get("PROD_DISCOVERY_JWT_BIND_IP") or url.hostname or "127.0.0.1"
    app.listen(url.port or 80, bind_ip)
    issuer.log.info("JWT issuer listening on %s%s (kid %s)", service_url, prefix, issuer.kid)
    with contextlib.suppress(KeyboardInterrupt):
        IOLoop.current().start()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
