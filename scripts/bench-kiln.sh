#!/usr/bin/env bash
# Kiln's side of docs/PERFORMANCE.md: llama-bench's pp512, pp64 and tg128 on SmolLM2-135M Q4_1 with the
# same thread count (THREADS, default 2), one warm-up and REPS (default 3) timed runs, for each engine
# in ENGINES (default "cpu burn"). Writes $KILN_CACHE/bench/kiln-bench-<engine>.json, prints a summary
# line per engine and, when scripts/bench-peers.sh has run, the ratios to llama.cpp.
# Run on an idle machine: on 2 cores any other process skews both tools.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${KILN_CACHE:-$HOME/.cache/kiln}"
THREADS="${THREADS:-2}"
REPS="${REPS:-3}"
ENGINES="${ENGINES:-cpu burn}"
MODEL="${MODEL:-$CACHE/assets/SmolLM2-135M-Instruct.Q4_1.gguf}"
bash scripts/fetch-assets.sh >/dev/null
cargo build --quiet --release --example bench
mkdir -p "$CACHE/bench"
bin="${CARGO_TARGET_DIR:-target}/release/examples/bench"
for engine in $ENGINES; do
  RAYON_NUM_THREADS="$THREADS" "$bin" "$MODEL" --pp 512,64 --tg 128 --reps "$REPS" --engine "$engine" \
    >"$CACHE/bench/kiln-bench-$engine.json"
  python3 - "$CACHE/bench/kiln-bench-$engine.json" "$CACHE/bench/llama-bench.json" <<'PY'
import json, os, sys
d = json.load(open(sys.argv[1]))
line = f"kiln[{d['engine']}] " + " ".join(f"{r['test']}={r['tokens_per_second']:.1f}±{r['stddev']:.1f} tok/s" for r in d["results"])
peer = {}
if os.path.exists(sys.argv[2]):
    for r in json.load(open(sys.argv[2])):
        name = f"pp{r['n_prompt']}" if r["n_gen"] == 0 else f"tg{r['n_gen']}"
        peer[name] = r["avg_ts"]
ratios = [f"{r['test']} {r['tokens_per_second'] / peer[r['test']]:.2f}x" for r in d["results"] if r["test"] in peer]
print(line + f" (threads={d['threads']})" + (" | vs llama.cpp: " + ", ".join(ratios) if ratios else ""))
PY
done
