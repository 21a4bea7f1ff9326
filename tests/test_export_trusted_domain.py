"""Nothing the notebook's author controls runs where the exporter runs (the trusted domain).

Each probe plants a program that would create a marker file if it ran: a kernelspec's argv[0],
a ``.pth`` file in the kernel's environment, git's ``core.fsmonitor``, a clean filter and hooks.
Each test first shows that the probe does fire when the ordinary tool runs it, then that the
exporter leaves the marker absent. Parameter names that would be code are refused.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from export_helpers import ed25519_config, export_keys, make_notebook, statement_fields

from jupyter_prod_discovery.export.environment import (
    KernelAllowList,
    kernel_info,
    locked_environment,
)
from jupyter_prod_discovery.export.exporter import ExportRequest, NotebookExporter
from jupyter_prod_discovery.export.gates import NoInteractiveGate, OutputsStrippedGate
from jupyter_prod_discovery.export.git_report import git_report, validate_report
from jupyter_prod_discovery.export.manifest import git_state
from jupyter_prod_discovery.export.notebook import (
    parse_param,
    prepare_notebook,
    to_script,
    validate_parameters,
)
from jupyter_prod_discovery.pytest_plugin import require

__all__ = ["export_keys"]

INJECTION = "x = 1\nimport subprocess; subprocess.run(['touch', '/tmp/pwned'])\ny"


def _probe(path: Path, marker: Path) -> Path:
    """An executable that creates ``marker`` (and would then act as a kernel or hook)."""
    path.write_text(f"#!/bin/sh\necho ran > {marker}\nexit 0\n")
    path.chmod(0o755)
    return path


def _exporter(keys: tuple[Path, Path], **kernels: str) -> NotebookExporter:
    gates = {"gate_classes": [OutputsStrippedGate, NoInteractiveGate]}
    config = ed25519_config(keys, NotebookExporter=gates)
    if kernels:
        config.KernelAllowList.kernels = kernels
    return NotebookExporter(config=config)


# -- parameters ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({INJECTION: 0}, "is not a Python identifier"),
        ({"for": 1}, "'for' is a Python keyword"),
        ({"match": 1}, "'match' is a Python keyword"),
        ({"x": float("nan")}, "parameter 'x': nan is not a JSON number"),
        ({"x": {1: "a"}}, "parameter 'x': object keys must be strings"),
        ({"x": b"bytes"}, "parameter 'x': bytes is not a JSON value"),
        ({"é": 1}, "is not a Python identifier"),
    ],
)
def test_validate_parameters_refuses_naming_parameter(
    params: dict[object, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        validate_parameters(params)


def test_injection_parameter_never_reaches_bundle(
    tmp_path: Path, export_keys: tuple[Path, Path]
) -> None:
    nb = make_notebook(tmp_path / "nb.ipynb", [("result = 1", [])])
    request = ExportRequest(nb, tmp_path / "out", author="ada", parameters={INJECTION: 0})
    with pytest.raises(ValueError, match="is not a Python identifier"):
        _exporter(export_keys).process(request)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="is not a Python identifier"):
        prepare_notebook(nbformat.read(nb, 4), {INJECTION: 0})
    with pytest.raises(ValueError, match="is not a Python identifier"):
        parse_param("x;import os=0")
    assert parse_param(f"{INJECTION}=0") == ("x", INJECTION[3:] + "=0")  # a text value, not code


def test_parameter_values_become_literals(tmp_path: Path) -> None:
    nb = nbformat.read(make_notebook(tmp_path / "n.ipynb", [("y", [])]), 4)
    value = {"q": "'); import os; os.system('id'); ('", "n": [1, 2.5, None, True]}
    out = prepare_notebook(nb, {"v": value})
    namespace: dict[str, object] = {}
    exec(out.cells[0].source, namespace)  # noqa: S102 - the generated cell, checked to be data
    assert namespace["v"] == value
    assert "[parameters]" in to_script(out)


# -- kernels ------------------------------------------------------------------------------------


def test_user_kernelspec_argv_is_never_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, export_keys: tuple[Path, Path]
) -> None:
    from jupyter_client.kernelspec import KernelSpecManager

    marker = tmp_path / "kernelspec-ran"
    evil = _probe(tmp_path / "evil-python", marker)
    for name in ("python3", "mine"):
        spec_dir = tmp_path / "jupyter" / "kernels" / name
        spec_dir.mkdir(parents=True)
        spec = {"argv": [str(evil), "-m", "ipykernel"], "display_name": name, "language": "python"}
        (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    # The probe is live: Jupyter resolves python3 to the user's spec, and its argv[0] marks.
    assert KernelSpecManager().get_kernel_spec("python3").argv[0] == str(evil)
    subprocess.run([str(evil)], check=True)
    marker.unlink()

    nb = make_notebook(tmp_path / "nb.ipynb", [("result = 1", [])])
    result = _exporter(export_keys).process(ExportRequest(nb, tmp_path / "out", author="ada"))
    assert not marker.exists()
    assert statement_fields(result.bundle)["kernel"]["python"] == sys.executable

    other = nbformat.read(nb, 4)
    other.metadata["kernelspec"]["name"] = "mine"
    nbformat.write(other, tmp_path / "mine.ipynb")
    with pytest.raises(ValueError, match="kernel 'mine' is not allowed for export"):
        _exporter(export_keys).process(
            ExportRequest(tmp_path / "mine.ipynb", tmp_path / "out2", author="ada")
        )
    assert not marker.exists()


def test_allow_list_needs_absolute_interpreter() -> None:
    from traitlets import TraitError

    with pytest.raises(TraitError, match="not an absolute path"):
        KernelAllowList(kernels={"python3": "python3"})
    assert kernel_info("python3")["python"] == sys.executable


@pytest.mark.parametrize("base", [sys.executable, "/usr/bin/python3"], ids=["venv", "debian"])
def test_kernel_environment_pth_files_do_not_run(tmp_path: Path, base: str) -> None:
    """An allow-listed interpreter's environment is read with -I -S: its .pth files stay inert.

    Also from a venv of Debian's Python (the demo's users venv, whose interpreter the service
    locks): under -S its default sysconfig scheme points into ``<venv>/local``, not the venv.
    """
    require(Path(base).is_file(), f"{base} is missing (scripts/install.sh builds from it)")
    venv = tmp_path / "venv"
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob("lib/python*/site-packages"))
    marker = tmp_path / "pth-ran"
    (site / "evil.pth").write_text(
        f"import pathlib; pathlib.Path({str(marker)!r}).write_text('x')\n"
    )
    dist = site / "jobdep-1.2.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: jobdep\nVersion: 1.2\n")
    (site / "jobdep.py").write_text("")
    python = str(venv / "bin" / "python")
    env = locked_environment(python, ["jobdep", "absent_module_xyz"])
    assert not marker.exists()
    assert env["packages"] == {"jobdep": "1.2"}
    assert env["missing"] == ["absent_module_xyz"]
    subprocess.run([python, "-c", "pass"], check=True)  # control: a normal start runs the .pth
    assert marker.exists()


# -- git ----------------------------------------------------------------------------------------


def _git(repo: Path, *args: str) -> str:
    safe = ["-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null"]
    proc = subprocess.run(
        ["git", *safe, "-C", str(repo), *args], capture_output=True, text=True, check=True
    )
    return proc.stdout.strip()


@pytest.fixture
def hostile_repo(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A repository with a committed notebook whose config and hooks run a marker probe."""
    if shutil.which("git") is None:
        pytest.fail("git is needed to build the hostile repository")
    repo = tmp_path / "repo"
    (repo / "work").mkdir(parents=True)
    nb = make_notebook(repo / "work" / "job.ipynb", [("result = 1", [])])
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=a", "-c", "user.email=a@b.c", "commit", "-qm", "job")
    marker = tmp_path / "git-probe-ran"
    probe = _probe(tmp_path / "probe.sh", marker)
    for hook in ("post-checkout", "post-index-change", "reference-transaction", "pre-commit"):
        shutil.copy(probe, repo / ".git" / "hooks" / hook)
    with (repo / ".git" / "config").open("a") as f:
        f.write(
            f"[core]\n\tfsmonitor = {probe}\n\tsshCommand = {probe}\n\tpager = {probe}\n"
            f'[filter "evil"]\n\tclean = {probe}\n\tsmudge = {probe}\n\tprocess = {probe}\n'
            '[remote "origin"]\n\turl = https://bob:tok3n@git.example/team/repo.git\n'
        )
    (repo / ".gitattributes").write_text("*.ipynb filter=evil\n")
    return repo, nb, marker


def test_git_state_runs_no_repository_program(hostile_repo: tuple[Path, Path, Path]) -> None:
    repo, nb, marker = hostile_repo
    state = git_state(nb)
    assert not marker.exists()
    assert state is not None
    assert state["commit"] == _git(repo, "rev-parse", "HEAD")
    assert state["ref"] == "refs/heads/main"
    assert state["path"] == "work/job.ipynb"
    assert state["notebook_committed"] is True
    assert state["origin"] == "https://git.example/team/repo.git"  # no credentials recorded
    with nb.open("a") as f:
        f.write("\n")
    assert git_state(nb)["notebook_committed"] is False  # type: ignore[index]
    assert not marker.exists()
    # Control: plain `git status` in this repository runs the probe.
    subprocess.run(["git", "-C", str(repo), "status"], capture_output=True, check=False)
    assert marker.exists()


def test_git_state_outside_repository_is_none(tmp_path: Path) -> None:
    nb = make_notebook(tmp_path / "nb.ipynb", [("x = 1", [])])
    assert git_state(nb) is None


def test_export_records_git_of_hostile_repo_without_running_it(
    hostile_repo: tuple[Path, Path, Path], export_keys: tuple[Path, Path], tmp_path: Path
) -> None:
    repo, nb, marker = hostile_repo
    result = _exporter(export_keys).process(ExportRequest(nb, tmp_path / "out", author="ada"))
    assert not marker.exists()
    git = statement_fields(result.bundle)["git"]
    assert (git["commit"], git["path"]) == (_git(repo, "rev-parse", "HEAD"), "work/job.ipynb")


def test_git_report_runs_no_repository_program(hostile_repo: tuple[Path, Path, Path]) -> None:
    """What a server sends the service: read with dulwich, nothing of the repository runs,
    no credential of the remote URL, and the notebook's own changes show as dirty."""
    repo, nb, marker = hostile_repo
    report = git_report(nb)
    assert report == {
        "commit": _git(repo, "rev-parse", "HEAD"),
        "path": "work/job.ipynb",
        "dirty": False,
        "branch": "main",
        "remote": "https://git.example/team/repo.git",
    }
    with nb.open("a") as f:
        f.write("\n")
    assert git_report(nb)["dirty"] is True  # type: ignore[index]
    assert not marker.exists()
    assert validate_report(report, "work/job.ipynb") == report


def test_git_report_outside_repository_is_none(tmp_path: Path) -> None:
    assert git_report(make_notebook(tmp_path / "nb.ipynb", [("x = 1", [])])) is None
    assert validate_report(None, "nb.ipynb") is None


@pytest.mark.parametrize(
    ("reported", "submitted"),
    [
        ("nb.ipynb", "projects/repo/nb.ipynb"),  # the repository lies inside the server root
        ("sub/nb.ipynb", "nb.ipynb"),  # the server root lies inside the repository
        ("a/b.ipynb", "a/b.ipynb"),
    ],
)
def test_validate_report_accepts_paths_naming_the_notebook(reported: str, submitted: str) -> None:
    report = {"commit": "f" * 40, "path": reported, "dirty": True, "branch": None, "remote": None}
    assert validate_report(report, submitted) == report


def test_validate_report_strips_credentials_from_the_remote() -> None:
    report = {
        "commit": "f" * 40,
        "path": "nb.ipynb",
        "dirty": False,
        "branch": "main",
        "remote": "https://bob:tok3n@git.example/r.git",
    }
    assert validate_report(report, "nb.ipynb")["remote"] == "https://git.example/r.git"  # type: ignore[index]


@pytest.mark.parametrize(
    ("reported", "submitted"),
    [("other.ipynb", "nb.ipynb"), ("x/nb.ipynb", "y/nb.ipynb"), ("b/nb.ipynb", "a/b/c/nb.ipynb")],
)
def test_validate_report_refuses_paths_of_another_file(reported: str, submitted: str) -> None:
    report = {"commit": "f" * 40, "path": reported, "dirty": True, "branch": None, "remote": None}
    with pytest.raises(ValueError, match=r"git\.path"):
        validate_report(report, submitted)
