#!/usr/bin/env python3
"""Differential test: guidond against the OpenFeature reference evaluator on random documents.

Each document (drawn from the seed and its number) is written to a file and served by a real
`guidond --lenient`; every flag is evaluated, as several types and with several random contexts,
over its socket (all requests pipelined on one connection) and by the reference evaluator
(openfeature-flagd-core 2.0.0). Answers must agree (value, variant, reason, error code, and
metadata when there is no error), or differ only as a difference listed in
known_differences.json explains (see reference.py). Documents one of the two refuses are
compared the same way.

    python differential.py                      # a minute of random documents, a new seed
    python differential.py --seconds 1800       # a long campaign
    python differential.py --seed 42 --documents 5000
    python differential.py --seed 42 --document 317   # replay one document of a campaign
    python differential.py --replay FILE        # replay a saved reproduction

Exit status 0 when every evaluation agreed or differed only as documented, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the checkout
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))

from generator import Generator  # noqa: E402
from reference import DEFAULTS, Reference  # noqa: E402

TYPES = ["boolean", "string", "integer", "float", "object"]

# How to run this script again (for the replay hints): the venv's python, from the checkout.
PYTHON = os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(str(ROOT)) else sys.executable
SCRIPT = Path(__file__).resolve().relative_to(ROOT)


def load_known() -> dict[str, dict]:
    entries = json.loads((HERE / "known_differences.json").read_text())["differences"]
    known = {e["id"]: e for e in entries}
    # Each must be documented where users read about differences.
    doc = (ROOT / "protocol" / "FLAG-FORMAT.md").read_text()
    section = doc[doc.index("## Where Guidon differs"):]
    missing = [i for i in known if f"`{i}`" not in section]
    if missing:
        sys.exit(f"known_differences.json lists {missing}, which protocol/FLAG-FORMAT.md (Where Guidon differs) does not")
    return known


# ------------------------------------------------------------------------------------------------
# guidond

class Daemon:
    """`guidond --lenient` serving one document, or the reason it refused to."""

    def __init__(self, binary: str, document_text: str, workdir: Path):
        self.dir = Path(tempfile.mkdtemp(prefix="d", dir=workdir))
        self.config = self.dir / "flags.json"
        self.config.write_text(document_text)
        self.socket_path = str(self.dir / "s")
        self.log = open(self.dir / "log", "w+")
        self.process = subprocess.Popen(
            [binary, "--config", str(self.config), "--socket", self.socket_path, "--lenient", "--no-watch",
                "--threads", "1", "--log-level", "error"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        self.refused: str | None = None
        self.sock: socket.socket | None = None
        deadline = time.monotonic() + 20
        while True:
            code = self.process.poll()
            if code is not None:
                self.log.seek(0)
                self.refused = f"exit {code}: {self.log.read()[-2000:]}"
                return
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(self.socket_path)
                self.sock = s
                return
            except OSError:
                s.close()
            if time.monotonic() > deadline:
                raise RuntimeError("guidond did not answer within 20 s")
            time.sleep(0.002)

    def ask(self, requests: list[dict]) -> list[dict]:
        assert self.sock is not None
        self.sock.settimeout(30)
        self.sock.sendall("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in requests).encode())
        replies: list[dict] = []
        buffer = b""
        while len(replies) < len(requests):
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise RuntimeError(f"guidond closed the connection after {len(replies)} replies")
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            replies += [json.loads(line) for line in lines if line]
        return replies

    def close(self) -> None:
        if self.sock:
            self.sock.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def guidond_answer(reply: dict, type_: str) -> dict:
    return {"value": reply.get("value"), "variant": reply.get("variant"), "reason": reply.get("reason"),
        "errorCode": reply.get("errorCode"), "metadata": reply.get("metadata")}


# ------------------------------------------------------------------------------------------------
# Comparing

def same(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def agree(ours: dict, ref: dict) -> bool:
    if not (same(ours["value"], ref["value"]) and ours["variant"] == ref["variant"] and ours["reason"] == ref["reason"]
            and ours["errorCode"] == ref["errorCode"]):
        return False
    # The reference returns no metadata with an error; Guidon does (a documented difference).
    return ref["reason"] == "ERROR" or same(ours["metadata"] or {}, ref["metadata"] or {})


class Tally:
    def __init__(self):
        self.documents = 0
        self.refused_both = 0
        self.evaluations = 0
        self.agreed = 0
        self.known = Counter()
        self.failures: list[dict] = []


# ------------------------------------------------------------------------------------------------
# One document

def cases_for(gen: Generator, document: dict, rng: random.Random) -> list[tuple[str, str, dict]]:
    flags = list(document.get("flags", {}) or {})
    contexts = [gen.context() for _ in range(rng.randint(2, 5))]
    cases = []
    for context in contexts:
        for flag in flags + (["no-such-flag"] if rng.random() < 0.1 else []):
            for type_ in rng.sample(TYPES, rng.randint(1, 3)):
                cases.append((flag, type_, context))
    return cases


def check_document(binary: str, document: dict, cases: list, known: dict, tally: Tally, workdir: Path, where: dict) -> None:
    text = json.dumps(document, ensure_ascii=False)
    reference = Reference(document)
    adjusted: Reference | None = None

    def adjusted_reference() -> Reference:
        nonlocal adjusted
        if adjusted is None:
            adjusted = Reference(document, adjusted=True)
        return adjusted

    daemon = Daemon(binary, text, workdir)
    try:
        tally.documents += 1
        if (reference.refused is None) != (daemon.refused is None):
            adj = adjusted_reference()
            explained = (adj.refused is None) == (daemon.refused is None) and adj.load_fired and adj.load_fired <= known.keys()
            if not explained:
                tally.failures.append(dict(where, kind="document", document=document,
                    reference=reference.refused or "loaded", guidond=daemon.refused or "loaded",
                    adjusted=adj.refused or "loaded", fired=sorted(adj.load_fired)))
                return
            for i in adj.load_fired:
                tally.known[i] += 1
            if daemon.refused is not None:
                return
        elif daemon.refused is not None:
            tally.refused_both += 1
            return
        requests = [{"op": "eval", "id": n, "flag": flag, "context": context, "type": type_, "default": DEFAULTS[type_]}
            for n, (flag, type_, context) in enumerate(cases)]
        replies = daemon.ask(requests)
        for (flag, type_, context), reply in zip(cases, replies):
            tally.evaluations += 1
            ours = guidond_answer(reply, type_)
            if reference.refused is None:
                ref = reference.evaluate(flag, type_, context)
                if agree(ours, ref):
                    tally.agreed += 1
                    continue
            else:
                ref = {"refused": reference.refused}
            adj = adjusted_reference()
            fixed = adj.evaluate(flag, type_, context)
            fired = adj.last_fired | adj.load_fired
            if agree(ours, fixed) and fired and fired <= known.keys():
                for i in fired:
                    tally.known[i] += 1
                continue
            tally.failures.append(dict(where, kind="evaluation", document=document, flag=flag, type=type_, context=context,
                guidond=ours, reference=ref, adjusted=fixed, fired=sorted(fired)))
    finally:
        daemon.close()


# ------------------------------------------------------------------------------------------------
# Reproductions

def shrink(binary: str, failure: dict, known: dict, workdir: Path) -> dict:
    """The failing evaluation with the document cut down to its flag (and the evaluators and set
    metadata), and the context to the attributes that matter, as long as it still fails."""
    if failure["kind"] != "evaluation":
        return failure

    def still_fails(document, context) -> dict | None:
        tally = Tally()
        check_document(binary, document, [(failure["flag"], failure["type"], context)], known, tally, workdir, {})
        return tally.failures[0] if tally.failures else None

    document = failure["document"]
    flags = document.get("flags", {})
    if isinstance(flags, dict) and failure["flag"] in flags and len(flags) > 1:
        smaller = dict(document, flags={failure["flag"]: flags[failure["flag"]]})
        if still_fails(smaller, failure["context"]):
            document = smaller
    context = dict(failure["context"])
    for key in list(context):
        trial = {k: v for k, v in context.items() if k != key}
        if still_fails(document, trial):
            context = trial
    result = still_fails(document, context)
    return dict(result or failure, seed=failure.get("seed"), index=failure.get("index"))


def show(failure: dict) -> str:
    lines = [f"DISAGREEMENT ({failure['kind']}), seed {failure.get('seed')} document {failure.get('index')}:",
        "  document: " + json.dumps(failure["document"], ensure_ascii=False)]
    if failure["kind"] == "evaluation":
        lines += [f"  flag {json.dumps(failure['flag'], ensure_ascii=False)} as {failure['type']}, context "
            + json.dumps(failure["context"], ensure_ascii=False),
            "  guidond:   " + json.dumps(failure["guidond"], ensure_ascii=False),
            "  reference: " + json.dumps(failure["reference"], ensure_ascii=False, default=str),
            "  reference with the documented differences: " + json.dumps(failure["adjusted"], ensure_ascii=False, default=str)]
    else:
        lines += [f"  guidond: {failure['guidond']}", f"  reference: {failure['reference']}",
            f"  reference with the documented differences: {failure['adjusted']}"]
    lines.append(f"  documented differences involved: {failure['fired'] or 'none'}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, help="campaign seed (default: a new one, printed)")
    parser.add_argument("--seconds", type=float, default=60, help="stop after this long (default 60)")
    parser.add_argument("--documents", type=int, help="stop after this many documents")
    parser.add_argument("--document", type=int, help="only this document of the campaign (replay)")
    parser.add_argument("--replay", help="a reproduction file written by a failing run")
    parser.add_argument("--guidond", default=str(ROOT / ".build" / "debug" / "guidond"))
    parser.add_argument("--max-failures", type=int, default=5, help="stop after this many disagreements")
    parser.add_argument("--out", default=str(ROOT / ".build" / "differential"), help="where reproductions are written")
    args = parser.parse_args()

    # Stopped from outside, still stop the daemon being asked and remove the scratch files.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    known = load_known()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="guidon-diff-"))
    tally = Tally()
    started = time.monotonic()
    try:
        if args.replay:
            saved = json.loads(Path(args.replay).read_text())
            cases = [(saved["flag"], saved["type"], saved["context"])] if saved["kind"] == "evaluation" else []
            check_document(args.guidond, saved["document"], cases, known, tally, workdir, {})
            for f in tally.failures:
                print(show(f))
            print(f"replay: {'still disagrees' if tally.failures else 'agrees now'}")
            return 1 if tally.failures else 0

        seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
        print(f"differential: seed {seed} (replay: {PYTHON} {SCRIPT} --seed {seed})", flush=True)
        indexes = [args.document] if args.document is not None else iter(int, 1)
        index = -1
        for fixed in indexes:
            index = fixed if args.document is not None else index + 1
            if args.document is None:
                if args.documents is not None and index >= args.documents:
                    break
                if args.documents is None and time.monotonic() - started > args.seconds:
                    break
            rng = random.Random(f"{seed}:{index}")
            gen = Generator(rng)
            document = gen.document()
            cases = cases_for(gen, document, rng)
            before = len(tally.failures)
            check_document(args.guidond, document, cases, known, tally, workdir, {"seed": seed, "index": index})
            for n in range(before, len(tally.failures)):
                tally.failures[n] = shrink(args.guidond, tally.failures[n], known, workdir)
                f = tally.failures[n]
                path = out / f"seed{seed}-doc{index}-{n}.json"
                path.write_text(json.dumps(f, ensure_ascii=False, indent=1, default=str))
                print(show(f), flush=True)
                print(f"  replay: {PYTHON} {SCRIPT} --replay {path}   (or --seed {seed} --document {index})", flush=True)
            if len(tally.failures) >= args.max_failures:
                print(f"stopping after {len(tally.failures)} disagreements", flush=True)
                break
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    elapsed = time.monotonic() - started
    print(f"differential: seed {seed}: {tally.documents} documents ({tally.refused_both} refused by both), "
        f"{tally.evaluations} evaluations in {elapsed:.0f} s: {tally.agreed} agreed, "
        f"{tally.evaluations - tally.agreed - len([f for f in tally.failures if f['kind'] == 'evaluation'])} differed only as documented, "
        f"{len(tally.failures)} disagreements")
    if tally.known:
        print("documented differences met (evaluations or documents): "
            + ", ".join(f"{k} {v}" for k, v in tally.known.most_common()))
    failed_evaluations = len(tally.failures)
    print(f"differential: {tally.evaluations - failed_evaluations} passed, {failed_evaluations} failed")
    return 1 if tally.failures else 0


if __name__ == "__main__":
    sys.exit(main())
