#!/usr/bin/env bash
# Kiln's side of docs/PERFORMANCE.md: llama-bench's pp512, pp64 and tg128 on SmolLM2-135M Q4_1 with the
# same thread count (THREADS, default 2), one warm-up and REPS (default 3) timed runs.
# Writes $KILN_CACHE/bench/kiln-bench.json and prints a summary line. Run on an idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${KILN_CACHE:-$HOME/.cache/kiln}"
THREADS="${THREADS:-2}"
REPS="${REPS:-3}"
MODEL="${MODEL:-$CACHE/assets/SmolLM2-135M-Instruct.Q4_1.gguf}"
bash scripts/fetch-assets.sh >/dev/null
cargo build --quiet --release --example bench
mkdir -p "$CACHE/bench"
bin="${CARGO_TARGET_DIR:-target}/release/examples/bench"
RAYON_NUM_THREADS="$THREADS" "$bin" "$MODEL" --pp 512,64 --tg 128 --reps "$REPS" --engine "${ENGINE:-auto}" >"$CACHE/bench/kiln-bench.json"
python3 - "$CACHE/bench/kiln-bench.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print("kiln " + " ".join(f"{r['test']}={r['tokens_per_second']:.1f} tok/s" for r in d["results"]) + f" (threads={d['threads']})")
PY
