"""Fixtures for the OFREP suite: a real ``guidond`` from the build, serving a flag file on a
temporary Unix socket and OFREP on a free loopback port (``--ofrep-listen 127.0.0.1:0``), and a
plain NDJSON client of the socket to compare with. Daemons are stopped by PID (SIGTERM) and must
exit 0.

The daemon binary is ``$GUIDOND`` if set, else ``guidond`` in ``swift build --show-bin-path``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_FLAGS = REPO / "protocol" / "examples" / "flags.json"
EDGE_FLAGS = Path(__file__).resolve().parent / "edge-flags.json"
SCHEMA = json.loads((REPO / "protocol" / "schema" / "ofrep.schema.json").read_text())


def check_schema(response: Any, single: bool) -> None:
    """Validates an OFREP response (a ``requests`` response) against protocol/schema/ofrep.schema.json."""
    from jsonschema import Draft202012Validator

    if response.status_code == 304:
        assert response.content == b""
        return
    if response.status_code == 200:
        definition = "evaluationSuccess" if single else "bulkEvaluationSuccess"
    elif response.status_code in (400, 404) and "errorCode" in response.json():
        definition = "evaluationFailure" if single else "bulkEvaluationFailure"
    else:
        definition = "generalError"
    schema = dict(SCHEMA)
    schema["$ref"] = f"#/$defs/{definition}"
    errors = [error.message for error in Draft202012Validator(schema).iter_errors(response.json())]
    assert not errors, f"{response.status_code} {response.text}: {errors}"


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


class SocketClient:
    """One connection to the query socket: a request line out, a reply line in."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(path)
        self.buffer = b""

    def request(self, message: Dict[str, Any]) -> Dict[str, Any]:
        self.sock.sendall(json.dumps(message).encode() + b"\n")
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("guidond closed the connection")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)  # type: ignore[no-any-return]

    def close(self) -> None:
        self.sock.close()


class Daemon:
    """``guidond`` serving a copy of ``flags`` on a socket and OFREP on a free port."""

    def __init__(self, flags: Path, extra_args: Optional[List[str]] = None) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="guidon-ofrep-"))
        self.flags = self.directory / "flags.json"
        shutil.copy(flags, self.flags)
        self.socket = str(self.directory / "guidon.sock")
        self.log_path = self.directory / "guidond.log"
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [guidond_binary(), "--config", str(self.flags), "--socket", self.socket, "--no-watch",
             "--ofrep-listen", "127.0.0.1:0"] + (extra_args or []),
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        self.url = self._wait_for_url()
        self.client = SocketClient(self.socket)

    def _wait_for_url(self) -> str:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            found = re.search(r"serving OFREP on (http://127\.0\.0\.1:\d+)", text)
            if found and os.path.exists(self.socket):
                return found.group(1)
            if self.process.poll() is not None:
                raise AssertionError(f"guidond exited {self.process.returncode}:\n{text}")
            time.sleep(0.02)
        raise AssertionError(f"guidond did not serve OFREP within 30 s:\n{self.log_path.read_text()}")

    def reload(self) -> None:
        """SIGHUP, then wait until the socket serves the file's new version."""
        before = self.client.request({"op": "ping"})["configVersion"]
        self.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while self.client.request({"op": "ping"})["configVersion"] == before:
            assert time.monotonic() < deadline, "the reload was not served within 30 s"
            time.sleep(0.02)

    def stop(self) -> None:
        self.client.close()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=30)
        self.log.close()
        log = self.log_path.read_text(errors="replace")
        shutil.rmtree(self.directory, ignore_errors=True)
        assert code == 0, f"guidond exited {code}:\n{log}"


@pytest.fixture(scope="module")
def example() -> Iterator[Daemon]:
    daemon = Daemon(EXAMPLE_FLAGS)
    yield daemon
    daemon.stop()


@pytest.fixture(scope="module")
def edge() -> Iterator[Daemon]:
    daemon = Daemon(EDGE_FLAGS, ["--lenient"])
    yield daemon
    daemon.stop()
