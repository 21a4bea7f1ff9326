"""Credential profiles: which Vault source becomes which kernel environment variables, for whom.

A profile is one dict in ``c.CredentialBroker.profiles``. It is validated once at startup, so a
typo fails the server with a message naming the profile and the field instead of failing every
kernel start later. Env values are templates over the fields of the Vault response
(``"{username}"``, ``"postgresql://{username}:{password}@db/prod"``); a value without braces is
a static value. Write ``{{`` and ``}}`` for literal braces.

Fields available to templates, per type:

- ``token``: ``token``, ``accessor``, ``vault_addr``, ``ttl`` (a child token of the server's token);
- ``database``: ``username``, ``password`` (``<mount>/creds/<role>``);
- ``kv``: the keys of the KV v2 secret (``<mount>/data/<path>``);
- ``read``: the keys of the ``data`` of any Vault read (``<path>``).

Every type also offers ``kernel_id`` and ``user``.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PROFILE_TYPES", "Profile", "ProfileError", "parse_profiles", "select_profiles"]

PROFILE_TYPES = ("token", "database", "kv", "read")

_COMMON_KEYS = {"name", "type", "env", "kernel_specs", "users", "groups", "description"}
_TYPE_KEYS: dict[str, set[str]] = {
    "token": {"policies", "ttl", "explicit_max_ttl", "num_uses", "no_default_policy"},
    "database": {"mount", "role"},
    "kv": {"mount", "path"},
    "read": {"path"},
}
_REQUIRED: dict[str, tuple[str, ...]] = {
    "token": (),
    "database": ("role",),
    "kv": ("path",),
    "read": ("path",),
}
_TOKEN_FIELDS = {"token", "accessor", "vault_addr", "ttl"}
_DATABASE_FIELDS = {"username", "password"}
_ALWAYS_FIELDS = {"kernel_id", "user"}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DURATION = re.compile(r"^\d+[smhd]?$")


class ProfileError(ValueError):
    """A profile is invalid; the message names the profile and the field."""


@dataclass(frozen=True)
class Profile:
    """One validated credential profile (see the module docstring)."""

    name: str
    type: str
    env: dict[str, str]
    kernel_specs: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    mount: str = ""
    role: str = ""
    path: str = ""
    policies: tuple[str, ...] = ()
    ttl: str = ""
    explicit_max_ttl: str = ""
    num_uses: int = 0
    no_default_policy: bool = False
    description: str = ""
    fields: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_default(self) -> bool:
        """A profile without user or group selectors applies to everyone."""
        return not self.users and not self.groups

    def applies_to(self, kernel_name: str, user: str | None, groups: Iterable[str]) -> bool:
        """Whether this profile is issued to a kernel of ``kernel_name`` started by ``user``."""
        if self.kernel_specs and kernel_name not in self.kernel_specs:
            return False
        if self.is_default:
            return True
        if user is not None and user in self.users:
            return True
        return bool(set(groups) & set(self.groups))

    def fields_of(self, var: str) -> set[str]:
        """The response fields the template of env ``var`` uses."""
        return _template_fields(self.env.get(var, ""), f"credential profile {self.name!r}")

    def render(self, values: Mapping[str, Any]) -> dict[str, str]:
        """The env variables of this profile, templates filled from ``values``.

        Raises ProfileError when the Vault response lacks a field a template needs (a KV
        secret without the key, say), so the kernel start fails naming the field.
        """
        out: dict[str, str] = {}
        for var, template in self.env.items():
            try:
                out[var] = template.format_map(_StrictMap(values))
            except KeyError as exc:
                raise ProfileError(
                    f"credential profile {self.name!r}: env {var!r} needs field {exc.args[0]!r}, "
                    f"which the Vault response does not have"
                ) from None
        return out


class _StrictMap(dict[str, Any]):
    def __missing__(self, key: str) -> Any:
        raise KeyError(key)


def _template_fields(template: str, where: str) -> set[str]:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ProfileError(f"{where}: invalid template {template!r}: {exc}") from None
    names: set[str] = set()
    for _literal, name, _spec, _conv in parsed:
        if name is None:
            continue
        if not name or not name.isidentifier():
            raise ProfileError(f"{where}: template fields must be plain names, got {{{name}}}")
        names.add(name)
    return names


def _str_list(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        raise ProfileError(f"{where} must be a list of non-empty strings")
    return tuple(value)


def _parse_one(raw: Any, index: int) -> Profile:
    if not isinstance(raw, Mapping):
        raise ProfileError(f"credential profile #{index} must be a dict, got {type(raw).__name__}")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ProfileError(f"credential profile #{index}: field 'name' is required (a string)")
    label = f"credential profile {name!r}"
    ptype = raw.get("type")
    if ptype not in PROFILE_TYPES:
        raise ProfileError(f"{label}: field 'type' must be one of {', '.join(PROFILE_TYPES)}")
    allowed = _COMMON_KEYS | _TYPE_KEYS[ptype]
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ProfileError(
            f"{label}: unknown field(s) {', '.join(unknown)} for type {ptype!r} "
            f"(allowed: {', '.join(sorted(allowed))})"
        )
    for req in _REQUIRED[ptype]:
        if not isinstance(raw.get(req), str) or not raw[req].strip():
            raise ProfileError(f"{label}: field {req!r} is required for type {ptype!r}")
    env = raw.get("env")
    if not isinstance(env, Mapping) or not env:
        raise ProfileError(f"{label}: field 'env' must be a non-empty dict of VAR: template")
    fields: set[str] = set()
    for var, template in env.items():
        if not isinstance(var, str) or not _ENV_NAME.match(var):
            raise ProfileError(f"{label}: env name {var!r} is not a valid variable name")
        if not isinstance(template, str):
            raise ProfileError(f"{label}: env {var!r} must be a string template")
        fields |= _template_fields(template, f"{label}: env {var!r}")
    known = {"token": _TOKEN_FIELDS, "database": _DATABASE_FIELDS}.get(ptype)
    if known is not None:
        bad = sorted(fields - known - _ALWAYS_FIELDS)
        if bad:
            raise ProfileError(
                f"{label}: env uses unknown field(s) {', '.join(bad)}; type {ptype!r} offers "
                f"{', '.join(sorted(known | _ALWAYS_FIELDS))}"
            )
    kwargs: dict[str, Any] = {}
    for key in ("ttl", "explicit_max_ttl"):
        if key in raw:
            val = str(raw[key])
            if not _DURATION.match(val):
                raise ProfileError(f"{label}: field {key!r} must be a duration like 60, '5m', '1h'")
            kwargs[key] = val
    if "num_uses" in raw:
        if not isinstance(raw["num_uses"], int) or raw["num_uses"] < 0:
            raise ProfileError(f"{label}: field 'num_uses' must be an integer >= 0")
        kwargs["num_uses"] = raw["num_uses"]
    if "no_default_policy" in raw:
        kwargs["no_default_policy"] = bool(raw["no_default_policy"])
    if "policies" in raw:
        kwargs["policies"] = _str_list(raw["policies"], f"{label}: field 'policies'")
    for key in ("mount", "role", "path", "description"):
        if key in raw:
            if not isinstance(raw[key], str):
                raise ProfileError(f"{label}: field {key!r} must be a string")
            kwargs[key] = raw[key].strip().strip("/") if key != "description" else raw[key]
    if ptype == "database":
        kwargs.setdefault("mount", "database")
    if ptype == "kv":
        kwargs.setdefault("mount", "secret")
    for key in ("kernel_specs", "users", "groups"):
        if key in raw:
            kwargs[key] = _str_list(raw[key], f"{label}: field {key!r}")
    return Profile(
        name=name.strip(),
        type=ptype,
        env={str(k): str(v) for k, v in env.items()},
        fields=frozenset(fields),
        **kwargs,
    )


def parse_profiles(raw: Any) -> list[Profile]:
    """Validate ``c.CredentialBroker.profiles``; raise ProfileError naming profile and field."""
    if not isinstance(raw, list | tuple):
        raise ProfileError("credential profiles must be a list of dicts")
    profiles = [_parse_one(item, i) for i, item in enumerate(raw)]
    seen: dict[str, str] = {}
    for p in profiles:
        if p.name in seen:
            raise ProfileError(f"credential profile {p.name!r} is defined twice")
        seen[p.name] = p.type
    return profiles


def select_profiles(
    profiles: Iterable[Profile], kernel_name: str, user: str | None, groups: Iterable[str]
) -> list[Profile]:
    """The profiles issued to one kernel, in configuration order.

    Two selected profiles may set the same variable: the later one wins, so specific profiles
    are listed after the defaults they refine.
    """
    groups = list(groups)
    return [p for p in profiles if p.applies_to(kernel_name, user, groups)]
