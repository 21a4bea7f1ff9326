"""The single-user side: fetch a hub-signed JWT for ``VaultClient``'s JWT login.

Set by :func:`jupyter_prod_discovery.hub.config.configure_hub` in every spawned server's
environment (``PROD_DISCOVERY_VAULT_JWT_PROVIDER=jupyter_prod_discovery.hub.singleuser:fetch_jwt``),
so the extension logs in to Vault as the hub user at start and again whenever its Vault token can
no longer be renewed. The JWT is fetched fresh each time and never written to disk.
"""

from __future__ import annotations

import os

import requests

from ..credentials.vault import VaultAuthError, VaultUnreachable

__all__ = ["JWT_URL_ENV", "fetch_jwt"]

JWT_URL_ENV = "PROD_DISCOVERY_JWT_URL"


def fetch_jwt(url: str | None = None, api_token: str | None = None, timeout: float = 5.0) -> str:
    """A fresh JWT for this server's user from the hub's JWT service.

    ``url`` defaults to ``$PROD_DISCOVERY_JWT_URL`` (the service's ``token`` endpoint) and
    ``api_token`` to ``$JUPYTERHUB_API_TOKEN`` (the server's own hub token: the proof of
    which user and server we are). Raises VaultAuthError / VaultUnreachable with a message a
    person can act on; never includes either token.
    """
    url = url or os.environ.get(JWT_URL_ENV, "")
    api_token = api_token or os.environ.get("JUPYTERHUB_API_TOKEN", "")
    if not url:
        raise VaultAuthError(f"no JWT service address: {JWT_URL_ENV} is not set")
    if not api_token:
        raise VaultAuthError("JUPYTERHUB_API_TOKEN is not set: not running under JupyterHub?")
    try:
        resp = requests.post(url, headers={"Authorization": f"token {api_token}"}, timeout=timeout)
    except requests.RequestException as exc:
        raise VaultUnreachable(
            f"the hub's JWT service at {url} is unreachable ({exc.__class__.__name__})"
        ) from None
    if resp.status_code != 200:
        try:
            message = str(resp.json().get("message") or "")
        except ValueError:
            message = ""
        raise VaultAuthError(
            f"the hub's JWT service at {url} refused: {resp.status_code} {message}".rstrip()
        )
    token = resp.json().get("jwt")
    if not isinstance(token, str) or not token:
        raise VaultAuthError(f"the hub's JWT service at {url} returned no JWT")
    return token
