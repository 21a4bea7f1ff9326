"""``jupyter prod-discovery hub ...``: configure Vault/OpenBao for hub-signed JWTs."""

from __future__ import annotations

import argparse
import json
import os
import sys

__all__ = ["add_hub"]


def _parse_groups(values: list[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for value in values:
        name, _, paths = value.partition("=")
        groups.setdefault(name.strip(), []).extend(p for p in paths.split(",") if p.strip())
    return groups


def _operator(args: argparse.Namespace, allowed_to: str) -> tuple[str, str]:
    """Vault's address and the operator's token (from VAULT_TOKEN only, never the command line)."""
    from ..cli import UsageError

    address = args.vault_addr or os.environ.get("VAULT_ADDR", "")
    token = os.environ.get("VAULT_TOKEN", "")
    if not address:
        raise UsageError("no Vault address: pass --vault-addr or set VAULT_ADDR")
    if not token:
        raise UsageError(f"set VAULT_TOKEN to a token allowed to {allowed_to}")
    return address, token


def _setup_vault(args: argparse.Namespace) -> int:
    import hvac

    from ..cli import UsageError
    from ..credentials.vault import translate_error
    from .issuer import JWTIssuer
    from .vault_setup import setup_vault

    address, token = _operator(args, "configure auth methods/policies")
    if bool(args.key_file) == bool(args.jwks_url):
        raise UsageError("pass exactly one of --key-file (the hub's signing key) and --jwks-url")
    public_pem = JWTIssuer(key_file=args.key_file).public_pem() if args.key_file else ""
    client = hvac.Client(url=address, token=token, timeout=10)
    try:
        summary = setup_vault(
            client,
            mount=args.mount,
            role=args.role,
            issuer=args.issuer,
            audience=args.audience,
            public_key_pem=public_pem,
            jwks_url=args.jwks_url or "",
            groups=_parse_groups(args.group),
            token_ttl=args.token_ttl,
            token_max_ttl=args.token_max_ttl,
            kv_mount=args.kv_mount,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except Exception as exc:
        print(
            f"jupyter prod-discovery hub setup-vault: {translate_error(exc, address)}",
            file=sys.stderr,
        )
        return 1
    print(json.dumps(summary, indent=2))
    return 0


def _setup_service(args: argparse.Namespace) -> int:
    """Write the trusted service's least-privilege policy (and optionally create its token)."""
    import hvac

    from ..cli import UsageError
    from ..credentials.profiles import ProfileError, parse_profiles
    from ..credentials.vault import translate_error
    from ..service.vault_policy import install_policies

    address, token = _operator(args, "write policies")
    try:
        with open(args.config, encoding="utf-8") as f:
            config = json.load(f)
        profiles = parse_profiles(config.get("CredentialBroker", {}).get("profiles", []))
    except (OSError, ValueError, ProfileError, AttributeError) as exc:
        raise UsageError(f"cannot read profiles from {args.config}: {exc}") from None
    client = hvac.Client(url=address, token=token, timeout=10)
    summary: dict[str, object] = {"policy": args.policy}
    try:
        policies = install_policies(client, profiles, args.policy)
        summary["token_policies"] = policies
        if args.create_token:
            created = client.auth.token.create(
                policies=policies,
                period=args.period,
                no_parent=True,
                display_name="prod-discovery-service",
            )
            summary["token_accessor"] = created["auth"]["accessor"]
            summary["token"] = created["auth"]["client_token"]
    except Exception as exc:
        print(
            f"jupyter prod-discovery hub setup-service: {translate_error(exc, address)}",
            file=sys.stderr,
        )
        return 1
    print(json.dumps(summary, indent=2))
    return 0


def add_hub(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``hub setup-vault``."""
    hub = sub.add_parser("hub", help="JupyterHub deployment: per-user Vault identity")
    hub_sub = hub.add_subparsers(title="hub subcommands", metavar="COMMAND")
    p = hub_sub.add_parser(
        "setup-vault",
        help="configure Vault/OpenBao's JWT auth, role, templated policies and hub groups",
        description=(
            "Enable and configure a JWT auth method that trusts the hub's JWT issuer, a role "
            "bound to its audience and issuer with the hub user as entity alias and the hub "
            "groups as external groups, the per-user policy (templated on the user name), one "
            "policy per group and the hub's stop-hook policy. Idempotent. The Vault token is "
            "read from VAULT_TOKEN only (never from the command line)."
        ),
    )
    p.add_argument("--vault-addr", default="", help="Vault address (default: VAULT_ADDR)")
    p.add_argument(
        "--key-file",
        default="",
        help="the hub's JWT signing key (PEM, created if missing); its public key is configured",
    )
    p.add_argument("--jwks-url", default="", help="instead of --key-file: the service's jwks.json")
    p.add_argument("--mount", default="jupyterhub", help="JWT auth mount (default jupyterhub)")
    p.add_argument("--role", default="prod-discovery-user", help="role name")
    p.add_argument("--issuer", default="jupyterhub", help="bound issuer (default jupyterhub)")
    p.add_argument(
        "--audience",
        default="prod-discovery-vault",
        help="bound audience (default prod-discovery-vault)",
    )
    p.add_argument(
        "--group",
        action="append",
        default=[],
        metavar="GROUP[=PATH,...]",
        help="a hub group and the Vault paths its members may read (repeatable)",
    )
    p.add_argument("--token-ttl", default="15m", help="TTL of login tokens (default 15m)")
    p.add_argument("--token-max-ttl", default="1h", help="max TTL of login tokens (default 1h)")
    p.add_argument("--kv-mount", default="secret", help="KV v2 mount of user/group secrets")
    p.set_defaults(run=_setup_vault)

    p = hub_sub.add_parser(
        "setup-service",
        help="write the trusted service's least-privilege Vault policy (and create its token)",
        description=(
            "Write the policy the trusted service needs for the profiles of its config file (read "
            "on their paths, lease and token bookkeeping, nothing else) and, with --create-token, "
            "a periodic orphan token with it and the profiles' child-token policies, printed once "
            "for the service's environment. The operator's token is read from VAULT_TOKEN only."
        ),
    )
    p.add_argument("--config", required=True, help="the service's JSON config (its profiles)")
    p.add_argument("--vault-addr", default="", help="Vault address (default: VAULT_ADDR)")
    p.add_argument("--policy", default="prod-discovery-service", help="policy name")
    p.add_argument("--create-token", action="store_true", help="create the service's token")
    p.add_argument("--period", default="24h", help="renewal period of that token (default 24h)")
    p.set_defaults(run=_setup_service)

    def _help(args: argparse.Namespace) -> int:
        hub.print_help()
        return 2

    hub.set_defaults(run=_help)
