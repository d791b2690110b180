#!/usr/bin/env bash
# Measures the docs/PROMPTING.md table: every strategy on both datasets with SmolLM2-135M-Instruct
# (greedy; self-consistency samples 3 chains at temperature 0.7 from seed 0). Self-consistency and
# ReAct run on the first 36 of the 72 intent cases (4 per intent: the file interleaves the intents)
# to keep the whole table under ~15 minutes on a 2-core CPU.
#
# Usage: scripts/prompt-table.sh [KILN_BINARY] [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
KILN=${1:-target/release/kiln}
OUT=${2:-target/prompt-table}
MODEL=${KILN_CACHE:-$HOME/.cache/kiln}/assets/SmolLM2-135M-Instruct.Q4_1.gguf
mkdir -p "$OUT"
run() { # dataset strategy [extra args]
  local data=$1 strategy=$2; shift 2
  local name; name=$(basename "$data" .jsonl)
  local json="$OUT/$name.$strategy.json"
  # A finished run is kept (delete OUT to measure again).
  if [ ! -s "$json" ]; then
    "$KILN" eval-prompts --model "$MODEL" --data "datasets/prompting/$data" --strategy "$strategy" \
      --json "$@" >"$json.tmp" 2>"$OUT/$name.$strategy.log"
    mv "$json.tmp" "$json"
  fi
  python3 - "$json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"| {r['task']} | {r['strategy']} | {r['correct']}/{r['cases']} = {100 * r['accuracy']:.1f}% "
      f"| {r['mean_steps']:.2f} | {r['mean_tokens']:.1f} | {r['seconds']:.0f} s |")
PY
}
for s in zero-shot few-shot cot; do run retail_intents.jsonl $s; done
run retail_intents.jsonl self-consistency --limit 36
run retail_intents.jsonl react --limit 36
for s in zero-shot few-shot cot react; do run arithmetic.jsonl $s; done
run arithmetic.jsonl self-consistency
