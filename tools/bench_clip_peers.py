#!/usr/bin/env python3
"""Image embeddings per second of transformers' CLIPModel (random weights, default CLIPConfig: the
ViT-B/32 shapes) on preprocessed 224x224 pixel batches, on CPU; prints one JSON line. The Kiln side is
crates/kiln-clip/examples/bench_embed.rs; scripts/bench-clip.sh runs both with the same thread count.

    python3 tools/bench_clip_peers.py [BATCH] [ROUNDS] [THREADS]
"""
import json
import sys
import time

import torch
from transformers import CLIPConfig, CLIPModel


def main():
    batch = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig()).eval()
    pixels = torch.randn(batch, 3, 224, 224)
    with torch.inference_mode():
        model.get_image_features(pixel_values=pixels)
        t = time.perf_counter()
        for _ in range(rounds):
            model.get_image_features(pixel_values=pixels)
        secs = time.perf_counter() - t
    print(json.dumps({"engine": f"transformers {__import__('transformers').__version__} / torch {torch.__version__}",
                      "batch": batch, "rounds": rounds, "images_per_second": round(batch * rounds / secs, 2),
                      "threads": threads}))


if __name__ == "__main__":
    main()
