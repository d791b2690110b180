#!/usr/bin/env bash
# Measures the llama.cpp peer: runs llama-bench (built by scripts/build-llama-cpp.sh, which this
# script calls; a no-op when already built) on SmolLM2-135M-Instruct Q4_1, CPU only, and writes
#   $KILN_CACHE/bench/llama-bench.json       llama-bench's own JSON (one object per test)
#   $KILN_CACHE/bench/llama-bench.md         the same results as a markdown table
#   $KILN_CACHE/bench/llama-bench.meta.json  command line, CPU model, other CPU use before/during
# then prints one summary line on stdout:
#   llama.cpp pp512=X tok/s tg128=Y tok/s pp64=Z tok/s (threads=T, reps=R)[ CONTENDED]
#
# Tests: prompt processing of 512 and of 64 tokens (pp512, pp64: one batch each, tokens/s over
# the whole prompt) and generation of 128 tokens (tg128: one token per step), each repeated REPS
# times after one warmup run; X/Y/Z are llama-bench's mean tok/s (stddev in the .md/.json).
#
# Usage: scripts/bench-peers.sh
# Environment:
#   KILN_CACHE   cache root (default ~/.cache/kiln)
#   MODEL        GGUF to run (default $KILN_CACHE/assets/SmolLM2-135M-Instruct.Q4_1.gguf)
#   THREADS      threads (default 2; use the same value for Kiln)
#   REPS         repetitions per test (default 3)
#   NO_WARMUP=1  pass --no-warmup
#   EXTRA_ARGS   more llama-bench arguments (e.g. "-fa on")
#   MAX_BUSY     warn if other work keeps the CPUs more than this % busy just before the run
#                (measured from /proc/stat over 2 s; default 10)
#   WAIT_IDLE    wait up to this many seconds for the CPUs to go idle first (default 0)
#   ATTEMPTS     run up to this many times until a run is not contended (default 1); the last
#                run's results are kept
# On a 2-core machine anything else running (a cargo build) skews the numbers: the share of CPU
# time taken by other work before and during the run is recorded in the meta file ("contended")
# and a warning is printed when it is above MAX_BUSY.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${KILN_CACHE:-$HOME/.cache/kiln}"
MODEL="${MODEL:-$CACHE/assets/SmolLM2-135M-Instruct.Q4_1.gguf}"
THREADS="${THREADS:-2}"
REPS="${REPS:-3}"
MAX_BUSY="${MAX_BUSY:-10}"
WAIT_IDLE="${WAIT_IDLE:-0}"
ATTEMPTS="${ATTEMPTS:-1}"
OUT="$CACHE/bench"

log() { printf '[bench-peers] %s\n' "$*" >&2; }

[ -f "$MODEL" ] || { log "no model at $MODEL; run scripts/fetch-assets.sh first"; exit 2; }
command -v python3 >/dev/null 2>&1 || { log "python3 is needed to summarise the JSON"; exit 2; }
BENCH=$(bash "$HERE/build-llama-cpp.sh")
[ -x "$BENCH" ] || { log "llama-bench not found at $BENCH"; exit 1; }
mkdir -p "$OUT"

# Percentage of CPU time (all CPUs) not idle over the next 2 seconds. The load average lags by
# minutes, so it cannot tell whether a build is running *now*.
busy_pct() {
  local a b
  a=$(head -1 /proc/stat); sleep 2; b=$(head -1 /proc/stat)
  python3 -c '
import sys
a = [int(x) for x in sys.argv[1].split()[1:]]; b = [int(x) for x in sys.argv[2].split()[1:]]
d = [y - x for x, y in zip(a, b)]; idle = d[3] + d[4]
print(round(100 * (sum(d) - idle) / max(sum(d), 1)))' "$a" "$b"
}
CMD=("$BENCH" -m "$MODEL" -t "$THREADS" -ngl 0 -p 512,64 -n 128 -r "$REPS")
[ "${NO_WARMUP:-0}" = 1 ] && CMD+=(--no-warmup)
# shellcheck disable=SC2206
[ -n "${EXTRA_ARGS:-}" ] && CMD+=($EXTRA_ARGS)

for attempt in $(seq 1 "$ATTEMPTS"); do
  BUSY=$(busy_pct); waited=0
  while [ "$BUSY" -gt "$MAX_BUSY" ] && [ "$waited" -lt "$WAIT_IDLE" ]; do
    sleep 8; waited=$((waited + 10)); BUSY=$(busy_pct)
  done
  LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
  if [ "$BUSY" -gt "$MAX_BUSY" ]; then
    log "WARNING: the CPUs are ${BUSY}% busy with other work (load $LOAD_BEFORE, $(nproc) CPUs): the numbers will be low"
  fi

  log "running (attempt $attempt/$ATTEMPTS): ${CMD[*]} -o json"
  STAT_BEFORE=$(head -1 /proc/stat)
  TIMEFORMAT='%U %S'
  { time "${CMD[@]}" -o json >"$OUT/llama-bench.json.tmp" 2>"$OUT/llama-bench.log" ; } 2>"$OUT/llama-bench.cputime" \
    || { cat "$OUT/llama-bench.log" >&2; rm -f "$OUT/llama-bench.json.tmp"; log "llama-bench failed"; exit 1; }
  STAT_AFTER=$(head -1 /proc/stat)
  mv "$OUT/llama-bench.json.tmp" "$OUT/llama-bench.json"
  LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
  # CPU time that went to anything but llama-bench during the run, as % of all CPU time.
  OTHER=$(python3 -c '
import sys
a = [int(x) for x in sys.argv[1].split()[1:]]; b = [int(x) for x in sys.argv[2].split()[1:]]
d = [y - x for x, y in zip(a, b)]; hz = float(sys.argv[4])
own = sum(float(x) for x in sys.argv[3].split()) * hz
print(max(0, round(100 * (sum(d) - d[3] - d[4] - own) / max(sum(d), 1))))' \
    "$STAT_BEFORE" "$STAT_AFTER" "$(tail -1 "$OUT/llama-bench.cputime")" "$(getconf CLK_TCK)")
  [ "$OTHER" -le "$MAX_BUSY" ] && [ "$BUSY" -le "$MAX_BUSY" ] && break
  log "WARNING: other work took ${OTHER}% of the CPUs during the run: these numbers are contended"
done

CPU_MODEL=$(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -1)
python3 - "$OUT" "$CPU_MODEL" "$MAX_BUSY" "$BUSY" "$OTHER" "$LOAD_BEFORE" "$LOAD_AFTER" "$THREADS" "$REPS" "${CMD[@]}" <<'PY'
import json, sys
out, cpu, max_busy, busy, other, load_before, load_after, threads, reps, *cmd = sys.argv[1:]
res = json.load(open(f"{out}/llama-bench.json"))

def name(r):
    return f"pp{r['n_prompt']}" if r["n_gen"] == 0 else (f"tg{r['n_gen']}" if r["n_prompt"] == 0 else f"pp{r['n_prompt']}+tg{r['n_gen']}")

r0 = res[0]
lines = [
    f"llama.cpp {r0.get('build_commit')} (build {r0.get('build_number')}), {r0.get('model_type')}, "
    f"{r0.get('cpu_info')}, backend {r0.get('backends')}, threads {r0.get('n_threads')}, "
    f"flash_attn {({-1: 'auto', 0: 'off', 1: 'on'}).get(r0.get('flash_attn'), r0.get('flash_attn'))}, type_k/v {r0.get('type_k')}/{r0.get('type_v')}",
    "",
    "| test | tok/s (mean ± stddev) | ms per run (mean) | reps |",
    "| ---- | --------------------: | ----------------: | ---: |",
]
by = {}
for r in res:
    n = name(r)
    by[n] = r
    lines.append(f"| {n} | {r['avg_ts']:.2f} ± {r['stddev_ts']:.2f} | {r['avg_ns'] / 1e6:.2f} | {len(r.get('samples_ts', []))} |")
open(f"{out}/llama-bench.md", "w").write("\n".join(lines) + "\n")
json.dump({"command": " ".join(cmd) + " -o json", "cpu_model": cpu, "cpu_busy_pct_before": int(busy), "other_cpu_pct_during": int(other),
           "contended": max(int(busy), int(other)) > int(max_busy), "load_before": load_before,
           "load_after": load_after, "build_commit": r0.get("build_commit"), "cpu_info": r0.get("cpu_info")},
          open(f"{out}/llama-bench.meta.json", "w"), indent=2)

def ts(n):
    return f"{by[n]['avg_ts']:.1f}" if n in by else "n/a"
print(f"llama.cpp pp512={ts('pp512')} tok/s tg128={ts('tg128')} tok/s pp64={ts('pp64')} tok/s (threads={threads}, reps={reps})"
      + (" CONTENDED" if max(int(busy), int(other)) > int(max_busy) else ""))
PY
log "results: $OUT/llama-bench.json, $OUT/llama-bench.md (other CPU use: ${BUSY}% before, ${OTHER}% during)"
