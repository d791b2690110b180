#!/usr/bin/env bash
# schemathesis (PyPI) against a running kiln-serve's /openapi.json (issue 9): every check
# (`-c all`: no 5xx, responses and streamed events match the schema, schema-valid requests are
# accepted and schema-violating ones rejected, documented status codes only), once as a user key
# over every operation and once as an admin key (run-time adapters). The server is the scripted
# one (kiln-serve's HTTP layer with a scripted model, no weights), so thousands of cases take
# seconds; the document it serves is built from its models and limits, as `kiln serve`'s is.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${PORT:-8096}"
EXAMPLES="${1:-100}"
VERSION=4.32.5
python3 -c "import schemathesis, sys; sys.exit(schemathesis.__version__ != '$VERSION')" 2>/dev/null \
  || python3 -m pip install --quiet "schemathesis==$VERSION" 2>/dev/null \
  || python3 -m pip install --quiet --break-system-packages "schemathesis==$VERSION"
cargo build --quiet --release -p kiln-serve --example scripted_server
BIN="${CARGO_TARGET_DIR:-target}/release/examples/scripted_server"
LOG="$(mktemp)"
RUST_LOG=info "$BIN" "$PORT" >"$LOG" 2>&1 &
PID=$!
WORK="$(mktemp -d)"
trap 'kill $PID 2>/dev/null || true; [ -n "${KILN_LOG_DIR:-}" ] && cp "$LOG" "$KILN_LOG_DIR/schemathesis-server.log"; rm -rf "$WORK" "$LOG"' EXIT
for _ in $(seq 100); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/health')" 2>/dev/null && break
  sleep 0.1
done
run() {
  # A fixed seed keeps CI reproducible; KILN_ST_SEED=random explores new cases.
  local seed=()
  [ "${KILN_ST_SEED:-20261129}" = random ] || seed=(--seed "${KILN_ST_SEED:-20261129}")
  (cd "$WORK" && python3 -m schemathesis.cli run "http://127.0.0.1:$PORT/openapi.json" \
     -c all --max-examples "$EXAMPLES" "${seed[@]}" --no-color "$@") >"$WORK/out.txt" 2>&1 || {
    cat "$WORK/out.txt"; echo "schemathesis found failures ($*)" >&2; exit 1; }
  grep -E "generated|No issues found" "$WORK/out.txt" | sed 's/^ */  /'
}
echo "schemathesis $VERSION, user key, every operation:"
run -H "Authorization: Bearer sk-test"
echo "schemathesis $VERSION, admin key, the admin operations:"
run -H "Authorization: Bearer sk-admin" --include-path-regex '^/v1/admin/'
if grep -E "panicked|PANIC" "$LOG"; then echo "the server panicked" >&2; exit 1; fi
if grep -F -e "sk-test" -e "sk-admin" "$LOG"; then echo "a key reached the server log" >&2; exit 1; fi
kill -0 $PID 2>/dev/null || { echo "the server died" >&2; exit 1; }
echo "schemathesis: no failures"
