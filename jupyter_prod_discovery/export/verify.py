"""``export verify``: what Integration runs before it accepts a bundle.

Production verification needs the public key only (:func:`verify_bundle`): the checks are those
of :mod:`.attestation`, the code every generated target embeds. :func:`verify_bundle_dev`
checks a bundle signed by the development HMAC signer, with its shared key.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .attestation import PAYLOAD_TYPE, BundleRefused, bundle_problems, pae
from .signing import ManifestSigner, SignatureError

__all__ = ["verify_bundle", "verify_bundle_dev"]


def verify_bundle(
    bundle: Path, public_pems: list[str], required_gates: Iterable[str] = ()
) -> list[str]:
    """Every problem of the bundle (empty list: valid), each naming the file, signature or gate.

    ``public_pems`` are the keys Integration pinned (PEM text), never keys found in the bundle.
    """
    if not public_pems:
        return ["no public key to verify with"]
    try:
        return bundle_problems(bundle, public_pems, tuple(required_gates))
    except BundleRefused as exc:  # a pinned key that is not an ed25519 PEM
        return exc.problems


def verify_bundle_dev(bundle: Path, signer: ManifestSigner) -> list[str]:
    """Like :func:`verify_bundle`, with a signer's own check (the development HMAC mode)."""

    def check(envelope: Any) -> bytes:
        if not isinstance(envelope, dict) or envelope.get("payloadType") != PAYLOAD_TYPE:
            raise BundleRefused(["the envelope is not a DSSE envelope of an in-toto statement"])
        try:
            payload = base64.b64decode(str(envelope.get("payload", "")), validate=True)
        except ValueError:
            raise BundleRefused(["the envelope's payload is not base64"]) from None
        errors = []
        for sig in envelope.get("signatures") or []:
            try:
                signer.verify(pae(PAYLOAD_TYPE, payload), dict(sig))
                return payload
            except (SignatureError, TypeError, ValueError) as exc:
                errors.append(str(exc))
        raise BundleRefused(errors or ["the envelope has no signature"])

    return bundle_problems(bundle, [], (), check)
