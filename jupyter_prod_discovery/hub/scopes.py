"""Which single-user server a hub API token belongs to: asked of the hub, from its scopes.

A module of its own (no JWT library needed): the trusted service and the JWT service both
authenticate a server by its own hub token, the same way (:func:`server_owner`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from tornado import httpclient, web

__all__ = ["HubServer", "hub_get", "server_of_scopes", "server_owner"]

_SERVER_SCOPE = re.compile(r"^access:servers!server=([^/]+)/(.*)$")


def server_of_scopes(scopes: list[str]) -> tuple[str, str] | None:
    """(user, server name) of a single-user server token's scopes, None when not exactly one."""
    found = {m.groups() for s in scopes if (m := _SERVER_SCOPE.match(s))}
    if len(found) != 1:
        return None
    user, server = next(iter(found))
    return user, server


@dataclass(frozen=True)
class HubServer:
    """The owner of a server token, as the hub tells it."""

    user: str
    server: str
    groups: tuple[str, ...]
    admin: bool


async def hub_get(api_url: str, path: str, token: str) -> dict[str, Any]:
    """GET ``path`` of the hub's API with ``token``. Refusals (401, 403, 404: the token or the
    user is not known) are a 403 for our caller, any other failure a 502; never the token."""
    try:
        resp = await httpclient.AsyncHTTPClient().fetch(
            api_url.rstrip("/") + path,
            headers={"Authorization": f"token {token}"},
            request_timeout=10,
        )
    except httpclient.HTTPClientError as exc:
        if exc.code in (401, 403, 404):
            raise web.HTTPError(403, "the hub does not accept this token") from None
        raise web.HTTPError(502, f"the hub answered {exc.code}") from None
    except OSError:
        raise web.HTTPError(502, "the hub is unreachable") from None
    result: dict[str, Any] = json.loads(resp.body)
    return result


async def server_owner(api_url: str, own_token: str, server_token: str) -> HubServer:
    """Whose server ``server_token`` is, with the user's groups (read with ``own_token``, the
    caller's own hub token). Only a token scoped to exactly one server of the user it names is
    accepted: a user's personal token or another service's token is a 403."""
    whoami = await hub_get(api_url, "/user", server_token)
    owner = server_of_scopes(list(whoami.get("scopes") or []))
    if whoami.get("kind") != "user" or owner is None or owner[0] != whoami.get("name"):
        raise web.HTTPError(403, "only a single-user server's own API token is accepted")
    model = await hub_get(api_url, f"/users/{quote(owner[0], safe='')}", own_token)
    groups = tuple(str(g) for g in model.get("groups") or [])
    return HubServer(owner[0], owner[1], groups, bool(model.get("admin")))
