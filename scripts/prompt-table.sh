#!/usr/bin/env bash
# Measures the docs/PROMPTING.md table: every strategy on both datasets with SmolLM2-135M-Instruct
# (greedy; self-consistency samples 3 chains at temperature 0.7 from seed 0). Self-consistency and
# ReAct run on a stated subset of the intent cases (and self-consistency on half the arithmetic
# problems) to keep the whole table under ~15 minutes on a 2-core CPU.
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
  "$KILN" eval-prompts --model "$MODEL" --data "datasets/prompting/$data" --strategy "$strategy" \
    --json "$@" >"$OUT/$name.$strategy.json" 2>"$OUT/$name.$strategy.log"
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(f"{r[\"task\"]} | {r[\"strategy\"]} | {r[\"correct\"]}/{r[\"cases\"]} = {100*r[\"accuracy\"]:.1f}% | steps {r[\"mean_steps\"]:.2f} | tokens {r[\"mean_tokens\"]:.1f} | {r[\"seconds\"]:.0f} s")' "$OUT/$name.$strategy.json"
}
for s in zero-shot few-shot cot; do run retail_intents.jsonl $s; done
run retail_intents.jsonl self-consistency --limit 18
run retail_intents.jsonl react --limit 18
for s in zero-shot few-shot cot react; do run arithmetic.jsonl $s; done
run arithmetic.jsonl self-consistency --limit 16
