#!/usr/bin/env bash
# Talking to guidond with socat. Start the daemon first:
#   guidond --config protocol/examples/flags.json --socket ./guidon.sock
set -euo pipefail
SOCK=${GUIDON_SOCKET:-./guidon.sock}

# One request, one reply (socat exits when the daemon has answered and closed).
echo '{"op":"ping","id":1}' | socat -t 2 - "UNIX-CONNECT:$SOCK"

echo '{"op":"eval","id":"checkout","flag":"new-checkout","type":"boolean","default":false,"context":{"targetingKey":"user-42","tier":"gold"}}' \
  | socat -t 2 - "UNIX-CONNECT:$SOCK"

# Pipelining: several requests in one write; replies come back in the same order.
printf '%s\n' \
  '{"op":"eval","id":1,"flags":["bulk-export","max-cart-items"],"context":{"tenantId":"tenant-0042","plan":"free"}}' \
  '{"op":"eval","id":2,"flag":"recommendations","default":false}' \
  '{"op":"evalAll","id":3,"context":{"targetingKey":"user-1001","email":"ana@acme.example"}}' \
  '{"op":"status","id":4}' \
  | socat -t 2 - "UNIX-CONNECT:$SOCK"

# A subscription: prints an event line whenever the flag file changes (Ctrl-C to stop).
# echo '{"op":"watch"}' | socat -t 31536000 - "UNIX-CONNECT:$SOCK"
