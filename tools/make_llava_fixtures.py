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
    chat_fixture()


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


CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'].upper() + ': ' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<image>\n' }}{% else %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


def chat_fixture():
    """`chat_tiny/`: a complete LLaVA directory (weights, tokenizer with an `<image>` token, chat template,
    preprocessor_config.json) plus `generation.json`: transformers' greedy continuation of a chat
    prompt with an image, for kiln-llava's generation test."""
    import json
    import shutil

    from PIL import Image
    from transformers import CLIPImageProcessor, PreTrainedTokenizerFast

    base = os.path.join(OUT, "..", "llama", "gqa")
    out = os.path.join(OUT, "chat_tiny")
    os.makedirs(out, exist_ok=True)
    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(base, "tokenizer.json"),
                                  bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    image_id = tok.convert_tokens_to_ids("<image>")
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(out)
    torch.manual_seed(3)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=4, image_size=16, patch_size=4,
                                       projection_dim=24),
        text_config=LlamaConfig(vocab_size=len(tok), hidden_size=48, intermediate_size=96,
                                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                max_position_embeddings=256, bos_token_id=1, eos_token_id=2),
        image_token_index=image_id, vision_feature_layer=-2,
        vision_feature_select_strategy="default", projector_hidden_act="gelu")
    model = LlavaForConditionalGeneration(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.08)
    model.save_pretrained(out, safe_serialization=True)
    proc = CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
    proc.save_pretrained(out)
    # A small picture: a colour gradient with a dark square.
    img = Image.new("RGB", (40, 30))
    for x in range(40):
        for y in range(30):
            img.putpixel((x, y), (6 * x, 8 * y, 255 - 5 * x) if not (10 < x < 22 and 8 < y < 20) else (20, 20, 20))
    img.save(os.path.join(out, "picture.png"))
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what is this"}]}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tok(text, add_special_tokens=True)["input_ids"]
    per = (16 // 4) ** 2
    expanded = []
    for t in ids:
        expanded.extend([t] * per if t == image_id else [t])
    pixels = CLIPImageProcessor.from_pretrained(out, use_fast=False)(
        images=Image.open(os.path.join(out, "picture.png")), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        gen = model.generate(input_ids=torch.tensor([expanded]), pixel_values=pixels, max_new_tokens=8,
                             do_sample=False, min_new_tokens=8)
    new = gen[0, len(expanded):].tolist()
    json.dump({"prompt_text": text, "prompt_ids": expanded, "generated_ids": new,
               "note": "greedy, min_new_tokens=max_new_tokens=8 (the end token is not stopped on)"},
              open(os.path.join(out, "generation.json"), "w"), indent=1)
    print("chat_tiny", len(expanded), new)


if __name__ == "__main__" and os.environ.get("KILN_CHAT_FIXTURE_ONLY"):
    chat_fixture()
