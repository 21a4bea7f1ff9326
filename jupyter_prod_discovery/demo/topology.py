"""Who runs what in the demo, and the directories each of them may use.

Why OS users: a kernel, a terminal or any ``!cmd`` runs as JupyterLab's uid and can read what
every process of that uid holds (``/proc/<pid>/environ``, ``/mem``, its files). Controls the user
must not reach therefore run as another uid. Started as root, the demo separates:

- ``pd-demo-svc`` (a system user) runs OpenBao and the trusted service, which holds the only Vault
  token, the ledger's DSN and the audit signing key;
- ``pd-demo`` (a login user with a home) runs JupyterLab, its kernels and its terminals, and owns
  the notebooks.

Both run from the ``.venv-users`` interpreter (``PROD_DISCOVERY_USERS_VENV``), built by
``scripts/install.sh`` from Debian's ``/usr/bin/python3`` in a world-readable directory: the
image's own Python lives in root's home, which other users cannot enter.

Started as anyone else, everything runs as that user ("same-user mode"): the same processes and
wiring, but no boundary, which the banner says plainly.

Directories (``Layout``), under one work dir that other users may traverse but not list:
``logs/`` (root's only: the service's and OpenBao's output), ``service.json`` (the credential
profiles, no secret), ``service-state/`` (the signing key and lease journal; the service user's,
0700), ``socket/`` (the service user's, group of the demo user, 0750: only they connect),
``openbao-home/`` (the service user's, 0700), ``config/`` (JupyterLab's config, no secret; Jupyter
writes into it too), ``runtime/`` (its runtime dir and audit spool), ``lab/`` (its user settings
and workspaces), ``trail/`` (its copy of the audit records it ships, which the audit viewer
reads) and ``notebooks/``: the last five the demo user's, 0700.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DEMO_USER",
    "INSTALL_HINT",
    "SAME_USER_NOTE",
    "SANDBOX_USER",
    "SERVICE_USER",
    "Account",
    "DemoError",
    "Layout",
    "Topology",
    "clean_environment",
    "resolve_topology",
    "users_venv",
]

SERVICE_USER = "pd-demo-svc"
DEMO_USER = "pd-demo"
SANDBOX_USER = "pd-demo-sandbox"
INSTALL_HINT = "bash scripts/install.sh"
SAME_USER_NOTE = "same-user mode: evaluation only; start as root for the separated topology"
#: Never handed to a child by accident: Vault, the demo's superuser DSN, audit keys, libpq.
_SECRET_PREFIXES = ("VAULT_", "BAO_", "PROD_DISCOVERY_", "PG", "JUPYTERHUB_API_TOKEN")


class DemoError(RuntimeError):
    """The demo cannot start as asked; the message says what to do."""


@dataclass(frozen=True)
class Account:
    """An OS user the demo runs something as."""

    name: str
    uid: int
    gid: int
    home: str
    shell: str

    @classmethod
    def of(cls, entry: pwd.struct_passwd) -> Account:
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir, entry.pw_shell)


def clean_environment(source: Mapping[str, str]) -> dict[str, str]:
    """``source`` without anything secret the demo's own environment may hold."""
    return {k: v for k, v in source.items() if not k.startswith(_SECRET_PREFIXES)}


def users_venv() -> Path:
    """``$PROD_DISCOVERY_USERS_VENV`` or ``<checkout>/.venv-users``."""
    configured = os.environ.get("PROD_DISCOVERY_USERS_VENV")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[2] / ".venv-users"


def ensure_account(name: str, *, system: bool) -> Account:
    """The OS user ``name``, created when missing (``useradd``; needs root).

    ``system``: a system user without home or login shell (the service's); otherwise a login user
    with a home (the demo user's: JupyterLab keeps its settings there).
    """
    with contextlib.suppress(KeyError):
        return Account.of(pwd.getpwnam(name))
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    if system:
        argv = [useradd, "--system", "--user-group", "--no-create-home"]
        argv += ["--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name]
    else:
        argv = [useradd, "--create-home", "--user-group", "--shell", "/bin/bash", name]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    except OSError as exc:
        raise DemoError(f"cannot create the OS user {name}: {exc}") from None
    if done.returncode not in (0, 9):  # 9: created meanwhile by a concurrent demo
        raise DemoError(f"useradd {name} failed ({done.returncode}): {done.stderr.strip()}")
    return Account.of(pwd.getpwnam(name))


@dataclass(frozen=True)
class Topology:
    """Which OS user runs what, and with which interpreter."""

    separated: bool
    service: Account  # OpenBao and the trusted service
    lab: Account  # JupyterLab, its kernels and terminals
    python: str  # interpreter of the service and of JupyterLab
    bao: str | None  # the bao executable the service user can run (None: this venv's)
    sandbox: Account | None = None  # runs promoted notebooks' clean runs (separated only)

    def service_launcher(self) -> list[str]:
        """How the service is started: as its user, holding CAP_SETUID/CAP_SETGID (ambient) so
        that it can start clean runs as the sandbox user, and nothing else (separated only).
        The sandbox drops every capability again (service/sandbox.py ``drop_to``)."""
        if not self.separated:
            return []
        setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
        svc = self.service
        return [
            setpriv,
            f"--reuid={svc.uid}",
            f"--regid={svc.gid}",
            "--clear-groups",
            "--inh-caps=+setuid,+setgid",
            "--ambient-caps=+setuid,+setgid",
            "--",
        ]

    def popen_user(self, account: Account) -> dict[str, Any]:
        """``subprocess.Popen`` arguments that run a child as ``account`` (none when same-user)."""
        if not self.separated:
            return {}
        return {"user": account.uid, "group": account.gid, "extra_groups": []}

    def run_as(self, account: Account) -> tuple[int, int] | None:
        return (account.uid, account.gid) if self.separated else None

    def environment(self, account: Account, home: str | None = None) -> dict[str, str]:
        """A child's base environment: what a login gives ``account`` (separated), or the demo's
        own environment without its secrets (same-user)."""
        if not self.separated:
            env = clean_environment(os.environ)
            if home:
                env["HOME"] = home
            return env
        return {
            "HOME": home or account.home,
            "USER": account.name,
            "LOGNAME": account.name,
            "SHELL": account.shell or "/bin/sh",
            "PATH": f"{Path(self.python).parent}:/usr/local/bin:/usr/bin:/bin",
            "LANG": os.environ.get("LANG", "C.UTF-8"),
        }


def _probe(python: str, account: Account, modules: str = "") -> None:
    """Fail now, naming the fix, when ``account`` cannot run the project from ``python``
    (or, given ``modules``, find them there: located, not imported, to keep the start fast)."""
    code = "import jupyter_prod_discovery, jupyterlab"
    if modules:
        code = (
            "import importlib.util as u, sys; "
            f"sys.exit(any(u.find_spec(m) is None for m in {modules.split()!r}))"
        )
    try:
        done = subprocess.run(
            [python, "-c", code],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
            cwd="/",
            env={"PATH": "/usr/bin:/bin", "HOME": "/", "LANG": "C.UTF-8"},
            user=account.uid,
            group=account.gid,
            extra_groups=[],
        )
    except OSError as exc:
        detail = str(exc)
    else:
        if done.returncode == 0:
            return
        fallback = f"one of {modules} is missing" if modules else "no output"
        detail = (done.stderr.strip().splitlines() or [fallback])[-1]
    raise DemoError(
        f"{account.name} cannot run the project from {python} ({detail}); run "
        f"`{INSTALL_HINT}`: it builds that venv where other users can read it"
    )


def resolve_topology() -> Topology:
    """Separated when root (users created if missing), same-user otherwise."""
    if os.geteuid() != 0:
        me = Account.of(pwd.getpwuid(os.geteuid()))
        return Topology(False, me, me, sys.executable, None)
    venv = users_venv()
    python, bao = venv / "bin" / "python", venv / "bin" / "bao"
    if not (python.exists() and bao.exists()):
        raise DemoError(
            f"started as root, the demo runs OpenBao, the service and JupyterLab as other OS "
            f"users from {venv}, which is missing or incomplete: run `{INSTALL_HINT}` first "
            "(or set PROD_DISCOVERY_USERS_VENV)"
        )
    service = ensure_account(SERVICE_USER, system=True)
    lab = ensure_account(DEMO_USER, system=False)
    sandbox = ensure_account(SANDBOX_USER, system=True)
    for account in (service, lab):
        _probe(str(python), account)
    _probe(str(python), sandbox, "papermill ipykernel psycopg")
    return Topology(True, service, lab, str(python), str(bao), sandbox)


def _make_dir(
    path: Path, mode: int, owner: Account | None = None, group: int | None = None
) -> Path:
    path.mkdir(mode=mode, exist_ok=True)
    if group is None and owner is not None:
        group = owner.gid
    if owner is not None or group is not None:
        os.chown(path, owner.uid if owner else -1, group if group is not None else -1)
    path.chmod(mode)  # whatever the umask
    return path


@dataclass(frozen=True)
class Layout:
    """The demo's directories and files (see the module docstring)."""

    workdir: Path
    logs: Path
    config: Path
    service_config: Path
    service_state: Path
    socket_dir: Path
    bao_home: Path
    runtime: Path
    lab_settings: Path
    notebooks: Path
    public_key: Path
    trail: Path  # JupyterLab's own copy of its audit records, for the audit viewer

    @property
    def socket_path(self) -> Path:
        return self.socket_dir / "service.sock"

    @classmethod
    def create(cls, topology: Topology, root_dir: Path | None) -> Layout:
        """Make the directories with their owners and modes; ``root_dir`` is the user's choice
        (created for the demo user when missing, left alone when present)."""
        sep = topology.separated
        svc = topology.service if sep else None
        lab = topology.lab if sep else None
        # /tmp, not root's TMPDIR, which other users may not be able to enter; mkdtemp makes a
        # fresh, unpredictable name there.
        shared = "/tmp"  # noqa: S108
        workdir = Path(tempfile.mkdtemp(prefix="prod-discovery-demo-", dir=shared if sep else None))
        workdir.chmod(0o711 if sep else 0o700)  # traversable, not listable
        notebooks = root_dir if root_dir is not None else workdir / "notebooks"
        if not notebooks.exists():
            notebooks.mkdir(parents=True)
            if lab is not None:
                os.chown(notebooks, lab.uid, lab.gid)
            notebooks.chmod(0o700)
        layout = cls(
            workdir=workdir,
            logs=_make_dir(workdir / "logs", 0o700),
            config=_make_dir(workdir / "config", 0o700, lab),
            service_config=workdir / "service.json",
            service_state=_make_dir(workdir / "service-state", 0o700, svc),
            socket_dir=_make_dir(
                workdir / "socket", 0o750 if sep else 0o700, svc, lab.gid if lab else None
            ),
            bao_home=_make_dir(workdir / "openbao-home", 0o700, svc),
            runtime=_make_dir(workdir / "runtime", 0o700, lab),
            lab_settings=_make_dir(workdir / "lab", 0o700, lab),
            notebooks=notebooks,
            public_key=workdir / "audit-public-key.pem",
            trail=_make_dir(workdir / "trail", 0o700, lab),
        )
        return layout

    def remove_private(self) -> None:
        """At stop: everything but the notebooks, the logs and the public key."""
        for path in (
            self.config,
            self.service_state,
            self.socket_dir,
            self.bao_home,
            self.runtime,
            self.lab_settings,
        ):
            shutil.rmtree(path, ignore_errors=True)
        self.service_config.unlink(missing_ok=True)
