"""Which single-user server a hub API token belongs to, from its scopes.

A module of its own (no JWT library needed): the trusted service and the JWT service both
authenticate a server by its own hub token.
"""

from __future__ import annotations

import re

__all__ = ["server_of_scopes"]

_SERVER_SCOPE = re.compile(r"^access:servers!server=([^/]+)/(.*)$")


def server_of_scopes(scopes: list[str]) -> tuple[str, str] | None:
    """(user, server name) of a single-user server token's scopes, None when not exactly one."""
    found = {m.groups() for s in scopes if (m := _SERVER_SCOPE.match(s))}
    if len(found) != 1:
        return None
    user, server = next(iter(found))
    return user, server
