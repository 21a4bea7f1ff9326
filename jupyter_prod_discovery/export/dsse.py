"""The bundle's DSSE envelope: signing side (verification is in :mod:`.attestation`).

The envelope is the standard DSSE v1 JSON (``payload`` base64, ``payloadType``, ``signatures``
of ``{"keyid", "sig"}``), with the in-toto Statement as payload. The signer signs the
pre-authentication encoding (:func:`.attestation.pae`), never the bare payload, so a signature
cannot be replayed as a signature over another type of message (an audit checkpoint).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from .attestation import ENVELOPE_FILE, PAYLOAD_TYPE, pae
from .signing import ManifestSigner, SignatureError

__all__ = ["envelope_summary", "sign_envelope"]


def sign_envelope(payload: bytes, signer: ManifestSigner) -> dict[str, Any]:
    """A DSSE envelope over ``payload`` (an in-toto Statement) with one signature."""
    entry = signer.sign(pae(PAYLOAD_TYPE, payload))
    if set(entry) != {"keyid", "sig"}:
        raise SignatureError(f"{type(signer).__name__}.sign returned {sorted(entry)}")
    return {
        "payload": base64.b64encode(payload).decode(),
        "payloadType": PAYLOAD_TYPE,
        "signatures": [entry],
    }


def envelope_summary(bundle: Path) -> dict[str, Any]:
    """Which key signed a bundle (key ids of its signatures), for the export dialog and CLI.

    Says nothing about validity: that takes :func:`.attestation.bundle_problems` with a pinned
    public key.
    """
    envelope = json.loads((bundle / ENVELOPE_FILE).read_text(encoding="utf-8"))
    keyids = [str(s.get("keyid", "")) for s in envelope.get("signatures", [])]
    return {
        "format": "dsse",
        "payload_type": envelope.get("payloadType"),
        "key_ids": keyids,
        "key_id": keyids[0] if keyids else None,
        "algorithm": "hmac-sha256 (development)"
        if keyids and keyids[0].startswith("hmac:")
        else "ed25519",
    }
