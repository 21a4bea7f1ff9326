"""Defence in depth for same-user deployments: what kernels and terminals inherit, a
non-dumpable server, private runtime files, and the boundary the status endpoint reports.

Real kernels, a real terminal, a real OpenBao; the /proc test runs a real ``jupyter server``
process, because the effect of ``PR_SET_DUMPABLE`` is only visible between processes that do not
hold ``CAP_SYS_PTRACE``: sessions and CI run as root, so that server (and its kernel) is started
without any capability, like any ordinary process of its uid.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import json
import logging
import os
import secrets
import stat
import subprocess
import sys
import time
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from credentials_support import run_code
from jupyter_client.blocking import BlockingKernelClient
from jupyter_server.utils import JupyterServerAuthWarning
from traitlets import TraitError
from traitlets.config import Config

from jupyter_prod_discovery import hardening
from jupyter_prod_discovery._compat import FilteredTerminalManager
from jupyter_prod_discovery.credentials import environment
from jupyter_prod_discovery.credentials.environment import KernelEnvironment
from jupyter_prod_discovery.demo.openbao import free_even_port
from jupyter_prod_discovery.pytest_plugin import require

JUPYTER = str(Path(sys.executable).parent / "jupyter")


#: Secrets in the server's environment that no kernel or terminal may see.
SERVER_SECRETS = (
    "PROD_DISCOVERY_AUDIT_KEY",
    "JUPYTER_TOKEN",
    "JUPYTERHUB_API_TOKEN",
    "VAULT_TOKEN",
    "AWS_SECRET_ACCESS_KEY",
    # neither allowed nor looking like a secret: withheld because the list is an allow-list
    "HARDENING_UNLISTED",
)
PASS_VAR = "HARDENING_TEAM_SETTING"
SPEC_VARS = {"HARDENING_SPEC_VAR": "from-the-kernelspec", "HARDENING_SPEC_TOKEN": "spec-chosen"}
#: Kernelspec templates are filled from the filtered environment only.
SPEC_TEMPLATE = (
    "HARDENING_SPEC_TEMPLATE",
    "${LANG}|${JUPYTERHUB_API_TOKEN}",
    "C.UTF-8|${JUPYTERHUB_API_TOKEN}",
)

ENV_CODE = "import json, os; print(json.dumps(dict(os.environ)))"


def _set_dumpable(value: int) -> None:
    prctl = hardening._prctl()
    if prctl is not None:
        prctl(hardening.PR_SET_DUMPABLE, *hardening._args(value, 0, 0, 0))


@pytest.fixture(autouse=True)
def _dumpable_again() -> Iterator[None]:
    """The in-process servers make the pytest process non-dumpable: undo it around each test."""
    _set_dumpable(1)
    yield
    _set_dumpable(1)


@pytest.fixture(autouse=True)
def _terminal_socket_is_authenticated() -> None:
    """jupyter_server_terminals 0.5.4's TermSocket authenticates and authorizes inside ``get()``,
    without the decorator jupyter_server's check looks for; under "warnings are errors" the
    terminals extension would not load. Only that one endpoint is excused (setup phase)."""
    warnings.filterwarnings(
        "ignore",
        message=r"Extension endpoints without [^\n]*\n- GET of TermSocket registered for [^\n]*\Z",
        category=JupyterServerAuthWarning,
    )


@pytest.fixture
def server_secrets(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The server's environment before it starts: secrets, an allowed and a passed-through var."""
    monkeypatch.delenv("VAULT_ADDR", raising=False)
    values = {name: f"secret-{secrets.token_hex(12)}" for name in SERVER_SECRETS}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LANG", "C.UTF-8")
    monkeypatch.setenv(PASS_VAR, "team-value")
    return values


@pytest.fixture
def extra_config() -> dict[str, Any]:
    return {}


@pytest.fixture
def private_runtime_dir(jp_runtime_dir: Path) -> Path:
    """The runtime dir as a careless umask leaves it, with a stray readable file, before start."""
    jp_runtime_dir.chmod(0o755)
    stray = jp_runtime_dir / "jpserver-0-open.html"
    stray.write_text("token=abc")
    stray.chmod(0o644)
    return jp_runtime_dir


@pytest.fixture
def use_vault() -> bool:
    return False


@pytest.fixture
def prod_discovery_extension_config(
    request: pytest.FixtureRequest,
    server_secrets: dict[str, str],
    private_runtime_dir: Path,
    extra_config: dict[str, Any],
    use_vault: bool,
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "ServerApp": {
            "jpserver_extensions": {
                "jupyter_prod_discovery": True,
                "jupyter_server_terminals": True,
            },
            "allow_unauthenticated_access": False,
        },
        "KernelEnvironment": {"pass_through": [PASS_VAR]},
        **extra_config,
    }
    if use_vault:  # a real OpenBao, and a broker issuing one token per kernel
        config.update(request.getfixturevalue("vault_config"))
        token = {"name": "vault", "type": "token", "env": {"ISSUED_TOKEN": "{token}"}}
        config["CredentialBroker"] = {"profiles": [token]}
    return config


@pytest.fixture
def spec_kernel(jp_data_dir: Path) -> str:
    """A kernelspec with an ``env`` of its own (one name the deny list would match)."""
    spec_dir = jp_data_dir / "kernels" / "hardening"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python (hardening test)",
        "language": "python",
        "env": {**SPEC_VARS, SPEC_TEMPLATE[0]: SPEC_TEMPLATE[1]},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return "hardening"


def app_of(serverapp: Any) -> Any:
    return serverapp.web_app.settings["prod_discovery"]


def assert_no_secret(text: str, values: dict[str, str]) -> None:
    for name, value in values.items():
        assert value not in text, f"{name} reached the child"


# --- kernels -----------------------------------------------------------------------------------


async def test_kernel_env_is_allow_listed_plus_explicit(
    jp_fetch: Any, jp_serverapp: Any, server_secrets: dict[str, str], spec_kernel: str
) -> None:
    body = {
        "path": "nb.ipynb",
        "type": "notebook",
        "name": "nb.ipynb",
        "kernel": {"name": spec_kernel},
    }
    session = json.loads(
        (await jp_fetch("api", "sessions", method="POST", body=json.dumps(body))).body
    )
    out = await run_code(jp_serverapp, session["kernel"]["id"], ENV_CODE)
    env = json.loads(out)

    assert_no_secret(out, server_secrets)
    assert not set(SERVER_SECRETS) & set(env)
    # what a kernel needs, what the deployment passed, what the kernelspec set
    assert env["PATH"] == os.environ["PATH"]
    assert env["LANG"] == "C.UTF-8"
    assert env["HOME"] == os.environ["HOME"]
    assert env[PASS_VAR] == "team-value"
    for name, value in SPEC_VARS.items():
        assert env[name] == value  # explicit: kept even where deny would match (…_TOKEN)
    assert env[SPEC_TEMPLATE[0]] == SPEC_TEMPLATE[2]
    # what jupyter_client and the session manager add for the kernel itself
    assert env["JPY_PARENT_PID"] == str(os.getpid())
    assert env["JPY_SESSION_NAME"].endswith("nb.ipynb")


async def test_kernel_env_after_restart_is_still_filtered(
    jp_fetch: Any, jp_serverapp: Any, server_secrets: dict[str, str]
) -> None:
    response = await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": "python3"}))
    kid = json.loads(response.body)["id"]
    await jp_fetch("api", "kernels", kid, "restart", method="POST", body="")
    out = await run_code(jp_serverapp, kid, ENV_CODE)
    assert_no_secret(out, server_secrets)
    assert "PATH" in json.loads(out)


# --- terminals ---------------------------------------------------------------------------------


async def terminal_output(jp_fetch: Any, jp_ws_fetch: Any, command: str) -> str:
    """Type ``command`` into a new terminal; what it printed before an end marker."""
    name = json.loads((await jp_fetch("api", "terminals", method="POST", body="")).body)["name"]
    ws = await jp_ws_fetch("terminals", "websocket", name)
    out = ""
    try:
        # The quotes split the marker in the echoed command line; only the output joins it.
        await ws.write_message(json.dumps(["stdin", f"{command}; echo PD_EN''D\n"]))
        deadline = time.monotonic() + 30
        while "PD_END" not in out:
            assert time.monotonic() < deadline, f"terminal did not finish:\n{out}"
            raw = await asyncio.wait_for(ws.read_message(), 30)
            assert raw is not None, f"terminal websocket closed:\n{out}"
            msg = json.loads(raw)
            if msg[0] == "stdout":
                out += msg[1]
    finally:
        ws.close()
        await jp_fetch("api", "terminals", name, method="DELETE")
    return out


async def test_terminal_env_is_allow_listed(
    jp_fetch: Any, jp_ws_fetch: Any, jp_serverapp: Any, server_secrets: dict[str, str]
) -> None:
    manager = jp_serverapp.web_app.settings["terminal_manager"]
    assert isinstance(manager, FilteredTerminalManager)
    out = await terminal_output(jp_fetch, jp_ws_fetch, "env")
    assert_no_secret(out, server_secrets)
    for name in SERVER_SECRETS:
        assert f"{name}=" not in out
    lines = out.replace("\r", "").splitlines()
    assert any(line.startswith("PATH=/") for line in lines)  # a login shell may rebuild it
    assert "LANG=C.UTF-8" in lines
    assert f"{PASS_VAR}=team-value" in lines
    assert "JUPYTER_SERVER_ROOT=" in out  # jupyter_server_terminals' own extra_env stays


@pytest.mark.parametrize(
    "extra_config",
    # The PII guard off too: terminal output passes it, and it redacts a credential-looking
    # value (the control shows what the environment holds, not what the guard lets through).
    [{"KernelEnvironment": {"allow": ["*"], "deny": []}, "PIIGuard": {"enabled": False}}],
)
async def test_control_everything_allowed_reaches_kernel_and_terminal(
    jp_fetch: Any, jp_ws_fetch: Any, jp_serverapp: Any, server_secrets: dict[str, str]
) -> None:
    """The control: with an open policy the same probes do find the server's secrets."""
    response = await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": "python3"}))
    kernel_out = await run_code(jp_serverapp, json.loads(response.body)["id"], ENV_CODE)
    terminal_out = await terminal_output(jp_fetch, jp_ws_fetch, "env")
    for out in (kernel_out, terminal_out):
        assert server_secrets["HARDENING_UNLISTED"] in out
        assert server_secrets["JUPYTERHUB_API_TOKEN"] in out


def test_filtered_terminal_manager_keeps_what_terminado_and_requests_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HARDENING_SECRET_KEY", "server-secret")
    monkeypatch.setenv("HARDENING_UNLISTED", "server-only")
    manager = FilteredTerminalManager(
        shell_command=["sh"], extra_env={"JUPYTER_SERVER_ROOT": "/root-dir", "LANG": None}
    )
    try:
        env = manager.make_term_env(height=30, width=100, extra_env={"MY_API_TOKEN": "mine"})
    finally:
        manager.blocking_io_executor.shutdown(wait=False)
    assert "HARDENING_SECRET_KEY" not in env and "HARDENING_UNLISTED" not in env
    assert env["PATH"] == os.environ["PATH"]
    assert (env["COLUMNS"], env["LINES"], env["PYXTERM_DIMENSIONS"]) == ("100", "30", "100x30")
    assert env["TERM"]
    assert env["JUPYTER_SERVER_ROOT"] == "/root-dir"
    assert "LANG" not in env  # extra_env's None still removes
    assert env["MY_API_TOKEN"] == "mine"  # set by the request on purpose


def test_link_keeps_a_configured_terminal_manager(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("test_hardening.link")
    ours = SimpleNamespace(config=Config(), log=log)
    environment.link(ours)
    assert ours.config.TerminalsExtensionApp.terminal_manager_class is FilteredTerminalManager

    custom = "jupyter_server_terminals.terminalmanager.TerminalManager"
    theirs = SimpleNamespace(
        config=Config({"TerminalsExtensionApp": {"terminal_manager_class": custom}}), log=log
    )
    with caplog.at_level(logging.WARNING, logger=log.name):
        environment.link(theirs)
    assert theirs.config.TerminalsExtensionApp.terminal_manager_class == custom
    assert "not given the KernelEnvironment allow-list" in caplog.text

    caplog.clear()
    derived = type("Derived", (FilteredTerminalManager,), {})
    config = Config({"TerminalsExtensionApp": {"terminal_manager_class": derived}})
    with caplog.at_level(logging.WARNING, logger=log.name):
        environment.link(SimpleNamespace(config=config, log=log))
    assert config.TerminalsExtensionApp.terminal_manager_class is derived
    assert not caplog.records  # derived from ours: filtered, nothing to warn about


# --- the allow-list itself ---------------------------------------------------------------------


def test_build_deny_wins_and_explicit_stays(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("test_hardening.env")
    with caplog.at_level(logging.WARNING, logger=log.name):
        policy = KernelEnvironment(allow=["*"], pass_through=["MY_API_KEY", "TEAM_*"], log=log)
    # said at start (not at the first kernel), naming the deny pattern
    assert "'MY_API_KEY' is withheld" in caplog.text and "'*KEY*'" in caplog.text
    assert policy.passes("TEAM_B") and not policy.passes("MY_API_KEY")
    inherited = {
        "PATH": "/bin",
        "TEAM_A": "a",
        "MY_API_KEY": "k",
        "github_token": "t",  # deny matches without regard to case
        "AWS_REGION": "eu",
        "PGDSN_DSN": "dsn",
    }
    env = policy.build(inherited, {"VAULT_TOKEN": "issued"})
    assert env == {"PATH": "/bin", "TEAM_A": "a", "VAULT_TOKEN": "issued"}
    assert not KernelEnvironment(allow=[], pass_through=[]).build({"PATH": "/bin"})


@pytest.mark.parametrize("trait", ["allow", "pass_through", "deny"])
@pytest.mark.parametrize("pattern", ["", "A=B", "HAS SPACE", "NUL\x00"])
def test_invalid_pattern_is_a_trait_error_naming_the_trait(trait: str, pattern: str) -> None:
    with pytest.raises(TraitError, match=rf"KernelEnvironment\.{trait}"):
        KernelEnvironment(**{trait: ["PATH", pattern]})
    config = Config({"KernelEnvironment": {trait: [pattern]}})
    with pytest.raises(TraitError, match=rf"KernelEnvironment\.{trait}"):
        KernelEnvironment(config=config)


def test_non_string_pattern_is_a_trait_error_naming_the_trait() -> None:
    with pytest.raises(TraitError, match="'allow' trait"):
        KernelEnvironment(allow=["PATH", 3])


def test_help_all_documents_the_new_options(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "JUPYTER_"))}
    env.update(JUPYTER_CONFIG_DIR=str(tmp_path / "config"), HOME=str(tmp_path))
    out = subprocess.run(
        [JUPYTER, "server", "--help-all"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    ).stdout
    for option in (
        "--KernelEnvironment.allow",
        "--KernelEnvironment.pass_through",
        "--KernelEnvironment.deny",
        "--ProdDiscoveryApp.non_dumpable",
    ):
        assert option in out


# --- non-dumpable and the status endpoint ------------------------------------------------------


async def status_boundary(jp_fetch: Any) -> dict[str, Any]:
    response = await jp_fetch("prod-discovery", "api", "status")
    return dict(json.loads(response.body)["boundary"])


async def test_status_reports_same_user_boundary_non_dumpable(jp_fetch: Any) -> None:
    assert await status_boundary(jp_fetch) == {
        "mode": "same-user",
        "label": "same-user boundary: evaluation only",
        "non_dumpable": True,
    }
    assert hardening.is_non_dumpable()


@pytest.mark.parametrize("extra_config", [{"ProdDiscoveryApp": {"non_dumpable": False}}])
async def test_status_reports_dumpable_when_turned_off(jp_fetch: Any) -> None:
    assert (await status_boundary(jp_fetch))["non_dumpable"] is False
    assert not hardening.is_non_dumpable()


@pytest.fixture
def no_prctl(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on macOS or Windows: the C library lookup finds no prctl."""
    monkeypatch.setattr(hardening, "_libc", lambda: None)


async def test_status_reports_dumpable_without_prctl(no_prctl: None, jp_fetch: Any) -> None:
    boundary = await status_boundary(jp_fetch)
    assert boundary["mode"] == "same-user" and boundary["non_dumpable"] is False


def test_make_non_dumpable_without_prctl_logs_at_debug(
    no_prctl: None, caplog: pytest.LogCaptureFixture
) -> None:
    log = logging.getLogger("test_hardening.prctl")
    with caplog.at_level(logging.DEBUG, logger=log.name):
        assert hardening.make_non_dumpable(log) is False
    (record,) = caplog.records
    assert record.levelno == logging.DEBUG and "prctl is not available" in record.getMessage()
    assert hardening.is_non_dumpable() is False


def test_make_non_dumpable_refused_logs_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class RefusingLibc:
        def prctl(self, *args: int) -> int:
            ctypes.set_errno(errno.EINVAL)
            return -1

    monkeypatch.setattr(hardening, "_libc", RefusingLibc)
    log = logging.getLogger("test_hardening.prctl")
    with caplog.at_level(logging.DEBUG, logger=log.name):
        assert hardening.make_non_dumpable(log) is False
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert os.strerror(errno.EINVAL) in record.getMessage()


def test_boundary_status_of_a_service_client() -> None:
    status = hardening.boundary_status(SimpleNamespace(service_client=object()))
    assert status["mode"] == "service"
    assert status["label"] == "trusted service: controls outside the user's reach"
    assert hardening.boundary_status(SimpleNamespace(service_client=None))["mode"] == "same-user"


# --- runtime files -----------------------------------------------------------------------------


def modes(directory: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in directory.iterdir() if p.is_file()}


@pytest.mark.parametrize("use_vault", [True])
async def test_runtime_dir_and_files_are_private(
    jp_fetch: Any, jp_serverapp: Any, private_runtime_dir: Path
) -> None:
    app = app_of(jp_serverapp)
    assert app.broker.active
    # pytest-jupyter does not run the post-start hook; a real server runs it after writing its
    # info and browser-open files.
    await jp_serverapp.extension_manager.start_all_extensions()
    response = await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": "python3"}))
    kid = json.loads(response.body)["id"]
    assert "ISSUED_TOKEN" in json.loads(await run_code(jp_serverapp, kid, ENV_CODE))

    assert stat.S_IMODE(private_runtime_dir.stat().st_mode) & 0o777 == 0o700
    found = modes(private_runtime_dir)
    assert f"kernel-{kid}.json" in found
    assert "jupyter_cookie_secret" in found
    assert any(n.startswith("prod-discovery-credentials-") and n.endswith(".jsonl") for n in found)
    assert f"jpserver-{os.getpid()}-open.html" in found  # holds the token; umask: 0644
    assert "jpserver-0-open.html" in found  # the stray file of before the start
    assert found == dict.fromkeys(found, 0o600), found
    await jp_fetch("api", "kernels", kid, method="DELETE")  # revoked while OpenBao is up


def test_secure_runtime_dir_leaves_shared_dirs_and_owner_bits(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = logging.getLogger("test_hardening.runtime")
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "f").write_text("x")
    (shared / "f").chmod(0o644)
    shared.chmod(0o1777)
    with caplog.at_level(logging.WARNING, logger=log.name):
        assert hardening.secure_runtime_dir(shared, log) == []
    assert "world-writable" in caplog.text
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert stat.S_IMODE((shared / "f").stat().st_mode) == 0o644

    own = tmp_path / "own"
    own.mkdir(mode=0o755)
    (own / "read-only").write_text("x")
    (own / "read-only").chmod(0o444)
    (own / "link").symlink_to(shared / "f")
    assert set(hardening.secure_runtime_dir(own, log)) == {own, own / "read-only"}
    assert stat.S_IMODE((own / "read-only").stat().st_mode) == 0o400  # owner bits kept
    assert stat.S_IMODE((shared / "f").stat().st_mode) == 0o644  # never through a symlink


# --- a real server process: /proc from its kernel ----------------------------------------------


def _without_capabilities() -> None:
    """preexec_fn: as root, empty the bounding set so that the exec'd server holds no capability
    (like any process of an ordinary user); otherwise nothing to do."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    for cap in range(last + 1):
        if libc.prctl(24, *hardening._args(cap, 0, 0, 0)) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), f"cannot drop capability {cap}")


PROC_CODE = """\
import json, os
ppid = os.getppid()
seen = {"ppid": ppid, "inherited": MARKER in json.dumps(dict(os.environ))}
for name in ("environ", "mem"):
    try:
        with open(f"/proc/{ppid}/{name}", "rb") as f:
            data = f.read() if name == "environ" else b""
        seen[name] = "marker" if MARKER.encode() in data else "readable"
    except PermissionError:
        seen[name] = "denied"
print(json.dumps(seen))
"""


class ServerProcess:
    """``jupyter server`` with this extension as a process of its own (without capabilities)."""

    def __init__(self, tmp_path: Path, marker: str, non_dumpable: bool) -> None:
        self.runtime = tmp_path / "runtime"
        self.runtime.mkdir(mode=0o755)
        self.runtime.chmod(0o755)
        self.token = secrets.token_hex(16)
        self.port = free_even_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "JUPYTER_"))}
        env.update(
            JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
            JUPYTER_RUNTIME_DIR=str(self.runtime),
            JUPYTER_DATA_DIR=str(tmp_path / "data"),
            HOME=str(tmp_path),
            HARDENING_SERVER_MARKER=marker,
        )
        args = [
            JUPYTER,
            "server",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            f"--ServerApp.root_dir={tmp_path}",
            f"--IdentityProvider.token={self.token}",
            f"--ProdDiscoveryApp.non_dumpable={non_dumpable}",
        ]
        if os.geteuid() == 0:
            args.append("--allow-root")
        self.log = (tmp_path / "server.log").open("wb")
        self.proc = subprocess.Popen(
            args,
            env=env,
            cwd=tmp_path,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            preexec_fn=_without_capabilities,
            start_new_session=True,
        )

    def api(self, method: str, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - http://
            raw = response.read()
        return json.loads(raw) if raw else None

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited: {self.log_text()}")
            try:
                self.api("GET", "/api/status")
                return
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"server not ready: {self.log_text()}")
                time.sleep(0.2)

    def log_text(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-4000:]

    def execute(self, kernel_id: str, code: str) -> str:
        client = BlockingKernelClient(
            connection_file=str(self.runtime / f"kernel-{kernel_id}.json")
        )
        client.load_connection_file()
        # No heartbeat channel: without a kernel manager, wait_for_ready judges the kernel dead when
        # one 1 s heartbeat is missed, which a loaded 2-core CI machine does ("Kernel died before
        # replying to kernel_info" in two CI runs). Readiness is the kernel_info reply within 60 s.
        client.start_channels(hb=False)
        out: list[str] = []

        def hook(msg: dict[str, Any]) -> None:
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                out.append(f"ERROR {msg['content']['ename']}: {msg['content']['evalue']}")

        try:
            client.wait_for_ready(timeout=60)
            client.execute_interactive(code, output_hook=hook, timeout=60)
        finally:
            client.stop_channels()
        return "".join(out)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        # Its kernel exits with it (ipykernel watches JPY_PARENT_PID) if it was not shut down.
        self.log.close()


@pytest.mark.slow
@pytest.mark.parametrize("non_dumpable", [True, False])
def test_kernel_cannot_read_server_proc_when_non_dumpable(
    tmp_path: Path, non_dumpable: bool
) -> None:
    require(sys.platform.startswith("linux"), "PR_SET_DUMPABLE and /proc are Linux's")
    marker = secrets.token_hex(16)
    server = ServerProcess(tmp_path, marker, non_dumpable)
    try:
        server.wait_ready()
        kid = server.api("POST", "/api/kernels", {"name": "python3"})["id"]
        out = server.execute(kid, f"MARKER = {marker!r}\n{PROC_CODE}")
        seen = json.loads(out.strip().splitlines()[-1])
        assert seen["ppid"] == server.proc.pid
        assert seen["inherited"] is False  # the allow-list, in a real server too
        if non_dumpable:
            assert (seen["environ"], seen["mem"]) == ("denied", "denied")
        else:  # the control: the same reader gets through when the server is dumpable
            assert seen["environ"] == "marker"
            # Yama (ptrace_scope >= 1, Ubuntu's default) refuses to attach to a parent anyway.
            yama = Path("/proc/sys/kernel/yama/ptrace_scope")
            if not yama.exists() or yama.read_text().strip() == "0":
                assert seen["mem"] == "readable"
        status = server.api("GET", "/prod-discovery/api/status")
        assert status["boundary"]["non_dumpable"] is non_dumpable

        # Files written during start (server info and browser-open file: the token) are 0600.
        assert stat.S_IMODE(server.runtime.stat().st_mode) & 0o777 == 0o700
        found = modes(server.runtime)
        assert f"jpserver-{server.proc.pid}-open.html" in found
        assert f"jpserver-{server.proc.pid}.json" in found
        assert found == dict.fromkeys(found, 0o600), found
        server.api("DELETE", f"/api/kernels/{kid}")
    finally:
        server.stop()
