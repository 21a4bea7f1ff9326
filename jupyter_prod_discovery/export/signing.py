"""Signatures over the canonical manifest: HMAC-SHA256 or Vault/OpenBao transit.

Pluggable: the exporter and ``export verify`` pick the implementation with a ``Type`` trait over
:class:`ManifestSigner`. Integration verifies with the same configuration Discovery signs with;
a bundle signed by another kind of signer is refused rather than verified with a weaker one.
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

__all__ = ["HMACSigner", "ManifestSigner", "SignatureError", "TransitSigner"]


class SignatureError(RuntimeError):
    """Signing failed or a signature does not verify; the message names why, never a key."""


class ManifestSigner(LoggingConfigurable, metaclass=ABCConfigurableMeta):
    """Signs and verifies the canonical bytes of a manifest.

    ``vault`` is the server's (or the CLI's) :class:`VaultClient`, for signers that need Vault.
    """

    #: Short name recorded in signature.json; verification refuses a different one.
    algorithm: str = ""

    def __init__(self, vault: VaultClient | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.vault = vault

    @abstractmethod
    def sign(self, data: bytes) -> dict[str, str]:
        """Return ``{"algorithm", "key_id", "signature"}`` for ``data``.

        Raise :class:`SignatureError` when no key is available: an unsigned bundle must never be
        produced silently.
        """

    @abstractmethod
    def verify(self, data: bytes, signature: dict[str, str]) -> None:
        """Return when ``signature`` (as produced by :meth:`sign`) is valid for ``data``.

        Raise :class:`SignatureError` naming the reason (wrong algorithm, unknown key, mismatch).
        """

    def check_algorithm(self, signature: dict[str, str]) -> None:
        got = signature.get("algorithm")
        if got != self.algorithm:
            raise SignatureError(
                f"bundle is signed with {got!r}, this verifier expects {self.algorithm!r}"
            )


class HMACSigner(ManifestSigner):
    """HMAC-SHA256 with a shared key; rotatable (sign with the first key, verify with any)."""

    algorithm = "hmac-sha256"

    keys = List(
        Unicode(),
        config=True,
        help="""HMAC keys (secrets). The first signs; every key verifies, so a key can be rotated
        by prepending the new one. Default: PROD_DISCOVERY_EXPORT_HMAC_KEY from the environment
        (several keys separated by ';'), or no key (signing then fails). Never logged.""",
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
        return hashlib.sha256(b"prod-discovery-export-key:" + key.encode()).hexdigest()[:16]

    def sign(self, data: bytes) -> dict[str, str]:
        if not self.keys:
            raise SignatureError(
                "no HMAC key configured (set PROD_DISCOVERY_EXPORT_HMAC_KEY or c.HMACSigner.keys)"
            )
        key = self.keys[0]
        mac = hmac.new(key.encode(), data, hashlib.sha256).hexdigest()
        return {"algorithm": self.algorithm, "key_id": self.key_id(key), "signature": mac}

    def verify(self, data: bytes, signature: dict[str, str]) -> None:
        self.check_algorithm(signature)
        if not self.keys:
            raise SignatureError("no HMAC key configured to verify with")
        for key in self.keys:
            if self.key_id(key) == signature.get("key_id"):
                mac = hmac.new(key.encode(), data, hashlib.sha256).hexdigest()
                if hmac.compare_digest(mac, str(signature.get("signature", ""))):
                    return
                raise SignatureError("bad signature: the manifest does not match its HMAC")
        raise SignatureError("bad signature: signed with a key this verifier does not hold")


class TransitSigner(ManifestSigner):
    """Vault/OpenBao transit ``sign``/``verify``: the key never leaves Vault."""

    algorithm = "vault-transit"

    mount = Unicode(
        "transit", config=True, help="Mount path of the transit engine. Default 'transit'."
    )
    key_name = Unicode(
        "prod-discovery-export",
        config=True,
        help="""Name of the transit key (type ed25519, ecdsa-p256 or rsa-*) that signs manifests.
        Default 'prod-discovery-export'. The server's Vault token needs update on
        <mount>/sign/<key_name> and <mount>/verify/<key_name>.""",
    )
    hash_algorithm = Unicode(
        "sha2-256",
        config=True,
        help="""Hash algorithm passed to transit sign/verify (ignored by ed25519).
        Default 'sha2-256'.""",
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

    def sign(self, data: bytes) -> dict[str, str]:
        client = self._client()
        resp = self._call(
            client.secrets.transit.sign_data,
            hash_input=base64.b64encode(data).decode(),
            hash_algorithm=self.hash_algorithm,
        )
        return {
            "algorithm": self.algorithm,
            "key_id": f"{self.mount}/{self.key_name}",
            "signature": resp["data"]["signature"],
        }

    def verify(self, data: bytes, signature: dict[str, str]) -> None:
        self.check_algorithm(signature)
        if signature.get("key_id") != f"{self.mount}/{self.key_name}":
            raise SignatureError(
                f"bad signature: signed with transit key {signature.get('key_id')!r}"
            )
        client = self._client()
        resp = self._call(
            client.secrets.transit.verify_signed_data,
            hash_input=base64.b64encode(data).decode(),
            signature=str(signature.get("signature", "")),
            hash_algorithm=self.hash_algorithm,
        )
        if not resp["data"].get("valid"):
            raise SignatureError(
                "bad signature: Vault transit says the manifest signature is invalid"
            )
