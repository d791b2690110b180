#!/usr/bin/env bash
# Side-by-side CLIP image-embedding throughput on CPU: Kiln (burn flex) against transformers/PyTorch,
# ViT-B/32 shapes, batch 8, same thread count. The ratio goes to docs/PERFORMANCE.md.
#
#   bash scripts/bench-clip.sh [BATCH] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
BATCH="${1:-8}"
ROUNDS="${2:-5}"
THREADS="${RAYON_NUM_THREADS:-$(nproc)}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kiln/target}"
cargo build --release -q -p kiln-clip --example bench_embed
RAYON_NUM_THREADS="$THREADS" "$CARGO_TARGET_DIR/release/examples/bench_embed" "$BATCH" "$ROUNDS" | tee /tmp/kiln-clip-bench.json
python3 tools/bench_clip_peers.py "$BATCH" "$ROUNDS" "$THREADS" | tee /tmp/peer-clip-bench.json
python3 - <<'PY'
import json
k = json.load(open("/tmp/kiln-clip-bench.json"))
p = json.load(open("/tmp/peer-clip-bench.json"))
print(f"kiln / transformers: {k['images_per_second'] / p['images_per_second']:.2f}x")
PY
