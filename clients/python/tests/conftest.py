"""Fixtures: a real ``guidond`` from the build on a temporary socket and a temporary copy of
``protocol/examples/flags.json``, stopped by PID.

The daemon binary is ``$GUIDOND`` if set, else ``guidond`` in ``swift build --show-bin-path`` of
the repository (build it first: ``swift build --product guidond``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest

REPO = Path(__file__).resolve().parents[3]
EXAMPLE_FLAGS = REPO / "protocol" / "examples" / "flags.json"


def guidond_binary() -> str:
    explicit = os.environ.get("GUIDOND")
    if explicit:
        return explicit
    bin_dir = subprocess.run(
        ["swift", "build", "--show-bin-path"], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout.strip()
    path = os.path.join(bin_dir, "guidond")
    if not os.access(path, os.X_OK):
        pytest.exit(f"{path} not found: run `swift build --product guidond` first (or set GUIDOND)", 2)
    return path


def ping(path: str, timeout: float = 1.0) -> Optional[Dict[str, Any]]:
    """The daemon's ping reply, or None if it does not answer."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(b'{"op":"ping"}\n')
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    return None
                data += chunk
            return json.loads(data)  # type: ignore[no-any-return]
    except OSError:
        return None


def wait_until(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


class Daemon:
    """One ``guidond`` process on ``socket`` serving ``flags``, in ``directory``."""

    def __init__(self, binary: str, directory: Path, extra_args: Optional[List[str]] = None) -> None:
        self.binary = binary
        self.directory = directory
        self.flags = directory / "flags.json"
        self.socket = str(directory / "guidon.sock")
        self.log = directory / "guidond.log"
        self.extra_args = extra_args or []
        self.process: Optional[subprocess.Popen[bytes]] = None
        if not self.flags.exists():
            shutil.copy(EXAMPLE_FLAGS, self.flags)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> Daemon:
        assert self.process is None or self.process.poll() is not None, "already running"
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "--config", str(self.flags), "--socket", self.socket, "--threads", "2", *self.extra_args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"guidond exited with {self.process.returncode}:\n{self.log.read_text()}")
            if ping(self.socket, 0.5) is not None:
                return self
            time.sleep(0.02)
        raise RuntimeError(f"guidond did not answer within 20 s:\n{self.log.read_text()}")

    def stop(self) -> None:
        """SIGTERM by PID, then wait (SIGKILL after 10 s)."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def document(self) -> Dict[str, Any]:
        return json.loads(self.flags.read_text())  # type: ignore[no-any-return]

    def write(self, document: Dict[str, Any]) -> None:
        """Replaces the flag file atomically (the daemon's watcher reloads it)."""
        temporary = self.directory / "flags.json.tmp"
        temporary.write_text(json.dumps(document))
        os.rename(temporary, self.flags)

    def wait_for_version(self, different_from: str, timeout: float = 15) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = ping(self.socket)
            if reply is not None and reply.get("configVersion") != different_from:
                return str(reply["configVersion"])
            time.sleep(0.02)
        raise AssertionError("the daemon did not reload the flag file")


@pytest.fixture(scope="session")
def guidond() -> str:
    return guidond_binary()


@pytest.fixture(scope="session")
def session_dir() -> Iterator[Path]:
    # Short, under /tmp: a Unix socket path must fit in 108 bytes.
    path = Path(tempfile.mkdtemp(prefix="guidon-py-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def daemon(guidond: str, session_dir: Path) -> Iterator[Daemon]:
    """One daemon for the session; tests must not change its flag file (use ``fresh_daemon``)."""
    directory = session_dir / "shared"
    directory.mkdir()
    running = Daemon(guidond, directory).start()
    yield running
    running.stop()


@pytest.fixture
def make_daemon(guidond: str) -> Iterator[Callable[..., Daemon]]:
    """Makes daemons of the test's own (on their own sockets and flag files), stopped at the end."""
    made: List[Daemon] = []
    directories: List[str] = []

    def make(extra_args: Optional[List[str]] = None, flags: Optional[Dict[str, Any]] = None, start: bool = True) -> Daemon:
        directory = tempfile.mkdtemp(prefix="guidon-py-", dir="/tmp")
        directories.append(directory)
        if flags is not None:
            Path(directory, "flags.json").write_text(json.dumps(flags))
        new = Daemon(guidond, Path(directory), extra_args)
        made.append(new)
        return new.start() if start else new

    yield make
    for each in made:
        each.stop()
    for directory in directories:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def fresh_daemon(make_daemon: Callable[..., Daemon]) -> Daemon:
    return make_daemon()


class SilentServer:
    """A Unix-socket server that accepts connections and never answers (a hung daemon), or answers
    every line with ``reply``."""

    def __init__(self, path: str, reply: Optional[bytes] = None) -> None:
        self.path = path
        self.reply = reply
        self.connections: List[socket.socket] = []
        self.accepted = 0
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(64)
        self.listener.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            self.accepted += 1
            self.connections.append(conn)
            if self.reply is not None:
                threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                conn.sendall(self.reply * data.count(b"\n"))  # type: ignore[operator]
        except OSError:
            return

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.listener.close()
        for conn in self.connections:
            conn.close()


@pytest.fixture
def fake_server() -> Iterator[Callable[..., SilentServer]]:
    servers: List[SilentServer] = []
    directory = tempfile.mkdtemp(prefix="guidon-fake-", dir="/tmp")

    def make(reply: Optional[bytes] = None) -> SilentServer:
        server = SilentServer(os.path.join(directory, f"fake{len(servers)}.sock"), reply)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()
    shutil.rmtree(directory, ignore_errors=True)
