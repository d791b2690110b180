#!/usr/bin/env bash
# LoRA training speed, Kiln against PEFT + PyTorch, side by side on the same CPU threads:
# SmolLM2-135M-Instruct (the GGUF; both train on its float32 values), r 8, alpha 16, q_proj and
# v_proj, dropout 0.05, AdamW 2e-4, batch 4 x 128 tokens of datasets/retail/faq.txt text.
# Prints both tokens/s and the ratio (Kiln / PEFT). Run on an otherwise idle machine.
#
# Usage: scripts/bench-lora.sh        Environment: STEPS (default 6), THREADS (default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-6}
THREADS=${THREADS:-2}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/kiln/target}
bash scripts/fetch-assets.sh >/dev/null
MODEL="${KILN_CACHE:-$HOME/.cache/kiln}/assets/SmolLM2-135M-Instruct.Q4_1.gguf"
mkdir -p target
# Lines long enough for 128 tokens: consecutive FAQ passages joined four at a time.
awk 'NF { buf = buf " " $0; n++ } n == 4 { print buf; buf = ""; n = 0 }' datasets/retail/faq.txt > target/bench-lora.txt
cargo build --release -q -p kiln-cli
OUT=$(mktemp -d)
KILN=$(RAYON_NUM_THREADS=$THREADS "$CARGO_TARGET_DIR/release/kiln" finetune --model "$MODEL" \
  --data target/bench-lora.txt --output "$OUT" --r 8 --alpha 16 --dropout 0.05 \
  --target-modules q_proj,v_proj --lr 2e-4 --batch-size 4 --max-len 128 --max-steps "$((STEPS + 1))" \
  --epochs 100 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["tokens_per_second"])')
rm -rf "$OUT"
PEFT=$(python3 tools/bench_lora_peft.py --steps "$STEPS" --threads "$THREADS" --data target/bench-lora.txt 2>/dev/null \
  | python3 -c 'import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])["tokens_per_second"])')
python3 -c "k=$KILN; p=$PEFT; print(f'LoRA training tokens/s: kiln {k:.1f}, peft {p:.1f}, ratio {k/p:.2f}x')"
