#!/usr/bin/env python3
"""Writes the seed inputs of Kiln's fuzz targets into fuzz/seeds/<target>/ (small, committed).

Seeds named `valid-*` are inputs the parser must accept (crates/kiln-fuzz/tests/replay.rs checks
it), so the fuzzer starts from inputs that reach deep into each parser; `invalid-*` must be
rejected. GGUF seeds are written with llama.cpp's own `gguf` Python package (PyPI `gguf`),
safetensors seeds with the `safetensors` package, images with Pillow.

    python3 tools/make_fuzz_seeds.py
"""

import io
import json
import struct
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "fuzz" / "seeds"


def put(target: str, name: str, data) -> None:
    d = SEEDS / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / name).write_bytes(data)


def gguf_seeds() -> None:
    import gguf

    def tiny(path: Path, model: str) -> None:
        w = gguf.GGUFWriter(str(path), "llama")
        w.add_block_count(1)
        w.add_context_length(64)
        w.add_embedding_length(32)
        w.add_feed_forward_length(64)
        w.add_head_count(4)
        w.add_head_count_kv(2)
        w.add_layer_norm_rms_eps(1e-5)
        w.add_rope_freq_base(10000.0)
        w.add_vocab_size(8 if model == "gpt2" else 262)
        w.add_chat_template("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}")
        w.add_tokenizer_model(model)
        if model == "gpt2":
            tokens = ["<|endoftext|>", "H", "e", "l", "o", "He", "ll", "Hell"]
            w.add_tokenizer_pre("default")
            w.add_token_list(tokens)
            w.add_token_types([3] + [1] * (len(tokens) - 1))
            w.add_token_merges(["H e", "l l", "He ll"])
            w.add_bos_token_id(0)
            w.add_eos_token_id(0)
        else:
            tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + ["▁H", "ello", "▁Hello"]
            w.add_token_list(tokens)
            w.add_token_scores([0.0] * 3 + [0.0] * 256 + [-1.0, -2.0, -0.5])
            w.add_token_types([2, 3, 3] + [6] * 256 + [1, 1, 1])
            w.add_bos_token_id(1)
            w.add_eos_token_id(2)
        rng = np.random.default_rng(0)
        w.add_tensor("output_norm.weight", np.ones(32, dtype=np.float32))
        w.add_tensor("blk.0.attn_norm.weight", rng.standard_normal(32).astype(np.float16))
        q8 = gguf.quants.quantize(rng.standard_normal((2, 32)).astype(np.float32), gguf.GGMLQuantizationType.Q8_0)
        w.add_tensor("blk.0.attn_q.weight", q8, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        q41 = gguf.quants.quantize(rng.standard_normal((2, 32)).astype(np.float32), gguf.GGMLQuantizationType.Q4_1) \
            if hasattr(gguf.quants, "Q4_1") else None
        if q41 is not None:
            w.add_tensor("blk.0.attn_k.weight", q41, raw_dtype=gguf.GGMLQuantizationType.Q4_1)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()

    d = SEEDS / "gguf"
    d.mkdir(parents=True, exist_ok=True)
    tiny(d / "valid-llama-spm", "llama")
    tiny(d / "valid-llama-bpe", "gpt2")
    data = (d / "valid-llama-spm").read_bytes()
    put("gguf", "invalid-truncated", data[: len(data) // 2])
    put("gguf", "invalid-magic", b"GGUX" + data[4:64])


def safetensors_seeds() -> None:
    def file(tensors: dict, meta=None) -> bytes:
        header, blob = {}, b""
        for name, (dtype, shape, raw) in tensors.items():
            header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(raw)]}
            blob += raw
        if meta:
            header["__metadata__"] = meta
        h = json.dumps(header).encode()
        h += b" " * (-len(h) % 8)
        return struct.pack("<Q", len(h)) + h + blob

    f32 = np.arange(6, dtype=np.float32).tobytes()
    f16 = np.arange(4, dtype=np.float16).tobytes()
    bf16 = (np.arange(4, dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes()
    i64 = np.arange(3, dtype=np.int64).tobytes()
    put("safetensors", "valid-mixed", file({
        "model.embed_tokens.weight": ("F32", [2, 3], f32),
        "model.norm.weight": ("F16", [4], f16),
        "lm_head.weight": ("BF16", [2, 2], bf16),
        "position_ids": ("I64", [1, 3], i64),
    }, {"format": "pt"}))
    put("safetensors", "valid-empty", file({}))
    put("safetensors", "invalid-offsets", file({"w": ("F32", [4, 4], f32)}))


def config_seeds() -> None:
    llama = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
        "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2,
        "num_hidden_layers": 2, "vocab_size": 128, "max_position_embeddings": 256, "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0, "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": [2, 3],
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
    }
    put("model_config", "valid-llama.json", json.dumps(llama, indent=1))
    clip = ROOT / "crates/kiln-clip/tests/fixtures/clip_models/quick_gelu_p4/config.json"
    put("model_config", "valid-clip.json", clip.read_bytes())
    put("preprocessor_config", "invalid-size.json", json.dumps({"size": {"shortest_edge": 0}, "crop_size": 0}))
    put("preprocessor_config", "valid-preprocessor.json", json.dumps({
        "crop_size": {"height": 224, "width": 224}, "do_center_crop": True, "do_convert_rgb": True,
        "do_normalize": True, "do_rescale": True, "do_resize": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
        "resample": 3, "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": 224}}))
    put("model_config", "invalid-heads.json", json.dumps({**llama, "num_attention_heads": 0}))


def adapter_seeds() -> None:
    base = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 8, "lora_alpha": 16, "lora_dropout": 0.05,
            "target_modules": ["q_proj", "v_proj"], "bias": "none", "use_rslora": False,
            "fan_in_fan_out": False, "init_lora_weights": True}
    put("adapter_config", "valid-basic.json", json.dumps(base))
    put("adapter_config", "valid-patterns.json", json.dumps({
        **base, "target_modules": r".*\.(q_proj|down_proj)$", "use_rslora": True, "layers_to_transform": [0, 7],
        "rank_pattern": {"q_proj": 4, "model.layers.7.mlp.down_proj": 2}, "alpha_pattern": {"down_proj": 3}}))
    put("adapter_config", "valid-peft-clip.json",
        (ROOT / "crates/kiln-clip/tests/fixtures/clip_models/quick_gelu_p4_lora/adapter/adapter_config.json").read_bytes())
    put("adapter_config", "invalid-dora.json", json.dumps({**base, "use_dora": True}))


def template_seeds() -> None:
    for p in sorted((ROOT / "crates/kiln-prompt/src/template/builtin").glob("*.jinja")):
        put("chat_template", f"valid-{p.stem}.jinja", p.read_bytes())
    put("chat_template", "valid-tools.jinja",
        "{%- if tools %}{{ tools | tojson }}{% endif %}{% for m in messages %}"
        "{% if m.tool_calls %}{% for c in m.tool_calls %}{{ c.function.name }}({{ c.function.arguments | tojson }})"
        "{% endfor %}{% elif m.content is string %}{{ m.role | upper }}: {{ m.content | trim }}"
        "{% else %}{% for p in m.content %}{{ p.text }}{% endfor %}{% endif %}\n{% endfor %}"
        "{% if add_generation_prompt %}ASSISTANT:{% endif %}")
    put("chat_template", "invalid-syntax.jinja", "{% for m in messages %}{{ m.content }")


def image_seeds() -> None:
    from PIL import Image

    def enc(img, fmt, **kw) -> bytes:
        b = io.BytesIO()
        img.save(b, fmt, **kw)
        return b.getvalue()

    rng = np.random.default_rng(1)
    rgb = Image.fromarray(rng.integers(0, 256, (9, 13, 3), dtype=np.uint8), "RGB")
    put("clip_image", "valid-rgb.png", enc(rgb, "PNG"))
    put("clip_image", "valid-rgb.jpg", enc(rgb, "JPEG", quality=80))
    put("clip_image", "valid-gray.png", enc(rgb.convert("L"), "PNG"))
    put("clip_image", "valid-rgba.png", enc(rgb.convert("RGBA"), "PNG"))
    put("clip_image", "valid-palette.png", enc(rgb.convert("P"), "PNG"))
    put("clip_image", "valid-gray16.png", enc(Image.fromarray(rng.integers(0, 65535, (5, 4), dtype=np.uint16)), "PNG"))
    put("clip_image", "valid-cmyk.jpg", enc(rgb.convert("CMYK"), "JPEG"))
    put("clip_image", "invalid-truncated.png", enc(rgb, "PNG")[:60])


def http_seeds() -> None:
    chat = {"model": "m", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "2"}],
        "temperature": 0.7, "top_p": 0.9, "top_k": 40, "stop": ["\n\n"], "max_tokens": 16, "n": 2, "seed": 7,
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}], "tool_choice": "auto",
        "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": {
            "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "array", "items": {"enum": ["x", "y"]}}},
            "required": ["a"]}}}}
    put("http_body", "valid-chat.json", b"\x00" + json.dumps(chat).encode())
    put("http_body", "valid-completion.json", b"\x01" + json.dumps(
        {"model": "m", "prompt": [1, 2, 3], "max_tokens": 5, "logprobs": 2, "stream": True,
         "stream_options": {"include_usage": True}}).encode())
    put("http_body", "valid-embeddings.json", b"\x02" + json.dumps(
        {"model": "clip", "input": ["a cat", {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}],
         "encoding_format": "base64"}).encode())
    put("http_body", "invalid-role.json", b"\x00" + json.dumps({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}).encode())


def serve_config_seeds() -> None:
    put("serve_config", "valid-minimal.toml", '[[models]]\nname = "m"\n')
    put("serve_config", "valid-gateway.toml", """
[server]
port = 8080
max_body_bytes = 65536
max_completion_tokens = 256

[pii]
enabled = true

[[models]]
name = "smol"
watermark = { gamma = 0.25, delta = 2.0 }

[[models]]
name = "clip"
kind = "clip"

[[routes]]
name = "auto"
models = ["smol", "smol"]

[roles.user]
models = ["smol", "clip"]
endpoints = ["chat", "completions", "embeddings", "models"]

[[keys]]
name = "alice"
sha256 = "4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945"
role = "user"
requests_per_minute = 60
""")
    put("serve_config", "invalid-role.toml", '[[models]]\nname = "m"\n[[keys]]\nname = "a"\nsha256 = "00"\nrole = "ghost"\n')


if __name__ == "__main__":
    gguf_seeds()
    safetensors_seeds()
    config_seeds()
    adapter_seeds()
    template_seeds()
    image_seeds()
    http_seeds()
    serve_config_seeds()
    for d in sorted(SEEDS.iterdir()):
        print(d.name, len(list(d.iterdir())), "seeds")
