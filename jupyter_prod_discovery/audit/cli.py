"""``jupyter prod-discovery audit verify|query|report|init-db``: the compliance workflow.

verify exits 0 when the trail is intact, 1 with the first broken record (modified, deleted,
inserted, reordered, truncated: tampering or damage), 3 when the records are consistent but
belong to another chain or were sealed with another key (not a sign of tampering by itself), and
2 for bad input, as every subcommand (a missing log, a file that is not an audit log, no key).
"""

from __future__ import annotations

import argparse
import getpass
import html
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .chain import NOT_A_LOG, VerifyResult, verify
from .query import Filters, render, row, select
from .signed_chain import SignedVerifyResult, verify_signed
from .sinks.jsonl import read_checkpoint_file, segments
from .trail import KEY_ENV

__all__ = ["add_audit"]

WRITER_PASSWORD_ENV = "PROD_DISCOVERY_AUDIT_WRITER_PASSWORD"  # noqa: S105 - a variable name


def _usage(message: str) -> Exception:
    from ..cli import UsageError

    return UsageError(message)


def _source_args(p: argparse.ArgumentParser, key: bool = True) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--log", help="the JSONL log (its rotated segments <log>.<seq> are read too)")
    src.add_argument("--dsn", help="PostgreSQL DSN of the audit database (reader or admin role)")
    p.add_argument(
        "--table", default="prod_discovery_audit", help="audit table (default %(default)s)"
    )
    if key:
        p.add_argument(
            "--key-file",
            help=f"file holding the MAC key (default: the {KEY_ENV} environment variable)",
        )
        p.add_argument(
            "--key", help="the MAC key itself (visible in the process list: prefer --key-file)"
        )
        p.add_argument(
            "--checkpoints",
            action="append",
            default=[],
            help="checkpoint file kept in a second place (repeatable)",
        )
        p.add_argument(
            "--checkpoint-dsn",
            help="PostgreSQL DSN whose <table>_checkpoints vouch for the --log file",
        )
        p.add_argument(
            "--checkpoint-vault",
            metavar="MOUNT/PATH",
            help="KV v2 secret holding the newest checkpoint (VAULT_ADDR and VAULT_TOKEN)",
        )


#: ``audit verify``: records consistent, but another chain or another key (see chain.FOREIGN).
EXIT_FOREIGN = 3


def _log_files(args: argparse.Namespace) -> list[str]:
    """The log's files (rotated segments first); a usage error, said first, when none exist."""
    files = segments(args.log)
    if not files:
        raise _usage(f"no audit log at {args.log} (nor rotated segments {args.log}.<seq>)")
    return files


def _lines(args: argparse.Namespace) -> Iterator[str]:
    if args.log:
        files = _log_files(args)
        for path in files:
            with open(path, encoding="utf-8") as f:
                yield from (ln.rstrip("\n") for ln in f if ln.strip())
        return
    sink = _pg(args.dsn, args.table)
    try:
        yield from sink.read_lines()
    finally:
        sink.close()


def _pg(dsn: str, table: str) -> Any:
    from .sinks import PostgresSink, SinkUnavailable

    sink = PostgresSink(dsn=dsn, table=table, create_tables=False)
    try:
        sink.open()
    except SinkUnavailable as exc:
        raise _usage(str(exc)) from None
    return sink


def _key(args: argparse.Namespace) -> bytes | None:
    if args.key_file:
        try:
            return Path(args.key_file).read_text(encoding="utf-8").strip().encode()
        except OSError as exc:
            raise _usage(f"cannot read the key file {args.key_file}: {exc.strerror}") from None
    value = args.key or os.environ.get(KEY_ENV, "")
    return value.encode() if value else None


def _checkpoints(args: argparse.Namespace) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for path in args.checkpoints:
        found.extend(read_checkpoint_file(path))
    if args.checkpoint_vault:
        import hvac

        from .vault_checkpoints import read_checkpoint

        client = hvac.Client(url=os.environ.get("VAULT_ADDR"), token=os.environ.get("VAULT_TOKEN"))
        try:
            found.extend(read_checkpoint(client, args.checkpoint_vault))
        except ValueError as exc:
            raise _usage(str(exc)) from None
        except Exception as exc:  # unreachable, forbidden: one line, never a token
            raise _usage(f"cannot read the checkpoint from Vault: {type(exc).__name__}") from None
    dsn = args.dsn or args.checkpoint_dsn
    if dsn:
        sink = _pg(dsn, args.table)
        try:
            found.extend(sink.read_checkpoints())
        finally:
            sink.close()
    return found


def _verify(args: argparse.Namespace) -> VerifyResult | None:
    key = _key(args)
    if key is None:
        return None
    return verify(_lines(args), key, _checkpoints(args))


def _service_client(url: str) -> Any:
    from ..service.client import ServiceClient

    try:
        return ServiceClient(url, "compliance-cli")
    except ValueError as exc:
        raise _usage(str(exc)) from None


def _verify_signed(args: argparse.Namespace) -> SignedVerifyResult:
    """Verify the trusted service's ledger with its public key (no secret needed)."""
    from ..service.client import ServiceError
    from ..service.ledger import read_checkpoints, read_lines
    from ..service.signing import PublicKeys

    if not args.dsn:
        raise _usage("--public-key/--service verify the service's ledger: pass its --dsn")
    table = "prod_discovery_service_audit" if args.table == "prod_discovery_audit" else args.table
    pems = []
    for path in args.public_key:
        try:
            pems.append(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise _usage(f"cannot read the public key {path}: {exc.strerror}") from None
    head = None
    if args.service:
        client = _service_client(args.service)
        try:
            if not pems:  # trust on first use; pin the key with --public-key
                pems.append(client.public_key()["public_key_pem"])
            head = client.head()
        except ServiceError as exc:
            raise _usage(str(exc)) from None
    try:
        keys = PublicKeys(pems)
    except ValueError as exc:
        raise _usage(f"not an ed25519 public key: {exc}") from None
    import psycopg

    try:
        return verify_signed(
            read_lines(args.dsn, args.chain, table),
            read_checkpoints(args.dsn, args.chain, table),
            keys,
            chain=args.chain,
            head=head,
        )
    except psycopg.Error as exc:
        raise _usage(f"cannot read the ledger: {str(exc).strip()}") from None


def run_public_key(args: argparse.Namespace) -> int:
    """Print (or write) the trusted service's public key: what verifiers pin."""
    from ..service.client import ServiceError

    try:
        key = _service_client(args.service).public_key()
    except ServiceError as exc:
        raise _usage(str(exc)) from None
    if args.output:
        Path(args.output).write_text(key["public_key_pem"], encoding="utf-8")
        print(f"key {key['key_id']} ({key['algorithm']}) written to {args.output}")
    else:
        print(key["public_key_pem"], end="")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    if args.public_key or args.service:
        signed = _verify_signed(args)
        for warning in signed.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        print(signed.summary())
        return 0 if signed.ok else 1
    if args.log:
        _log_files(args)  # a missing log is the first thing to hear, before any key question
    result = _verify(args)
    if result is None:
        raise _usage(f"no MAC key: pass --key-file or set {KEY_ENV}")
    if result.problem is not None and result.problem.what == NOT_A_LOG:
        raise _usage(f"{args.log or args.dsn} is not an audit log: {result.problem.detail}")
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if result.checkpoints == 0 and result.ok:
        print(
            "warning: no checkpoint matched: truncation of the tail cannot be ruled out",
            file=sys.stderr,
        )
    print(result.summary())
    if result.problem is not None and result.problem.foreign:
        return EXIT_FOREIGN
    return 0 if result.ok else 1


def _filters(args: argparse.Namespace) -> Filters:
    try:
        return Filters(
            user=args.user,
            since=args.since,
            until=args.until,
            kind=args.type,
            path=args.path,
            kernel=args.kernel,
        )
    except ValueError as exc:
        raise _usage(str(exc)) from None


def run_query(args: argparse.Namespace) -> int:
    records = select(_lines(args), _filters(args), args.limit)
    sys.stdout.write(render(records, args.format))
    return 0


REPORT_KINDS = {
    "contents": "file",
    "credential": "credential",
    "execution": "execution",
    "datasource": "data source",
    "pii": "PII finding",
    "kernel": "kernel",
    "export": "export",
    "denied": "denied",
}


def report_html(records: list[dict[str, Any]], result: VerifyResult | None) -> str:
    """Per user, per session (kernel), a timeline; the verification result on top."""
    esc = html.escape
    if result is None:
        status, css = "NOT VERIFIED (no MAC key given)", "warn"
    else:
        status, css = result.summary(), "ok" if result.ok else "bad"
    users: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for rec in records:
        r = row(rec)
        session = r["kernel_id"] or "(outside kernels)"
        users.setdefault(r["user"] or "(server)", {}).setdefault(session, []).append(rec)
    out = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Audit report</title><style>",
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:.5em 0}",
        "td,th{border:1px solid #ccc;padding:2px 6px;font-size:90%}.ok{color:#106010}",
        ".bad{color:#b3261e;font-weight:bold}.warn{color:#a06000}",
        "</style></head><body><h1>Audit report</h1>",
        f"<p>Verification: <span class='{css}'>{esc(status)}</span></p>",
        f"<p>{len(records)} events, {len(users)} users.</p>",
    ]
    for user, sessions in sorted(users.items()):
        out.append(f"<h2>User {esc(user)}</h2>")
        for session, recs in sorted(sessions.items()):
            out.append(f"<h3>Session {esc(session)}</h3><table><tr>")
            out.append("<th>seq</th><th>time (UTC)</th><th>type</th><th>what</th>")
            out.append("<th>path / target</th><th>status</th></tr>")
            for rec in recs:
                r = row(rec)
                data = rec.get("data") or {}
                target = r["path"] or data.get("target") or data.get("lease_id") or ""
                kind = REPORT_KINDS.get(str(r["kind"]), str(r["kind"]))
                cells = [r["seq"], r["ts"], kind, r["what"], target, r["status"]]
                out.append(
                    "<tr>" + "".join(f"<td>{esc(str(c or ''))}</td>" for c in cells) + "</tr>"
                )
            out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out)


def run_report(args: argparse.Namespace) -> int:
    if args.format != "html":
        raise _usage("only --format html is supported")
    records = select(_lines(args), _filters(args))
    result = _verify(args)
    Path(args.output).write_text(report_html(records, result), encoding="utf-8")
    print(
        f"wrote {args.output}: {len(records)} events; "
        + (result.summary() if result else "not verified")
    )
    return 0 if result is None or result.ok else 1


def run_init_db(args: argparse.Namespace) -> int:
    from .sinks.postgres import provision

    password = os.environ.get(WRITER_PASSWORD_ENV) or getpass.getpass("writer role password: ")
    try:
        provision(args.dsn, args.writer_role, password, args.table)
    except ValueError as exc:
        raise _usage(str(exc)) from None
    print(f"audit tables {args.table} ready; role {args.writer_role} may INSERT and SELECT only")
    return 0


def _filter_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--user", help="only this username")
    p.add_argument("--since", help="ISO date/time (UTC when no zone given)")
    p.add_argument("--until", help="ISO date/time (UTC when no zone given)")
    p.add_argument("--type", help="event type: contents, kernel, execution, credential, ...")
    p.add_argument("--path", help="path substring (contents events)")
    p.add_argument("--kernel", help="kernel id")


def add_audit(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``audit`` and its subcommands on the main parser."""
    audit = sub.add_parser("audit", help="verify, query and report on the audit trail")
    asub = audit.add_subparsers(title="audit subcommands", metavar="ACTION", required=True)

    p = asub.add_parser(
        "verify",
        help="check the hash chain, MACs and checkpoints",
        description="Exit 0 intact; 1 the first broken record (modified, deleted, inserted, "
        "reordered, truncated); 3 the records are consistent but belong to another chain or "
        "were sealed with another key; 2 bad input (no such log, not an audit log, no key).",
    )
    _source_args(p)
    p.add_argument(
        "--public-key",
        action="append",
        default=[],
        help="the trusted service's public key (PEM; repeatable for rotated keys): verify its "
        "ledger (--dsn) with signatures, no secret needed",
    )
    p.add_argument(
        "--service",
        help="the trusted service's address (unix:/path or http(s)://...): its signed head "
        "detects a cut-off tail (and gives the public key when --public-key is not given)",
    )
    p.add_argument("--chain", default="main", help="the ledger's chain (default %(default)s)")
    p.set_defaults(run=run_verify)

    p = asub.add_parser("public-key", help="print the trusted service's public key")
    p.add_argument("--service", required=True, help="the service's address")
    p.add_argument("-o", "--output", help="write the PEM to this file")
    p.set_defaults(run=run_public_key)

    p = asub.add_parser("query", help="list events as a table, JSON or CSV")
    _source_args(p, key=False)
    _filter_args(p)
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.add_argument("--limit", type=int, default=None, help="only the last N matching events")
    p.set_defaults(run=run_query)

    p = asub.add_parser("report", help="HTML timeline per user and session, with verification")
    _source_args(p)
    _filter_args(p)
    p.add_argument("--format", default="html", help="html (the only format)")
    p.add_argument("-o", "--output", required=True, help="file to write")
    p.set_defaults(run=run_report)

    p = asub.add_parser("init-db", help="create the append-only tables and the writer role")
    p.add_argument("--dsn", required=True, help="administrator DSN of the audit database")
    p.add_argument("--writer-role", required=True, help="role to create (INSERT and SELECT only)")
    p.add_argument("--table", default="prod_discovery_audit", help="table (default %(default)s)")
    p.set_defaults(run=run_init_db)
