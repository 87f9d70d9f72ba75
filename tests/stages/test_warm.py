"""The warm server (`stages.warm`, `tailbank warm`): a command run through it behaves as a
cold one: arguments, directory, environment, streams, exit status, signals, bytes written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stages import warm
from tests.stages import interrupts, warm_servers
from tests.stages.conftest import REPO
from tests.stages.dvc_projects import new_project, small_params

pytestmark = pytest.mark.skipif(not warm.supported(), reason="a warm start needs Linux")

@pytest.fixture
def server_socket() -> Iterator[Path]:
    path = warm_servers.socket_path()
    server = warm_servers.start(path, "tests.stages.warm_targets:main",
                                preload=("stages.errors", "tests.stages.warm_env"))
    yield path
    server.terminate()
    assert server.wait(timeout=30) == 0
    assert not path.exists()  # the server removes its socket
    path.parent.rmdir()


def test_a_warm_command_sees_its_clients_arguments_directory_environment_and_streams(
        server_socket: Path, tmp_path: Path) -> None:
    extra = tmp_path / "on_the_path"
    extra.mkdir()
    process = warm_servers.client(
        server_socket, "echo", "3", cwd=tmp_path, stdin=subprocess.PIPE,
        env={"PROBE": "x y", "PYTHONPATH": os.pathsep.join([str(REPO), str(extra)])},
        preexec_fn=lambda: os.umask(0o027))
    out, err = process.communicate("hello", timeout=60)
    seen = json.loads(out)
    assert process.returncode == 3
    assert seen["argv"] == ["tailbank", "echo", "3"]
    assert seen["cwd"] == str(tmp_path)
    assert seen["probe"] == "x y"
    assert seen["stdin"] == "hello"
    assert seen["umask"] == 0o027
    assert str(extra) in seen["path"]
    assert seen["session_leader"]  # the server's terminal signals do not reach it
    # the server imported stages.errors; the command imports tailbank's code afresh
    assert seen["own_modules"] == []
    assert err == "to stderr\n"
    assert seen["set_by_import"] == "set-by-import"  # as a cold import would have set it


def test_a_variable_an_import_sets_may_come_from_the_client_at_that_value(
        server_socket: Path) -> None:
    same = warm_servers.client(server_socket, "echo", "0",
                               env={"OMP_TAILBANK_TEST": "set-by-import"})
    other = warm_servers.client(server_socket, "echo", "0", env={"OMP_TAILBANK_TEST": "mine"})
    assert same.wait(timeout=60) == 0
    assert other.wait(timeout=60) == warm_servers.COLD
    assert "OMP_TAILBANK_TEST differ" in other.stderr.read()


def test_only_its_user_may_connect(server_socket: Path) -> None:
    assert server_socket.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_client_reaches_the_command(server_socket: Path, tmp_path: Path,
                                                    number: int) -> None:
    pid_file = tmp_path / "pid"
    process = warm_servers.client(server_socket, "await_signal", str(pid_file))
    _await_file(pid_file, process)
    process.send_signal(number)
    out, _ = process.communicate(timeout=60)
    assert (process.returncode, out) == (7, f"{signal.Signals(number).name}\n")


def test_a_signal_the_client_ignores_the_command_ignores(server_socket: Path,
                                                         tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    process = warm_servers.client(
        server_socket, "await_signal", str(pid_file),
        preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_IGN))  # as nohup does
    _await_file(pid_file, process)
    process.send_signal(signal.SIGTERM)  # ignored by the client, so not passed on
    time.sleep(0.5)
    assert process.poll() is None
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=60)
    assert (process.returncode, out) == (7, "SIGINT\n")


def test_a_killed_client_takes_its_command_with_it(server_socket: Path, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    process = warm_servers.client(server_socket, "await_signal", str(pid_file))
    _await_file(pid_file, process)
    command = int(pid_file.read_text())
    process.kill()
    process.communicate(timeout=60)
    deadline = time.monotonic() + 30
    while _alive(command):
        assert time.monotonic() < deadline, "the command outlived its killed client"
        time.sleep(0.05)


@pytest.mark.parametrize("number", [signal.SIGKILL, signal.SIGTERM])
def test_a_command_killed_by_a_signal_kills_its_client_the_same_way(
        server_socket: Path, number: int) -> None:
    process = warm_servers.client(server_socket, "die_by", str(int(number)))
    process.communicate(timeout=60)
    assert process.returncode == -number


def test_a_client_with_another_import_time_environment_runs_cold(server_socket: Path) -> None:
    threads = str(int(os.environ.get("OMP_NUM_THREADS", "1")) + 1)
    process = warm_servers.client(server_socket, "echo", "0", env={"OMP_NUM_THREADS": threads})
    _, err = process.communicate(timeout=60)
    assert process.returncode == warm_servers.COLD
    assert err.strip() == (
        "tailbank: running cold: OMP_NUM_THREADS differ between this command and the warm "
        "server (they act at import time); start the server with the same environment")


def test_without_a_server_a_command_runs_cold_and_says_where_it_looked() -> None:
    tmp_path = warm_servers.socket_path().parent
    process = warm_servers.client(tmp_path / "none.sock", "echo", "0")
    _, err = process.communicate(timeout=60)
    assert process.returncode == warm_servers.COLD
    assert err.strip() == (f"tailbank: running cold: no warm server at "
                           f"TAILBANK_WARM={tmp_path / 'none.sock'} (No such file or directory)")
    tmp_path.rmdir()


def test_a_second_server_on_a_live_socket_is_one_line(server_socket: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "stages.warm", str(server_socket)],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"tailbank: error: {server_socket}: a warm server is already listening there; use it "
        f"(TAILBANK_WARM={server_socket}) or choose another --socket")


def test_a_socket_path_too_long_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / ("s" * 120)
    done = subprocess.run(["tailbank", "warm", "--socket", str(path)], capture_output=True,
                          text=True)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"tailbank: error: {path}: a Unix socket path must be under "
                                   "90 bytes; choose a shorter --socket")


def test_a_file_at_the_socket_path_is_kept_and_refused() -> None:
    path = warm_servers.socket_path().parent / "params.yaml"
    path.write_text("kept")
    done = subprocess.run([sys.executable, "-m", "stages.warm", str(path)],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 1
    assert done.stderr.strip() == (f"tailbank: error: {path}: exists and is not a socket; "
                                   "choose another --socket")
    assert path.read_text() == "kept"
    path.unlink()
    path.parent.rmdir()


def test_a_client_queued_while_the_server_stops_runs_cold() -> None:
    path = warm_servers.socket_path()
    server = warm_servers.start(path, "tests.stages.warm_targets:main",
                                preload=("tests.stages.warm_slow",))
    process = warm_servers.client(path, "echo", "0")  # waits in the backlog: still importing
    time.sleep(0.5)
    server.terminate()
    server.wait(timeout=60)
    _, err = process.communicate(timeout=60)
    assert process.returncode == warm_servers.COLD
    assert err.startswith("tailbank: running cold: ")
    assert not path.exists()
    path.parent.rmdir()


def test_the_preload_covers_the_stages_imports_and_leaves_cuda_and_threads_alone() -> None:
    stages = ["prepare", "pretrain", "dump", "import_bank", "classify", "dlsa", "analyze",
              "report", "cli"]
    staged, _, _ = _imports(*(f"stages.{name}" for name in stages))
    preloaded, cuda_calls, threads = _imports(*warm.PRELOAD, record_cuda=True)
    assert cuda_calls == []  # a fork cannot use CUDA initialised before it
    assert threads == 1  # a fork copies only the forking thread, and any lock another held
    assert not preloaded & set(warm.NOT_PRELOADED), "a preloaded module imports one left out"
    # what the report's plotting brings besides what is preloaded
    plotting, _, _ = _imports("matplotlib.figure", "matplotlib.backends.backend_agg")
    left_out = plotting - preloaded
    assert staged - left_out <= preloaded, (
        f"add to stages.warm.PRELOAD: {sorted(staged - left_out - preloaded)}")


def test_warm_stages_write_the_bytes_of_cold_ones(tmp_path: Path) -> None:
    params = small_params()
    params["methods"] = {"ce": params["methods"]["ce"]}
    commands = ["tailbank prepare", "tailbank pretrain -m ce", "tailbank dump -m ce",
                "tailbank classify -m ce"]
    digests = []
    for mode in ("cold", "warm"):
        project = new_project(tmp_path / mode, params)
        script = " && ".join(commands)
        argv = (["sh", "-c", script] if mode == "cold"
                else ["tailbank", "warm", "sh", "-c", f"{script} && echo $TAILBANK_WARM"])
        env = {key: value for key, value in os.environ.items() if key != warm.SOCKET_ENV}
        done = subprocess.run(argv, cwd=project, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert "running cold" not in done.stderr
        digests.append({f"{folder}/{name}": digest
                        for folder in ("data", "models", "banks", "results")
                        for name, digest in interrupts.tree(project / folder).items()})
        if mode == "warm":  # the command saw the server, which is gone after it
            assert not Path(done.stdout.splitlines()[-1]).exists()
    assert digests[0] == digests[1]
    assert {path.split("/")[0] for path in digests[0]} == {"data", "models", "banks", "results"}


def test_tailbank_warm_ends_as_its_command_did(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != warm.SOCKET_ENV}
    done = subprocess.run(["tailbank", "warm", "sh", "-c", "kill -TERM $$"], cwd=tmp_path,
                          env=env, capture_output=True, text=True)
    assert done.returncode == -signal.SIGTERM, done.stderr


# Run in a fresh interpreter: import torch, record every call that would initialise CUDA (the
# device count asks the driver), import the modules, print what is loaded, the calls and the
# threads.
IMPORTS_PROBE = """
import json, sys, threading
calls = []
if RECORD_CUDA:
    import torch
    def recording(name, function):
        def record(*args, **kwargs):
            calls.append(name)
            return function(*args, **kwargs)
        return record
    torch._C._cuda_getDeviceCount = recording("device count", torch._C._cuda_getDeviceCount)
    torch.cuda._lazy_init = recording("lazy init", torch.cuda._lazy_init)
for name in MODULES:
    __import__(name)
print(json.dumps({"modules": list(sys.modules), "cuda calls": calls,
                  "threads": threading.active_count()}))
"""


def _imports(*modules: str, record_cuda: bool = False) -> tuple[set[str], list[str], int]:
    """The top-level third-party packages a fresh interpreter holds after importing
    ``modules``, the calls among those imports that would initialise CUDA (with
    ``record_cuda``) and the threads running after them."""
    code = f"RECORD_CUDA = {record_cuda}\nMODULES = {list(modules)!r}\n" + IMPORTS_PROBE
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, check=True)
    seen = json.loads(done.stdout)
    own = set(warm.OWN_PACKAGES) | set(sys.stdlib_module_names) | {"__main__", "_distutils_hack"}
    packages = {name.split(".")[0] for name in seen["modules"]} - own
    return packages, seen["cuda calls"], seen["threads"]


def _await_file(path: Path, process: subprocess.Popen) -> None:
    """Wait until the command has written ``path``; fail with its output if it ends first."""
    deadline = time.monotonic() + 60
    while not path.exists() or not path.read_text():
        if process.poll() is not None:
            pytest.fail(f"the command ended first: {process.communicate()}")
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):  # gone while being read
        return False
    return state != "Z"

