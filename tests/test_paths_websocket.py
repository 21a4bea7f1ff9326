"""A kernel websocket class the guard cannot compose with: refused with the reason, unless
explicitly allowed unguarded (then /status says so)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jupyter_server.services.kernels.connection.base import BaseKernelWebsocketConnection
from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection
from paths_support import server_config
from tornado.httpclient import HTTPClientError
from traitlets.config import Config

from jupyter_prod_discovery.guard.connection import GuardedWebsocketConnection


class OpaqueConnection(BaseKernelWebsocketConnection):
    """Another extension's connection class that forwards frames in ways we cannot see."""


class TweakedConnection(ZMQChannelsWebsocketConnection):
    """Another extension's subclass of the default class: composable."""

    tweaked = True


@pytest.fixture
def connection_class() -> type:
    return OpaqueConnection


@pytest.fixture
def allow() -> list[str]:
    return []


@pytest.fixture
def jp_server_config(
    prod_discovery_server_config: dict[str, Any], connection_class: type, allow: list[str]
) -> Config:
    config = {
        **prod_discovery_server_config,
        **server_config(ExecutionPaths={"allow_unguarded": allow}),
    }
    config["ServerApp"] = {
        **config["ServerApp"],
        "allow_unauthenticated_access": False,
        "kernel_websocket_connection_class": connection_class,
    }
    return Config(config)


async def status(jp_fetch: Any) -> dict[str, Any]:
    return dict(json.loads((await jp_fetch("prod-discovery", "api", "status")).body))


async def test_unguardable_websocket_refused(jp_fetch: Any, jp_ws_fetch: Any) -> None:
    kernel = json.loads((await jp_fetch("api", "kernels", method="POST", body="{}")).body)
    with pytest.raises(HTTPClientError) as err:
        await jp_ws_fetch("api", "kernels", kernel["id"], "channels")
    assert err.value.code == 403
    assert "kernel websocket class" in str(err.value.response.reason)
    st = await status(jp_fetch)
    assert st["paths"]["paths"]["kernel-websocket"] == "refused"
    assert "OpaqueConnection" in st["paths"]["reasons"]["kernel-websocket"]
    assert st["guards"]["paths"] is True  # refused is safe; nothing runs unguarded


@pytest.mark.parametrize("allow", [["kernel-websocket"]])
async def test_allowed_unguarded_shown_in_status(jp_fetch: Any, jp_serverapp: Any) -> None:
    assert jp_serverapp.kernel_websocket_connection_class is OpaqueConnection
    st = await status(jp_fetch)
    assert st["paths"]["paths"]["kernel-websocket"] == "unguarded"
    assert st["guards"]["paths"] is False and st["guards"]["pii"] is False


@pytest.mark.parametrize("connection_class", [TweakedConnection])
async def test_zmq_subclass_composed(jp_serverapp: Any, jp_fetch: Any) -> None:
    cls = jp_serverapp.kernel_websocket_connection_class
    assert issubclass(cls, GuardedWebsocketConnection) and issubclass(cls, TweakedConnection)
    assert (await status(jp_fetch))["paths"]["paths"]["kernel-websocket"] == "guarded"
