"""The service's ledger on a real PostgreSQL: sealing, streams, conflicts, and verification
with the public key alone against every kind of tampering someone with write access can do."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from jupyter_prod_discovery.audit.signed_chain import verify_signed
from jupyter_prod_discovery.service.ledger import (
    AuditLedger,
    LedgerError,
    Principal,
    read_checkpoints,
    read_lines,
)
from jupyter_prod_discovery.service.signing import KeyFileSigner, PublicKeys

ALICE = Principal("alice", "", ("analysts",), "peer-uid")
BOB = Principal("bob", "", (), "peer-uid")


def event(seq: int, path: str = "data.csv", user: str = "alice") -> str:
    return json.dumps(
        {
            "seq": seq,
            "kind": "contents",
            "data": {"action": "get", "path": path, "user": {"username": user}},
            "event_id": f"e{seq}",
            "schema": "https://events.prod-discovery.dev/contents/v1",
            "ts": "2026-12-05T10:00:00.000000Z",
            "version": 1,
            "prev": "x",
            "hash": "y",
            "mac": "z",
        }
    )


@pytest.fixture
def signer(tmp_path: Path) -> KeyFileSigner:
    return KeyFileSigner(key_file=str(tmp_path / "key.pem"))


async def started(dsn: str, signer: KeyFileSigner, **kw: Any) -> AuditLedger:
    ledger = AuditLedger(signer, dsn=dsn, **kw)
    await ledger.start()
    return ledger


def check(dsn: str, signer: KeyFileSigner, head: dict[str, Any] | None = None) -> Any:
    keys = PublicKeys([signer.public_key_pem()])
    return verify_signed(read_lines(dsn), read_checkpoints(dsn), keys, chain="main", head=head)


def test_key_file_is_private_and_reused(tmp_path: Path) -> None:
    first = KeyFileSigner(key_file=str(tmp_path / "k.pem"))
    assert (tmp_path / "k.pem").stat().st_mode & 0o777 == 0o600
    again = KeyFileSigner(key_file=str(tmp_path / "k.pem"))
    assert again.key_id == first.key_id
    (tmp_path / "k.pem").chmod(0o644)
    with pytest.raises(ValueError, match="readable by others"):
        KeyFileSigner(key_file=str(tmp_path / "k.pem"))


async def test_append_seals_principal_dedupes_replays_and_alerts_gaps(
    postgres_database: str, signer: KeyFileSigner
) -> None:
    ledger = await started(postgres_database, signer)
    try:
        first = await ledger.append(ALICE, "srv-a", [event(1), event(2)])
        replay = await ledger.append(ALICE, "srv-a", [event(2), event(3)])
        # The same stream numbers from another principal are another stream: nothing mixed.
        other = await ledger.append(BOB, "srv-a", [event(1, user="alice")])
        gap = await ledger.append(ALICE, "srv-a", [event(7)])
    finally:
        await ledger.stop()
    assert first == {"acknowledged": 2, "duplicates": 0, "last_server_seq": 2}
    assert replay == {"acknowledged": 1, "duplicates": 1, "last_server_seq": 3}
    assert other["acknowledged"] == 1
    assert gap["acknowledged"] == 1 and ledger.alerts == 1
    records = [json.loads(line) for line in read_lines(postgres_database)]
    assert [r["seq"] for r in records] == list(range(1, 7))
    # The principal is what the service authenticated; what bob's server claimed stays beside.
    bobs = [r for r in records if r["principal"]["username"] == "bob"]
    assert len(bobs) == 1 and bobs[0]["data"]["user"]["username"] == "alice"
    alert = next(r for r in records if r["kind"] == "alert")
    assert alert["data"] == {
        "what": "gap",
        "server_id": "srv-a",
        "missing_from": 4,
        "missing_to": 6,
    }
    assert check(postgres_database, signer).ok


async def test_append_refuses_bad_input_and_stores_nothing(
    postgres_database: str, signer: KeyFileSigner
) -> None:
    ledger = await started(postgres_database, signer)
    try:
        for lines, message in (
            (["not json"], "not JSON"),
            ([json.dumps({"seq": 0, "kind": "contents", "data": {}})], "positive integer seq"),
            ([json.dumps({"seq": 1, "kind": "alert", "data": {}})], "unknown event kind"),
            (
                [json.dumps({"seq": 2, "kind": "contents", "data": {}, "ts": "yesterday"})],
                "not an ISO 8601 time",
            ),
        ):
            with pytest.raises(LedgerError, match=message):
                await ledger.append(ALICE, "srv", [event(1), *lines])
        with pytest.raises(LedgerError, match="server id"):
            await ledger.append(ALICE, "", [event(1)])
    finally:
        await ledger.stop()
    assert list(read_lines(postgres_database)) == []


async def test_restart_resumes_chain_and_streams(
    postgres_database: str, signer: KeyFileSigner
) -> None:
    ledger = await started(postgres_database, signer)
    await ledger.append(ALICE, "srv", [event(1), event(2)])
    await ledger.stop()
    ledger = await started(postgres_database, signer)
    try:
        assert ledger.stream_position(ALICE, "srv") == 2
        again = await ledger.append(ALICE, "srv", [event(2), event(3)])
    finally:
        await ledger.stop()
    assert again == {"acknowledged": 1, "duplicates": 1, "last_server_seq": 3}
    assert check(postgres_database, signer).records == 3


async def test_conflict_with_another_writer_is_retried_and_alerted(
    postgres_database: str, signer: KeyFileSigner
) -> None:
    one = await started(postgres_database, signer)
    two = await started(postgres_database, signer)
    try:
        await one.append(ALICE, "srv-1", [event(1)])
        # two still believes the chain is empty: its seq 1 collides, it must reload and retry.
        result = await two.append(BOB, "srv-2", [event(1)])
    finally:
        await one.stop()
        await two.stop()
    assert result["acknowledged"] == 1
    assert two.alerts == 1
    seqs = [json.loads(line)["seq"] for line in read_lines(postgres_database)]
    assert seqs == [1, 2]
    assert check(postgres_database, signer).ok


async def test_conflict_retry_checks_sealed_lines_again_without_false_alerts(
    postgres_database: str, signer: KeyFileSigner
) -> None:
    """The retry after a conflict checks the same events again: a line the server sealed with
    its stream's key is still one it sealed (the first attempt must not have consumed what the
    check reads), and a forged one is still flagged, once."""
    from jupyter_prod_discovery.audit.chain import Chain

    one = await started(postgres_database, signer)
    two = await started(postgres_database, signer)
    try:
        await one.append(ALICE, "srv-1", [event(1)])
        chain = Chain(await two.session_key(BOB, "srv-2"))
        body = {
            "kind": "contents",
            "schema": "s",
            "event_id": "e",
            "ts": "2026-12-05T10:00:00.000000Z",
            "version": 1,
            "data": {"action": "get", "path": "b.csv"},
        }
        good = chain.seal(dict(body))
        forged = Chain(b"not the stream's key", chain.seq, chain.head).seal(dict(body))
        # two still believes the chain is empty: its commit conflicts and is retried.
        result = await two.append(BOB, "srv-2", [good, forged])
    finally:
        await one.stop()
        await two.stop()
    assert result["acknowledged"] == 2
    records = [json.loads(line) for line in read_lines(postgres_database)]
    alerts = [r["data"] for r in records if r["kind"] == "alert"]
    assert [(a["server_seq"], a["why"]) for a in alerts] == [
        (2, "MAC invalid under the stream's key")
    ]
    assert all("_sealed" not in r for r in records)
    assert check(postgres_database, signer).ok


async def test_concurrent_servers_lose_nothing(
    postgres_database: str, signer: KeyFileSigner
) -> None:
    ledger = await started(postgres_database, signer)
    principals = [Principal(f"user{i}") for i in range(8)]

    async def server(p: Principal) -> None:
        for start in range(1, 501, 50):
            await ledger.append(
                p, "srv", [event(n, user=p.username) for n in range(start, start + 50)]
            )

    try:
        await asyncio.gather(*(server(p) for p in principals))
    finally:
        await ledger.stop()
    records = [json.loads(line) for line in read_lines(postgres_database)]
    assert len(records) == 8 * 500
    for p in principals:
        mine = [r["server_seq"] for r in records if r["principal"]["username"] == p.username]
        assert mine == list(range(1, 501))
    assert check(postgres_database, signer).ok


# -- tampering by someone who can write the store (PostgreSQL trust auth lets any local user) --


async def filled(dsn: str, signer: KeyFileSigner, n: int = 6) -> dict[str, Any]:
    ledger = await started(dsn, signer)
    try:
        await ledger.append(ALICE, "srv", [event(i) for i in range(1, 4)])
        await ledger.append(BOB, "srv", [event(i, user="bob") for i in range(1, n - 2)])
        return ledger.signed_head()
    finally:
        await ledger.stop()


def sql(dsn: str, statement: str, *params: Any) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(statement, params)  # type: ignore[arg-type]


T = "prod_discovery_service_audit"


@pytest.mark.parametrize(
    ("tamper", "what", "seq"),
    [
        ("modify", "modified", 2),
        ("modify_and_rehash", "modified", 2),
        ("delete", "deleted", 3),
        ("insert", "inserted", 7),
        ("truncate_with_checkpoints", "truncated", 4),
    ],
)
async def test_verify_names_the_first_break(
    postgres_database: str, signer: KeyFileSigner, tamper: str, what: str, seq: int
) -> None:
    dsn = postgres_database
    head = await filled(dsn, signer)
    lines = {json.loads(line)["seq"]: json.loads(line) for line in read_lines(dsn)}
    if tamper == "modify":
        sql(dsn, f"UPDATE {T} SET record = replace(record, 'data.csv', 'other.csv') WHERE seq = 2")
    elif tamper == "modify_and_rehash":
        # Rewrite record 2 and recompute every hash and link after it: only the signatures
        # (which need the service's private key) still tell.
        from jupyter_prod_discovery.audit.signed_chain import record_hash

        prev = lines[1]["hash"]
        for s in range(2, 7):
            rec = dict(lines[s])
            if s == 2:
                rec["data"] = {**rec["data"], "path": "innocent.csv"}
            rec["prev"] = prev
            rec["hash"] = record_hash(rec)
            prev = rec["hash"]
            sql(dsn, f"UPDATE {T} SET record = %s WHERE seq = %s", json.dumps(rec), s)
    elif tamper == "delete":
        sql(dsn, f"DELETE FROM {T} WHERE seq = 3")
    elif tamper == "insert":
        fake = dict(lines[6], seq=7, prev=lines[6]["hash"], event_id="forged")
        fake["data"] = {"action": "get", "path": "extract.csv", "user": {"username": "bob"}}
        from jupyter_prod_discovery.audit.signed_chain import record_hash

        fake["hash"] = record_hash(fake)
        sql(
            dsn,
            f"INSERT INTO {T} (chain, seq, record) VALUES ('main', 7, %s)",
            json.dumps(fake),
        )
    elif tamper == "truncate_with_checkpoints":
        sql(dsn, f"DELETE FROM {T} WHERE seq >= 4")
        sql(dsn, f"DELETE FROM {T}_checkpoints WHERE last_seq >= 4")
        # Without the service's signed head the shortened store looks whole ...
        assert check(dsn, signer).ok
    result = check(dsn, signer, head)
    assert not result.ok
    assert result.problem is not None
    assert (result.problem.what, result.problem.seq) == (what, seq if what != "truncated" else 3)


async def test_forged_checkpoint_with_another_key_is_ignored(
    postgres_database: str, signer: KeyFileSigner, tmp_path: Path
) -> None:
    from jupyter_prod_discovery.audit.signed_chain import checkpoint_message, record_hash

    dsn = postgres_database
    await filled(dsn, signer)
    last = json.loads(list(read_lines(dsn))[-1])
    fake = dict(last, seq=7, prev=last["hash"], event_id="forged")
    fake["hash"] = record_hash(fake)
    sql(dsn, f"INSERT INTO {T} (chain, seq, record) VALUES ('main', 7, %s)", json.dumps(fake))
    mallory = KeyFileSigner(key_file=str(tmp_path / "mallory.pem"))
    msg = checkpoint_message("main", 7, 7, fake["hash"], [fake["hash"]])
    sql(
        dsn,
        f"INSERT INTO {T}_checkpoints VALUES ('main', 7, 7, %s, %s, %s, %s)",
        fake["hash"],
        json.dumps([fake["hash"]]),
        signer.key_id,  # claims the real key's id
        mallory.sign(msg),
    )
    result = check(dsn, signer)
    assert result.problem is not None and result.problem.what == "inserted"
    assert any("not signed by a trusted key" in w for w in result.warnings)


async def test_restart_ignores_rows_it_did_not_sign(
    postgres_database: str, signer: KeyFileSigner
) -> None:
    """Someone who can write the table inserts a row at the next seq and raises bob's stream
    position: the restarted service neither chains to that row nor drops bob's next events."""
    dsn = postgres_database
    await filled(dsn, signer)
    last = json.loads(list(read_lines(dsn))[-1])
    from jupyter_prod_discovery.audit.signed_chain import record_hash

    alien = dict(last, seq=7, prev=last["hash"], event_id="alien", server_seq=10**9)
    alien["hash"] = record_hash(alien)
    sql(
        dsn,
        f"INSERT INTO {T} (chain, seq, username, server_id, server_seq, record) "
        "VALUES ('main', 7, 'bob', 'srv', %s, %s)",
        10**9,
        json.dumps(alien),
    )
    ledger = await started(dsn, signer)
    try:
        assert ledger.alerts >= 1
        assert ledger.stream_position(BOB, "srv") == 3  # what a signed record vouches for
        result = await ledger.append(BOB, "srv", [event(4, user="bob")])
    finally:
        await ledger.stop()
    assert result["acknowledged"] == 1
    records = [json.loads(line) for line in read_lines(dsn)]
    mine = records[-1]
    assert mine["seq"] == 9 and mine["prev"] != alien["hash"]
    alert = records[-2]
    assert alert["kind"] == "alert" and alert["data"]["what"] == "foreign_records"
    verdict = check(dsn, signer)
    assert verdict.problem is not None
    assert (verdict.problem.what, verdict.problem.seq) == ("inserted", 7)


async def test_stream_key_flags_lines_not_sealed_with_it(
    postgres_database: str, signer: KeyFileSigner
) -> None:
    """Lines of a stream that has a session key are checked against it: the exact text the
    server hashed and its MAC. Anything else is stored after an alert saying why."""
    from jupyter_prod_discovery.audit.chain import Chain

    ledger = await started(postgres_database, signer)
    try:
        key = await ledger.session_key(ALICE, "srv")
        assert await ledger.session_key(ALICE, "srv") == key  # issued once per stream
        assert await ledger.session_key(BOB, "srv") != key
        chain = Chain(key)
        body = {
            "kind": "contents",
            "schema": "s",
            "event_id": "e",
            "ts": "2026-12-05T10:00:00.000000Z",
            "version": 1,
            "data": {"action": "get", "path": "a.csv"},
        }
        good = chain.seal(dict(body))
        reformatted = json.dumps(json.loads(chain.seal(dict(body))), indent=None)
        foreign = Chain(b"another key, not the stream's", chain.seq, chain.head).seal(dict(body))
        await ledger.append(ALICE, "srv", [good, reformatted, foreign])
    finally:
        await ledger.stop()
    records = [json.loads(line) for line in read_lines(postgres_database)]
    alerts = [r["data"] for r in records if r["kind"] == "alert"]
    assert [(a["server_seq"], a["why"]) for a in alerts] == [
        (2, "not in the form the server seals (hash and MAC last)"),
        (3, "MAC invalid under the stream's key"),
    ]
    assert [r["server_seq"] for r in records if r["kind"] == "contents"] == [1, 2, 3]
    # A restarted service still knows the key (kept in the store).
    again = await started(postgres_database, signer)
    try:
        assert await again.session_key(ALICE, "srv") == key
    finally:
        await again.stop()


async def test_any_json_in_column_fields_is_stored_and_fails_no_round(
    postgres_database: str, signer: KeyFileSigner
) -> None:
    """What a server reports in the fields copied into columns (path, kernel_id, user) can be
    any JSON: it is stored, and the other server's events committed in the same round with it
    are too. A lone surrogate (no UTF-8 holds one) is refused for its request alone."""
    odd_data: list[dict[str, Any]] = [
        {"path": {"a": 1}},
        {"path": "a\x00b\\c\td"},
        {"user": "bob", "kernel_id": [1, 2]},
        {"user": {"username": None}, "path": 3.5},
    ]
    odd = [json.dumps({**json.loads(event(i)), "data": d}) for i, d in enumerate(odd_data, 1)]
    ledger = await started(postgres_database, signer)
    try:
        with pytest.raises(LedgerError, match="surrogate"):
            await ledger.append(BOB, "srv", [event(1).replace("data.csv", "\\ud800")])
        mine, bobs = await asyncio.gather(
            ledger.append(ALICE, "srv", odd), ledger.append(BOB, "srv", [event(1, user="bob")])
        )
    finally:
        await ledger.stop()
    assert mine["acknowledged"] == 4 and bobs["acknowledged"] == 1
    records = [json.loads(line) for line in read_lines(postgres_database)]
    assert [r["data"] for r in records if r["principal"]["username"] == "alice"] == odd_data
    with psycopg.connect(postgres_database) as conn:
        paths = conn.execute(f"SELECT path FROM {T} WHERE username = 'alice' ORDER BY seq")
        assert [p for (p,) in paths] == ['{"a":1}', "a\ufffdb\\c\td", None, "3.5"]
    assert check(postgres_database, signer).ok
