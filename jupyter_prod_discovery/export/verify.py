"""``export verify``: what Integration runs before it accepts a bundle."""

from __future__ import annotations

import json
from pathlib import Path

from .manifest import MANIFEST_FILE, SIGNATURE_FILE, canonical, file_hashes, validate_manifest
from .signing import ManifestSigner, SignatureError

__all__ = ["verify_bundle"]


def verify_bundle(bundle: Path, signer: ManifestSigner) -> list[str]:
    """Every problem of the bundle (empty list: valid), each naming the file or the signature.

    The signature is checked over the manifest bytes exactly as stored, then every file's hash
    against the manifest, so an edited, missing or added file is named.
    """
    problems: list[str] = []
    manifest_path, sig_path = bundle / MANIFEST_FILE, bundle / SIGNATURE_FILE
    if not bundle.is_dir():
        return [f"{bundle}: not a directory"]
    if not manifest_path.is_file():
        return [f"missing file: {MANIFEST_FILE}"]
    if not sig_path.is_file():
        return [f"missing file: {SIGNATURE_FILE}"]
    data = manifest_path.read_bytes()
    try:
        manifest = json.loads(data)
        signature = json.loads(sig_path.read_text())
    except ValueError as exc:
        return [f"unreadable manifest or signature: {exc}"]
    if canonical(manifest) != data:
        problems.append(f"changed file: {MANIFEST_FILE} (not in canonical form)")
    try:
        signer.verify(data, signature)
    except SignatureError as exc:
        problems.append(str(exc))
    try:
        validate_manifest(manifest)
    except ValueError as exc:
        problems.append(str(exc))
    expected = manifest.get("files") or {}
    actual = file_hashes(bundle)
    for rel in sorted(set(expected) | set(actual)):
        if rel not in actual:
            problems.append(f"missing file: {rel}")
        elif rel not in expected:
            problems.append(f"extra file: {rel}")
        elif expected[rel] != actual[rel]:
            problems.append(f"changed file: {rel}")
    return problems
