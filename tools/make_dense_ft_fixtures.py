#!/usr/bin/env python3
"""Writes tests/fixtures/dense_ft/<base>/: one full fine-tuning step of transformers'
LlamaForCausalLM on a tiny fixture model (tests/fixtures/llama/<base>), for kiln-llama's dense
(`full` / `partial`) training: a right-padded batch with labels (-100 on prompt and padding), the mean
cross-entropy over label tokens, and the gradient of every parameter (float32, eval mode).

    python3 tools/make_dense_ft_fixtures.py

Bases: `tied_mha` (tied embeddings: the embedding gradient sums its input and output uses) and `gqa`.
"""
import json
from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file
from transformers import LlamaForCausalLM

ROOT = Path(__file__).resolve().parent.parent / "tests" / "fixtures"


def make(base: str) -> None:
    model = LlamaForCausalLM.from_pretrained(ROOT / "llama" / base, dtype=torch.float32,
                                             attn_implementation="eager").eval()
    gen = torch.Generator().manual_seed(7)
    lens, prompt = [9, 6], [3, 2]
    t = max(lens)
    ids = torch.zeros((2, t), dtype=torch.long)
    labels = torch.full((2, t), -100, dtype=torch.long)
    mask = torch.zeros((2, t), dtype=torch.long)
    vocab = model.config.vocab_size
    for b, (n, p) in enumerate(zip(lens, prompt)):
        seq = torch.randint(5, vocab, (n,), generator=gen)
        ids[b, :n] = seq
        labels[b, p:n] = seq[p:]
        mask[b, :n] = 1
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    out.loss.backward()
    grads = {n: p.grad.detach().contiguous() for n, p in model.named_parameters() if p.grad is not None}
    d = ROOT / "dense_ft" / base
    d.mkdir(parents=True, exist_ok=True)
    save_file(grads, d / "grads.safetensors")
    (d / "reference.json").write_text(json.dumps({
        "base": base,
        "input_ids": ids.tolist(),
        "labels": labels.tolist(),
        "attention_mask": mask.tolist(),
        "loss": float(out.loss),
        "note": "loss = mean cross-entropy over label tokens after the causal shift; grads.safetensors "
                "holds d loss / d parameter for every parameter (HF names, PyTorch orientation)",
        "transformers_version": transformers.__version__,
    }, indent=1) + "\n")
    print(f"{base}: loss {float(out.loss):.6f}, {len(grads)} gradient tensors")


if __name__ == "__main__":
    for base in ["tied_mha", "gqa"]:
        make(base)
