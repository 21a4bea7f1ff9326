"""Alice's ledger tamperer: outlives her Jupyter server, then rewrites the service's ledger.

The boundary tests start this file from alice's notebook kernel as alice (a real, unprivileged OS
user). It detaches (``--detach``: a second fork in a session of its own, so that it is no longer
a descendant of her server and nothing that stops the server stops it), waits until her server
has exited (``--wait-pid``), and then does what anyone on the machine can do to the ledger:
PostgreSQL on 127.0.0.1 uses trust authentication, so it connects as ``postgres`` and rewrites,
deletes and inserts rows. Nothing here can stop that; what the tests prove is that the
service's signatures make every such change visible to ``audit verify``.

One tampering per round, driven by the test through files: the test (root) writes
``<control>/go-<n>-<case>`` and this process answers ``<out>/done-<n>-<case>.json`` naming the seq
it hit; the test verifies, restores the ledger, and writes the next round. ``<control>/exit``, or
``--deadline`` seconds, end it: it never lingers after a test that died.

Cases: ``modified`` (a record's content rewritten and rehashed), ``deleted`` (a record removed
from the middle), ``inserted`` (a forged record appended, with a checkpoint signed by a key of
alice's own), ``truncated`` (the last signed batch removed with its checkpoint).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from jupyter_prod_discovery.audit.chain import canonical
from jupyter_prod_discovery.audit.signed_chain import checkpoint_message

POLL_S = 0.05
COLUMNS = (
    "chain, seq, ts, received, username, acting_user, server_id, server_seq, kind, kernel_id, "
    "path, record"
)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Atomically: the test polls for the file and must never read half of it."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload))
    tmp.replace(path)


def rehash(record: dict[str, Any]) -> dict[str, Any]:
    """What a careful forger does: the record's own hash made consistent with its new content."""
    body = {k: v for k, v in record.items() if k != "hash"}
    body["hash"] = hashlib.sha256(canonical(body).encode()).hexdigest()
    return body


def sealed(body: dict[str, Any]) -> str:
    """The stored text of a record (the ledger keeps ``hash`` as the last key)."""
    rest = {k: v for k, v in body.items() if k != "hash"}
    return f'{canonical(rest)[:-1]},"hash":"{body["hash"]}"}}'


class Tamperer:
    """Rewrites the ledger table ``table`` and its checkpoints through a superuser connection."""

    def __init__(self, dsn: str, table: str, user: str, chain: str = "main") -> None:
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.t = table
        self.cp = f"{table}_checkpoints"
        self.user = user
        self.chain = chain

    def target(self) -> tuple[int, str]:
        """Alice's most incriminating record: the cell that started this process."""
        rows = self.conn.execute(
            f"SELECT seq, record FROM {self.t} WHERE chain = %s AND username = %s "
            "AND kind = 'execution' ORDER BY seq",
            (self.chain, self.user),
        ).fetchall()
        for seq, record in reversed(rows):
            if "ledger_tamper" in str(json.loads(record).get("data", {}).get("code") or ""):
                return int(seq), str(record)
        if not rows:
            raise RuntimeError(f"no execution record of {self.user} in {self.t}")
        seq, record = rows[len(rows) // 2]
        return int(seq), str(record)

    def modified(self) -> dict[str, Any]:
        seq, record = self.target()
        rec = json.loads(record)
        rec["data"]["code"] = "print('hello')"
        rec["data"]["code_sha256"] = hashlib.sha256(b"print('hello')").hexdigest()
        self.conn.execute(
            f"UPDATE {self.t} SET record = %s WHERE chain = %s AND seq = %s",
            (sealed(rehash(rec)), self.chain, seq),
        )
        return {"seq": seq}

    def deleted(self) -> dict[str, Any]:
        seq, _ = self.target()
        self.conn.execute(f"DELETE FROM {self.t} WHERE chain = %s AND seq = %s", (self.chain, seq))
        return {"seq": seq}

    def inserted(self) -> dict[str, Any]:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        row = self.conn.execute(
            f"SELECT {COLUMNS} FROM {self.t} WHERE chain = %s ORDER BY seq DESC LIMIT 1",
            (self.chain,),
        ).fetchone()
        assert row is not None, "empty ledger"
        head = json.loads(row[-1])
        _, template = self.target()
        rec = json.loads(template)
        seq = int(head["seq"]) + 1
        rec.update(seq=seq, prev=head["hash"], event_id=os.urandom(16).hex(), server_seq=None)
        rec["data"]["code"] = "print('routine export, approved')"
        body = rehash(rec)
        values = list(row)
        values[1], values[7], values[-1] = seq, None, sealed(body)
        self.conn.execute(
            f"INSERT INTO {self.t} ({COLUMNS}) VALUES ({', '.join(['%s'] * len(values))})",
            values,
        )
        # A checkpoint listing it, signed with alice's own key: the verifier must not trust it.
        key = Ed25519PrivateKey.generate()
        hashes = [body["hash"]]
        sig = key.sign(checkpoint_message(self.chain, seq, seq, body["hash"], hashes))
        self.conn.execute(
            f"INSERT INTO {self.cp} VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (
                self.chain,
                seq,
                seq,
                body["hash"],
                json.dumps(hashes),
                "0123456789abcdef",
                base64.b64encode(sig).decode(),
            ),
        )
        return {"seq": seq}

    def truncated(self) -> dict[str, Any]:
        row = self.conn.execute(
            f"SELECT first_seq, last_seq FROM {self.cp} WHERE chain = %s "
            "ORDER BY first_seq DESC LIMIT 1",
            (self.chain,),
        ).fetchone()
        assert row is not None, "no checkpoint"
        first, last = int(row[0]), int(row[1])
        with self.conn.transaction():
            self.conn.execute(
                f"DELETE FROM {self.t} WHERE chain = %s AND seq >= %s", (self.chain, first)
            )
            self.conn.execute(
                f"DELETE FROM {self.cp} WHERE chain = %s AND first_seq >= %s", (self.chain, first)
            )
        return {"seq": first, "cut": last - first + 1}


def detach() -> None:
    """Fork again and let the parent exit: the child is reparented away from the server's tree."""
    if os.fork():
        os._exit(0)
    os.setsid()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--dsn", required=True, help="the ledger's database (no password needed)")
    parser.add_argument("--table", default="prod_discovery_service_audit")
    parser.add_argument("--user", required=True, help="whose records to go after")
    parser.add_argument("--control", required=True, help="directory the test writes go-* to")
    parser.add_argument("--out", required=True, help="directory this process reports in")
    parser.add_argument("--wait-pid", type=int, required=True, help="the server to outlive")
    parser.add_argument("--deadline", type=float, default=150.0, help="seconds before giving up")
    parser.add_argument("--detach", action="store_true", help="leave the caller's process tree")
    args = parser.parse_args(argv)
    if args.detach:
        detach()
    ends = time.monotonic() + args.deadline
    control, out = Path(args.control), Path(args.out)
    write_json(out / "pid.json", {"pid": os.getpid(), "ppid": os.getppid(), "sid": os.getsid(0)})
    while Path(f"/proc/{args.wait_pid}").exists():
        if time.monotonic() > ends:
            return 3
        time.sleep(POLL_S)
    write_json(out / "server-gone.json", {"at": time.time()})
    tamperer = Tamperer(args.dsn, args.table, args.user)
    handled: set[str] = set()
    while time.monotonic() < ends:
        if (control / "exit").exists():
            return 0
        for go in sorted(control.glob("go-*")):
            name = go.name[len("go-") :]
            if name in handled:
                continue
            handled.add(name)
            case = name.split("-", 1)[1]
            try:
                result = getattr(tamperer, case)()
            except Exception as exc:  # reported to the test, which fails naming it
                result = {"error": f"{type(exc).__name__}: {exc}"}
            write_json(out / f"done-{name}.json", result)
        time.sleep(POLL_S)
    return 4


if __name__ == "__main__":
    sys.exit(main())
