"""Offline verification of an export bundle: DSSE envelope, in-toto Statement, files and gates.

Why standalone (standard library plus ``cryptography`` only, no import of this package and no
``from __future__``): the same source is embedded verbatim into every generated target (the
papermill ``run.py``, the Airflow DAG, the Dagster job, the Kubernetes init step) and can be
installed beside Airflow as ``[core] might_contain_dag_callable``, where only the job's own
dependencies exist. ``export verify`` imports it too, so there is one implementation of the
check, not one per place.

Why the DSSE pre-authentication encoding is written here rather than imported from
securesystemslib: it is one line of the DSSE v1 spec (``pae``), and a job's environment has
``cryptography`` (Airflow, hvac's TLS stack) but not securesystemslib. ``tests/test_export_attestation.py``
shows that securesystemslib's own ``Envelope.verify`` accepts our envelopes and refuses tampered
ones, so the format is the standard one, not a look-alike.

Trust comes from the caller: the public keys are the ones Integration pins (an argument, or the
``PROD_DISCOVERY_EXPORT_PUBLIC_KEY`` / ``PROD_DISCOVERY_EXPORT_PUBLIC_KEY_FILE`` environment
variables), never a key found in the bundle. A bundle is refused when the envelope is not signed
by a pinned key (ed25519, or ECDSA P-256 for a Vault transit key of that type), when any file differs from the statement's subjects (edited, missing,
extra, symlinked), when ``manifest.json`` differs from the signed payload, or when a gate did not
pass and was not overridden with a recorded reason.
"""

import base64
import hashlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

__all__ = [
    "ENVELOPE_FILE",
    "KEY_ENV",
    "KEY_FILE_ENV",
    "PAYLOAD_TYPE",
    "PREDICATE_TYPE",
    "STATEMENT_FILE",
    "STATEMENT_TYPE",
    "BundleRefused",
    "bundle_problems",
    "find_bundle",
    "gate_problems",
    "key_id_of_pem",
    "might_contain_dag",
    "pae",
    "pinned_public_keys",
    "require_verified",
    "signature_valid",
    "verify_envelope",
]

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
#: The in-toto Statement, byte for byte the envelope's payload (for readers; checked equal).
STATEMENT_FILE = "manifest.json"
#: The DSSE envelope whose payload is the Statement.
ENVELOPE_FILE = "signature.json"
#: PEM text of the pinned public key(s) (several PEM blocks for a rotation).
KEY_ENV = "PROD_DISCOVERY_EXPORT_PUBLIC_KEY"
#: Path(s) of mounted PEM files, separated by os.pathsep.
KEY_FILE_ENV = "PROD_DISCOVERY_EXPORT_PUBLIC_KEY_FILE"

_log = logging.getLogger("prod_discovery_verify")


class BundleRefused(Exception):
    """The bundle must not run; ``problems`` names every reason (files, signature, gates)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("bundle refused: " + "; ".join(self.problems))


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: the exact bytes a signature covers."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


def _split_pems(text: str) -> list[str]:
    marker = "-----END PUBLIC KEY-----"
    blocks = [b.strip() for b in text.split(marker) if b.strip()]
    return [b + "\n" + marker + "\n" for b in blocks]


def key_id_of_pem(public_pem: str) -> str:
    """Short id of a public key: sha256 of its DER SubjectPublicKeyInfo, 16 hex digits.

    The same id as ``service.signing.key_id_of``, so the service's published key id names the
    key that signed an envelope.
    """
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_public_key(public_pem.encode())
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()[:16]


def pinned_public_keys(environ: Any = None) -> list[str]:
    """PEMs pinned by Integration through the environment; refuse when none is pinned.

    Failing closed matters: a job that ran unverified whenever the variable was forgotten would
    verify nothing.
    """
    env = os.environ if environ is None else environ
    pems = _split_pems(env.get(KEY_ENV, ""))
    for path in filter(None, env.get(KEY_FILE_ENV, "").split(os.pathsep)):
        try:
            pems.extend(_split_pems(Path(path).read_text(encoding="utf-8")))
        except OSError as exc:
            raise BundleRefused([f"cannot read the pinned public key {path}: {exc}"]) from None
    if not pems:
        raise BundleRefused(
            [f"no pinned public key: set {KEY_FILE_ENV} (a mounted PEM file) or {KEY_ENV}"]
        )
    return pems


def _load_keys(pems: list[str]) -> dict[str, Any]:
    """Key id -> public key, for ed25519 and ECDSA P-256 keys (Vault transit's two types)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    keys: dict[str, Any] = {}
    for pem in pems:
        try:
            key = serialization.load_pem_public_key(pem.encode())
        except ValueError as exc:
            raise BundleRefused([f"a pinned public key is not a PEM public key: {exc}"]) from None
        p256 = isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)
        if not (isinstance(key, Ed25519PublicKey) or p256):
            raise BundleRefused(["a pinned public key is neither ed25519 nor ECDSA P-256"])
        keys[key_id_of_pem(pem)] = key
    return keys


def _signature_valid(key: Any, signature: bytes, message: bytes) -> bool:
    """Whether ``signature`` (raw ed25519, or DER ECDSA over SHA-256) of ``message`` is valid."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        else:
            key.verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def signature_valid(public_pem: str, signature: bytes, message: bytes) -> bool:
    """Whether the key ``public_pem`` signed ``message`` (BundleRefused for an unusable key)."""
    return _signature_valid(next(iter(_load_keys([public_pem]).values())), signature, message)


def verify_envelope(envelope: Any, public_pems: list[str]) -> bytes:
    """The payload of a DSSE envelope signed by one of ``public_pems``; BundleRefused otherwise.

    The signature's ``keyid`` is an unauthenticated hint: it chooses which key to try first, and
    a signature that no pinned key verifies is refused whatever id it claims.
    """
    keys = _load_keys(public_pems)
    if not isinstance(envelope, dict) or not isinstance(envelope.get("signatures"), list):
        raise BundleRefused(
            ["the envelope is not a DSSE envelope (payload, payloadType, signatures)"]
        )
    if envelope.get("payloadType") != PAYLOAD_TYPE:
        raise BundleRefused([f"the envelope's payloadType is not {PAYLOAD_TYPE!r}"])
    try:
        payload = base64.b64decode(str(envelope.get("payload", "")), validate=True)
    except ValueError:
        raise BundleRefused(["the envelope's payload is not base64"]) from None
    message = pae(PAYLOAD_TYPE, payload)
    claimed: list[str] = []
    for sig in envelope["signatures"]:
        if not isinstance(sig, dict):
            continue
        keyid = str(sig.get("keyid", ""))
        claimed.append(keyid or "(none)")
        try:
            raw = base64.b64decode(str(sig.get("sig", "")), validate=True)
        except ValueError:
            continue
        order = [keys[keyid]] if keyid in keys else []
        order += [k for k in keys.values() if k not in order]
        for key in order:
            if _signature_valid(key, raw, message):
                return payload
    pinned = ", ".join(sorted(keys))
    raise BundleRefused(
        [
            "bad signature: the envelope is not signed by a pinned key (signature key id "
            f"{', '.join(claimed) or 'none'}; pinned {pinned})"
        ]
    )


def gate_problems(statement: Any, required_gates: Any = ()) -> list[str]:
    """Why the recorded gates do not allow the bundle to run (empty list: they do).

    A gate allows it when it passed, or when it was overridden with a non-empty recorded reason.
    A skipped gate did not pass. No gate at all is refused: the service always records them.
    """
    try:
        gates = statement["predicate"]["buildDefinition"]["internalParameters"]["gates"]
    except (KeyError, TypeError):
        return ["the statement records no gate results"]
    if not isinstance(gates, list) or not gates:
        return ["the statement records no gate results"]
    problems = []
    names = set()
    for gate in gates:
        if not isinstance(gate, dict):
            problems.append("a gate result is not an object")
            continue
        name = str(gate.get("name", "?"))
        names.add(name)
        if gate.get("passed") is True and not gate.get("skipped"):
            continue
        reason = gate.get("override_reason")
        if gate.get("overridden") is True and isinstance(reason, str) and reason.strip():
            continue
        problems.append(f"gate {name} did not pass and was not overridden with a reason")
    for name in required_gates:
        if name not in names:
            problems.append(f"required gate {name} is not recorded")
    return problems


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def _file_problems(bundle: Path, statement: Any) -> list[str]:
    subjects = statement.get("subject")
    if not isinstance(subjects, list) or not subjects:
        return ["the statement has no subjects"]
    expected: dict[str, str] = {}
    problems = []
    for subject in subjects:
        name = subject.get("name") if isinstance(subject, dict) else None
        digest = (subject.get("digest") or {}).get("sha256") if isinstance(subject, dict) else None
        if not isinstance(name, str) or not isinstance(digest, str):
            problems.append("a subject lacks a name or a sha256 digest")
            continue
        parts = Path(name).parts
        if Path(name).is_absolute() or ".." in parts or name in (STATEMENT_FILE, ENVELOPE_FILE):
            problems.append(f"subject {name!r} is not a bundle file")
            continue
        expected[name] = digest
    actual: dict[str, Path] = {}
    for path in sorted(bundle.rglob("*")):
        rel = path.relative_to(bundle).as_posix()
        if path.is_symlink():
            problems.append(f"symlink not allowed: {rel}")
        elif path.is_file() and rel not in (STATEMENT_FILE, ENVELOPE_FILE):
            actual[rel] = path
    for rel in sorted(set(expected) | set(actual)):
        if rel not in actual:
            if not (bundle / rel).is_symlink():
                problems.append(f"missing file: {rel}")
        elif rel not in expected:
            problems.append(f"extra file: {rel}")
        elif _sha256(actual[rel]) != expected[rel]:
            problems.append(f"changed file: {rel}")
    return problems


def read_verified_statement(
    bundle: Path, public_pems: list[str], verify: Any = None
) -> dict[str, Any]:
    """The signed Statement of ``bundle`` (signature checked only); BundleRefused otherwise."""
    bundle = Path(bundle)
    if not bundle.is_dir():
        raise BundleRefused([f"{bundle}: not a directory"])
    for name in (ENVELOPE_FILE, STATEMENT_FILE):
        if not (bundle / name).is_file() or (bundle / name).is_symlink():
            raise BundleRefused([f"missing file: {name}"])
    try:
        envelope = json.loads((bundle / ENVELOPE_FILE).read_text(encoding="utf-8"))
    except ValueError as exc:
        raise BundleRefused([f"unreadable {ENVELOPE_FILE}: {exc}"]) from None
    payload = verify(envelope) if verify is not None else verify_envelope(envelope, public_pems)
    try:
        statement = json.loads(payload)
    except ValueError:
        raise BundleRefused(["the signed payload is not JSON"]) from None
    if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
        raise BundleRefused([f"the signed payload is not an in-toto Statement ({STATEMENT_TYPE})"])
    if statement.get("predicateType") != PREDICATE_TYPE:
        raise BundleRefused([f"the statement's predicateType is not {PREDICATE_TYPE}"])
    return statement


def bundle_problems(
    bundle: Any, public_pems: list[str], required_gates: Any = (), verify: Any = None
) -> list[str]:
    """Every reason to refuse ``bundle`` (empty list: it verifies), checked offline.

    ``verify(envelope) -> payload`` replaces the public-key check (the HMAC development mode).
    """
    bundle = Path(bundle)
    try:
        statement = read_verified_statement(bundle, public_pems, verify)
    except BundleRefused as exc:
        return exc.problems
    problems = []
    if (bundle / STATEMENT_FILE).read_bytes() != base64.b64decode(
        json.loads((bundle / ENVELOPE_FILE).read_text(encoding="utf-8"))["payload"]
    ):
        problems.append(f"changed file: {STATEMENT_FILE} (differs from the signed statement)")
    problems += _file_problems(bundle, statement)
    problems += gate_problems(statement, required_gates)
    return problems


def require_verified(bundle: Any, public_pems: Any = None) -> dict[str, Any]:
    """The verified Statement of ``bundle``; raise BundleRefused (before any user code runs).

    ``public_pems`` defaults to the keys pinned in the environment (:func:`pinned_public_keys`).
    """
    pems = list(public_pems) if public_pems is not None else pinned_public_keys()
    problems = bundle_problems(Path(bundle), pems)
    if problems:
        raise BundleRefused(problems)
    return read_verified_statement(Path(bundle), pems)


def find_bundle(path: Any) -> Any:
    """The bundle directory holding ``path`` (it or a parent with the envelope), or None."""
    here = Path(path).resolve()
    for candidate in [here, *here.parents]:
        if (candidate / ENVELOPE_FILE).is_file() and (candidate / STATEMENT_FILE).is_file():
            return candidate
    return None


def might_contain_dag(file_path: str, zip_file: Any = None) -> bool:
    """Airflow's ``[core] might_contain_dag_callable``: runs before Airflow imports a DAG file.

    A file inside an export bundle is imported only when it lies in the bundle's ``airflow/``
    folder and the bundle verifies with the pinned key, so a forged DAG file (whose own check an
    attacker removed) never runs. Files outside bundles
    go to Airflow's default heuristic, unless ``PROD_DISCOVERY_REQUIRE_SIGNED_DAGS=1``.
    """
    bundle = None if zip_file is not None else find_bundle(file_path)
    if bundle is None:
        if os.environ.get("PROD_DISCOVERY_REQUIRE_SIGNED_DAGS") == "1":
            _log.error("refusing %s: not inside a signed export bundle", file_path)
            return False
        from airflow.utils.file import might_contain_dag_via_default_heuristic

        return bool(might_contain_dag_via_default_heuristic(file_path, zip_file))
    rel = Path(file_path).resolve().relative_to(bundle).as_posix()
    if not rel.startswith("airflow/"):
        return False  # run.py, dagster_job.py, ...: not DAG files, never imported by Airflow
    try:
        require_verified(bundle)
    except BundleRefused as exc:
        _log.error("refusing %s: %s", file_path, exc)
        return False
    return True


# --- end of the embedded verifier (generated targets embed the source above this line) ---


def main(argv: Any = None) -> int:
    """``python attestation.py BUNDLE``: exit 0 valid, 1 refused, 2 usage; keys from the env."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: verify BUNDLE (keys from " + KEY_FILE_ENV + " or " + KEY_ENV + ")")
        return 2
    try:
        require_verified(args[0])
    except BundleRefused as exc:
        for problem in exc.problems:
            print(f"REFUSED: {problem}", file=sys.stderr)
        return 1
    print(f"verified: {args[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
