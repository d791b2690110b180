#!/usr/bin/env bash
# Runs the official `openai` Python client (from PyPI) against kiln-serve's scripted server on
# loopback: chat, streamed chat, completions, embeddings, models, and its 401/403/404/429 errors.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${PORT:-8099}"
python3 -c "import openai" 2>/dev/null || python3 -m pip install --quiet openai 2>/dev/null \
  || python3 -m pip install --quiet --break-system-packages openai
cargo build --quiet --release -p kiln-serve --example scripted_server
BIN="${CARGO_TARGET_DIR:-target}/release/examples/scripted_server"
RUST_LOG=warn "$BIN" "$PORT" &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/health')" 2>/dev/null && break
  sleep 0.1
done
python3 scripts/openai-client-check.py "http://127.0.0.1:$PORT/v1"
