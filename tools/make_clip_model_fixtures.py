#!/usr/bin/env python3
"""Writes crates/kiln-clip/tests/fixtures/clip_models/<name>/: tiny random CLIP checkpoints made by
transformers' CLIPModel (config.json + model.safetensors in HF layout) and `expected.safetensors` with
the inputs and transformers' outputs, for kiln-clip's parity tests.

    python3 tools/make_clip_model_fixtures.py

The configurations cover quick_gelu and gelu, patch sizes 4/8/16, different projection widths, and both
ways transformers pools the text tower (at the first `eos_token_id`, and the legacy `argmax` of the ids
when `eos_token_id == 2`).
"""
import os

import torch
from safetensors.torch import save_file
from transformers import CLIPConfig, CLIPModel

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "crates", "kiln-clip", "tests", "fixtures", "clip_models")

CONFIGS = {
    "quick_gelu_p4": dict(
        text=dict(vocab_size=1000, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, max_position_embeddings=16, hidden_act="quick_gelu",
                  bos_token_id=998, eos_token_id=999, pad_token_id=1, projection_dim=24),
        vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                    image_size=16, patch_size=4, hidden_act="quick_gelu", projection_dim=24),
        projection_dim=24,
    ),
    "gelu_p8_legacy_eos": dict(
        text=dict(vocab_size=1000, hidden_size=24, intermediate_size=40, num_hidden_layers=2,
                  num_attention_heads=2, max_position_embeddings=12, hidden_act="gelu",
                  bos_token_id=0, eos_token_id=2, pad_token_id=1, projection_dim=16),
        vision=dict(hidden_size=40, intermediate_size=56, num_hidden_layers=2, num_attention_heads=5,
                    image_size=32, patch_size=8, hidden_act="gelu", projection_dim=16,
                    layer_norm_eps=1e-6),
        projection_dim=16,
    ),
    "quick_gelu_p16_wide_proj": dict(
        text=dict(vocab_size=1000, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                  num_attention_heads=2, max_position_embeddings=10, hidden_act="quick_gelu",
                  bos_token_id=998, eos_token_id=999, pad_token_id=0, projection_dim=48),
        vision=dict(hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=3,
                    image_size=48, patch_size=16, hidden_act="quick_gelu", projection_dim=48),
        projection_dim=48,
        logit_scale_init_value=3.1,
    ),
}


def main():
    for name, spec in CONFIGS.items():
        torch.manual_seed(sum(map(ord, name)))
        extra = {k: v for k, v in spec.items() if k not in ("text", "vision")}
        config = CLIPConfig(text_config=spec["text"], vision_config=spec["vision"], **extra)
        model = CLIPModel(config).eval()
        # Random init leaves LayerNorms at 1/0 and biases at 0; perturb everything so each tensor matters.
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.05)
            model.logit_scale.fill_(spec.get("logit_scale_init_value", 2.6592) + 0.1)
        out = os.path.join(OUT, name)
        os.makedirs(out, exist_ok=True)
        model.save_pretrained(out, safe_serialization=True)

        v, t = spec["vision"], spec["text"]
        pixels = torch.randn(2, 3, v["image_size"], v["image_size"])
        L = t["max_position_embeddings"]
        eos, bos, pad = 999, 998, t["pad_token_id"]
        if t["eos_token_id"] == 2:
            bos = 0
        # Three sequences: full length, padded, and one whose eos comes early with other ids after.
        ids = torch.full((3, L), pad, dtype=torch.long)
        mask = torch.zeros((3, L), dtype=torch.long)
        g = torch.Generator().manual_seed(7)
        for row, n in enumerate([L, L // 2, 4]):
            body = torch.randint(3, 990, (n - 2,), generator=g)
            ids[row, :n] = torch.cat([torch.tensor([bos]), body, torch.tensor([eos])])
            mask[row, :n] = 1
        with torch.no_grad():
            res = model(input_ids=ids, attention_mask=mask, pixel_values=pixels,
                        output_hidden_states=True)
        vis = res.vision_model_output
        txt = res.text_model_output
        tensors = {
            "pixel_values": pixels,
            "input_ids": ids.to(torch.int64),
            "attention_mask": mask.to(torch.int64),
            "image_embeds": res.image_embeds,
            "text_embeds": res.text_embeds,
            "logits_per_image": res.logits_per_image,
            "vision_last_hidden_state": vis.last_hidden_state,
            "vision_pooled": vis.pooler_output,
            "vision_hidden_state_minus2": vis.hidden_states[-2],
            "text_pooled": txt.pooler_output,
            "text_last_hidden_state": txt.last_hidden_state,
        }
        save_file({k: x.contiguous() for k, x in tensors.items()},
                  os.path.join(out, "expected.safetensors"))
        print(name, {k: tuple(x.shape) for k, x in tensors.items()})


if __name__ == "__main__":
    main()
