#!/usr/bin/env python3
"""Independent NumPy re-implementation of the Llama forward pass, checked against the
fixtures written by make_llama_fixtures.py.

It reads only config.json, *.safetensors and reference.json (no torch, no transformers), so it
doubles as a compact, readable spec of what a from-scratch loader must do:
config layouts (transformers-5 ``rope_parameters`` vs legacy ``rope_theta``/``rope_scaling``),
tied embeddings, sharded checkpoints, bf16/f16 upcasting, GQA/MQA, explicit head_dim,
llama3 RoPE frequency scaling, and HF's rotate-half (non-interleaved) RoPE layout.

Usage:  python tools/verify_llama_fixtures.py [tests/fixtures/llama]
"""
import json
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

REPO_ROOT = Path(__file__).resolve().parent.parent


def load_weights(d: Path) -> dict:
    w = {}
    for f in sorted(d.glob("*.safetensors")):
        # safetensors.numpy cannot represent bf16: read raw bytes for that case.
        try:
            w.update(load_file(str(f)))
        except (TypeError, ValueError):
            w.update(load_bf16(f))
    return {k: v.astype(np.float32) for k, v in w.items()}


def load_bf16(f: Path) -> dict:
    raw = f.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    data = raw[8 + n :]
    out = {}
    for k, meta in header.items():
        if k == "__metadata__":
            continue
        a, b = meta["data_offsets"]
        assert meta["dtype"] == "BF16", meta["dtype"]
        u16 = np.frombuffer(data[a:b], dtype="<u2").astype(np.uint32) << 16
        out[k] = u16.view(np.float32).reshape(meta["shape"])
    return out


def rope_params(cfg: dict) -> dict:
    if "rope_parameters" in cfg:
        return dict(cfg["rope_parameters"])
    rp = dict(cfg.get("rope_scaling") or {"rope_type": "default"})
    rp.setdefault("rope_type", rp.get("type", "default"))
    rp["rope_theta"] = cfg.get("rope_theta", 10000.0)
    return rp


def inv_freq(cfg: dict, head_dim: int) -> np.ndarray:
    rp = rope_params(cfg)
    theta = rp["rope_theta"]
    inv = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    if rp["rope_type"] == "llama3":
        factor, lo, hi = rp["factor"], rp["low_freq_factor"], rp["high_freq_factor"]
        old = rp["original_max_position_embeddings"]
        low_wl, high_wl = old / lo, old / hi
        wl = 2 * np.pi / inv
        scaled = np.where(wl > low_wl, inv / factor, inv)
        smooth = (old / wl - lo) / (hi - lo)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        mid = (wl >= high_wl) & (wl <= low_wl)
        inv = np.where(mid, smoothed, scaled)
    else:
        assert rp["rope_type"] == "default", rp
    return inv.astype(np.float32)


def rmsnorm(x, w, eps):
    return w * (x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps))


def forward(cfg: dict, w: dict, ids: np.ndarray) -> np.ndarray:
    H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or cfg["hidden_size"] // H
    eps = cfg["rms_norm_eps"]
    B, T = ids.shape
    inv = inv_freq(cfg, hd)
    ang = np.arange(T, dtype=np.float32)[:, None] * inv[None, :]  # [T, hd/2]
    cos = np.cos(np.concatenate([ang, ang], -1))
    sin = np.sin(np.concatenate([ang, ang], -1))

    def rope(x):  # x [B, h, T, hd]; HF "rotate_half": pairs (i, i + hd/2)
        x1, x2 = x[..., : hd // 2], x[..., hd // 2 :]
        return x * cos + np.concatenate([-x2, x1], -1) * sin

    mask = np.triu(np.full((T, T), -np.inf, dtype=np.float32), 1)
    x = w["model.embed_tokens.weight"][ids]
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = rmsnorm(x, w[p + "input_layernorm.weight"], eps)
        q = (h @ w[p + "self_attn.q_proj.weight"].T).reshape(B, T, H, hd).transpose(0, 2, 1, 3)
        k = (h @ w[p + "self_attn.k_proj.weight"].T).reshape(B, T, KV, hd).transpose(0, 2, 1, 3)
        v = (h @ w[p + "self_attn.v_proj.weight"].T).reshape(B, T, KV, hd).transpose(0, 2, 1, 3)
        q, k = rope(q), rope(k)
        rep = H // KV
        k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
        s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        a = (s @ v).transpose(0, 2, 1, 3).reshape(B, T, H * hd)
        x = x + a @ w[p + "self_attn.o_proj.weight"].T
        h = rmsnorm(x, w[p + "post_attention_layernorm.weight"], eps)
        g = h @ w[p + "mlp.gate_proj.weight"].T
        u = h @ w[p + "mlp.up_proj.weight"].T
        x = x + ((g / (1 + np.exp(-g))) * u) @ w[p + "mlp.down_proj.weight"].T
    x = rmsnorm(x, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else w["lm_head.weight"]
    return x @ head.T


def main() -> int:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO_ROOT / "tests/fixtures/llama"
    worst = 0.0
    for d in sorted(p for p in root.iterdir() if (p / "reference.json").exists()):
        cfg = json.loads((d / "config.json").read_text())
        ref = json.loads((d / "reference.json").read_text())
        w = load_weights(d)
        assert ("lm_head.weight" in w) != bool(cfg.get("tie_word_embeddings")), d.name
        ids = np.array(ref["input_ids"])
        got = forward(cfg, w, ids)
        want = np.array(ref["logits"], dtype=np.float32)
        err = float(np.abs(got - want).max())
        # greedy: re-run the full sequence and check each generated token is the argmax
        g = np.array(ref["greedy_ids"])[None]
        n0 = ids.shape[1]
        top = forward(cfg, w, g)[0].argmax(-1)
        greedy_ok = bool((top[n0 - 1 : g.shape[1] - 1] == g[0, n0:]).all())
        worst = max(worst, err)
        print(f"{d.name:12s} max|dlogit| {err:.2e}  greedy {'ok' if greedy_ok else 'MISMATCH'}")
        if err > 1e-4 or not greedy_ok:
            return 1
    print(f"all fixtures agree (worst {worst:.2e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
