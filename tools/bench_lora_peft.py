#!/usr/bin/env python3
"""PEFT + PyTorch LoRA training speed on SmolLM2-135M-Instruct, the peer of `kiln finetune`.

Same model (the GGUF dequantized to float32 by transformers), same data (the first lines of
datasets/retail/faq.txt repeated, tokenized and cut to --seq tokens, batch --batch), same
adapter (r 8, alpha 16, q_proj/v_proj, dropout 0.05), AdamW lr 2e-4. Reports training tokens/s
(batch x seq per optimizer step) over --steps steps after one warm-up step, with
torch.set_num_threads(--threads).

Usage: python tools/bench_lora_peft.py [--steps 6] [--batch 4] [--seq 128] [--threads 2]
Prints one JSON line: {"peer": "peft", "tokens_per_second": ..., ...}
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import peft  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from peft import LoraConfig, get_peft_model  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
GGUF = Path(os.environ.get("KILN_CACHE", Path.home() / ".cache/kiln")) / "assets" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data", default=str(REPO / "target" / "bench-lora.txt"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(GGUF.parent, gguf_file=GGUF.name)
    model = AutoModelForCausalLM.from_pretrained(GGUF.parent, gguf_file=GGUF.name, dtype=torch.float32)
    model = get_peft_model(
        model,
        LoraConfig(task_type="CAUSAL_LM", r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "v_proj"]),
    )
    lines = [l for l in Path(args.data).read_text().splitlines() if l.strip()]
    rows = []
    for line in lines:
        ids = tok(line)["input_ids"][: args.seq]
        if len(ids) == args.seq:
            rows.append(ids)
    if len(rows) < args.batch:
        raise SystemExit(f"{args.data}: fewer than {args.batch} lines of {args.seq} tokens")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4, weight_decay=0.01)
    model.train()

    def step(i: int) -> float:
        batch = torch.tensor([rows[(i * args.batch + k) % len(rows)] for k in range(args.batch)])
        out = model(input_ids=batch, labels=batch)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        return float(out.loss)

    step(0)  # warm-up
    t0 = time.perf_counter()
    for i in range(1, args.steps + 1):
        step(i)
    dt = time.perf_counter() - t0
    tps = args.steps * args.batch * args.seq / dt
    print(json.dumps({
        "peer": "peft", "tokens_per_second": tps, "steps": args.steps, "batch": args.batch,
        "seq": args.seq, "threads": args.threads, "torch": torch.__version__,
        "transformers": transformers.__version__, "peft": peft.__version__,
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
