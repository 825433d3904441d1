#!/usr/bin/env python3
"""Round trips per second on one thread: ``guidon.Client.is_enabled`` against a private ``guidond``
and redis-py's ``GET`` against a private ``redis-server`` over its Unix socket, in the same run,
interleaved (the cases take turns every 200 calls) so that each ratio is taken under the same machine conditions.

Redis holds, under one key, the very bytes ``guidond`` answers for the flag, so both replies are
the same size. Both servers are started here on temporary sockets and stopped by PID.

    swift build -c release --product guidond
    .build-venv/bin/python clients/python/bench/bench_is_enabled.py            # ~30 s
    .build-venv/bin/python clients/python/bench/bench_is_enabled.py --profile  # where the time goes

Needs the ``guidon`` package and ``redis`` (redis-py) importable, and ``redis-server`` on PATH.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[3]
FLAG = "new-checkout"
CONTEXT = {"targetingKey": "user-42", "tier": "gold"}


def wait_for_socket(path: str, process: subprocess.Popen, probe: bytes, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{process.args[0]} exited with {process.returncode}")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(1)
                sock.connect(path)
                sock.sendall(probe)
                if sock.recv(65536):
                    return
        except OSError:
            time.sleep(0.02)
    raise SystemExit(f"nothing answered on {path}")


def stop(process: Optional[subprocess.Popen]) -> None:
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def rate(call: Callable[[], object], seconds: float, batch: int = 500) -> float:
    """Calls per second of ``call`` over about ``seconds``."""
    calls = 0
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        for _ in range(batch):
            call()
        calls += batch
        now = time.perf_counter()
        if now >= deadline:
            return calls / (now - started)


def interleaved(
    cases: Dict[str, Callable[[], object]], seconds: float, batch: int = 200
) -> Dict[str, Tuple[float, float]]:
    """Calls per second of each case, and the client's CPU time per call (µs), over one round of
    about ``seconds`` in all, the cases taking turns every ``batch`` calls so that they share the
    machine's conditions (on a busy machine these change within a second). The CPU time is this
    process's alone: the client's own cost, which scheduling noise hardly touches."""
    spent = {name: 0.0 for name in cases}
    cpu = {name: 0.0 for name in cases}
    calls = {name: 0 for name in cases}
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for name, call in cases.items():
            started, started_cpu = time.perf_counter(), time.process_time()
            for _ in range(batch):
                call()
            spent[name] += time.perf_counter() - started
            cpu[name] += time.process_time() - started_cpu
            calls[name] += batch
    return {name: (calls[name] / spent[name], cpu[name] / calls[name] * 1e6) for name in cases}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--guidond", help="the daemon (default: the release build's)")
    parser.add_argument("--redis-server", default=shutil.which("redis-server"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0, help="per measurement")
    parser.add_argument("--threads", type=int, default=1, help="guidond event loops (default 1, like Redis)")
    parser.add_argument("--profile", action="store_true", help="cProfile is_enabled instead of benchmarking")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()

    import guidon
    import redis

    guidond = args.guidond or os.path.join(
        subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=REPO, check=True,
                       capture_output=True, text=True).stdout.strip(), "guidond")
    if not os.access(guidond, os.X_OK):
        raise SystemExit(f"{guidond} not found: swift build -c release --product guidond")
    if not args.redis_server:
        raise SystemExit("redis-server not found (GUIDON_TEST_DEPS=1 bash .ci/deps installs it)")

    directory = tempfile.mkdtemp(prefix="guidon-pybench-", dir="/tmp")
    guidon_sock = os.path.join(directory, "guidon.sock")
    redis_sock = os.path.join(directory, "redis.sock")
    shutil.copy(REPO / "protocol" / "examples" / "flags.json", os.path.join(directory, "flags.json"))
    daemon = redis_server = None
    try:
        daemon = subprocess.Popen(
            [guidond, "--config", os.path.join(directory, "flags.json"), "--socket", guidon_sock,
             "--threads", str(args.threads), "--log-level", "warning"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        redis_server = subprocess.Popen(
            [args.redis_server, "--port", "0", "--unixsocket", redis_sock, "--save", "", "--appendonly", "no",
             "--dir", directory],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_socket(guidon_sock, daemon, b'{"op":"ping"}\n')
        wait_for_socket(redis_sock, redis_server, b"PING\r\n")

        client = guidon.Client(guidon_sock, timeout=1.0)
        r = redis.Redis(unix_socket_path=redis_sock)
        # Redis serves the same bytes as guidond's reply for the flag and context.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(guidon_sock)
            request = {"op": "eval", "flag": FLAG, "type": "boolean", "default": False, "context": CONTEXT}
            sock.sendall(json.dumps(request).encode() + b"\n")
            reply = sock.recv(65536)
        r.set(FLAG, reply)
        assert client.is_enabled(FLAG, CONTEXT) is True and r.get(FLAG) == reply

        cases: Dict[str, Callable[[], object]] = {
            "redis-py GET": lambda: r.get(FLAG),
            "is_enabled(flag, context)": lambda: client.is_enabled(FLAG, CONTEXT),
            "is_enabled(flag)": lambda: client.is_enabled(FLAG),
            "evaluate(flag, context)": lambda: client.evaluate(FLAG, CONTEXT),
        }
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            rate(cases["is_enabled(flag, context)"], 3.0)
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
            return

        for call in cases.values():  # warm up
            rate(call, 0.2)
        figures: Dict[str, List[float]] = {name: [] for name in cases}
        cpu: Dict[str, List[float]] = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name, (per_second, cpu_us) in interleaved(cases, args.seconds * len(cases)).items():
                figures[name].append(per_second)
                cpu[name].append(cpu_us)
        redis_rates = figures["redis-py GET"]

        try:
            commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                    text=True).stdout.strip()
        except OSError:
            commit = "?"
        print(f"Python {platform.python_version()}, redis-py {redis.__version__} "
              f"(hiredis: {getattr(redis.utils, 'HIREDIS_AVAILABLE', False)}), guidond --threads {args.threads}, "
              f"commit {commit}, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"{args.rounds} rounds of about {args.seconds:.1f} s per case, the cases taking turns every 200 calls; "
              f"reply {len(reply)} bytes")
        print(f"{'case':<28}{'median /s':>12}{'µs/call':>10}{'× redis (median, range)':>26}{'client CPU µs/call':>20}")
        results = {}
        for name, rates in figures.items():
            ratios = [a / b for a, b in zip(rates, redis_rates)]
            median = statistics.median(rates)
            results[name] = {"rates": rates, "ratios": ratios, "cpu_us": cpu[name]}
            print(f"{name:<28}{median:>12,.0f}{1e6 / median:>10.1f}"
                  f"{statistics.median(ratios):>10.2f} ({min(ratios):.2f}–{max(ratios):.2f})"
                  f"{statistics.median(cpu[name]):>20.1f}")
        if args.json:
            print(json.dumps(results))
    finally:
        stop(daemon)
        stop(redis_server)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
