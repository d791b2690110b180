#!/usr/bin/env bash
# Keeps the CUDA code compiling (issue 8): `cargo check` of the CLI (every crate's `cuda` feature) and
# of kiln-llama's GPU test with `--features cuda`, offline, with the LLVM that scripts/cuda-llvm.sh
# provides. On a machine with an NVIDIA GPU, RUN=1 also runs the GPU test on CUDA
# (crates/kiln-llama/tests/gpu.rs: logits within 1e-3 of the CPU's, transformers' greedy tokens).
# Builds into its own target directory ($CARGO_TARGET_DIR-cuda): the first check takes several
# minutes on 2 cores, later ones reuse it.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { echo "[cuda-check] $*" >&2; }
llvm="$(bash scripts/cuda-llvm.sh)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kiln/target}-cuda"
start=$(date +%s)
# The crates the `cuda` feature adds come from crates.io like every other dependency (a fresh
# machine has none of them cached); the checks themselves then run offline, so that nothing but
# cargo's registry is reached.
cargo fetch --locked
XDG_DATA_HOME="$llvm" cargo check --offline --locked -p kiln-cli --features cuda
XDG_DATA_HOME="$llvm" cargo check --offline --locked -p kiln-llama --features cuda --tests
log "cargo check --features cuda: ok in $(( $(date +%s) - start )) s"
if [ "${RUN:-0}" = 1 ]; then
  XDG_DATA_HOME="$llvm" KILN_GPU_DEVICE=cuda \
    cargo test --offline --locked --release -p kiln-llama --features cuda --test gpu -- --nocapture
fi
