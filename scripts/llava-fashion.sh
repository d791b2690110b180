#!/usr/bin/env bash
# LLaVA stage 1 on Fashion-MNIST (docs/MULTIMODAL.md): trains a projector from the frozen vision tower of
# the CLIP made by scripts/clip-fashion.sh into frozen SmolLM2-135M-Instruct, then asks SmolLM2 to name the
# clothing in held-out test images. ~10 minutes on 2 cores after the CLIP run.
#
#   bash scripts/llava-fashion.sh [key=value ...]   (train=3000 test=500 steps=300 batch=8 lr=2e-3 out=DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${KILN_CACHE:-$HOME/.cache/kiln}"
[ -f "$CACHE/runs/clip-fashion/model.safetensors" ] || bash scripts/clip-fashion.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
cargo build --release -q -p kiln-llava --example fashion_projector
"$CARGO_TARGET_DIR/release/examples/fashion_projector" train=3000 test=500 steps=300 batch=8 lr=2e-3 "$@"
