"""The command line: ``jupyter prod-discovery SUBCOMMAND``.

Each subcommand's work lives in its capability's subpackage; this module only parses arguments,
dispatches, and turns known errors into a one-line message and exit status 2 (bad input), so a
script never has to read a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from . import __version__

__all__ = ["build_parser", "main"]

Runner = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """Bad input from the command line: printed as one line, exit status 2."""


def _add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="start OpenBao, a sample production database and JupyterLab with the guards on",
        description=(
            "Start an embedded OpenBao dev server on loopback, seed it (policies, a KV secret and "
            "the database secrets engine with a sample production database in PostgreSQL), then "
            "the trusted service with a least-privilege token and JupyterLab as its client. As "
            "root, OpenBao and the service run as the OS user pd-demo-svc and JupyterLab as "
            "pd-demo; as a normal user everything runs as that user (evaluation only). "
            "Ctrl-C stops everything and leaves nothing behind."
        ),
    )
    p.add_argument(
        "--port",
        type=int,
        default=None,
        help="JupyterLab port (default 8888, or the next free one when 8888 is taken; a port "
        "given here that is taken stops the demo, naming who holds it)",
    )
    p.add_argument(
        "--dsn",
        default=None,
        help="PostgreSQL superuser DSN for the sample database "
        "(default: PROD_DISCOVERY_DEMO_DSN or postgresql://postgres@127.0.0.1:5432/postgres)",
    )
    p.add_argument(
        "--root-dir",
        default=None,
        help="notebook directory, left as it is at stop (default: a temporary folder in the "
        "demo's work dir, removed at stop unless --keep)",
    )
    p.add_argument(
        "--keep",
        action="store_true",
        help="keep the demo's temporary notebooks folder when it stops (it says where)",
    )
    p.add_argument(
        "--no-browser",
        action="store_true",
        help="do not open a browser (default: open one where a graphical display is)",
    )

    def run(args: argparse.Namespace) -> int:
        from .demo.runner import run_demo

        return run_demo(args)

    p.set_defaults(run=run)


def _add_export(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .export.cli import add_export

    add_export(sub)


def _add_audit(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .audit.cli import add_audit

    add_audit(sub)


def _add_hub(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .hub.cli import add_hub

    add_hub(sub)


def _add_service(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "service",
        help="run the trusted service (credentials and the sealed audit ledger)",
        description=(
            "Run the trusted side of Prod Discovery under its own OS user: it issues, renews and "
            "revokes kernel credentials (the only Vault token) and seals, signs and stores the "
            "audit trail (the only signing key). Options are traitlets, e.g. "
            "--ProdDiscoveryService.socket_path=/run/prod-discovery/service.sock "
            "--AuditLedger.dsn=postgresql://... ; --help-all lists them."
        ),
        add_help=False,
    )
    p.add_argument("options", nargs=argparse.REMAINDER, help="traitlets options")

    def run(args: argparse.Namespace) -> int:
        from .service.app import main as service_main

        return service_main(list(args.options))

    p.set_defaults(run=run)


def _add_service_policy(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "service-policy",
        help="print the least-privilege Vault policy of the trusted service",
        description=(
            "Print the HCL of the Vault policy the trusted service needs for its credential "
            "profiles (read on their paths, lease and token bookkeeping) and nothing else."
        ),
    )
    p.add_argument(
        "--config", required=True, help="the service's JSON config file (CredentialBroker.profiles)"
    )

    def run(args: argparse.Namespace) -> int:
        import json
        from pathlib import Path

        from .credentials.profiles import ProfileError, parse_profiles
        from .service.vault_policy import service_policy

        try:
            config = json.loads(Path(args.config).read_text(encoding="utf-8"))
            profiles = parse_profiles(config.get("CredentialBroker", {}).get("profiles", []))
        except (OSError, ValueError, ProfileError, AttributeError) as exc:
            raise UsageError(f"cannot read profiles from {args.config}: {exc}") from None
        print(service_policy(profiles), end="")
        return 0

    p.set_defaults(run=run)


def _add_scan(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .guard.scan_cli import add_scan

    add_scan(sub)


# Each capability adds its subcommands here (scan, audit, export).
SUBCOMMANDS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = [
    _add_demo,
    _add_export,
    _add_audit,
    _add_hub,
    _add_service,
    _add_service_policy,
    _add_scan,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jupyter prod-discovery",
        description=(
            "Prod Discovery guardrails for Jupyter: short-lived Vault credentials in kernels, "
            "a tamper-evident audit trail, PII guarding of outputs and export of notebooks into "
            "signed pipeline jobs."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(title="subcommands", metavar="SUBCOMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["service"]:
        # Traitlets options (--Class.trait=value, --help-all) are the service's own: argparse
        # would take them for its own and refuse them.
        from .service.app import main as service_main

        return service_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Runner | None = getattr(args, "run", None)
    if run is None:
        parser.print_help()
        return 2
    try:
        return run(args)
    except UsageError as exc:
        print(f"jupyter prod-discovery: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
