#!/usr/bin/env bash
# Fuzzes every parser of outside input with cargo fuzz (libFuzzer, AddressSanitizer, debug
# assertions and overflow checks on) for a bounded time per target (issue 9):
#
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Targets (crates/kiln-fuzz): gguf, safetensors, model_config, preprocessor_config,
# adapter_config, chat_template, clip_image, http_body, serve_config. Each starts from its seeds
# (fuzz/seeds/<target>, written by tools/make_fuzz_seeds.py) and a corpus kept between runs in
# $KILN_FUZZ_CORPUS (default ~/.cache/kiln/fuzz-corpus). A crash, a timeout (10 s per input) or
# memory past 2 GiB fails the script and leaves the input in fuzz/artifacts/<target>/; fix it and
# copy the input to fuzz/regressions/<target>/, which `cargo test -p kiln-fuzz` replays.
#
# cargo fuzz needs a nightly toolchain (the sanitizer flags); the machine's rustup has one.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET="${1:-30}"
shift || true
ALL=(gguf safetensors model_config preprocessor_config adapter_config chat_template clip_image http_body serve_config)
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL[@]}")
TOOLCHAIN="${KILN_FUZZ_TOOLCHAIN:-nightly}"
TARGET_DIR="${KILN_FUZZ_TARGET_DIR:-$HOME/.cache/kiln/target-fuzz}"
CORPUS="${KILN_FUZZ_CORPUS:-$HOME/.cache/kiln/fuzz-corpus}"

if ! rustup run "$TOOLCHAIN" rustc --version >/dev/null 2>&1; then
  echo "fuzz.sh: the rustup toolchain '$TOOLCHAIN' is missing (cargo fuzz needs nightly);" \
       "set KILN_FUZZ_TOOLCHAIN to an installed nightly" >&2
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install --quiet --locked cargo-fuzz --version 0.13.2
fi

FLAGS=(-O -a --target-dir "$TARGET_DIR")
if ! out=$(cd fuzz && cargo "+$TOOLCHAIN" fuzz build "${FLAGS[@]}" 2>&1); then
  echo "$out" | tail -40 >&2
  echo "fuzz.sh: the fuzz targets do not build" >&2
  exit 1
fi

printf '%-20s %10s %8s %8s %s\n' target runs cov corpus result
failed=0
for t in "${TARGETS[@]}"; do
  mkdir -p "$CORPUS/$t" "fuzz/artifacts/$t"
  log="$(mktemp)"
  set +e
  (cd fuzz && cargo "+$TOOLCHAIN" fuzz run "${FLAGS[@]}" "$t" "$CORPUS/$t" "seeds/$t" -- \
      -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
      -print_final_stats=1 -artifact_prefix="artifacts/$t/") >"$log" 2>&1
  rc=$?
  set -e
  runs=$(grep -oE "stat::number_of_executed_units: [0-9]+" "$log" | grep -oE "[0-9]+$" || echo "?")
  cov=$(grep -oE "cov: [0-9]+" "$log" | tail -1 | grep -oE "[0-9]+" || echo "?")
  files=$(find "$CORPUS/$t" -type f | wc -l)
  if [ $rc -eq 0 ]; then
    printf '%-20s %10s %8s %8s %s\n' "$t" "$runs" "$cov" "$files" ok
  else
    printf '%-20s %10s %8s %8s %s\n' "$t" "$runs" "$cov" "$files" "FAILED (rc $rc)"
    grep -E "ERROR|panicked|Test unit written|SUMMARY|deadly signal|timeout|out-of-memory" "$log" | head -20 >&2
    failed=1
  fi
  rm -f "$log"
done
exit $failed
