#!/usr/bin/env python3
"""Writes tests/fixtures/llava/<name>/: tiny random LlavaForConditionalGeneration checkpoints made by
transformers (config.json + model.safetensors as save_pretrained writes them) and expected.safetensors
with the inputs (pixel_values, input_ids holding the expanded image tokens) and transformers' logits,
for kiln-llava's parity tests.

    python3 tools/make_llava_fixtures.py

Configurations: `default_minus2` (CLS dropped, features of layer -2, gelu projector with bias, one
image) and `full_multilayer` (CLS kept, layers [-3, -1] concatenated, no projector bias, two images in a
batch of two).
"""
import os

import torch
from safetensors.torch import save_file
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "llava")
IMAGE_TOKEN = 100

CONFIGS = {
    "default_minus2": dict(
        vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                    image_size=16, patch_size=4, projection_dim=24, hidden_act="quick_gelu"),
        text=dict(vocab_size=128, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                  bos_token_id=1, eos_token_id=2),
        extra=dict(vision_feature_layer=-2, vision_feature_select_strategy="default",
                   projector_hidden_act="gelu", multimodal_projector_bias=True),
        batch=1,
    ),
    "full_multilayer": dict(
        vision=dict(hidden_size=24, intermediate_size=40, num_hidden_layers=3, num_attention_heads=2,
                    image_size=16, patch_size=8, projection_dim=16, hidden_act="gelu"),
        text=dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
                  bos_token_id=1, eos_token_id=2, tie_word_embeddings=False),
        extra=dict(vision_feature_layer=[-3, -1], vision_feature_select_strategy="full",
                   projector_hidden_act="gelu", multimodal_projector_bias=False),
        batch=2,
    ),
}


def main():
    for name, spec in CONFIGS.items():
        torch.manual_seed(sum(map(ord, name)))
        config = LlavaConfig(vision_config=CLIPVisionConfig(**spec["vision"]),
                             text_config=LlamaConfig(**spec["text"]),
                             image_token_index=IMAGE_TOKEN, **spec["extra"])
        model = LlavaForConditionalGeneration(config).eval()
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        out = os.path.join(OUT, name)
        os.makedirs(out, exist_ok=True)
        model.save_pretrained(out, safe_serialization=True)
        v = spec["vision"]
        grid = (v["image_size"] // v["patch_size"]) ** 2
        n_img = grid if spec["extra"]["vision_feature_select_strategy"] == "default" else grid + 1
        b = spec["batch"]
        g = torch.Generator().manual_seed(5)
        rows = []
        for r in range(b):
            pre = torch.randint(3, 99, (3 + r,), generator=g).tolist()
            post = torch.randint(3, 99, (5 - r,), generator=g).tolist()
            rows.append([1] + pre + [IMAGE_TOKEN] * n_img + post)
        ids = torch.tensor(rows)
        pixels = torch.randn(b, 3, v["image_size"], v["image_size"], generator=g)
        with torch.no_grad():
            logits = model(input_ids=ids, pixel_values=pixels).logits
        save_file({"pixel_values": pixels.contiguous(), "input_ids": ids.to(torch.int64).contiguous(),
                   "logits": logits.contiguous()}, os.path.join(out, "expected.safetensors"))
        print(name, tuple(ids.shape), tuple(logits.shape))
        if name == "default_minus2":
            hub_layout(out, os.path.join(OUT, name + "_hub_layout"))


def hub_layout(src, dst):
    """The same checkpoint under the keys of the llava-hf checkpoints on the Hub
    (`vision_tower.vision_model.*`, `language_model.model.*`, `language_model.lm_head.weight`)."""
    import shutil

    from safetensors.torch import load_file

    os.makedirs(dst, exist_ok=True)
    tensors = load_file(os.path.join(src, "model.safetensors"))
    renamed = {}
    for k, t in tensors.items():
        if k.startswith("vision_tower.") and not k.startswith("vision_tower.vision_model."):
            k = "vision_tower.vision_model." + k[len("vision_tower."):]
        renamed[k] = t
    save_file(renamed, os.path.join(dst, "model.safetensors"), metadata={"format": "pt"})
    for f in ("config.json", "expected.safetensors"):
        shutil.copy(os.path.join(src, f), os.path.join(dst, f))


if __name__ == "__main__":
    main()
