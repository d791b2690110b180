#!/usr/bin/env python3
"""Writes crates/kiln-clip/tests/fixtures/clip_tokenizer.json: reference ids for kiln-clip's tokenizer.

Reference: transformers' CLIPTokenizer (transformers 5.x; it is the `tokenizers`-backed tokenizer, the
slow Python one is gone), built from vocab.json / merges.txt derived here from open_clip's
bpe_simple_vocab_16e6.txt.gz exactly as open_clip's SimpleTokenizer builds its vocabulary.

    python3 tools/make_clip_tokenizer_fixtures.py [path/to/bpe_simple_vocab_16e6.txt.gz]

(default: ~/.cache/kiln/assets/clip/bpe_simple_vocab_16e6.txt.gz, fetched by scripts/fetch-assets.sh)
"""
import gzip
import json
import os
import sys
import tempfile

import transformers
from transformers import CLIPTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "crates", "kiln-clip", "tests", "fixtures", "clip_tokenizer.json")


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2**8):
        if b not in bs:
            bs.append(b)
            cs.append(2**8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def vocab_and_merges(gz_path):
    # As open_clip's SimpleTokenizer.__init__.
    merges = gzip.open(gz_path).read().decode("utf-8").split("\n")
    merges = merges[1 : 49152 - 256 - 2 + 1]
    merges = [tuple(m.split()) for m in merges]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    for m in merges:
        vocab.append("".join(m))
    vocab.extend(["<|startoftext|>", "<|endoftext|>"])
    return {v: i for i, v in enumerate(vocab)}, merges


LONG = (
    "a photograph of a very long caption that keeps going and going, describing a red bicycle leaning "
    "against a brick wall next to a blue door, with flowers in a pot, a sleeping cat, two pigeons on the "
    "roof, a child's kite stuck in the tree, and the evening sun casting long shadows across the cobbled "
    "street while people walk past carrying umbrellas because it might rain later tonight"
)

TEXTS = [
    "",
    " ",
    "a photo of a cat",
    "a photo of a dog",
    "A Photo Of A CAT",
    "a diagram",
    "two dogs playing in the snow.",
    "A man riding a horse on a beach at sunset.",
    "an astronaut riding a horse on the moon",
    "the quick brown fox jumps over the lazy dog",
    "Hello, world!",
    "hello,world!!!",
    "What's up? I'm fine; you're late, they've gone, we'll see, he'd go, it's not, don't",
    "WHAT'S UP? DON'T",
    "rock'n'roll",
    "''s 's 'S",
    "l'été à paris",
    "Café crème brûlée, naïve façade",
    "Ångström ÆØÅ æøå",
    "Straße STRASSE",
    "İstanbul ıI",
    "Ελληνικά κείμενα",
    "Русский текст, ПРИВЕТ",
    "日本語のテキスト",
    "中文文本测试",
    "한국어 텍스트",
    "שלום עולם",
    "مرحبا بالعالم",
    "हिन्दी पाठ",
    "ไทยภาษา",
    "emoji 😀🎉👍🏽 and 🐱",
    "family 👨‍👩‍👧 flag 🇫🇷",
    "❤️ love ☕",
    "numbers 12345 and 3.14159 and 1,000,000",
    "year 2024, 50% off, $9.99, #1, 10kg",
    "٣٤٥ ⅷ ² ½",
    "  leading and trailing spaces  ",
    "multiple    inner\t\ttabs\nand\nnewlines\r\n",
    "non\u00a0breaking\u3000ideographic\u2003em space",
    "zero\u200bwidth\u200bspace",
    "soft\u00adhyphen",
    "e\u0301 decomposed vs \u00e9 composed",
    "ﬁ ligature ＦＵＬＬＷＩＤＴＨ",
    "<|startoftext|>",
    "<|endoftext|>",
    "<|startoftext|>a photo<|endoftext|>",
    "a <|endoftext|> b",
    "<|STARTOFTEXT|> upper special",
    "<|startoftext",
    "<|",
    "email: someone@example.com, url: https://example.com/path?q=1&x=y",
    "C++ / C# / F#: code_snippet(x) -> y; {a: [1, 2]}",
    "&amp; &lt;b&gt; html entities &quot;",
    "tabs\there",
    "...!!!???",
    "—–-‐ dashes “quotes” ‘single’ «guillemets»",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "\u0000 control \u0007 chars \u001b[0m",
    "mixed CamelCaseWords and snake_case_words",
    "ÉCOLE ÀÉÎÕÜ",
    LONG,
    LONG + " " + LONG,
    "1 2 3 4 5 6 7 8 9 0 " * 8,
    "a photo of a " + "very " * 74 + "big dog",
    "a photo of a " + "very " * 73 + "big",
]


def generated(n=160, seed=20261128):
    """Varied strings drawn from pools of words, punctuation, contractions, numbers, scripts and emoji
    (deterministic), on top of the hand-written cases."""
    import random

    rng = random.Random(seed)
    words = ("a photo of the cat dog red blue bicycle wall door street market woman man child kitchen "
             "sunset beach mountain river train station coffee cup laptop phone shoe jacket dress bag "
             "Sneaker T-Shirt JEANS Ankle-Boot pullover trouser sandal coat shirt").split()
    contractions = ["it's", "don't", "I'm", "you're", "we've", "they'll", "he'd", "can't", "WON'T",
                    "o'clock", "rock'n'roll", "y'all", "'tis"]
    punct = [",", ".", "!", "?", ";", ":", "...", " - ", " / ", "(", ")", "[", "]", "\"", "'", "&",
             "#", "@", "%", "$", "*", "+", "=", "~", "|", "<", ">", "^", "_", "`"]
    scripts = ["café", "naïve", "Ünïcödé", "straße", "ﬁne", "Ωμέγα", "привет", "東京", "北京欢迎你",
               "서울", "שלום", "سلام", "नमस्ते", "สวัสดี", "ǅemal", "ŉ", "İi", "ΣΑΣ", "ﾊﾝｶｸ", "𝔣𝔯𝔞𝔨𝔱𝔲𝔯"]
    emoji = ["😀", "🎉", "👍🏽", "🐱", "👨‍👩‍👧", "🇯🇵", "❤️", "☕", "🚲", "🏳️‍🌈"]
    spaces = [" ", "  ", "\t", "\n", " \u00a0", "\u3000", " \r\n "]

    def number():
        return rng.choice([str(rng.randint(0, 99999)), f"{rng.random() * 100:.2f}",
                           f"{rng.randint(1, 9)},{rng.randint(100, 999)}", f"{rng.randint(1, 12)}:{rng.randint(10, 59)}",
                           f"#{rng.randint(1, 99)}", f"{rng.randint(1, 100)}%", f"${rng.randint(1, 500)}.99"])

    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 14)):
            kind = rng.random()
            if kind < 0.45:
                w = rng.choice(words)
                parts.append(rng.choice([w, w.upper(), w.capitalize(), w.lower()]))
            elif kind < 0.55:
                parts.append(rng.choice(contractions))
            elif kind < 0.68:
                parts.append(rng.choice(punct))
            elif kind < 0.78:
                parts.append(number())
            elif kind < 0.9:
                parts.append(rng.choice(scripts))
            else:
                parts.append(rng.choice(emoji))
        text = ""
        for p in parts:
            text += p + (rng.choice(spaces) if rng.random() < 0.2 else ("" if rng.random() < 0.15 else " "))
        out.append(text)
    # A few long ones that must be truncated at 77.
    for k in range(6):
        out.append(" ".join(rng.choice(words) for _ in range(60 + 10 * k)))
    return out


def main():
    gz = sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser("~/.cache/kiln/assets/clip/bpe_simple_vocab_16e6.txt.gz")
    vocab, merges = vocab_and_merges(gz)
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "vocab.json"), "w", encoding="utf-8") as f:
            json.dump(vocab, f, ensure_ascii=False)
        with open(os.path.join(d, "merges.txt"), "w", encoding="utf-8") as f:
            f.write("#version: 0.2\n")
            for a, b in merges:
                f.write(f"{a} {b}\n")
        tok = CLIPTokenizer(vocab=os.path.join(d, "vocab.json"), merges=os.path.join(d, "merges.txt"))
        tok = CLIPTokenizer.from_pretrained(d) if len(tok) != 49408 else tok
    assert len(tok) == 49408, len(tok)
    assert tok.bos_token_id == 49406 and tok.eos_token_id == 49407 and tok.pad_token_id == 49407
    cases = []
    for t in TEXTS + generated():
        ids = tok(t)["input_ids"]
        trunc = tok(t, truncation=True, max_length=77, padding="max_length")["input_ids"]
        cases.append(
            {
                "text": t,
                "ids": ids,
                "ids_77": trunc,
                "decoded": tok.decode(ids, skip_special_tokens=True),
            }
        )
    assert len(cases) >= 200
    out = {
        "reference": f"transformers {transformers.__version__} CLIPTokenizer (tokenizers-backed) built from "
        "vocab.json/merges.txt derived from open_clip's bpe_simple_vocab_16e6.txt.gz; "
        "ids_77: truncation=True, max_length=77, padding='max_length' (pad = <|endoftext|>)",
        "cases": cases,
    }
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
