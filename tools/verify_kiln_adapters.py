#!/usr/bin/env python3
"""Kiln -> PEFT / transformers: adapters trained by `kiln finetune` load in PEFT, and `kiln merge`
output loads in transformers, with the same logits.

1. Trains a LoRA adapter with the `kiln` binary on the ``gqa`` fixture (r 4, q/v/down, 12 steps
   of a small chat set, dropout on, so the factors are far from their initialisation) into
   ``tests/fixtures/lora/kiln_trained/adapter``.
2. Loads it with ``PeftModel.from_pretrained`` and records PEFT's float32 logits on fixed ids in
   ``tests/fixtures/lora/kiln_trained/peft_reference.json`` (the Rust test
   ``kiln_trained_adapters_match_peft`` compares Kiln's logits against them, no Python in CI).
3. Runs ``kiln merge`` into a temporary directory, loads it with
   ``LlamaForCausalLM.from_pretrained`` and asserts its logits equal PEFT's unmerged ones within
   1e-4; the measured difference is recorded in the same JSON.

Usage: python tools/verify_kiln_adapters.py --kiln target/release/kiln
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import peft  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from peft import PeftModel  # noqa: E402
from transformers import LlamaForCausalLM  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
BASE = REPO / "tests" / "fixtures" / "llama" / "gqa"
OUT = REPO / "tests" / "fixtures" / "lora" / "kiln_trained"
IDS = [[1, 45, 17, 99, 3, 250, 8, 77, 300, 12, 5, 2], [1, 200, 201, 202, 9, 9, 100, 40, 41, 42, 43, 4]]
TOL = 1e-4


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor(ids)).logits.to(torch.float32)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kiln", required=True, help="path to the kiln binary")
    args = ap.parse_args()
    torch.set_num_threads(1)
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    data = OUT / "train.jsonl"
    rows = []
    for i in range(12):
        rows.append(json.dumps({"messages": [
            {"role": "user", "content": f"Which shelf holds item {i}?"},
            {"role": "assistant", "content": f"Item {i} is on shelf {i % 4}."},
        ]}))
    data.write_text("\n".join(rows) + "\n")
    adapter = OUT / "adapter"
    subprocess.run(
        [args.kiln, "finetune", "--model", str(BASE), "--data", str(data), "--output", str(adapter),
         "--r", "4", "--alpha", "8", "--target-modules", "q_proj,v_proj,down_proj", "--lr", "1e-2",
         "--batch-size", "3", "--epochs", "3", "--dropout", "0.1", "--json"],
        check=True, stdout=subprocess.DEVNULL,
    )
    # Keep the adapter only (checkpoints and curves are not fixtures).
    for p in adapter.iterdir():
        if p.name not in ("adapter_config.json", "adapter_model.safetensors"):
            shutil.rmtree(p) if p.is_dir() else p.unlink()

    base = LlamaForCausalLM.from_pretrained(BASE, dtype=torch.float32, attn_implementation="eager")
    model = PeftModel.from_pretrained(base, adapter)
    model.eval()
    peft_logits = logits(model, IDS)
    base_logits = logits(LlamaForCausalLM.from_pretrained(BASE, dtype=torch.float32, attn_implementation="eager"), IDS)

    with tempfile.TemporaryDirectory() as tmp:
        merged = Path(tmp) / "merged"
        subprocess.run([args.kiln, "merge", "--model", str(BASE), "--adapter", str(adapter),
                        "--output", str(merged)], check=True, stdout=subprocess.DEVNULL)
        m = LlamaForCausalLM.from_pretrained(merged, dtype=torch.float32, attn_implementation="eager")
        merged_diff = float((logits(m, IDS) - peft_logits).abs().max())
    effect = float((peft_logits - base_logits).abs().max())
    print(f"PEFT loads the Kiln adapter: max |logit change vs base| {effect:.4f}")
    print(f"transformers loads `kiln merge` output: max |diff vs PEFT unmerged| {merged_diff:.2e}")
    assert effect > 1e-2, "the trained adapter does not change the model"
    assert merged_diff <= TOL, f"merged model differs from PEFT's unmerged adapter by {merged_diff}"
    (OUT / "peft_reference.json").write_text(json.dumps({
        "base": "gqa",
        "input_ids": IDS,
        "logits": peft_logits.tolist(),
        "merged_vs_peft_max_diff": merged_diff,
        "adapter_effect_max": effect,
        "peft_version": peft.__version__,
        "transformers_version": transformers.__version__,
    }, separators=(",", ":")) + "\n")
    data.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
