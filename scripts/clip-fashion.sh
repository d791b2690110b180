#!/usr/bin/env bash
# kiln-clip's demonstration: trains a small CLIP from scratch on Fashion-MNIST's 60,000 training images
# with captions such as "a photo of a sneaker." (2 epochs, ~3 minutes on 2 cores), then reports
# zero-shot accuracy on the 10,000 test images (docs/MULTIMODAL.md).
#
#   bash scripts/clip-fashion.sh [OUT_DIR]     (default: $KILN_CACHE/runs/clip-fashion)
#
# The run is seeded; report.json holds the accuracy, loss.png the loss curve, and OUT_DIR is a
# Hugging Face CLIP directory (transformers' CLIPModel loads it; tools/verify_clip_checkpoint.py checks it).
set -euo pipefail
cd "$(dirname "$0")/.."
ASSETS=$(bash scripts/fetch-assets.sh | tail -1)
CACHE="${KILN_CACHE:-$HOME/.cache/kiln}"
OUT="${1:-$CACHE/runs/clip-fashion}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
cargo build --release -q -p kiln-cli
"$CARGO_TARGET_DIR/release/kiln" clip train \
  --init-config crates/kiln-clip/configs/fashion-tiny.json \
  --vocab "$ASSETS/clip/bpe_simple_vocab_16e6.txt.gz" \
  --fashion-mnist "$ASSETS/fashion-mnist" \
  --epochs 2 --batch-size 128 --lr 1e-3 --warmup 50 --seed 0 \
  --out "$OUT"
