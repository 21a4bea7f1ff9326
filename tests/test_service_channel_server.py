"""The service's side of the audit channel on a real ledger (PostgreSQL): lines in order, one
acknowledgment per commit, and an identity that stops holding (a stopped server's hub token)
ends the channel with the reason before anything more is stored."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import pytest
from tornado import iostream, web

from jupyter_prod_discovery.service.channel_server import ChannelSession
from jupyter_prod_discovery.service.ledger import AuditLedger, Principal, read_lines
from jupyter_prod_discovery.service.signing import KeyFileSigner

ALICE = Principal("alice", "", (), "hub-token")


def line(seq: int) -> bytes:
    rec = {
        "seq": seq,
        "kind": "contents",
        "data": {"operation": "get", "path": f"f{seq}.csv", "status": "ok"},
        "event_id": f"e{seq}",
        "schema": "https://events.prod-discovery.dev/contents/v1",
        "ts": "2026-12-05T10:00:00.000000Z",
        "version": 1,
    }
    return json.dumps(rec).encode() + b"\n"


async def session(dsn: str, tmp_path: Path, recheck: Any) -> tuple[Any, AuditLedger, Any]:
    ledger = AuditLedger(KeyFileSigner(key_file=str(tmp_path / "key.pem")), dsn=dsn)
    await ledger.start()
    ours, theirs = socket.socketpair()
    chan = ChannelSession(iostream.IOStream(ours), ledger, ALICE, "srv-1", recheck=recheck)
    chan.recheck_every = 0.0  # check before every commit
    reader, writer = await asyncio.open_connection(sock=theirs)
    return asyncio.ensure_future(chan.run()), ledger, (reader, writer)


async def test_channel_session_acknowledges_in_order(
    postgres_database: str, tmp_path: Path
) -> None:
    async def same() -> Principal:
        return ALICE

    task, ledger, (reader, writer) = await session(postgres_database, tmp_path, same)
    try:
        writer.write(line(1) + line(2))
        writer.write(line(3))
        acked = 0
        while acked < 3:
            answer = json.loads(await asyncio.wait_for(reader.readline(), 10))
            acked = answer["last_server_seq"]
        stored = [json.loads(r) for r in read_lines(postgres_database)]
        assert [r["server_seq"] for r in stored] == [1, 2, 3]
        assert {r["principal"]["username"] for r in stored} == {"alice"}
        writer.close()
        await asyncio.wait_for(task, 10)  # the client's close ends the session
    finally:
        await ledger.stop()


@pytest.mark.parametrize("outcome", ["refused", "changed"])
async def test_channel_session_ends_when_identity_stops_holding(
    postgres_database: str, tmp_path: Path, outcome: str
) -> None:
    async def recheck() -> Principal:
        if outcome == "refused":
            raise web.HTTPError(403, "this token's server is stopped")
        return Principal("mallory", "", (), "hub-token")

    task, ledger, (reader, writer) = await session(postgres_database, tmp_path, recheck)
    try:
        writer.write(line(1))
        answer = json.loads(await asyncio.wait_for(reader.readline(), 10))
        assert answer["status"] == 403
        expected = "server is stopped" if outcome == "refused" else "identity changed"
        assert expected in answer["message"]
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed
        await asyncio.wait_for(task, 10)
        assert list(read_lines(postgres_database)) == []
    finally:
        writer.close()
        await ledger.stop()
