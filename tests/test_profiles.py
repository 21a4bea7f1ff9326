"""Credential profile validation, selection and templating (pure; no Vault needed)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from traitlets import TraitError
from traitlets.config import Config

from jupyter_prod_discovery.credentials.broker import CredentialBroker, user_groups
from jupyter_prod_discovery.credentials.profiles import (
    ProfileError,
    parse_profiles,
    select_profiles,
)

DB = {"name": "db", "type": "database", "role": "analyst", "env": {"PGUSER": "{username}"}}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("nope", "must be a list"),
        ([42], "#0 must be a dict"),
        ([{"type": "kv"}], "#0: field 'name' is required"),
        ([{**DB, "type": "aws"}], "'db': field 'type' must be one of"),
        ([{**DB, "role": ""}], "'db': field 'role' is required"),
        ([{**DB, "path": "x"}], "'db': unknown field(s) path"),
        ([{**DB, "env": {}}], "'db': field 'env' must be a non-empty dict"),
        ([{**DB, "env": {"1BAD": "x"}}], "env name '1BAD' is not a valid"),
        ([{**DB, "env": {"PGUSER": "{user_name}"}}], "unknown field(s) user_name"),
        ([{**DB, "env": {"PGUSER": "{0}"}}], "plain names"),
        ([{**DB, "env": {"PGUSER": "{username"}}], "invalid template"),
        ([{**DB, "users": "ok", "groups": [1]}], "'db': field 'groups' must be a list"),
        ([{"name": "t", "type": "token", "ttl": "soon", "env": {"T": "{token}"}}], "'ttl'"),
        ([{"name": "t", "type": "token", "num_uses": -1, "env": {"T": "{token}"}}], "num_uses"),
        ([DB, DB], "'db' is defined twice"),
    ],
)
def test_parse_profiles_names_profile_and_field(raw: Any, message: str) -> None:
    with pytest.raises(ProfileError) as err:
        parse_profiles(raw)
    assert message in str(err.value)


def test_parse_profiles_applies_defaults() -> None:
    db, kv = parse_profiles(
        [DB, {"name": "kv", "type": "kv", "path": "/team/app/", "env": {"K": "{api_key}"}}]
    )
    assert (db.mount, db.role) == ("database", "analyst")
    assert (kv.mount, kv.path) == ("secret", "team/app")
    assert kv.is_default


def test_select_profiles_by_kernel_user_and_group() -> None:
    profiles = parse_profiles(
        [
            DB,
            {**DB, "name": "py-only", "kernel_specs": ["python3"]},
            {**DB, "name": "ada-only", "users": ["ada"]},
            {**DB, "name": "finance", "groups": ["finance"]},
        ]
    )

    def names(kernel: str, user: str | None, groups: list[str]) -> list[str]:
        return [p.name for p in select_profiles(profiles, kernel, user, groups)]

    assert names("python3", "ada", []) == ["db", "py-only", "ada-only"]
    assert names("ir", "bob", ["finance"]) == ["db", "finance"]
    assert names("ir", None, []) == ["db"]


def test_render_profile_fills_templates_and_reports_missing_field() -> None:
    (profile,) = parse_profiles(
        [
            {
                "name": "kv",
                "type": "kv",
                "path": "app",
                "env": {"DSN": "db://{user}:{pw}@h", "S": "x"},
            }
        ]
    )
    assert profile.render({"user": "u", "pw": "p"}) == {"DSN": "db://u:p@h", "S": "x"}
    assert profile.fields_of("DSN") == {"user", "pw"}
    with pytest.raises(ProfileError, match="needs field 'pw'"):
        profile.render({"user": "u"})


def test_broker_rejects_invalid_profiles_naming_the_trait() -> None:
    config = Config({"CredentialBroker": {"profiles": [{**DB, "type": "nope"}]}})
    with pytest.raises(TraitError, match=r"CredentialBroker\.profiles: credential profile 'db'"):
        CredentialBroker(app=SimpleNamespace(), config=config)


def test_user_groups_reads_jupyterhub_user_model() -> None:
    assert user_groups(SimpleNamespace(hub_user={"name": "ada", "groups": ["finance"]})) == [
        "finance"
    ]
    assert user_groups(SimpleNamespace(username="anon")) == []
