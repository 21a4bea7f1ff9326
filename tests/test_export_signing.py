"""Contract suite of ManifestSigner, run against every implementation (transit on real OpenBao).

Each signer returns one DSSE signature entry; the asymmetric ones verify with their public key
alone (what Integration holds), the HMAC development signer never does.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from traitlets import TraitError

from jupyter_prod_discovery.credentials.vault import VaultClient
from jupyter_prod_discovery.export.attestation import key_id_of_pem
from jupyter_prod_discovery.export.signing import (
    Ed25519Signer,
    HMACSigner,
    ManifestSigner,
    SignatureError,
    TransitSigner,
)
from jupyter_prod_discovery.service.signing import KeyFileSigner, key_id_of

DATA = b"DSSEv1 28 application/vnd.in-toto+json 2 {}"


def _transit(openbao: Any, key_type: str = "ed25519") -> VaultClient:
    vault = VaultClient(url=openbao.address, token=openbao.root_token)
    vault.connect()
    vault.client.sys.enable_secrets_engine("transit", path="transit")
    vault.client.secrets.transit.create_key(name="prod-discovery-export", key_type=key_type)
    return vault


@pytest.fixture(params=["ed25519", "transit", "transit-ecdsa", "hmac"])
def make_signer(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A factory of signers sharing one key (two instances: signer and independent verifier)."""
    if request.param == "hmac":
        yield lambda: HMACSigner(keys=["contract-key-0123456789"])
    elif request.param == "ed25519":
        key = str(tmp_path / "key.pem")
        yield lambda: Ed25519Signer(key_file=key)
    else:
        kind = "ecdsa-p256" if request.param == "transit-ecdsa" else "ed25519"
        vault = _transit(request.getfixturevalue("openbao"), key_type=kind)
        yield lambda: TransitSigner(vault=vault)


def test_sign_dsse_entry_verifies_with_fresh_instance(make_signer: Any) -> None:
    signature = make_signer().sign(DATA)
    assert set(signature) == {"keyid", "sig"}
    base64.b64decode(signature["sig"], validate=True)
    make_signer().verify(DATA, signature)


def test_verify_signature_refuses_changed_bytes(make_signer: Any) -> None:
    signer: ManifestSigner = make_signer()
    signature = signer.sign(DATA)
    with pytest.raises(SignatureError, match="bad signature"):
        signer.verify(DATA.replace(b"{}", b"[]"), signature)


def test_verify_signature_refuses_forged_signature(make_signer: Any) -> None:
    signer: ManifestSigner = make_signer()
    signature = signer.sign(DATA)
    other = signer.sign(b"something else")
    with pytest.raises(SignatureError):
        signer.verify(DATA, {**signature, "sig": other["sig"]})


def test_asymmetric_signature_verifies_with_public_key_only(make_signer: Any) -> None:
    signer: ManifestSigner = make_signer()
    pem = signer.public_key_pem()
    if isinstance(signer, HMACSigner):
        assert pem is None  # nothing public verifies a shared-key MAC
        return
    assert pem is not None
    signature = signer.sign(DATA)
    assert signature["keyid"] == key_id_of_pem(pem) == key_id_of(pem)
    public = serialization.load_pem_public_key(pem.encode())
    raw = base64.b64decode(signature["sig"])
    if isinstance(public, Ed25519PublicKey):
        public.verify(raw, DATA)  # raises if invalid
    else:
        assert isinstance(public, ec.EllipticCurvePublicKey)
        public.verify(raw, DATA, ec.ECDSA(hashes.SHA256()))


def test_ed25519_signer_uses_service_key_file_format(tmp_path: Path) -> None:
    service_key = KeyFileSigner(key_file=str(tmp_path / "audit-signing-key.pem"))
    signer = Ed25519Signer(key_file=str(tmp_path / "audit-signing-key.pem"))
    assert signer.public_key_pem() == service_key.public_key_pem()
    assert signer.sign(DATA)["keyid"] == service_key.key_id
    (tmp_path / "audit-signing-key.pem").chmod(0o644)
    with pytest.raises(SignatureError, match="mode must be 0600"):
        signer.sign(DATA)


def test_sign_without_key_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROD_DISCOVERY_EXPORT_HMAC_KEY", raising=False)
    with pytest.raises(SignatureError, match="no HMAC key"):
        HMACSigner().sign(DATA)
    with pytest.raises(SignatureError, match="Vault is not configured"):
        TransitSigner().sign(DATA)
    with pytest.raises(SignatureError, match=r"Ed25519Signer\.key_file is not set"):
        Ed25519Signer().sign(DATA)


def test_hmac_keys_rotate_and_reject_short_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    old = HMACSigner(keys=["old-key-0123456789abc"]).sign(DATA)
    monkeypatch.setenv(
        "PROD_DISCOVERY_EXPORT_HMAC_KEY", "new-key-0123456789abc;old-key-0123456789abc"
    )
    rotated = HMACSigner()
    rotated.verify(DATA, old)
    assert rotated.sign(DATA)["keyid"] != old["keyid"]
    with pytest.raises(TraitError, match=r"HMACSigner\.keys"):
        HMACSigner(keys=["short"])


def test_transit_sign_fails_for_missing_key(openbao: Any) -> None:
    vault = VaultClient(url=openbao.address, token=openbao.root_token)
    vault.connect()
    with pytest.raises(SignatureError, match="transit"):
        TransitSigner(vault=vault).sign(DATA)


def test_transit_refuses_symmetric_key(openbao: Any) -> None:
    vault = _transit(openbao, key_type="aes256-gcm96")
    with pytest.raises(SignatureError, match="not ed25519 nor ecdsa-p256"):
        TransitSigner(vault=vault).sign(DATA)
