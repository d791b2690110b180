#!/usr/bin/env python3
"""Writes crates/kiln-clip/tests/fixtures/clip_models/quick_gelu_p4_lora/: a PEFT LoRA adapter on the
tiny `quick_gelu_p4` CLIP fixture (q_proj, v_proj, fc1 of both towers and visual_projection; random
non-zero A and B; rsLoRA off, r=4, alpha=8) and PEFT's outputs on the fixture's inputs
(`expected.safetensors`: image_embeds, text_embeds, logits_per_image), for kiln-clip's LoRA tests.

    python3 tools/make_clip_lora_fixtures.py
"""
import os

import peft
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import CLIPModel

HERE = os.path.dirname(os.path.abspath(__file__))
BASE = os.path.join(HERE, "..", "crates", "kiln-clip", "tests", "fixtures", "clip_models", "quick_gelu_p4")
OUT = BASE + "_lora"


def main():
    model = CLIPModel.from_pretrained(BASE).eval()
    cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                     target_modules=["q_proj", "v_proj", "fc1", "visual_projection"])
    model = get_peft_model(model, cfg)
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    os.makedirs(OUT, exist_ok=True)
    adir = os.path.join(OUT, "adapter")
    model.save_pretrained(adir)
    # No machine paths in the fixture.
    import json
    cpath = os.path.join(adir, "adapter_config.json")
    c = json.load(open(cpath))
    c["base_model_name_or_path"] = "quick_gelu_p4"
    json.dump(c, open(cpath, "w"), indent=2, sort_keys=True)
    if os.path.exists(os.path.join(adir, "README.md")):
        os.remove(os.path.join(adir, "README.md"))
    inputs = load_file(os.path.join(BASE, "expected.safetensors"))
    with torch.no_grad():
        res = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                    pixel_values=inputs["pixel_values"])
    save_file({"image_embeds": res.image_embeds.contiguous(), "text_embeds": res.text_embeds.contiguous(),
               "logits_per_image": res.logits_per_image.contiguous()},
              os.path.join(OUT, "expected.safetensors"))
    print("peft", peft.__version__, "modules:", sum(1 for n, _ in model.named_parameters() if "lora_A" in n))


if __name__ == "__main__":
    main()
