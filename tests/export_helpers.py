"""Sample notebooks and a recording audit sink for the export tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest

HMAC_KEY = "test-export-key-0123456789"


def signing_key(directory: Path, name: str = "export") -> tuple[Path, Path]:
    """A fresh ed25519 key: (private key file as the service holds it, public key PEM file)."""
    from jupyter_prod_discovery.service.signing import KeyFileSigner

    key = directory / f"{name}-signing-key.pem"
    public = directory / f"{name}-public-key.pem"
    public.write_text(KeyFileSigner(key_file=str(key)).public_key_pem())
    return key, public


@pytest.fixture(scope="session")
def export_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The trusted service's export key for a test session: (private key file, public PEM file)."""
    return signing_key(tmp_path_factory.mktemp("export-keys"))


def ed25519_config(keys: tuple[Path, Path], **sections: Any) -> Any:
    """Exporter config signing with ``keys`` (Ed25519Signer), plus other config sections."""
    from traitlets.config import Config

    from jupyter_prod_discovery.export.signing import Ed25519Signer

    exporter = {"signer_class": Ed25519Signer, **sections.pop("NotebookExporter", {})}
    return Config(
        {"NotebookExporter": exporter, "Ed25519Signer": {"key_file": str(keys[0])}, **sections}
    )


def statement_fields(bundle: Path) -> dict[str, Any]:
    """The flat view of a bundle's statement (``manifest.json``): name, gates, parameters, ..."""
    import json

    from jupyter_prod_discovery.export.provenance import predicate_fields

    return predicate_fields(json.loads((bundle / "manifest.json").read_text()))


def make_notebook(
    path: Path, cells: list[tuple[str, list[dict[str, Any]]]], params: str = ""
) -> Path:
    """Write a python3 notebook; each cell is (source, outputs). ``params`` makes a parameters cell."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    if params:
        cell = nbformat.v4.new_code_cell(params)
        cell.metadata["tags"] = ["parameters"]
        nb.cells.append(cell)
    for source, outputs in cells:
        cell = nbformat.v4.new_code_cell(source)
        cell.outputs = [nbformat.from_dict(o) for o in outputs]
        nb.cells.append(cell)
    nbformat.write(nb, path)
    return path


def stream(text: str) -> dict[str, Any]:
    return {"output_type": "stream", "name": "stdout", "text": text}


def result_value(notebook: Path, cell: int = -1) -> str:
    """text/plain of the execute_result of a cell of an executed notebook."""
    nb = nbformat.read(notebook, as_version=4)
    for output in nb.cells[cell].outputs:
        if output.output_type == "execute_result":
            return str(output.data["text/plain"])
    raise AssertionError(f"cell {cell} has no execute_result")


class ListRecorder:
    """An audit recorder that keeps events in memory (the audit seam's contract)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any], Any]] = []

    def record(self, kind: str, data: dict[str, Any], *, user: Any = None) -> None:
        self.events.append((kind, data, user))


def forge(
    bundle: Path,
    dest: Path,
    signer: Any,
    edits: dict[str, str] | None = None,
    statement_edit: Any = None,
) -> Path:
    """What an attacker without the service's key can make: a copy of ``bundle`` with files
    edited, the statement's subjects recomputed (and edited), re-signed with ``signer``."""
    import json
    import shutil

    from jupyter_prod_discovery.export.dsse import sign_envelope
    from jupyter_prod_discovery.export.manifest import canonical, file_hashes

    shutil.copytree(bundle, dest)
    for rel, text in (edits or {}).items():
        (dest / rel).write_text(text)
    statement = json.loads((dest / "manifest.json").read_text())
    statement["subject"] = [
        {"name": k, "digest": {"sha256": v}} for k, v in sorted(file_hashes(dest).items())
    ]
    if statement_edit is not None:
        statement_edit(statement)
    data = canonical(statement)
    (dest / "manifest.json").write_bytes(data)
    (dest / "signature.json").write_text(json.dumps(sign_envelope(data, signer)))
    return dest


def with_marker_cell(notebook: Path, marker: Path) -> str:
    """The text of ``notebook`` with a first code cell that creates ``marker`` when it runs."""
    nb = nbformat.read(notebook, as_version=4)
    cell = nbformat.v4.new_code_cell(f"open({str(marker)!r}, 'w').write('user code ran')")
    nb.cells.insert(0, cell)
    return nbformat.writes(nb)
