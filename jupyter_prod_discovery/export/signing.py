"""Who signs a bundle's DSSE envelope: an ed25519 key of the trusted service, or Vault transit.

Pluggable: the exporter picks the implementation with a ``Type`` trait over
:class:`ManifestSigner`. A signer signs the DSSE pre-authentication encoding of the statement and
returns one DSSE signature entry (``keyid``, ``sig`` base64). Integration verifies offline with
the public key only (:mod:`.attestation`), so the signing key must live where the notebook's
author cannot reach it:

- :class:`Ed25519Signer`: an ed25519 private key file of the trusted service (the format of
  ``service.signing.KeyFileSigner``: PKCS#8 PEM, mode 0600, created on first use);
- :class:`TransitSigner`: a Vault/OpenBao transit key of type ed25519 or ecdsa-p256 (the key
  never leaves Vault; its public key is read from transit);
- :class:`HMACSigner`: a shared secret, for development only. Nothing asymmetric verifies it, so
  ``export verify --public-key`` and every generated target refuse its bundles.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from abc import abstractmethod
from typing import TYPE_CHECKING, Any

from traitlets import List, TraitError, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from ._meta import ABCConfigurableMeta

if TYPE_CHECKING:
    from ..credentials.vault import VaultClient

__all__ = ["Ed25519Signer", "HMACSigner", "ManifestSigner", "SignatureError", "TransitSigner"]


class SignatureError(RuntimeError):
    """Signing failed or a signature does not verify; the message names why, never a key."""


class ManifestSigner(LoggingConfigurable, metaclass=ABCConfigurableMeta):
    """Signs the DSSE pre-authentication encoding of a bundle's statement.

    ``vault`` is the caller's :class:`VaultClient`, for signers that need Vault.
    """

    #: Short name shown to users (export dialog, CLI); not part of the DSSE envelope.
    algorithm: str = ""

    def __init__(self, vault: VaultClient | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.vault = vault

    @abstractmethod
    def sign(self, data: bytes) -> dict[str, str]:
        """One DSSE signature entry ``{"keyid", "sig"}`` (sig base64) over ``data``.

        Raise :class:`SignatureError` when no key is available: an unsigned bundle must never be
        produced silently.
        """

    def public_key_pem(self) -> str | None:
        """The PEM public key that verifies :meth:`sign`; None for a symmetric (dev) signer."""
        return None

    def describe(self) -> str:
        """Where the key lives, for people (export dialog, CLI); never key material."""
        return type(self).__name__

    def verify(self, data: bytes, signature: dict[str, str]) -> None:
        """Return when ``signature`` is valid for ``data``; raise :class:`SignatureError`.

        Asymmetric signers verify with their public key only, as Integration does.
        """
        from .attestation import key_id_of_pem, signature_valid

        pem = self.public_key_pem()
        if pem is None:
            raise SignatureError(f"{type(self).__name__} has no public key to verify with")
        if signature.get("keyid") != key_id_of_pem(pem):
            raise SignatureError(
                f"bad signature: signed with key {signature.get('keyid')!r}, "
                f"not {key_id_of_pem(pem)!r}"
            )
        try:
            raw = base64.b64decode(signature.get("sig", ""), validate=True)
        except ValueError:
            raise SignatureError("bad signature: not base64") from None
        if not signature_valid(pem, raw, data):
            raise SignatureError("bad signature: the statement does not match it")


class Ed25519Signer(ManifestSigner):
    """An ed25519 private key file of the trusted service: what production signs with.

    The file has the format of ``service.signing.KeyFileSigner`` (PKCS#8 PEM, mode 0600) and is
    created on first use; pointing :attr:`key_file` at the service's audit key makes the key that
    ``audit public-key`` publishes verify bundles too (DSSE's ``DSSEv1`` prefix keeps an envelope
    signature from ever being a valid audit checkpoint signature, and the reverse).
    """

    algorithm = "ed25519"

    key_file = Unicode(
        "",
        config=True,
        help="""PEM file (PKCS#8, mode 0600) of the ed25519 key that signs export envelopes,
        readable only by the trusted service's OS user; created when missing. Default '' (signing
        then fails). Set it in the service, e.g. to <ProdDiscoveryService.state_dir>/
        audit-signing-key.pem to sign with the key `audit public-key` publishes. Never set it in a
        single-user server: its kernels could read the key.""",
    )

    def _signer(self) -> Any:
        if not self.key_file:
            raise SignatureError("Ed25519Signer.key_file is not set")
        from ..service.signing import KeyFileSigner

        try:
            return KeyFileSigner(key_file=self.key_file)
        except (OSError, ValueError) as exc:
            raise SignatureError(f"cannot load the signing key: {exc}") from None

    def public_key_pem(self) -> str:
        pem: str = self._signer().public_key_pem()
        return pem

    def describe(self) -> str:
        return f"ed25519 key file {self.key_file}"

    def sign(self, data: bytes) -> dict[str, str]:
        signer = self._signer()
        return {"keyid": signer.key_id, "sig": signer.sign(data)}


class HMACSigner(ManifestSigner):
    """HMAC-SHA256 with a shared key: DEVELOPMENT ONLY (anyone holding the key can sign).

    Its envelopes never verify with a public key, so Integration (``export verify --public-key``,
    generated targets) refuses them; ``export verify --dev-hmac`` checks them in development.
    """

    algorithm = "hmac-sha256"

    keys = List(
        Unicode(),
        config=True,
        help="""HMAC keys (secrets) of the development signer. The first signs; every key
        verifies. Default: PROD_DISCOVERY_EXPORT_HMAC_KEY from the environment (several keys
        separated by ';'), or no key (signing then fails). Never logged. Bundles signed this way
        are refused by `export verify --public-key` and by every generated target.""",
    )

    @default("keys")
    def _default_keys(self) -> list[str]:
        raw = os.environ.get("PROD_DISCOVERY_EXPORT_HMAC_KEY", "")
        return [k for k in raw.split(";") if k]

    @validate("keys")
    def _validate_keys(self, proposal: Any) -> list[str]:
        keys = list(proposal["value"])
        for k in keys:
            if len(k) < 16:
                raise TraitError("HMACSigner.keys: every key must be at least 16 characters")
        return keys

    @staticmethod
    def key_id(key: str) -> str:
        """A public fingerprint of a key, so verifiers can tell which key signed."""
        fingerprint = hashlib.sha256(b"prod-discovery-export-key:" + key.encode()).hexdigest()
        return "hmac:" + fingerprint[:16]

    def sign(self, data: bytes) -> dict[str, str]:
        if not self.keys:
            raise SignatureError(
                "no HMAC key configured (set PROD_DISCOVERY_EXPORT_HMAC_KEY or c.HMACSigner.keys)"
            )
        key = self.keys[0]
        mac = hmac.new(key.encode(), data, hashlib.sha256).digest()
        return {"keyid": self.key_id(key), "sig": base64.b64encode(mac).decode()}

    def describe(self) -> str:
        return "HMAC development key (not verifiable with a public key)"

    def verify(self, data: bytes, signature: dict[str, str]) -> None:
        if not self.keys:
            raise SignatureError("no HMAC key configured to verify with")
        for key in self.keys:
            if self.key_id(key) == signature.get("keyid"):
                mac = base64.b64encode(hmac.new(key.encode(), data, hashlib.sha256).digest())
                if hmac.compare_digest(mac.decode(), str(signature.get("sig", ""))):
                    return
                raise SignatureError("bad signature: the statement does not match its HMAC")
        raise SignatureError("bad signature: signed with a key this verifier does not hold")


class TransitSigner(ManifestSigner):
    """Vault/OpenBao transit ``sign`` with an ed25519 or ecdsa-p256 key: it never leaves Vault.

    The signature is transit's (its ``vault:vN:`` prefix removed: raw ed25519, or DER ECDSA over
    SHA-256), so the transit key's public key (``GET <mount>/keys/<key_name>``) verifies it
    offline.
    """

    algorithm = "vault-transit"

    mount = Unicode(
        "transit", config=True, help="Mount path of the transit engine. Default 'transit'."
    )
    key_name = Unicode(
        "prod-discovery-export",
        config=True,
        help="""Name of the transit key (type ed25519 or ecdsa-p256) that signs export
        envelopes. Default 'prod-discovery-export'. Only the trusted service's Vault token may
        have update on <mount>/sign/<key_name>; a single-user server's token must not, or its
        kernels could sign forged bundles.""",
    )

    def _client(self) -> Any:
        if self.vault is None:
            raise SignatureError("TransitSigner needs Vault, but Vault is not configured")
        from ..credentials.vault import VaultError

        try:
            return self.vault.client
        except VaultError as exc:
            raise SignatureError(str(exc)) from None

    def _call(self, fn: Any, **kwargs: Any) -> dict[str, Any]:
        from ..credentials.vault import translate_error

        try:
            result: dict[str, Any] = fn(name=self.key_name, mount_point=self.mount, **kwargs)
            return result
        except Exception as exc:
            address = self.vault.url if self.vault is not None else ""
            raise SignatureError(f"transit: {translate_error(exc, address)}") from None

    def _key(self) -> tuple[str, int, str]:
        """(key type, latest version, its public key PEM)."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        data = self._call(self._client().secrets.transit.read_key)["data"]
        kind = data.get("type")
        if kind not in ("ed25519", "ecdsa-p256"):
            raise SignatureError(
                f"transit key {self.mount}/{self.key_name} is {kind!r}, not ed25519 nor ecdsa-p256"
            )
        version = int(data["latest_version"])
        public = str(data["keys"][str(version)]["public_key"])
        if kind == "ecdsa-p256":
            return kind, version, public
        pem = (
            Ed25519PublicKey.from_public_bytes(base64.b64decode(public))
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
        return kind, version, pem

    def public_key_pem(self) -> str:
        return self._key()[2]

    def describe(self) -> str:
        return f"{self.mount}/{self.key_name}"

    def sign(self, data: bytes) -> dict[str, str]:
        from .attestation import key_id_of_pem

        kind, version, pem = self._key()
        options = {"hash_algorithm": "sha2-256"} if kind == "ecdsa-p256" else {}
        resp = self._call(
            self._client().secrets.transit.sign_data,
            hash_input=base64.b64encode(data).decode(),
            key_version=version,
            **options,
        )
        prefix = f"vault:v{version}:"
        signature = str(resp["data"]["signature"])
        if not signature.startswith(prefix):
            raise SignatureError("transit returned a signature of another key version")
        return {"keyid": key_id_of_pem(pem), "sig": signature[len(prefix) :]}
