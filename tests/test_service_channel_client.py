"""The audit channel's client against a service that accepts the channel and then stays
silent: a waiter is answered False at its own deadline (the channel keeps the deadlines, no
timer per record), its line stays outstanding for the writer, and the connection breaks once
nothing has been acknowledged for the channel's timeout."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

from jupyter_prod_discovery.service.channel_client import AuditChannel
from jupyter_prod_discovery.service.client import ServiceClient


@contextlib.asynccontextmanager
async def silent_service(tmp_path: Path) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A unix socket that answers the upgrade with 101 and never acknowledges a line."""
    received: list[bytes] = []
    handlers: list[asyncio.Future[None]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        done = asyncio.get_running_loop().create_future()
        handlers.append(done)
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: prod-discovery-audit/1\r\n\r\n"
            )
            while data := await reader.read(65536):
                received.append(data)
            writer.close()
        finally:
            done.set_result(None)

    path = str(tmp_path / "silent.sock")
    server = await asyncio.start_unix_server(serve, path)
    try:
        yield f"unix:{path}", received
    finally:
        server.close()
        # The channel closed its end: each connection's reader sees the end and returns.
        await asyncio.wait_for(asyncio.gather(*handlers), 5)


async def opened(url: str, timeout: float) -> AuditChannel:
    channel = AuditChannel(ServiceClient(url, "srv-1"), timeout=timeout, retry_interval=0.05)
    deadline = time.monotonic() + 5
    while not channel.ready():
        assert time.monotonic() < deadline, f"the channel did not open: {channel.error}"
        await asyncio.sleep(0.01)
    return channel


async def test_waiter_is_answered_false_at_its_deadline(tmp_path: Path) -> None:
    async with silent_service(tmp_path) as (url, received):
        channel = await opened(url, timeout=5.0)
        try:
            t0 = time.monotonic()
            first = channel.send(1, '{"seq":1}', True, 0.3)
            later = channel.send(2, '{"seq":2}', True, 0.6)
            assert first is not None and later is not None
            assert await asyncio.wait_for(first, 3) is False
            assert time.monotonic() - t0 >= 0.25  # its own deadline; the later one waits on
            assert not later.done()
            assert await asyncio.wait_for(later, 3) is False
            assert channel.healthy()  # the connection's own timeout (5 s) has not passed
            assert channel.outstanding() == [(1, '{"seq":1}'), (2, '{"seq":2}')]  # for the writer
            assert b"".join(received) == b'{"seq":1}\n{"seq":2}\n'
        finally:
            channel.close()


async def test_silent_connection_breaks_and_keeps_deadlines(tmp_path: Path) -> None:
    async with silent_service(tmp_path) as (url, _received):
        channel = await opened(url, timeout=0.3)
        broken: list[bool] = []
        channel.on_break = lambda: broken.append(True)
        try:
            waiter = channel.send(1, '{"seq":1}', True, 1.0)
            assert waiter is not None
            await asyncio.sleep(0.6)
            assert broken and not channel.healthy()
            assert "did not acknowledge" in str(channel.error)
            assert not waiter.done()  # the writer settles it; else its own deadline answers
            assert await asyncio.wait_for(waiter, 3) is False
            assert channel.outstanding() == [(1, '{"seq":1}')]
            # Settled by the writer later: nothing is resolved twice, the line leaves.
            channel.settle(1, True)
            assert channel.outstanding() == []
        finally:
            channel.close()


async def test_acknowledged_waiter_is_not_answered_again(tmp_path: Path) -> None:
    async with silent_service(tmp_path) as (url, _received):
        channel = await opened(url, timeout=5.0)
        try:
            waiter = channel.send(1, '{"seq":1}', True, 0.2)
            assert waiter is not None
            channel.data_received(b'{"last_server_seq": 1}\n')  # as the service answers
            assert await waiter is True
            await asyncio.sleep(0.3)  # past the deadline: the watchdog finds nothing to expire
            assert waiter.result() is True and channel.outstanding() == []
        finally:
            channel.close()
