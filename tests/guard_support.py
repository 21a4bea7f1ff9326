"""Helpers for the guard tests: a real kernel over the websocket, in either protocol."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from jupyter_client.session import Session
from jupyter_server.services.kernels.connection.base import (
    deserialize_binary_message,
    deserialize_msg_from_ws_v1,
    serialize_msg_to_ws_v1,
)

V1 = "v1.kernel.websocket.jupyter.org"


class Recorder:
    """Collects audit events in memory (the audit seam, not Vault or PostgreSQL)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any], Any]] = []

    def record(self, kind: str, data: dict[str, Any], *, user: Any = None) -> None:
        self.events.append((kind, data, user))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [d for k, d, _ in self.events if k == kind]


@pytest.fixture
def recorder(jp_serverapp: Any) -> Iterator[Recorder]:
    """The app's audit seam replaced by an in-memory recorder for the test (then restored)."""
    app = jp_serverapp.web_app.settings["prod_discovery"]
    original, app.audit = app.audit, Recorder()
    yield app.audit
    app.audit = original


@pytest.fixture
def prod_discovery_extension_config(guard_config: dict[str, Any]) -> dict[str, Any]:
    """The server config of a guard test: its ``guard_config`` (a test overrides that)."""
    return guard_config


class KernelClient:
    """Executes code over ``/api/kernels/<id>/channels`` and gathers the cell's messages."""

    def __init__(self, ws: Any, protocol: str) -> None:
        self.ws = ws
        self.protocol = protocol
        self.session = Session(key=b"", session=uuid.uuid4().hex)

    async def send(self, code: str, cell_id: str = "cell-1") -> str:
        return await self.request(
            "execute_request",
            {"code": code, "silent": False, "store_history": True},
            metadata={"cellId": cell_id},
        )

    async def request(
        self,
        msg_type: str,
        content: dict[str, Any],
        channel: str = "shell",
        metadata: dict[str, Any] | None = None,
    ) -> str:
        """Send one request on ``channel``; returns its msg_id."""
        msg = self.session.msg(msg_type, content=content, metadata=metadata or {})
        if self.protocol == V1:
            parts = [
                json.dumps(msg[k], default=str).encode()
                for k in ("header", "parent_header", "metadata", "content")
            ]
            await self.ws.write_message(serialize_msg_to_ws_v1(parts, channel), binary=True)
        else:
            msg["channel"] = channel
            await self.ws.write_message(json.dumps(msg, default=str))
        return str(msg["header"]["msg_id"])

    async def recv(self) -> dict[str, Any]:
        raw = await self.ws.read_message()
        assert raw is not None, "websocket closed"
        if isinstance(raw, bytes) and self.protocol != V1:
            # Legacy protocol: messages with buffers (comms) come as binary frames.
            return dict(deserialize_binary_message(raw))
        if isinstance(raw, bytes):
            channel, parts = deserialize_msg_from_ws_v1(raw)
            keys = ("header", "parent_header", "metadata", "content")
            msg = {k: json.loads(p) for k, p in zip(keys, parts[:4], strict=True)}
            msg["channel"] = channel
            msg["buffers"] = [bytes(b) for b in parts[4:]]
            return msg
        return dict(json.loads(raw))

    async def execute(self, code: str, timeout: float = 120) -> tuple[list[dict[str, Any]], Any]:
        """Run ``code``; return the iopub messages of the cell and its execute_reply."""
        msg_id = await self.send(code)
        iopub: list[dict[str, Any]] = []
        reply = None
        idle = False

        async def loop() -> None:
            nonlocal reply, idle
            while reply is None or not idle:
                msg = await self.recv()
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                mt = msg["header"]["msg_type"]
                if msg["channel"] == "shell" and mt == "execute_reply":
                    reply = msg
                elif msg["channel"] == "iopub":
                    iopub.append(msg)
                    if mt == "status" and msg["content"]["execution_state"] == "idle":
                        idle = True

        await asyncio.wait_for(loop(), timeout)
        return iopub, reply


def stream_text(iopub: list[dict[str, Any]]) -> str:
    return "".join(m["content"]["text"] for m in iopub if m["header"]["msg_type"] == "stream")


async def open_kernel(jp_fetch: Any, jp_ws_fetch: Any, protocol: str) -> tuple[str, KernelClient]:
    kernel = json.loads((await jp_fetch("api", "kernels", method="POST", body="{}")).body)
    kwargs: dict[str, Any] = {"subprotocols": [V1]} if protocol == V1 else {}
    ws = await jp_ws_fetch("api", "kernels", kernel["id"], "channels", **kwargs)
    return kernel["id"], KernelClient(ws, protocol)
