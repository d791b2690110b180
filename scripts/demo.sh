#!/usr/bin/env bash
# Kiln's main job, for now: fetch SmolLM2-135M-Instruct and ask it a question through its chat template.
#   bash scripts/demo.sh ["your question"]
set -euo pipefail
cd "$(dirname "$0")/.."

assets=$(bash scripts/fetch-assets.sh)
question=${1:-"What is the capital of France?"}
cargo run --quiet --release -p kiln-cli -- generate \
  --model "$assets/SmolLM2-135M-Instruct.Q4_1.gguf" --chat --prompt "$question" --temperature 0 --max-tokens 128
