"""Contract suite of ManifestSigner, run against every implementation (transit on real OpenBao)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from traitlets import TraitError

from jupyter_prod_discovery.credentials.vault import VaultClient
from jupyter_prod_discovery.export.signing import (
    HMACSigner,
    ManifestSigner,
    SignatureError,
    TransitSigner,
)

DATA = b'{"name":"job","schema_version":1}'


@pytest.fixture(params=["hmac", "transit"])
def make_signer(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A factory of signers sharing one key (two instances: signer and independent verifier)."""
    if request.param == "hmac":
        yield lambda: HMACSigner(keys=["contract-key-0123456789"])
        return
    openbao = request.getfixturevalue("openbao")
    vault = VaultClient(url=openbao.address, token=openbao.root_token)
    vault.connect()
    vault.client.sys.enable_secrets_engine("transit", path="transit")
    vault.client.secrets.transit.create_key(name="prod-discovery-export", key_type="ed25519")
    yield lambda: TransitSigner(vault=vault)


def test_sign_manifest_verifies_with_fresh_instance(make_signer: Any) -> None:
    signature = make_signer().sign(DATA)
    assert set(signature) == {"algorithm", "key_id", "signature"}
    make_signer().verify(DATA, signature)


def test_verify_manifest_refuses_changed_bytes(make_signer: Any) -> None:
    signer: ManifestSigner = make_signer()
    signature = signer.sign(DATA)
    with pytest.raises(SignatureError, match="bad signature"):
        signer.verify(DATA.replace(b"job", b"jab"), signature)


def test_verify_manifest_refuses_forged_signature(make_signer: Any) -> None:
    signer: ManifestSigner = make_signer()
    signature = signer.sign(DATA)
    other = signer.sign(b"something else")
    with pytest.raises(SignatureError):
        signer.verify(DATA, {**signature, "signature": other["signature"]})


def test_verify_manifest_refuses_other_algorithm(make_signer: Any) -> None:
    signer: ManifestSigner = make_signer()
    signature = {**signer.sign(DATA), "algorithm": "none"}
    with pytest.raises(SignatureError, match="expects"):
        signer.verify(DATA, signature)


def test_sign_manifest_without_key_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROD_DISCOVERY_EXPORT_HMAC_KEY", raising=False)
    with pytest.raises(SignatureError, match="no HMAC key"):
        HMACSigner().sign(DATA)
    with pytest.raises(SignatureError, match="Vault is not configured"):
        TransitSigner().sign(DATA)


def test_hmac_keys_rotate_and_reject_short_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    old = HMACSigner(keys=["old-key-0123456789abc"]).sign(DATA)
    monkeypatch.setenv(
        "PROD_DISCOVERY_EXPORT_HMAC_KEY", "new-key-0123456789abc;old-key-0123456789abc"
    )
    rotated = HMACSigner()
    rotated.verify(DATA, old)
    assert rotated.sign(DATA)["key_id"] != old["key_id"]
    with pytest.raises(TraitError, match=r"HMACSigner\.keys"):
        HMACSigner(keys=["short"])


def test_transit_sign_fails_for_missing_key(openbao: Any) -> None:
    vault = VaultClient(url=openbao.address, token=openbao.root_token)
    vault.connect()
    with pytest.raises(SignatureError, match="transit"):
        TransitSigner(vault=vault).sign(DATA)
