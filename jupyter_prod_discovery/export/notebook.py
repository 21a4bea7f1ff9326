"""Turn a Discovery notebook into the bundle's notebook and script.

The source notebook keeps its outputs (the gates scan them for PII and secrets); the bundled copy
has every output and execution count stripped, so whatever the author saw on production data never
leaves Discovery, and it declares its parameters in a cell tagged ``parameters`` so that papermill
(and every orchestrator target, which all run papermill) can inject run-time values.
"""

from __future__ import annotations

import copy
import json
import keyword
import math
import re
from typing import Any

import nbformat
from nbformat import NotebookNode

__all__ = [
    "INSERTED_KEY",
    "PARAMETERS_TAG",
    "cell_label",
    "declared_parameters",
    "parse_param",
    "prepare_notebook",
    "to_script",
    "validate_parameters",
]

PARAMETERS_TAG = "parameters"
#: Cell metadata key marking a cell the export added (not the author's): the parameters cell
#: inserted into a notebook without one. Papermill tags the cells it adds (its injected
#: parameters, its error banners). None of these counts when cells are numbered for people.
INSERTED_KEY = "prod_discovery_inserted"
_PAPERMILL_TAGS = frozenset({"injected-parameters", "papermill-error-cell-tag"})


def _check_json_value(name: str, value: Any, depth: int = 0) -> None:
    """Raise ValueError unless ``value`` is plain JSON (what repr() turns into a safe literal)."""
    if depth > 32:
        raise ValueError(f"parameter {name!r}: value nested too deeply")
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"parameter {name!r}: {value!r} is not a JSON number")
        return
    if isinstance(value, list):
        for item in value:
            _check_json_value(name, item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"parameter {name!r}: object keys must be strings")
            _check_json_value(name, item, depth + 1)
        return
    raise ValueError(f"parameter {name!r}: {type(value).__name__} is not a JSON value")


def validate_parameters(parameters: Any) -> dict[str, Any]:
    """The parameters, checked: names are Python identifiers (not keywords), values plain JSON.

    Why: each parameter becomes a line ``name = repr(value)`` of the bundled notebook and script,
    and papermill injects ``name = value`` again at run time. A name such as
    ``"x = 1\nimport subprocess ...\ny"`` would otherwise be code in a signed notebook. Raises
    ValueError naming the bad parameter (the server answers 400 with it).
    """
    if not isinstance(parameters, dict):
        raise ValueError("'parameters' must be an object {name: JSON value}")
    for name, value in parameters.items():
        if not isinstance(name, str) or not name.isidentifier() or not name.isascii():
            raise ValueError(f"parameter name {name!r} is not a Python identifier")
        if keyword.iskeyword(name) or keyword.issoftkeyword(name):
            raise ValueError(f"parameter name {name!r} is a Python keyword")
        _check_json_value(name, value)
    return dict(parameters)


def parse_param(text: str) -> tuple[str, Any]:
    """Parse ``k=v`` from the command line; ``v`` is a JSON literal if it parses, else text."""
    if "=" not in text:
        raise ValueError(f"parameter {text!r} is not of the form name=value")
    name, _, raw = text.partition("=")
    name = name.strip()
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    validate_parameters({name: value})
    return name, value


def _parameters_cell(nb: NotebookNode) -> NotebookNode | None:
    for cell in nb.cells:
        if cell.cell_type == "code" and PARAMETERS_TAG in cell.get("metadata", {}).get("tags", []):
            return cell
    return None


def declared_parameters(nb: NotebookNode) -> dict[str, str]:
    """Names assigned in the ``parameters`` cell, with their source expression (not evaluated)."""
    import ast

    cell = _parameters_cell(nb)
    if cell is None:
        return {}
    out: dict[str, str] = {}
    try:
        tree = ast.parse(cell.source)
    except SyntaxError:
        return {}
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name) and node.value is not None:
                    out[target.id] = ast.get_source_segment(cell.source, node.value) or ""
    return out


def prepare_notebook(source: NotebookNode, parameters: dict[str, Any]) -> NotebookNode:
    """The bundle's notebook: outputs stripped, a ``parameters`` cell declared.

    When the source has no ``parameters`` cell one is inserted first, assigning the export's
    parameters as defaults; when it has one, parameters not declared there are appended to it,
    so that papermill can always override every parameter the manifest lists.
    """
    parameters = validate_parameters(parameters)
    nb = copy.deepcopy(source)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.get("metadata", {}).pop("execution", None)
    nb.metadata.pop("widgets", None)
    cell = _parameters_cell(nb)
    missing = {k: v for k, v in parameters.items() if k not in declared_parameters(nb)}
    lines = [f"{k} = {v!r}" for k, v in missing.items()]
    if cell is None:
        new = nbformat.v4.new_code_cell(
            "# Parameters (papermill injects run-time values after this cell)\n" + "\n".join(lines)
        )
        new.metadata["tags"] = [PARAMETERS_TAG]
        new.metadata[INSERTED_KEY] = True
        nb.cells.insert(0, new)
    elif lines:
        cell.source = cell.source.rstrip("\n") + "\n" + "\n".join(lines)
    # Cell ids are required from nbformat 4.5 on; give old notebooks ids so they validate.
    from nbformat.corpus.words import generate_corpus_id

    nb.nbformat, nb.nbformat_minor = 4, max(int(nb.get("nbformat_minor", 0)), 5)
    for c in nb.cells:
        if not c.get("id"):
            c["id"] = generate_corpus_id()
    return nb


def _inserted(cell: Any) -> bool:
    meta = cell.get("metadata", {}) or {}
    return bool(meta.get(INSERTED_KEY)) or bool(_PAPERMILL_TAGS & set(meta.get("tags") or []))


def source_cell_number(nb: Any, index: int) -> int | None:
    """1-based number of cell ``index`` as JupyterLab shows it in the *source* notebook.

    Cells the export or papermill added are skipped (None for such a cell), so a gate that looks
    at the bundled or executed notebook names the same cell as the PII sidebar and the audit.
    """
    cells = nb["cells"] if isinstance(nb, dict) else nb.cells
    if _inserted(cells[index]):
        return None
    return 1 + sum(1 for c in cells[:index] if not _inserted(c))


def cell_label(nb: Any, index: int) -> str:
    """``cell N`` (1-based, source numbering) or what an added cell is."""
    number = source_cell_number(nb, index)
    return f"cell {number}" if number is not None else "the parameters cell added by the export"


def to_script(nb: NotebookNode) -> str:
    """A plain Python script of the code cells, for reviewers and script-only runners.

    IPython magics and shell escapes are kept as comments: the interactive gate refuses them
    unless allow-listed, and a script cannot run them anyway.
    """
    parts = ["# Generated by jupyter prod-discovery export from the bundled notebook.\n"]
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        tags = cell.get("metadata", {}).get("tags", [])
        header = f"# %% {cell_label(nb, i)}" + (" [parameters]" if PARAMETERS_TAG in tags else "")
        body = []
        for line in cell.source.splitlines():
            stripped = line.lstrip()
            body.append(f"# {line}" if stripped.startswith(("%", "!")) else line)
        parts.append(header + "\n" + "\n".join(body) + "\n")
    return "\n".join(parts)


_MAGIC_ASSIGN = re.compile(r"^\s*[\w.,\s\[\]()]+=\s*([!%])")


def split_magics(source: str) -> tuple[str, list[tuple[int, str]]]:
    """Python code of a cell with IPython-only lines blanked, and those lines (1-based, text).

    Lines starting with ``!``/``%``/``%%`` (after indentation) and ``x = !cmd`` / ``x = %magic``
    are IPython syntax, not Python: they are returned separately so that the interactive gate can
    judge them and the rest can be parsed with :mod:`ast`.
    """
    code: list[str] = []
    magics: list[tuple[int, str]] = []
    for n, line in enumerate(source.splitlines(), 1):
        stripped = line.lstrip()
        if stripped.startswith(("!", "%")) or _MAGIC_ASSIGN.match(line):
            magics.append((n, stripped))
            code.append("")
        else:
            code.append(line)
    return "\n".join(code), magics


def imported_modules(nb: NotebookNode) -> list[str]:
    """Top-level modules imported by the code cells (absolute imports only), sorted."""
    import ast

    mods: set[str] = set()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(split_magics(cell.source)[0])
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods.add(node.module.split(".")[0])
    return sorted(mods)
