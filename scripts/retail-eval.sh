#!/usr/bin/env bash
# The retail assistant's evaluation table (docs/RETAIL.md): trains the QLoRA intent/tool adapter if
# absent, runs the 107 scripted cases with the base model and with the adapter, prints the table.
#
#   bash scripts/retail-eval.sh [OUT_DIR]     (default: $KILN_CACHE/runs/retail)
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${KILN_CACHE:-$HOME/.cache/kiln}"
OUT="${1:-$CACHE/runs/retail}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
ASSETS=$(bash scripts/fetch-assets.sh | tail -1)
cargo build --release -q -p kiln-cli
KILN="$CARGO_TARGET_DIR/release/kiln"
MODEL="$ASSETS/SmolLM2-135M-Instruct.Q4_1.gguf"
CLIP="$CACHE/runs/clip-fashion"
[ -f "$CLIP/config.json" ] || bash scripts/clip-fashion.sh "$CLIP" >/dev/null
mkdir -p "$OUT"
if [ ! -f "$OUT/intent-adapter/adapter_config.json" ]; then
  "$KILN" retail export-train --out "$OUT/intent-train.jsonl"
  "$KILN" finetune --model "$MODEL" --data "$OUT/intent-train.jsonl" --output "$OUT/intent-adapter" \
    --method qlora --r 16 --alpha 32 --target-modules all-linear --epochs 4 \
    --lr 1e-3 --batch-size 8 --warmup 10 --seed 0 --max-len 384
fi
COMMON=(--model "$MODEL" --clip "$CLIP" --fashion-mnist "$ASSETS/fashion-mnist" --out "$OUT")
"$KILN" retail eval "${COMMON[@]}" --label base 2>/dev/null >/dev/null
"$KILN" retail eval "${COMMON[@]}" --label adapter --adapter "$OUT/intent-adapter" 2>/dev/null >/dev/null
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
rows = [("SmolLM2-135M base, few-shot", "base"), ("+ QLoRA adapter", "adapter")]
print("| Model | Intent accuracy | Resolution rate | Tool-call correctness | Refusal correctness | Leaks | Latency p50 / p95 |")
print("|---|---|---|---|---|---|---|")
for name, label in rows:
    s = json.load(open(f"{out}/summary-{label}.json"))
    print(f"| {name} | {s['intent_accuracy']:.1%} | {s['resolution_rate']:.1%} | "
          f"{s['tool_call_accuracy']:.1%} ({s['tool_cases']} cases) | {s['refusal_accuracy']:.1%} | "
          f"{s['leaks']} / {s['cases']} | {s['latency_p50_ms']:.0f} / {s['latency_p95_ms']:.0f} ms |")
print()
cats = [c for c, _, _ in json.load(open(f"{out}/summary-base.json"))["resolution_by_category"]]
print("| Resolution by category | " + " | ".join(f"{c} ({n})" for c, _, n in json.load(open(f"{out}/summary-base.json"))["resolution_by_category"]) + " |")
print("|---|" + "---|" * len(cats))
for name, label in rows:
    s = json.load(open(f"{out}/summary-{label}.json"))
    print(f"| {name} | " + " | ".join(f"{r:.0%}" for _, r, _ in s["resolution_by_category"]) + " |")
PY
