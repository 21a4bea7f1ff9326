"""Helpers for the tests of the paths that reach kernels without the kernel websocket."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from guard_support import Recorder, recorder  # noqa: F401 - the fixture, re-exported
from jupyter_server.auth.identity import IdentityProvider, User

SSN, EMAIL = "536-22-1234", "ann.smith@example.com"
#: Code that prints both values, one of them split across two flushes 0.6 s apart.
PII_CODE = (
    "import sys, time\n"
    f"print('ssn {SSN} mail {EMAIL}')\n"
    "sys.stdout.write('split 536-22-'); sys.stdout.flush(); time.sleep(0.6)\n"
    "print('1234 end')\n"
    f"'{EMAIL}'"
)


class HeaderIdentityProvider(IdentityProvider):
    """Token authentication, with the user named by the ``X-Test-User`` header: two users of
    one server in one test (plain token auth names every request anew)."""

    async def get_user(self, handler: Any) -> User | None:  # type: ignore[override]
        user = await self._get_user(handler)
        name = handler.request.headers.get("X-Test-User")
        if user is None or not name:
            return user
        return User(username=name, name=name)


def need(module: str) -> None:
    """Skip without ``module`` on a workstation; under CI=true (the test extras install it) fail."""
    import importlib.util

    from jupyter_prod_discovery.pytest_plugin import require

    require(
        importlib.util.find_spec(module) is not None,
        f"{module} is not installed (pip install -e '.[test]')",
    )


def server_config(*extensions: str, **sections: dict[str, Any]) -> dict[str, Any]:
    """Our extension plus ``extensions``, every other installed one explicitly off."""
    known = (
        "jupyter_server_nbmodel",
        "jupyter_server_documents",
        "jupyter_server_ydoc",
        "jupyter_mcp_server",
        "jupyter_server_fileid",
        "jupyter_server_terminals",
    )
    enabled = {name: name in extensions for name in known}
    enabled["jupyter_prod_discovery"] = True
    config: dict[str, Any] = {
        "ServerApp": {"jpserver_extensions": enabled, "log_level": "WARN"},
        "ZMQChannelsWebsocketConnection": {"limit_rate": False},
    }
    for section, values in sections.items():
        config.setdefault(section, {}).update(values)
    return config


async def start_kernel(jp_fetch: Any) -> str:
    kernel = json.loads((await jp_fetch("api", "kernels", method="POST", body="{}")).body)
    return str(kernel["id"])


def executions(events: Recorder, phase: str = "request") -> list[tuple[dict[str, Any], Any]]:
    return [(d, u) for k, d, u in events.events if k == "execution" and d["phase"] == phase]


async def wait_for(predicate: Any, timeout: float = 60.0) -> None:
    """Poll ``predicate`` (a bounded wait, not a timing assert)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.1)
