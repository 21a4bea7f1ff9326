"""``jupyter prod-discovery export``: the command-line face of the exporter.

``export NOTEBOOK --target T -o DIR`` exports (exit 0; 1 when a gate refuses, with the report);
``export verify DIR`` checks a bundle (exit 0 valid; 1 naming each changed, missing or extra file
or the bad signature). Without the server there is no audit trail nor issued-secret registry:
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

__all__ = ["add_export"]


def _signer(args: argparse.Namespace) -> Any:
    from traitlets.config import Config

    from ..cli import UsageError
    from .signing import HMACSigner, TransitSigner

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
        choices=["hmac", "transit"],
        default="hmac",
        help="HMAC-SHA256 with a shared key (default) or Vault transit sign/verify",
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


def _run_verify(args: argparse.Namespace) -> int:
    from ..cli import UsageError
    from .verify import verify_bundle

    if not args.extra:
        raise UsageError("usage: jupyter prod-discovery export verify DIR")
    if not Path(args.extra).is_dir():  # a mistyped path is bad input, not an invalid bundle
        raise UsageError(f"no bundle folder at {args.extra}")
    problems = verify_bundle(Path(args.extra), _signer(args))
    if problems:
        for problem in problems:
            print(f"INVALID: {problem}", file=sys.stderr)
        return 1
    print(f"valid: {args.extra}")
    return 0


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

    def run(args: argparse.Namespace) -> int:
        if args.notebook == "verify":
            return _run_verify(args)
        return _run_export(args)

    p.set_defaults(run=run)
