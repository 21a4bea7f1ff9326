"""The service's signing key: ed25519, held only by the service, published as a public key.

Why ed25519 from ``cryptography`` and a key file by default: one signature per committed batch
(not per record) costs ~50 us, and a verifier needs nothing but the public key. The key file is
created 0600 in the service's state directory, which belongs to the service's OS user; the
single-user servers (other uids) cannot read it. ``TransitSigner`` in ``export/`` remains the
choice for keys that never leave Vault.
"""

from __future__ import annotations

import base64
import hashlib
import os
from abc import ABC, ABCMeta, abstractmethod
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from traitlets import MetaHasTraits, Unicode
from traitlets.config import LoggingConfigurable

__all__ = ["AuditSigner", "KeyFileSigner", "PublicKeys", "key_id_of"]


class _Meta(ABCMeta, MetaHasTraits):
    pass


def key_id_of(public_pem: str) -> str:
    """A short stable id of a public key (sha256 of its DER, 16 hex digits)."""
    key = serialization.load_pem_public_key(public_pem.encode())
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()[:16]


class AuditSigner(ABC, LoggingConfigurable, metaclass=_Meta):
    """Signs checkpoints and heads; the contract suite runs against each implementation."""

    @property
    @abstractmethod
    def key_id(self) -> str:
        """Id of the current key (:func:`key_id_of` its public key)."""

    @abstractmethod
    def public_key_pem(self) -> str:
        """The public key, PEM (SubjectPublicKeyInfo): what verifiers are given."""

    @abstractmethod
    def sign(self, message: bytes) -> str:
        """Signature of ``message``, base64."""


class KeyFileSigner(AuditSigner):
    """An ed25519 key in a 0600 file of the service's state directory, created on first use."""

    key_file = Unicode(
        "",
        config=True,
        help="""PEM file of the service's ed25519 signing key (created 0600 when missing).
        Default: <ProdDiscoveryService.state_dir>/audit-signing-key.pem.""",
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        path = Path(self.key_file)
        if not self.key_file:
            raise ValueError("KeyFileSigner.key_file is not set")
        if path.exists():
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(loaded, Ed25519PrivateKey):
                raise ValueError(f"{path} does not hold an ed25519 private key")
            self._key = loaded
        else:
            self._key = Ed25519PrivateKey.generate()
            pem = self._key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
        if path.stat().st_mode & 0o077:
            raise ValueError(f"{path} is readable by others (mode must be 0600)")
        self._public_pem = (
            self._key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
        self._key_id = key_id_of(self._public_pem)

    @property
    def key_id(self) -> str:
        return self._key_id

    def public_key_pem(self) -> str:
        return self._public_pem

    def sign(self, message: bytes) -> str:
        return base64.b64encode(self._key.sign(message)).decode()


class PublicKeys:
    """Verifies signatures with one or more trusted public keys (rotation keeps old ones)."""

    def __init__(self, pems: list[str]) -> None:
        self._keys: dict[str, Ed25519PublicKey] = {}
        for pem in pems:
            key = serialization.load_pem_public_key(pem.encode())
            if not isinstance(key, Ed25519PublicKey):
                raise ValueError("only ed25519 public keys are supported")
            self._keys[key_id_of(pem)] = key

    def __call__(self, message: bytes, signature: str, key_id: str = "") -> bool:
        """Whether one of the keys (the one named by ``key_id`` if given) signed ``message``."""
        try:
            raw = base64.b64decode(signature, validate=True)
        except ValueError:
            return False
        keys = [self._keys[key_id]] if key_id in self._keys else list(self._keys.values())
        if key_id and key_id not in self._keys:
            return False
        for key in keys:
            try:
                key.verify(raw, message)
                return True
            except InvalidSignature:
                continue
        return False
