#!/usr/bin/env python3
"""Subscribes to configuration changes and prints each event."""
import json
import socket
import sys

sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(sys.argv[1] if len(sys.argv) > 1 else "./guidon.sock")
sock.sendall(b'{"op":"watch","id":"w"}\n')
for line in sock.makefile("rb"):
    message = json.loads(line)
    if message.get("event") == "configurationChanged":
        print(f"now {message['configVersion']}: +{message['added']} ~{message['changed']} -{message['removed']}", flush=True)
    else:
        print("subscribed at", message.get("configVersion"), flush=True)
