"""``jupyter prod-discovery export``: the command-line face of the exporter.

``export NOTEBOOK --target T -o DIR`` exports (exit 0; 1 when a gate refuses, with the report);
``export verify DIR --public-key FILE`` (or ``--service URL``) checks a bundle offline with the
signer's public key (exit 0 valid; 1 naming each changed, missing or extra file, the bad
signature or the failed gate; 2 for a usage error such as a missing folder or key).
``--dev-hmac`` verifies a development bundle with the HMAC key instead.
Without the server there is no audit trail nor issued-secret registry:
the exact-value secret check then only knows the values in ``--secrets-env`` variables, and the
manifest's session lists are empty.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_export", "describe_origin"]


def _signer(args: argparse.Namespace) -> Any:
    from traitlets.config import Config

    from ..cli import UsageError
    from .signing import Ed25519Signer, HMACSigner, TransitSigner

    if args.signer == "ed25519":
        if not args.signing_key_file:
            raise UsageError("--signer ed25519 needs --signing-key-file PEM")
        return Ed25519Signer(key_file=args.signing_key_file)
    if args.signer == "hmac":
        key = ""
        if args.key_file:
            key = Path(args.key_file).read_text().strip()
        elif args.key_env:
            key = os.environ.get(args.key_env, "")
        cfg = Config({"HMACSigner": {"keys": [key]}}) if key else Config()
        try:
            return HMACSigner(config=cfg)
        except Exception as exc:
            raise UsageError(str(exc)) from None
    from ..credentials.vault import VaultClient, VaultError

    vault = VaultClient()
    try:
        vault.connect()
    except VaultError as exc:
        raise UsageError(f"transit signing needs Vault (VAULT_ADDR, VAULT_TOKEN): {exc}") from None
    cfg = Config({"TransitSigner": {"mount": args.transit_mount, "key_name": args.transit_key}})
    return TransitSigner(vault=vault, config=cfg)


def _add_signer_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("signing")
    g.add_argument(
        "--signer",
        choices=["hmac", "ed25519", "transit"],
        default="hmac",
        help="HMAC-SHA256 with a shared key (default; development only: never verifies with a "
        "public key), an ed25519 key file, or Vault transit (ed25519 key)",
    )
    g.add_argument(
        "--signing-key-file",
        default=None,
        help="ed25519 private key PEM with --signer ed25519 (created 0600 when missing)",
    )
    g.add_argument(
        "--key-env",
        default="PROD_DISCOVERY_EXPORT_HMAC_KEY",
        help="environment variable holding the HMAC key (default PROD_DISCOVERY_EXPORT_HMAC_KEY)",
    )
    g.add_argument("--key-file", default=None, help="file holding the HMAC key instead")
    g.add_argument("--transit-mount", default="transit", help="transit mount (default transit)")
    g.add_argument(
        "--transit-key",
        default="prod-discovery-export",
        help="transit key name (default prod-discovery-export)",
    )


def _public_keys(args: argparse.Namespace) -> list[str]:
    """PEMs to verify with: --public-key files, else the key the --service publishes."""
    from ..cli import UsageError

    pems: list[str] = []
    for path in args.public_key:
        try:
            pems.append(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise UsageError(f"cannot read the public key {path}: {exc.strerror}") from None
    if args.service and not pems:
        from ..service.client import ServiceClient, ServiceError

        try:
            pems.append(ServiceClient(args.service, "export-verify").public_key()["public_key_pem"])
        except (ServiceError, ValueError, KeyError) as exc:
            raise UsageError(f"cannot fetch the public key from {args.service}: {exc}") from None
    if not pems:
        raise UsageError(
            "export verify needs the signer's public key: --public-key FILE (pinned) or "
            "--service URL (the key it publishes); --dev-hmac for development bundles"
        )
    from .attestation import BundleRefused, _load_keys

    try:
        _load_keys(pems)
    except BundleRefused as exc:
        raise UsageError("; ".join(exc.problems)) from None
    return pems


def _run_verify(args: argparse.Namespace) -> int:
    from ..cli import UsageError
    from .dsse import envelope_summary
    from .verify import verify_bundle, verify_bundle_dev

    if not args.extra:
        raise UsageError("usage: jupyter prod-discovery export verify DIR --public-key FILE")
    bundle = Path(args.extra)
    if not bundle.is_dir():
        raise UsageError(f"no bundle folder at {bundle}")
    if args.dev_hmac:
        problems = verify_bundle_dev(bundle, _signer(args))
    else:
        problems = verify_bundle(bundle, _public_keys(args), args.require_gate)
    import json

    if problems:
        if args.json:
            print(json.dumps({"valid": False, "bundle": args.extra, "problems": problems}))
        for problem in problems:
            print(f"INVALID: {problem}", file=sys.stderr)
        return 1

    from .manifest import MANIFEST_FILE
    from .provenance import predicate_fields

    key = envelope_summary(bundle)["key_id"]
    fields = predicate_fields(json.loads((bundle / MANIFEST_FILE).read_text(encoding="utf-8")))
    gates = ", ".join(
        g["name"]
        + (" (overridden: " + str(g["override_reason"]) + ")" if g.get("overridden") else "")
        for g in fields["gates"]
    )
    if args.json:
        session = fields.get("session") or {}
        print(
            json.dumps(
                {
                    "valid": True,
                    "bundle": args.extra,
                    "key_id": key,
                    "name": fields["name"],
                    "notebook": fields["notebook"]["path"],
                    "author": fields["author"],
                    "git": fields["git"],
                    "reported_by_server": fields["reported_by_server"],
                    "data_sources": session.get("data_sources") or [],
                    "data_sources_from": session.get("source"),
                    "gates": fields["gates"],
                },
                indent=2,
            )
        )
        return 0
    print(f"valid: {args.extra} (signed by key {key})")
    print(f"  {fields['name']}: {fields['notebook']['path']}, exported by {fields['author']}")
    for line in describe_origin(fields):
        print(f"  {line}")
    print(f"  gates: {gates}")
    return 0


def describe_origin(fields: dict[str, Any]) -> list[str]:
    """Lines saying where a verified statement's notebook came from and what it touched, each
    naming who vouches for it: the signer's own reading, or the submitting server's claim."""
    lines = []
    git = fields.get("git")
    reported = fields.get("reported_by_server") or {}
    claimed = reported.get("git")
    if git:
        state = "committed" if git.get("notebook_committed") else "not as committed"
        lines.append(
            f"git: {git['path']} @ {git['commit']} ({git.get('ref') or 'detached'}, {state}; "
            "read by the exporter)"
        )
    elif claimed:
        state = "modified since the commit" if claimed["dirty"] else "as committed"
        lines.append(
            f"git: {claimed['path']} @ {claimed['commit']} ({claimed.get('branch') or 'detached'}"
            f", {state}; reported by server {reported.get('server')}, not checked by the signer)"
        )
    elif reported:
        lines.append(f"git: none (server {reported.get('server')} reported no repository)")
    else:
        lines.append("git: none recorded")
    session = fields.get("session") or {}
    sources = session.get("data_sources") or []
    lines.append(f"data sources ({len(sources)}, from {session.get('source', 'none')}):")
    for src in sources:
        seen = ", ".join(src.get("seen_in") or [])
        lines.append(
            f"  {src.get('kind')}: {src.get('target')}"
            + (f" x{src['count']}" if src.get("count") else "")
            + (f" [{seen}]" if seen else "")
        )
    return lines


def _run_export(args: argparse.Namespace) -> int:
    from ..cli import UsageError
    from .exporter import ExportRefused, ExportRequest, NotebookExporter
    from .notebook import parse_param
    from .signing import SignatureError

    if args.extra:
        raise UsageError(f"unexpected argument {args.extra!r}")
    if not args.output:
        raise UsageError("-o/--output DIR is required")
    if len(args.override) != len(args.reason):
        raise UsageError("every --override GATE needs its own --reason TEXT")
    try:
        params = dict(parse_param(p) for p in args.param)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    secrets = frozenset(os.environ[v] for v in args.secrets_env if os.environ.get(v))
    signer = _signer(args)
    exporter = NotebookExporter(
        secrets_for=lambda _user: secrets, vault=getattr(signer, "vault", None)
    )
    exporter.signer = lambda: signer  # type: ignore[method-assign]
    request = ExportRequest(
        notebook=Path(args.notebook),
        output=Path(args.output),
        author=args.author or getpass.getuser(),
        targets=args.target or ["papermill"],
        parameters=params,
        overrides=dict(zip(args.override, args.reason, strict=True)),
    )
    try:
        result = exporter.process(request)
    except ExportRefused as exc:
        print("export refused:", file=sys.stderr)
        for g in exc.gates:
            state = "skipped" if g.skipped else ("PASS" if g.passed else "FAIL")
            print(f"  [{state}] {g.name}: {g.reason}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError, SignatureError) as exc:
        raise UsageError(str(exc)) from None
    for g in result.gates:
        state = "PASS" if g.passed else f"OVERRIDDEN ({g.override_reason})"
        print(f"  [{state}] {g.name}: {g.reason}")
    print(f"bundle written to {result.bundle} (manifest sha256 {result.manifest_sha256})")
    return 0


def add_export(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "export",
        help="export a notebook into a signed pipeline-job bundle, or verify a bundle",
        description=(
            "export NOTEBOOK --target T -o DIR: run the promotion gates and write a signed "
            "bundle. export verify DIR: check a bundle's signature and every file's hash."
        ),
    )
    p.add_argument("notebook", metavar="NOTEBOOK|verify", help="notebook to export, or 'verify'")
    p.add_argument("extra", nargs="?", metavar="DIR", help="bundle directory (with verify)")
    p.add_argument(
        "--target",
        action="append",
        choices=["papermill", "airflow", "dagster", "kubernetes"],
        help="pipeline target; repeat for several (default papermill)",
    )
    p.add_argument("-o", "--output", help="bundle directory to create (must be empty or absent)")
    p.add_argument(
        "--param", action="append", default=[], metavar="K=V", help="job parameter (JSON or text)"
    )
    p.add_argument(
        "--override", action="append", default=[], metavar="GATE", help="override a gate"
    )
    p.add_argument(
        "--reason", action="append", default=[], metavar="TEXT", help="reason of each --override"
    )
    p.add_argument("--author", default=None, help="author recorded (default: the OS user)")
    p.add_argument(
        "--secrets-env",
        action="append",
        default=[],
        metavar="VAR",
        help="environment variable whose value must not appear in the notebook (repeatable)",
    )
    _add_signer_options(p)
    v = p.add_argument_group("verify")
    v.add_argument(
        "--public-key",
        action="append",
        default=[],
        metavar="FILE",
        help="the export signer's public key (PEM) to verify with; repeatable for rotated keys",
    )
    v.add_argument(
        "--service",
        default=None,
        metavar="URL",
        help="fetch the public key the trusted service publishes (trust on first use: pin it "
        "with --public-key instead)",
    )
    v.add_argument(
        "--require-gate",
        action="append",
        default=[],
        metavar="GATE",
        help="refuse a bundle whose statement does not record this gate (repeatable)",
    )
    v.add_argument(
        "--json",
        action="store_true",
        help="print the verdict and the verified statement's origin (git, data sources, gates) "
        "as JSON on stdout",
    )
    v.add_argument(
        "--dev-hmac",
        action="store_true",
        help="development only: verify an HMAC-signed bundle with --key-env/--key-file",
    )

    def run(args: argparse.Namespace) -> int:
        if args.notebook == "verify":
            return _run_verify(args)
        return _run_export(args)

    p.set_defaults(run=run)
