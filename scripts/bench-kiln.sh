#!/usr/bin/env bash
# Kiln's side of docs/PERFORMANCE.md: llama-bench's pp512, pp64 and tg128 on SmolLM2-135M Q4_1 with the
# same thread count (THREADS, default 2), one warm-up and REPS (default 3) timed runs, for each engine
# in ENGINES (default "cpu cpu:int8 burn"; `cpu:int8` is the CPU engine with llama.cpp's 8-bit
# activations for decode steps, `cpu` the exact default). Also measures the machine's memory read
# bandwidth (crates/kiln-backend/examples/membw.rs) and prints decode's share of the bound it implies
# for the model's bytes per token. Writes $KILN_CACHE/bench/kiln-bench-<engine>.json, prints a summary
# line per engine and, when scripts/bench-peers.sh has run, the ratios to llama.cpp.
# Then the batched-decode ratio (BATCH sequences, default 8, against one; bench_batch) per arithmetic.
# Run on an idle machine: on 2 cores any other process skews both tools.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${KILN_CACHE:-$HOME/.cache/kiln}"
THREADS="${THREADS:-2}"
REPS="${REPS:-3}"
ENGINES="${ENGINES:-cpu cpu:int8 burn}"
MODEL="${MODEL:-$CACHE/assets/SmolLM2-135M-Instruct.Q4_1.gguf}"
bash scripts/fetch-assets.sh >/dev/null
cargo build --quiet --release --example bench
cargo build --quiet --release -p kiln-backend --example membw
mkdir -p "$CACHE/bench"
bin="${CARGO_TARGET_DIR:-target}/release/examples/bench"
membw="${CARGO_TARGET_DIR:-target}/release/examples/membw"
RAYON_NUM_THREADS="$THREADS" "$membw" 1024 7 >"$CACHE/bench/membw.json"
echo "memory read bandwidth ($THREADS threads): $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["read_gb_per_s"])' "$CACHE/bench/membw.json") GB/s"
for engine in $ENGINES; do
  name="${engine%%:*}"
  activations="exact"
  [ "$engine" != "$name" ] && activations="${engine#*:}"
  RAYON_NUM_THREADS="$THREADS" "$bin" "$MODEL" --pp 512,64 --tg 128 --reps "$REPS" --engine "$name" \
    --activations "$activations" >"$CACHE/bench/kiln-bench-${engine/:/-}.json"
  python3 - "$CACHE/bench/kiln-bench-${engine/:/-}.json" "$CACHE/bench/llama-bench.json" "$CACHE/bench/membw.json" <<'PY'
import json, os, sys
d = json.load(open(sys.argv[1]))
line = f"kiln[{d['engine']}, {d.get('activations', 'exact')}] " + " ".join(f"{r['test']}={r['tokens_per_second']:.1f}±{r['stddev']:.1f} tok/s" for r in d["results"])
peer = {}
if os.path.exists(sys.argv[2]):
    for r in json.load(open(sys.argv[2])):
        name = f"pp{r['n_prompt']}" if r["n_gen"] == 0 else f"tg{r['n_gen']}"
        peer[name] = r["avg_ts"]
ratios = [f"{r['test']} {r['tokens_per_second'] / peer[r['test']]:.2f}x" for r in d["results"] if r["test"] in peer]
bound = ""
bw = json.load(open(sys.argv[3]))["read_gb_per_s"]
per_token = d.get("weight_bytes_per_token")
tg = [r for r in d["results"] if r["test"].startswith("tg")]
if per_token and tg:
    limit = bw * 1e9 / per_token
    bound = (f" | {per_token / 1e6:.1f} MB/token, bound {limit:.0f} tok/s at {bw:.1f} GB/s,"
             f" {tg[0]['test']} at {100 * tg[0]['tokens_per_second'] / limit:.0f}% of it")
print(line + f" (threads={d['threads']})" + (" | vs llama.cpp: " + ", ".join(ratios) if ratios else "") + bound)
PY
done
# Batched decode (issue 8, point 4): BATCH sequences decoded together against one, decode steps only.
cargo build --quiet --release -p kiln-llama --example bench_batch
batch_bin="${CARGO_TARGET_DIR:-target}/release/examples/bench_batch"
for activations in exact int8; do
  for _ in $(seq "$REPS"); do
    RAYON_NUM_THREADS="$THREADS" "$batch_bin" "$MODEL" "${BATCH:-8}" 64 "$activations"
  done >"$CACHE/bench/kiln-batch-$activations.jsonl"
  python3 - "$CACHE/bench/kiln-batch-$activations.jsonl" "$activations" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
one = [r["one_tokens_per_s"] for r in runs]
many = [r["batch_tokens_per_s"] for r in runs]
ratio = [r["ratio"] for r in runs]
print(f"kiln[cpu, {sys.argv[2]}] batch of {runs[0]['sequences']}: 1 sequence {statistics.median(one):.1f} tok/s,"
      f" {runs[0]['sequences']} sequences {statistics.median(many):.1f} tok/s, ratio {statistics.median(ratio):.2f}x"
      f" (runs {min(ratio):.2f}-{max(ratio):.2f}x)")
PY
done
