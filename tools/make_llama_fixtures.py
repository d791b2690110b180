#!/usr/bin/env python3
"""Build tiny random Llama checkpoints (Hugging Face layout) plus reference logits.

Every fixture directory under ``tests/fixtures/llama/<name>/`` holds:

* what ``LlamaForCausalLM.save_pretrained`` writes (config.json, generation_config.json,
  model.safetensors or model-0000N-of-0000M.safetensors + model.safetensors.index.json),
* ``tokenizer.json`` + ``tokenizer_config.json`` (a small byte-level BPE trained here, with a
  ChatML-style ``chat_template`` stored inside tokenizer_config.json),
* ``reference.json`` with transformers' float32 logits and a greedy continuation.

The reference numbers are always computed by loading the fixture directory back from disk
with ``from_pretrained(..., dtype=torch.float32)``, i.e. exactly what a loader of the files
sees (for the bf16/f16 fixtures: the rounded weights, upcast to float32).

Runs on CPU in a few seconds and is deterministic (fixed seeds, one torch thread).
Usage:  python tools/make_llama_fixtures.py [--out tests/fixtures/llama] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never touch the network
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")  # no progress bars

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
VOCAB_SIZE = 384
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]  # ids 0..4
BOS_ID, EOS_ID = 1, 2
ATTN_IMPL = "eager"

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

TRAINING_TEXT = """\
The river ran quietly past the old mill, where the miller kept his stones turning from dawn
until the light faded behind the hills. Every morning the farmers brought their grain, and
every evening they carried home sacks of flour for bread, cakes and porridge.

In the town square there was a bakery that smelled of cinnamon and warm butter. Children
gathered by the window to watch the baker shape the dough into long loaves and little rolls.
She hummed while she worked, and the ovens hissed whenever she opened their heavy iron doors.

A language model reads text as a sequence of tokens. Each token is mapped to a vector, the
vectors pass through many layers of attention and feed-forward networks, and at the end the
model predicts a probability for every token in its vocabulary. The most likely next token is
chosen, appended to the text, and the process repeats until the answer is complete.

The weather changed quickly in the mountains. A clear blue sky could turn grey within an hour,
and travellers learned to carry warm coats, dry matches and enough food for an unexpected night
under the stars. The shepherds watched the clouds and the birds to guess what the wind would do.

Numbers such as 3, 14, 159 and 2026 appear in text too, along with punctuation: commas, full
stops, question marks? exclamation marks! and quotes like "this" or 'that'. Code looks different:
def add(a, b): return a + b. A good tokenizer handles all of these without losing information.
"""

SENTENCES = [
    "The quick brown fox jumps over the lazy dog while the baker sings by the river.",
    "A language model predicts the next token, then the farmers carry their flour home.",
]
LONG_TEXT = (
    "The weather changed quickly in the mountains, so the travellers carried warm coats, "
    "dry matches and enough food. In the town square the baker opened the heavy iron doors "
    "of her ovens, and the children watched the dough turn into long golden loaves of bread."
)


# --------------------------------------------------------------------------------------------
# Fixture definitions
# --------------------------------------------------------------------------------------------
BASE = dict(
    vocab_size=VOCAB_SIZE,
    hidden_size=64,
    intermediate_size=176,
    num_hidden_layers=2,
    max_position_embeddings=256,
    bos_token_id=BOS_ID,
    eos_token_id=EOS_ID,
    hidden_act="silu",
)

FIXTURES = {
    "gqa": dict(
        config=dict(num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5,
                    tie_word_embeddings=False,
                    rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
        dtype=torch.float32, seq_len=12, batch=2, seed=1001,
        # Written like a transformers-4.x / hub checkpoint: top-level "rope_theta", "torch_dtype".
        legacy_config=True,
    ),
    "llama3_rope": dict(
        config=dict(num_attention_heads=4, num_key_value_heads=1, rms_norm_eps=1e-5,
                    tie_word_embeddings=True,
                    rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                     "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                     # head_dim 16 / theta 5e5 gives wavelengths 6.3, 32.4, 167, ...
                                     # With 64: low_freq_wavelen=64, high_freq_wavelen=16, so one
                                     # frequency is kept, one is smoothly interpolated and the rest
                                     # are divided by `factor` -- all three branches are exercised.
                                     "original_max_position_embeddings": 64}),
        dtype=torch.float32, seq_len=40, batch=1, seed=1002,
        # Written like Meta's Llama-3.x config.json: top-level "rope_theta" + "rope_scaling".
        legacy_config=True,
    ),
    "tied_mha": dict(
        config=dict(num_attention_heads=4, num_key_value_heads=4, rms_norm_eps=1e-6,
                    tie_word_embeddings=True,
                    rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
        dtype=torch.float32, seq_len=12, batch=2, seed=1003, legacy_config=False,
    ),
    "bf16": dict(
        config=dict(num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5,
                    tie_word_embeddings=False,
                    rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
        dtype=torch.bfloat16, seq_len=12, batch=2, seed=1004, legacy_config=False,
    ),
    "sharded_f16": dict(
        config=dict(num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5,
                    tie_word_embeddings=False,
                    rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
        dtype=torch.float16, seq_len=12, batch=2, seed=1005, legacy_config=False,
        max_shard_size="100KB",
    ),
    "head_dim": dict(
        config=dict(num_attention_heads=4, num_key_value_heads=2, head_dim=32, rms_norm_eps=1e-6,
                    attention_bias=False, tie_word_embeddings=False,
                    rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
        dtype=torch.float32, seq_len=12, batch=2, seed=1006, legacy_config=False,
    ),
}


# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------
def build_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    paragraphs = [p.replace("\n", " ") for p in TRAINING_TEXT.split("\n\n")]
    tok.train_from_iterator(paragraphs * 4, trainer=trainer)
    # Llama-style: prepend <s> when add_special_tokens=True.
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", BOS_ID)]
    )
    assert tok.get_vocab_size() == VOCAB_SIZE, tok.get_vocab_size()
    for i, s in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(s) == i, (s, tok.token_to_id(s))

    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
        chat_template=CHAT_TEMPLATE,
        model_max_length=256,
        clean_up_tokenization_spaces=False,
    )


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------
@torch.no_grad()
def init_weights(model: LlamaForCausalLM, seed: int) -> None:
    """Deterministic init with std large enough for non-trivial (but bounded) logits.

    Norm weights are 1 + noise (not all ones) so a loader that forgets them is caught.
    """
    g = torch.Generator().manual_seed(seed)
    for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        if name.endswith("norm.weight"):
            p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
        elif "embed_tokens" in name:
            p.copy_(0.1 * torch.randn(p.shape, generator=g))
        elif name.endswith("bias"):
            p.copy_(0.02 * torch.randn(p.shape, generator=g))
        else:
            p.copy_(0.08 * torch.randn(p.shape, generator=g))


def legacyfy_config(path: Path) -> None:
    """Rewrite config.json in the pre-transformers-5 layout used by most hub checkpoints."""
    cfg = json.loads(path.read_text())
    rp = cfg.pop("rope_parameters")
    rp = dict(rp)
    cfg["rope_theta"] = rp.pop("rope_theta")
    if rp.get("rope_type", "default") != "default":
        cfg["rope_scaling"] = rp
    if "dtype" in cfg:
        cfg["torch_dtype"] = cfg.pop("dtype")
    path.write_text(json.dumps(dict(sorted(cfg.items())), indent=2) + "\n")


def f32_list(t: torch.Tensor):
    """Nested lists of floats; shortest text that round-trips to the same float32."""
    a = t.detach().to(torch.float32).cpu().numpy()

    def rec(x):
        if x.ndim == 1:
            return [float(str(v)) for v in x]
        return [rec(y) for y in x]

    return rec(a)


def make_fixture(name: str, spec: dict, out_root: Path, tokenizer: PreTrainedTokenizerFast) -> dict:
    out = out_root / name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)

    torch.manual_seed(spec["seed"])
    config = LlamaConfig(**BASE, **spec["config"])
    model = LlamaForCausalLM(config).eval()
    init_weights(model, spec["seed"])
    dtype = spec["dtype"]
    model = model.to(dtype)
    model.config.dtype = dtype
    save_kwargs = {}
    if "max_shard_size" in spec:
        save_kwargs["max_shard_size"] = spec["max_shard_size"]
    model.save_pretrained(out, **save_kwargs)
    tokenizer.save_pretrained(out, save_jinja_files=False)
    if spec["legacy_config"]:
        legacyfy_config(out / "config.json")
    # tokenizer.save_pretrained also writes special_tokens_map.json in some versions; the
    # fixture contract is tokenizer.json + tokenizer_config.json only.
    for extra in ("special_tokens_map.json", "chat_template.jinja"):
        if (out / extra).exists():
            (out / extra).unlink()

    # ---- reference: reload exactly what was written, run in float32 ----
    ref_model = LlamaForCausalLM.from_pretrained(out, dtype=torch.float32, attn_implementation=ATTN_IMPL).eval()
    assert ref_model.config.rope_parameters == config.rope_parameters, (
        ref_model.config.rope_parameters, config.rope_parameters)
    if dtype == torch.float32:
        # The reloaded model must be bit-identical to the one we built.
        for (n1, p1), (n2, p2) in zip(model.state_dict().items(), ref_model.state_dict().items()):
            assert n1 == n2 and torch.equal(p1, p2), n1
    ref_tok = PreTrainedTokenizerFast.from_pretrained(out)

    seq_len, batch = spec["seq_len"], spec["batch"]
    texts = [LONG_TEXT] if seq_len > 12 else SENTENCES[:batch]
    input_ids = []
    for t in texts[:batch]:
        ids = ref_tok(t)["input_ids"]  # post-processor prepends <s>
        assert ids[0] == BOS_ID, ids[:3]
        assert len(ids) >= seq_len, (len(ids), seq_len)
        input_ids.append(ids[:seq_len])
    ids_t = torch.tensor(input_ids, dtype=torch.long)

    with torch.no_grad():
        logits = ref_model(input_ids=ids_t).logits.to(torch.float32)
        gen = ref_model.generate(
            ids_t[:1], attention_mask=torch.ones_like(ids_t[:1]), max_new_tokens=8,
            do_sample=False, pad_token_id=EOS_ID,
        )
        # How close was each greedy choice? (top1 - top2 logit gap, from a full forward pass)
        full = ref_model(input_ids=gen).logits[0].to(torch.float32)
        steps = full[seq_len - 1 : gen.shape[1] - 1]
        top2 = torch.topk(steps, 2, dim=-1).values
        margins = (top2[:, 0] - top2[:, 1]).tolist()

    chat_messages = [
        {"role": "system", "content": "You are a helpful baker."},
        {"role": "user", "content": "How do I bake bread?"},
    ]
    chat_text = ref_tok.apply_chat_template(chat_messages, add_generation_prompt=True, tokenize=False)
    chat_ids = ref_tok.apply_chat_template(chat_messages, add_generation_prompt=True, tokenize=True)
    if isinstance(chat_ids, dict) or hasattr(chat_ids, "keys"):
        chat_ids = chat_ids["input_ids"]

    weights_dtype = str(dtype).replace("torch.", "")
    note = (
        f"Random tiny Llama ({name}). Logits computed by transformers {transformers.__version__} "
        f"on CPU in float32 with attn_implementation={ATTN_IMPL!r}, after reloading this directory "
        f"with from_pretrained(dtype=float32)."
    )
    if dtype != torch.float32:
        note += (
            f" Weights are stored as {weights_dtype}; the reference uses those {weights_dtype}-rounded "
            f"weights upcast to float32 (activations in float32)."
        )
    if spec["legacy_config"]:
        note += (
            " config.json was rewritten in the transformers-4.x/hub layout (top-level rope_theta"
            + (" + rope_scaling" if "rope_scaling" in json.loads((out / "config.json").read_text()) else "")
            + ", torch_dtype) instead of transformers-5's rope_parameters/dtype; transformers reads both."
        )
    note += " greedy_ids include the prompt (first sequence); generation may stop early at eos id 2."

    reference = {
        "input_ids": input_ids,
        "logits": f32_list(logits),
        "dtype": "float32",
        "weights_dtype": weights_dtype,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "note": note,
        "greedy_ids": gen[0].tolist(),
        "greedy_margins": [round(m, 6) for m in margins],
        "config_layout": "transformers-4 (legacy)" if spec["legacy_config"] else "transformers-5",
        "attn_implementation": ATTN_IMPL,
        "chat_example": {"messages": chat_messages, "add_generation_prompt": True,
                         "rendered": chat_text, "ids": list(chat_ids)},
        "tokenizer_example": {"text": texts[0], "ids_with_bos": ref_tok(texts[0])["input_ids"],
                              "ids_no_special": ref_tok(texts[0], add_special_tokens=False)["input_ids"]},
    }
    (out / "reference.json").write_text(json.dumps(reference, separators=(",", ":")) + "\n")

    files = sorted(p for p in out.iterdir())
    return {
        "name": name,
        "files": [(p.name, p.stat().st_size) for p in files],
        "total": sum(p.stat().st_size for p in files),
        "logits_absmax": float(logits.abs().max()),
        "logits_std": float(logits.std()),
        "min_margin": min(margins),
        "greedy": gen[0].tolist(),
        "shape": list(logits.shape),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(REPO_ROOT / "tests/fixtures/llama"))
    ap.add_argument("--only", nargs="*", choices=sorted(FIXTURES), help="build only these fixtures")
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    out_root = Path(args.out)
    out_root.mkdir(parents=True, exist_ok=True)

    tokenizer = build_tokenizer()
    summaries = [make_fixture(n, FIXTURES[n], out_root, tokenizer) for n in (args.only or FIXTURES)]

    print(f"transformers {transformers.__version__}, torch {torch.__version__}, out={out_root}")
    grand = 0
    for s in summaries:
        grand += s["total"]
        print(f"\n[{s['name']}] total {s['total'] / 1024:.1f} KiB, logits {s['shape']}, "
              f"|max| {s['logits_absmax']:.3f}, std {s['logits_std']:.3f}, "
              f"min greedy margin {s['min_margin']:.4f}")
        print(f"  greedy_ids {s['greedy']}")
        for fname, size in s["files"]:
            print(f"  {size:>9}  {fname}")
        if s["min_margin"] < 1e-3:
            print("  WARNING: a greedy step has a near tie; a Rust port may legitimately diverge")
    print(f"\nall fixtures: {grand / 1024:.1f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
