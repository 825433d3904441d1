#!/usr/bin/env python3
"""A minimal Guidon client: one connection, newline-delimited JSON, pipelined requests.

This shows the wire protocol. Applications should use the `guidon` package (clients/python:
pooled, thread- and fork-safe, timeouts, never raises on evaluation, OpenFeature and web helpers)."""
import json
import os
import socket
import sys


class Guidon:
    def __init__(self, path=os.environ.get("GUIDON_SOCKET", "/run/guidon/guidon.sock")):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.reader = self.sock.makefile("rb")

    def send(self, *requests):
        """Sends requests in one write and returns their replies, in order."""
        self.sock.sendall(b"".join(json.dumps(r).encode() + b"\n" for r in requests))
        return [json.loads(self.reader.readline()) for _ in requests]

    def eval(self, flag, context=None, default=None, type=None):
        request = {"op": "eval", "flag": flag, "context": context or {}}
        if default is not None:
            request["default"] = default
        if type is not None:
            request["type"] = type
        reply = self.send(request)[0]
        if "error" in reply:
            raise RuntimeError(reply["error"]["message"])
        return reply.get("value", default)


if __name__ == "__main__":
    g = Guidon(sys.argv[1] if len(sys.argv) > 1 else "./guidon.sock")
    print("new-checkout for gold:", g.eval("new-checkout", {"targetingKey": "user-42", "tier": "gold"}, False, "boolean"))
    print("max-cart-items for enterprise:", g.eval("max-cart-items", {"plan": "enterprise"}, 50, "integer"))
    for reply in g.send({"op": "ping", "id": 1}, {"op": "evalAll", "id": 2, "context": {"targetingKey": "user-7"}}):
        print(json.dumps(reply)[:200])
