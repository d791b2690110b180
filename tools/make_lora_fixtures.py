#!/usr/bin/env python3
"""Build PEFT LoRA adapters on the tiny random Llama fixtures, plus reference logits and one
training step's loss and adapter gradients.

For every adapter under ``tests/fixtures/lora/<name>/``:

* ``adapter_config.json`` + ``adapter_model.safetensors`` as ``PeftModel.save_pretrained`` writes
  them (random non-zero A and B, so the adapter changes the output),
* ``reference.json``: the base fixture's name, input ids, and the float32 logits of
  ``PeftModel.from_pretrained(base, dir)`` loaded back from disk (what a loader sees).

``tests/fixtures/lora/train_step/`` holds one LoRA training step on the ``gqa`` fixture: the
adapter before the step, a padded batch with labels (-100 on prompt and padding), and PEFT's
mean cross-entropy loss and the gradients of every lora_A / lora_B (float32, eval mode so that
dropout is off; dropout is tested separately in Rust). ``qlora_reference.json`` and
``qlora_grads.safetensors`` there are the same step with QLoRA's base: every decoder projection
rounded to NF4 as bitsandbytes stores it (see ``make_qlora_reference``).

Deterministic (fixed seeds, one thread), runs in seconds on CPU.
Usage:  python tools/make_lora_fixtures.py [--out tests/fixtures/lora]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import peft  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import LlamaForCausalLM  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
BASES = REPO / "tests" / "fixtures" / "llama"

ADAPTERS = {
    # The classic: q and v, alpha / r scaling.
    "qv_basic": ("gqa", dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])),
    # rsLoRA on every linear layer (PEFT's all-linear shorthand leaves lm_head out).
    "rslora_all_linear": (
        "gqa",
        dict(r=8, lora_alpha=16, use_rslora=True, target_modules="all-linear"),
    ),
    # Per-module ranks and alphas, only layer 1.
    "patterns_layer1": (
        "llama3_rope",
        dict(
            r=4,
            lora_alpha=8,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
            rank_pattern={"down_proj": 2, r"layers.1.self_attn.q_proj": 6},
            alpha_pattern={"v_proj": 32},
            layers_to_transform=[1],
        ),
    ),
    # A regex for target_modules, including the (tied) output layer.
    "regex_lm_head": (
        "tied_mha",
        dict(r=2, lora_alpha=4, target_modules=r".*layers\.\d+\.(self_attn\.k_proj|mlp\.up_proj)|lm_head"),
    ),
}


def load_base(name: str) -> LlamaForCausalLM:
    model = LlamaForCausalLM.from_pretrained(BASES / name, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    return model


def randomize(model, seed: int, scale: float = 0.2) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_A" in n or "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=gen) * scale)


def f32_list(t: torch.Tensor):
    return t.detach().to(torch.float32).tolist()


def tidy(d: Path, base: str) -> None:
    """Drops PEFT's model card and makes the base path relative to the repository."""
    (d / "README.md").unlink(missing_ok=True)
    cfg_path = d / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["base_model_name_or_path"] = f"tests/fixtures/llama/{base}"
    if isinstance(cfg.get("target_modules"), list):
        cfg["target_modules"] = sorted(cfg["target_modules"])  # PEFT stores a set
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def make_adapter(name: str, base: str, kwargs: dict, out: Path, seed: int) -> None:
    d = out / name
    shutil.rmtree(d, ignore_errors=True)
    model = get_peft_model(load_base(base), LoraConfig(task_type="CAUSAL_LM", **kwargs))
    randomize(model, seed)
    # A tied lm_head would make PEFT also save the full embedding matrix; Kiln refuses such
    # files (see kiln-lora), so the fixture saves the LoRA factors only.
    model.save_pretrained(d, save_embedding_layers=False)
    tidy(d, base)
    # Reload from disk as a user would.
    loaded = PeftModel.from_pretrained(load_base(base), d)
    loaded.eval()
    ref = json.loads((BASES / base / "reference.json").read_text())
    ids = ref["input_ids"]
    with torch.no_grad():
        logits = loaded(input_ids=torch.tensor(ids)).logits
        merged = loaded.merge_and_unload()(input_ids=torch.tensor(ids)).logits
    (d / "reference.json").write_text(
        json.dumps(
            {
                "base": base,
                "input_ids": ids,
                "logits": f32_list(logits),
                "merged_max_diff": float((merged - logits).abs().max()),
                "peft_version": peft.__version__,
                "transformers_version": transformers.__version__,
                "torch_version": torch.__version__,
            },
            separators=(",", ":"),
        )
        + "\n"
    )
    print(f"{name}: {sum(1 for _ in d.iterdir())} files, logits {tuple(logits.shape)}")


def nf4_rounded_base(name: str) -> LlamaForCausalLM:
    """The base with every decoder projection rounded to NF4 exactly as bitsandbytes stores it
    (``quantize_4bit(nf4, blocksize=64, compress_statistics=True)`` then ``dequantize_4bit``),
    kept in float32 (QLoRA with compute dtype float32)."""
    import bitsandbytes.functional as bnbf

    base = load_base(name)
    with torch.no_grad():
        for name, mod in base.named_modules():
            if name.startswith("model.layers.") and name.endswith("_proj"):
                w = mod.weight.data
                # Quantized as bitsandbytes does (it flattens the weight); dequantized from the
                # flat form, because bitsandbytes' AVX-512 CPU dequantizer mis-reads blocks that
                # straddle rows of a 2-D weight (down_proj here, 176 columns).
                q, st = bnbf.quantize_4bit(w.flatten(), quant_type="nf4", blocksize=64, compress_statistics=True)
                mod.weight.data = bnbf.dequantize_4bit(q, st).to(torch.float32).reshape(w.shape)
    return base


def make_qlora_reference(out: Path) -> None:
    """QLoRA's numerics: the ``gqa`` base rounded to NF4 (``nf4_rounded_base``) with the
    ``qv_basic`` adapter on top."""
    base = nf4_rounded_base("gqa")
    model = PeftModel.from_pretrained(base, out / "qv_basic")
    model.eval()
    ref = json.loads((BASES / "gqa" / "reference.json").read_text())
    with torch.no_grad():
        logits = model(input_ids=torch.tensor(ref["input_ids"])).logits
    import bitsandbytes

    (out / "qlora_qv_reference.json").write_text(
        json.dumps(
            {
                "base": "gqa",
                "adapter": "qv_basic",
                "input_ids": ref["input_ids"],
                "logits": f32_list(logits),
                "bitsandbytes_version": bitsandbytes.__version__,
            },
            separators=(",", ":"),
        )
        + "\n"
    )
    print(f"qlora_qv_reference: logits {tuple(logits.shape)}")


def make_train_step(out: Path) -> None:
    d = out / "train_step"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    cfg = LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, lora_dropout=0.0,
                     target_modules=["q_proj", "v_proj", "down_proj"])
    model = get_peft_model(load_base("gqa"), cfg)
    randomize(model, 1234, scale=0.1)
    model.save_pretrained(d / "adapter")
    tidy(d / "adapter", "gqa")
    # Two sequences of different length, right-padded; loss only on the "answer" part.
    gen = torch.Generator().manual_seed(99)
    lens, prompt = [10, 7], [4, 3]
    pad = 0
    t = max(lens)
    ids = torch.full((2, t), pad, dtype=torch.long)
    labels = torch.full((2, t), -100, dtype=torch.long)
    mask = torch.zeros((2, t), dtype=torch.long)
    for b, (n, p) in enumerate(zip(lens, prompt)):
        seq = torch.randint(5, 384, (n,), generator=gen)
        ids[b, :n] = seq
        labels[b, p:n] = seq[p:]
        mask[b, :n] = 1
    model.train()  # dropout is 0, so train mode is deterministic
    outp = model(input_ids=ids, attention_mask=mask, labels=labels)
    outp.loss.backward()
    grads = {}
    for n, p in model.named_parameters():
        if p.grad is not None:
            key = n.replace(".default", "")
            grads[key] = p.grad.detach().contiguous()
    save_file(grads, d / "grads.safetensors")
    (d / "reference.json").write_text(
        json.dumps(
            {
                "base": "gqa",
                "input_ids": ids.tolist(),
                "labels": labels.tolist(),
                "attention_mask": mask.tolist(),
                "loss": float(outp.loss),
                "note": "loss = mean cross-entropy over label tokens after the causal shift; "
                "grads.safetensors holds d loss / d lora_{A,B} under PEFT's saved key names",
                "peft_version": peft.__version__,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"train_step: loss {float(outp.loss):.6f}, {len(grads)} gradient tensors")


def make_qlora_train_step(out: Path) -> None:
    """The training step of ``make_train_step`` (same adapter, batch and labels) on the NF4-rounded
    base: QLoRA's loss and adapter gradients."""
    import bitsandbytes

    d = out / "train_step"
    ref = json.loads((d / "reference.json").read_text())
    model = PeftModel.from_pretrained(nf4_rounded_base("gqa"), d / "adapter", is_trainable=True)
    model.train()  # dropout is 0
    outp = model(
        input_ids=torch.tensor(ref["input_ids"]),
        attention_mask=torch.tensor(ref["attention_mask"]),
        labels=torch.tensor(ref["labels"]),
    )
    outp.loss.backward()
    grads = {n.replace(".default", ""): p.grad.detach().contiguous()
             for n, p in model.named_parameters() if p.grad is not None}
    save_file(grads, d / "qlora_grads.safetensors")
    (d / "qlora_reference.json").write_text(
        json.dumps(
            {
                "base": "gqa, decoder projections rounded to NF4 (bitsandbytes, block 64, double quantization)",
                "loss": float(outp.loss),
                "peft_version": peft.__version__,
                "bitsandbytes_version": bitsandbytes.__version__,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"qlora train_step: loss {float(outp.loss):.6f}, {len(grads)} gradient tensors")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(REPO / "tests" / "fixtures" / "lora"))
    ap.add_argument("--only-qlora-train-step", action="store_true",
                    help="only (re)make the QLoRA training step from the existing train_step fixture")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.only_qlora_train_step:
        make_qlora_train_step(out)
        return 0
    for i, (name, (base, kwargs)) in enumerate(ADAPTERS.items()):
        make_adapter(name, base, kwargs, out, seed=100 + i)
    make_qlora_reference(out)
    make_train_step(out)
    make_qlora_train_step(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
