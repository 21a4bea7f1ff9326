"""Hub-signed JWTs for Vault's JWT auth method, and the JWKS to verify them.

Why JWTs signed by the hub: JupyterHub API tokens are opaque, so Vault cannot check them, and
the usual recipe (one long-lived Vault token per server minted at spawn) leaves a secret behind
that nobody revokes. A JWT signed here names the hub user, their groups and the server, lives a
few minutes and is bound to one audience; Vault verifies it offline against our public key and
maps the claims onto roles and templated policies. Nothing long-lived reaches the server.

The private key is the one secret: read from ``key_file`` (created with mode 0600 when missing),
never logged. The key id (``kid``) is the RFC 7638 thumbprint of the public key, so a rotated key
gets a new id and Vault picks the right key from the JWKS.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from traitlets import Int, List, TraitError, Unicode, default, validate
from traitlets.config import LoggingConfigurable

__all__ = ["DEFAULT_AUDIENCE", "JWTIssuer", "load_or_create_key"]

DEFAULT_AUDIENCE = "prod-discovery-vault"
ALGORITHM = "RS256"


def _b64(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def load_or_create_key(path: str | Path) -> rsa.RSAPrivateKey:
    """Load the RSA private key at ``path``, creating a 2048-bit one (mode 0600) if absent.

    Created with O_EXCL so two hub processes starting together cannot overwrite each other's key.
    """
    p = Path(path)
    if not p.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        try:
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
    loaded = serialization.load_pem_private_key(p.read_bytes(), password=None)
    if not isinstance(loaded, rsa.RSAPrivateKey):
        raise ValueError(f"{p} does not hold an RSA private key")
    return loaded


class JWTIssuer(LoggingConfigurable):
    """Signs the short-lived JWTs single-user servers log in to Vault with.

    The managed service builds it from the ``PROD_DISCOVERY_JWT_*`` environment variables that
    ``configure_hub`` puts in the service's environment (each trait's default reads one).
    """

    key_file = Unicode(
        config=True,
        help="""PEM file of the RSA private key that signs the JWTs; created (2048 bits, mode
        0600) when it does not exist. Default: the PROD_DISCOVERY_JWT_KEY_FILE environment
        variable, else 'prod-discovery-jwt-key.pem' in the working directory. Keep it on the hub
        only: anyone holding it can log in to Vault as any user.""",
    )

    @default("key_file")
    def _default_key_file(self) -> str:
        return os.environ.get("PROD_DISCOVERY_JWT_KEY_FILE", "prod-discovery-jwt-key.pem")

    issuer = Unicode(
        config=True,
        help="""The 'iss' claim, which Vault's JWT auth method checks as bound_issuer.
        Default: the PROD_DISCOVERY_JWT_ISSUER environment variable, else 'jupyterhub'.""",
    )

    @default("issuer")
    def _default_issuer(self) -> str:
        return os.environ.get("PROD_DISCOVERY_JWT_ISSUER", "jupyterhub")

    audience = Unicode(
        config=True,
        help=f"""The 'aud' claim; the Vault role must list it in bound_audiences, so a JWT
        minted for another relying party is refused. Default: the PROD_DISCOVERY_JWT_AUDIENCE
        environment variable, else {DEFAULT_AUDIENCE!r}.""",
    )

    @default("audience")
    def _default_audience(self) -> str:
        return os.environ.get("PROD_DISCOVERY_JWT_AUDIENCE", DEFAULT_AUDIENCE)

    lifetime = Int(
        config=True,
        help="""Seconds a JWT is valid ('exp' - 'iat'); it is only used to log in, so keep it
        short. Default: the PROD_DISCOVERY_JWT_LIFETIME environment variable, else 300.
        Allowed: 10 to 3600.""",
    )

    @default("lifetime")
    def _default_lifetime(self) -> int:
        return int(os.environ.get("PROD_DISCOVERY_JWT_LIFETIME", "300"))

    @validate("lifetime")
    def _validate_lifetime(self, proposal: Any) -> int:
        value = int(proposal["value"])
        if not 10 <= value <= 3600:
            raise TraitError(f"JWTIssuer.lifetime must be between 10 and 3600 s, got {value}")
        return value

    extra_public_keys = List(
        Unicode(),
        config=True,
        help="""PEM files of further public keys to publish in the JWKS, for key rotation: keep
        the previous key listed until every JWT it signed has expired. Default: the
        PROD_DISCOVERY_JWT_EXTRA_PUBLIC_KEYS environment variable (paths separated by ':'),
        else [].""",
    )

    @default("extra_public_keys")
    def _default_extra_public_keys(self) -> list[str]:
        raw = os.environ.get("PROD_DISCOVERY_JWT_EXTRA_PUBLIC_KEYS", "")
        return [p for p in raw.split(os.pathsep) if p]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._key = load_or_create_key(self.key_file)

    @staticmethod
    def _jwk(public: rsa.RSAPublicKey) -> dict[str, str]:
        numbers = public.public_numbers()
        jwk = {"e": _b64(numbers.e), "kty": "RSA", "n": _b64(numbers.n)}
        # RFC 7638 thumbprint: the required members, sorted, no whitespace.
        thumb = hashlib.sha256(json.dumps(jwk, separators=(",", ":")).encode()).digest()
        kid = base64.urlsafe_b64encode(thumb).rstrip(b"=").decode()
        return {**jwk, "kid": kid, "use": "sig", "alg": ALGORITHM}

    @property
    def kid(self) -> str:
        return self._jwk(self._key.public_key())["kid"]

    def public_pem(self) -> str:
        """The signing key's public half as PEM (for Vault's jwt_validation_pubkeys)."""
        return (
            self._key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    def jwks(self) -> dict[str, Any]:
        """The JSON Web Key Set Vault fetches (jwks_url) to verify our JWTs."""
        keys = [self._jwk(self._key.public_key())]
        for path in self.extra_public_keys:
            public = serialization.load_pem_public_key(Path(path).read_bytes())
            if isinstance(public, rsa.RSAPublicKey):
                keys.append(self._jwk(public))
        return {"keys": keys}

    def claims(
        self,
        user: str,
        groups: list[str],
        server_name: str = "",
        admin: bool = False,
        now: float | None = None,
    ) -> dict[str, Any]:
        """The claims of one JWT (see :meth:`issue`)."""
        iat = int(now if now is not None else time.time())
        return {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": user,
            "name": user,
            "groups": sorted(groups),
            "server_name": server_name,
            "admin": admin,
            "iat": iat,
            "nbf": iat - 5,
            "exp": iat + self.lifetime,
            "jti": uuid.uuid4().hex,
        }

    def issue(
        self, user: str, groups: list[str], server_name: str = "", admin: bool = False
    ) -> str:
        """A signed JWT for ``user``'s server ``server_name`` ('' is the default server).

        ``sub`` is the hub user name (Vault's user_claim), ``groups`` the hub groups (the
        groups_claim), ``server_name`` and ``admin`` are informational claims Vault may bind.
        """
        return jwt.encode(
            self.claims(user, groups, server_name, admin),
            self._key,
            algorithm=ALGORITHM,
            headers={"kid": self.kid},
        )

    def verify(self, token: str) -> dict[str, Any]:
        """Decode and verify a JWT of ours (signature, exp, nbf, iss, aud); raise on failure."""
        decoded: dict[str, Any] = jwt.decode(
            token,
            self._key.public_key(),
            algorithms=[ALGORITHM],
            audience=self.audience,
            issuer=self.issuer,
            options={"require": ["exp", "iat", "sub", "aud", "iss"]},
        )
        return decoded
