#!/usr/bin/env bash
# Continuous batching under load: `kiln serve` with SmolLM2-135M-Instruct (Q4_1, CPU engine) on loopback,
# aggregate completion tokens/s of 1 client and of 8 concurrent clients (docs/PERFORMANCE.md).
#
#   bash scripts/bench-serve.sh [CLIENTS] [MAX_TOKENS]
set -euo pipefail
cd "$(dirname "$0")/.."
ASSETS=$(bash scripts/fetch-assets.sh | tail -1)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kiln/target}"
cargo build --release -q -p kiln-cli
PORT="${PORT:-8097}"
"$CARGO_TARGET_DIR/release/kiln" serve --model "$ASSETS/SmolLM2-135M-Instruct.Q4_1.gguf" --name smollm2 \
  --port "$PORT" >/dev/null 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 300); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/ready')" 2>/dev/null && break
  sleep 0.2
done
python3 scripts/bench-serve.py "http://127.0.0.1:$PORT/v1" smollm2 "${1:-8}" "${2:-96}"
