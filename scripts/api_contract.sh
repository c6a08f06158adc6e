#!/usr/bin/env bash
# The API tested as a client would: `voicecall serve` on a free port with a fresh SQLite data
# dir and the mock carrier (loopback only), a token from the CLI, then schemathesis against
# /api/schema/ with every check. Any failure fails the script; the server is always stopped.
# docs/api-contract.md. Extra arguments go to `schemathesis run`.
source "$(dirname "$0")/_env.sh"
ensure_venv
ensure_dev_requirements
cd "$ROOT"

WORK="$(mktemp -d)"
PORT="$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
SERVER_PID=""
stop_server() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -INT "$SERVER_PID"
    # Calls the run left up end with the server; one that does not stop is killed.
    for _ in $(seq 1 40); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap stop_server EXIT

# The mock carrier calls our webhooks back over loopback; no key for any vendor is set, so
# nothing leaves the machine. Limits are high so generated calls are never refused for load.
cat > "$WORK/voicecall.json5" <<EOF
{
  provider: "mock",
  toNumber: "+15555550123",
  maxConcurrentCalls: 1000,
  serve: { bind: "127.0.0.1", port: $PORT },
  mock: { ringDelayMs: 50, answerDelayMs: 100, replyDelayMs: 100 },
}
EOF
export VOICECALL_CONFIG="$WORK/voicecall.json5" VOICECALL_DATA_DIR="$WORK/data" VOICECALL_DOTENV=off
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost  # loopback, never a proxy
unset DATABASE_URL REDIS_URL VOICECALL_API_TOKEN DJANGO_SETTINGS_MODULE
"$VENV/bin/python" manage.py migrate --verbosity 0
TOKEN="$("$VENV/bin/python" manage.py voicecall token create --name schemathesis \
  | "$VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["token"])')"

"$VENV/bin/python" manage.py voicecall serve > "$WORK/server.log" 2>&1 &
SERVER_PID=$!
healthy() {
  "$VENV/bin/python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' \
    "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1
}
for _ in $(seq 1 60); do
  healthy && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
  sleep 0.5
done
healthy || { echo "voicecall serve did not answer /healthz" >&2; cat "$WORK/server.log" >&2; exit 1; }

set +e
"$VENV/bin/schemathesis" --config-file scripts/schemathesis.toml \
  run "http://127.0.0.1:$PORT/api/schema/" \
  -H "Authorization: Bearer $TOKEN" \
  --max-examples "${API_CONTRACT_MAX_EXAMPLES:-25}" --seed 8 \
  --workers 2 --request-timeout 30 --generation-database none --no-color "$@"
code=$?
set -e
if [ "$code" -ne 0 ]; then
  echo "== server log (tail) ==" >&2
  tail -n 50 "$WORK/server.log" >&2
fi
exit "$code"
