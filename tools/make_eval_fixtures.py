#!/usr/bin/env python3
"""Reference scores for kiln-eval: writes crates/kiln-eval/tests/fixtures/metrics.json.

Scores come from the reference packages themselves (pins in tools/requirements.txt):
  sacrebleu 2.6.0   corpus_bleu / sentence_bleu / corpus_chrf / sentence_chrf
  rouge-score 0.1.2 RougeScorer(['rougeL', 'rougeLsum', 'rouge1', 'rouge2'], use_stemmer=False/True)
  nltk 3.10.4       PorterStemmer() (what rouge-score's use_stemmer=True calls)
SQuAD exact match / token F1 use the functions of the official SQuAD 2.0 evaluation script
(evaluate-v2.0.py), copied verbatim below since it is not a package.

Usage:  python tools/make_eval_fixtures.py [--out PATH]      (deterministic, < 1 s)
"""
import argparse
import collections
import json
import logging
import re
import string
from pathlib import Path

import nltk
import rouge_score
import sacrebleu
from nltk.stem import porter
from rouge_score import rouge_scorer

# ---- SQuAD 2.0 official evaluation script (evaluate-v2.0.py), verbatim ----


def normalize_answer(s):
    """Lower text and remove punctuation, articles and extra whitespace."""

    def remove_articles(text):
        regex = re.compile(r"\b(a|an|the)\b", re.UNICODE)
        return re.sub(regex, " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def get_tokens(s):
    if not s:
        return []
    return normalize_answer(s).split()


def compute_exact(a_gold, a_pred):
    return int(normalize_answer(a_gold) == normalize_answer(a_pred))


def compute_f1(a_gold, a_pred):
    gold_toks = get_tokens(a_gold)
    pred_toks = get_tokens(a_pred)
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        # If either is no-answer, then F1 is 1 if they agree, 0 otherwise
        return int(gold_toks == pred_toks)
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred_toks)
    recall = 1.0 * num_same / len(gold_toks)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1


# ---- cases: (name, hypothesis, [references]) ----

LONG_REF = (
    "Returns are accepted within 30 days of delivery for unworn items with the original tags attached; "
    "refunds go back to the original payment method within 5 to 7 business days after the parcel reaches "
    "our warehouse in Portland, Oregon, and exchanges ship free of charge."
)
LONG_HYP = (
    "You can return unworn items with their tags attached within 30 days of delivery. Refunds are issued "
    "to the original payment method 5-7 business days after the parcel reaches our Portland warehouse; "
    "exchanges ship for free."
)

CASES = [
    ("identical", "The cat sat on the mat.", ["The cat sat on the mat."]),
    ("classic", "The cat is on the mat.", ["There is a cat on the mat."]),
    ("paraphrase", "It is a guide to action which ensures that the military always obeys the commands of the party.",
     ["It is a guide to action that ensures that the military will forever heed Party commands."]),
    ("multi_ref_3", "It is a guide to action which ensures that the military always obeys the commands of the party.",
     ["It is a guide to action that ensures that the military will forever heed Party commands.",
      "It is the guiding principle which guarantees the military forces always being under the command of the Party.",
      "It is the practical guide for the army always to heed the directions of the party."]),
    ("multi_ref_2", "the quick brown fox", ["a quick brown fox jumps", "the quick fox"]),
    ("empty_hyp", "", ["Something to say."]),
    ("empty_ref", "Something to say.", [""]),
    ("both_empty", "", [""]),
    ("whitespace_only", "   \t ", ["word"]),
    ("one_word_match", "hello", ["hello"]),
    ("one_word_miss", "hello", ["goodbye"]),
    ("two_words", "hello world", ["hello there world"]),
    ("three_words", "free shipping over", ["free shipping over $50"]),
    ("short_no_bigram", "cat dog", ["dog cat"]),
    ("short_smoothing", "the the the the", ["the cat"]),
    ("repeated_clip", "the the the the the the the", ["The cat is on the mat."]),
    ("punctuation", "Well... yes!? (maybe) -- \"quoted\" [brackets] {braces} a/b c:d; e@f #tag",
     ["Well, yes! (Maybe) - \"quoted\" [brackets]; a/b c:d e@f #tag."]),
    ("numbers", "It costs $3,000.50 and ships in 3-5 days (2024-01-15).",
     ["The price is $3,000.50; shipping takes 3-5 days (2024-01-15)."]),
    ("decimals_commas", "1,000,000 people, 2.5 million dollars, and 3.14.", ["1,000,000 people, 2.5 million dollars and 3.14"]),
    ("html_entities", "Tom &amp; Jerry said &quot;hi&quot; &lt;b&gt;", ["Tom & Jerry said \"hi\" <b>"]),
    ("skipped_and_newline", "first<skipped> line-\nsecond\nthird", ["first linesecond third"]),
    ("unicode_accents", "Café naïve résumé — “quotes” and ‘single’ … déjà vu", ["Cafe naive resume - \"quotes\" and 'single' ... deja vu"]),
    ("unicode_same", "Straße über Ärger, ça va? ¿Qué tal? ¡Hola!", ["Straße über Ärger, ça va? ¿Qué tal? ¡Hola!"]),
    ("greek_final_sigma", "ΟΔΟΣ ΚΑΙ ΛΟΓΟΣ", ["οδος και λογος"]),
    ("cjk", "我喜欢猫。你呢？", ["我喜欢狗。你呢？"]),
    ("emoji_symbols", "I ❤ this 😀 product ★★★★☆ €20 + 5% = ?", ["I love this product ★★★★☆ €20 + 5%"]),
    ("nbsp_and_info_sep", "price\u00a0is\u3000ten\u001cdollars\u2003today", ["price is ten dollars today"]),
    ("case_only", "THE CAT SAT ON THE MAT", ["the cat sat on the mat"]),
    ("articles_squad", "The answer is an apple", ["answer is apple"]),
    ("squad_punct_only", "!!!", ["?"]),
    ("long_paraphrase", LONG_HYP, [LONG_REF]),
    ("long_identical", LONG_REF, [LONG_REF]),
    ("long_vs_short", LONG_HYP, ["30 days"]),
    ("short_vs_long", "30 days", [LONG_REF]),
    ("brevity", "the cat", ["the cat sat on the mat with a hat"]),
    ("longer_hyp", "the cat sat on the mat with a hat and a bat and a rat", ["the cat sat on the mat"]),
    ("tie_ref_len", "a b c d", ["a b c", "a b c d e"]),
    ("multi_ref_empty_one", "We are open 9am to 9pm.", ["", "We are open from 9 am to 9 pm."]),
    ("rouge_lsum_lines", "Returns take 30 days.\nRefunds take a week.\nExchanges are free.",
     ["Returns are accepted for 30 days.\nExchanges are free.\nRefunds take 5-7 business days."]),
    ("rouge_lsum_blank_lines", "first line\n\n\nsecond line here\n", ["\nsecond line\nfirst line here\n\n"]),
    ("rouge_lsum_repeats", "the cat\nthe cat\nthe cat", ["the cat the dog\nthe cat"]),
    ("stemming", "The runners were running quickly and happily generalized their generalizations",
     ["A runner runs quick and happy, generalizing the general ideas"]),
    ("stemming_2", "Relational conditional digitizer operators feudalism hopefulness sensitivities",
     ["relate condition digitize operate feudal hopeful sensitive"]),
    ("stemming_irregular", "skies dying lying tying innings outings news proceed exceed succeeded",
     ["sky die lie tie inning outing news proceeding exceeding succeed"]),
    ("retail_answer", "You can return items within 30 days.", ["Returns are accepted within 30 days of delivery."]),
    ("retail_price", "The Alpine Shell Jacket costs $189.", ["$189"]),
    ("retail_hours", "On Sundays we're open 10 a.m. to 6 p.m.", ["Sunday hours: 10:00 AM to 6:00 PM."]),
    ("digits_letters", "abc123 x9y 42nd 1st", ["abc 123 x9y 42nd first"]),
    ("tabs_newlines", "one\ttwo\nthree\r\nfour", ["one two three four"]),
    ("dash_digit", "pages 10-20, 5-star, A-1 and x-ray", ["pages 10 - 20 , 5 - star, A-1 and x-ray"]),
    ("period_endings", "Version 2. Item 3.", ["Version 2 . Item 3 ."]),
]

STEM_WORDS = """
caresses ponies ties caress cats feed agreed plastered bled motoring sing conflated troubled sized hopping
tanned falling hissing fizzed failing filing happy sky relational conditional rational valenci hesitanci
digitizer conformabli radicalli differentli vileli analogousli vietnamization predication operator feudalism
decisiveness hopefulness callousness formaliti sensitiviti sensibiliti triplicate formative formalize
electriciti electrical hopeful goodness revival allowance inference airliner gyroscopic adjustable defensible
irritant replacement adjustment dependent adoption homologou communism activate angulariti homologous
effective bowdlerize probate rate cease controll roll generalizations oscillators dies died spied flies
skies dying lying tying news innings outings cannings howe proceed exceed succeed enjoy enjoyment spy fly
try tried archaeology geology theology hopefully fully beautifully running runner runs ran syzygy toy yyyy
yelling yyyyy boyish crying abc123 1234 2024s 3rds y0y0 eeds need needs succeeded proceeding agreement
tanning hoping hopped oats trees ivy troubles private oaten orrery organization organizational universal
university universe nationalization rationalization responsiveness sensational sensation emotional
communication communications dependability zzzz buzzing waxing mixed boxes boxing shipped shipping returned
returns refundable exchanges exchanged warranty warranties membership memberships points waterproof
breathable insulated lightweight machine washable tumble drying
""".split()


VOCAB = (
    "the a an cat cats dog running runs ran runner generalization generalizations happy happily relational "
    "conditional hopefulness return returns returned refund refunds shipping shipped free order orders days "
    "jacket jackets boots size sizes store stores open closed hours Monday THE Cat RUN skies dying news "
    "proceed exceeding succeeded yyyy toy syzygy agreed feed plastered motoring hopping tanned falling "
    ". , ! ? ; : - -- ' \" ( ) [ ] { } / @ # $ % & * + = < > ~ ` ^ _ | \\ "
    "$5.00 3,000 3.14 1-2 10-20 2024-01-15 5% 1st 42nd abc123 &amp; &quot; &lt; <skipped> "
    "é café naïve Straße ÄRGER ΟΔΟΣ λόγος 猫 你好 😀 ❤ ★ € £ — – “ ” ‘ ’ … ¿ ¡ « »"
).split(" ")
SEPARATORS = [" ", " ", " ", " ", "", "\n", "\t", "\u00a0", "  "]
STEM_STEMS = ["run", "hop", "generaliz", "relat", "condit", "happ", "fli", "sk", "agre", "feed", "plaster",
              "motor", "troubl", "siz", "fail", "fil", "control", "roll", "oscill", "nation", "sens", "form",
              "electr", "hope", "good", "adjust", "depend", "adopt", "commun", "activ", "effect", "bowdler",
              "prob", "ceas", "y", "yy", "toy", "by", "archaeo", "geo", "ship", "return", "refund", "exchang"]
STEM_SUFFIXES = ["", "s", "es", "ies", "ied", "ed", "ing", "ings", "ational", "tional", "enci", "anci", "izer",
                 "bli", "alli", "entli", "eli", "ousli", "ization", "ation", "ator", "alism", "iveness",
                 "fulness", "ousness", "aliti", "iviti", "biliti", "fulli", "logi", "icate", "ative", "alize",
                 "iciti", "ical", "ful", "ness", "al", "ance", "ence", "er", "ic", "able", "ible", "ant",
                 "ement", "ment", "ent", "ion", "sion", "tion", "ou", "ism", "ate", "iti", "ous", "ive", "ize",
                 "e", "ll", "y", "ly", "eed"]


def random_cases(n, seed=1234):
    """Randomized cases for differential testing (not the checked-in fixture)."""
    import random
    rng = random.Random(seed)

    def text(k):
        out = []
        for i in range(k):
            if i:
                out.append(rng.choice(SEPARATORS))
            out.append(rng.choice(VOCAB))
        return "".join(out)

    def perturb(words):
        words = list(words)
        for _ in range(rng.randrange(0, 4)):
            op = rng.randrange(3)
            if op == 0 and words:
                del words[rng.randrange(len(words))]
            elif op == 1:
                words.insert(rng.randrange(len(words) + 1), rng.choice(VOCAB))
            elif words:
                i, j = rng.randrange(len(words)), rng.randrange(len(words))
                words[i], words[j] = words[j], words[i]
        return rng.choice([" ", " ", "\n"]).join(words)

    cases = []
    for i in range(n):
        k = rng.choice([0, 1, 2, 3, 4, 5, 8, 12, 20, 40])
        hyp = text(k)
        refs = []
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            refs.append(perturb(hyp.split()) if rng.random() < 0.7 else text(rng.choice([0, 1, 3, 6, 15])))
        cases.append((f"random_{i}", hyp, refs))
    words = sorted({a + b for a in STEM_STEMS for b in STEM_SUFFIXES})
    return cases, words


def score_dict(s):
    return {"precision": s.precision, "recall": s.recall, "fmeasure": s.fmeasure}


def bleu_dict(b):
    return {
        "score": b.score,
        "counts": list(b.counts),
        "totals": list(b.totals),
        "precisions": list(b.precisions),
        "bp": b.bp,
        "sys_len": b.sys_len,
        "ref_len": b.ref_len,
    }


def ref_streams(refs_per_seg):
    """sacreBLEU wants one stream per reference index; segments with fewer references get None."""
    k = max(len(r) for r in refs_per_seg)
    return [[r[i] if i < len(r) else None for r in refs_per_seg] for i in range(k)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent
                                         / "crates/kiln-eval/tests/fixtures/metrics.json"))
    ap.add_argument("--random", type=int, default=0, metavar="N",
                    help="write N randomized cases (and ~2,900 synthetic stemmer words) instead of the "
                         "checked-in ones; run the Rust test on them with KILN_EVAL_FIXTURE=FILE")
    args = ap.parse_args()
    cases_in, stem_words = (CASES, STEM_WORDS) if not args.random else random_cases(args.random)
    # sentence_bleu(use_effective_order=False) warns once per call; the variant is deliberate.
    logging.getLogger("sacrebleu").setLevel(logging.ERROR)

    types = ["rougeL", "rougeLsum", "rouge1", "rouge2"]
    scorers = {False: rouge_scorer.RougeScorer(types, use_stemmer=False),
               True: rouge_scorer.RougeScorer(types, use_stemmer=True)}

    cases = []
    for name, hyp, refs in cases_in:
        case = {"name": name, "hypothesis": hyp, "references": refs}
        case["sentence_bleu"] = bleu_dict(sacrebleu.sentence_bleu(hyp, refs))
        case["sentence_bleu_intl"] = bleu_dict(sacrebleu.sentence_bleu(hyp, refs, tokenize="intl"))
        case["sentence_bleu_variants"] = {
            "floor": sacrebleu.sentence_bleu(hyp, refs, smooth_method="floor").score,
            "add-k": sacrebleu.sentence_bleu(hyp, refs, smooth_method="add-k").score,
            "none": sacrebleu.sentence_bleu(hyp, refs, smooth_method="none").score,
            "exp_no_effective_order": sacrebleu.sentence_bleu(hyp, refs, use_effective_order=False).score,
            "lowercase": sacrebleu.sentence_bleu(hyp, refs, lowercase=True).score,
        }
        case["sentence_chrf"] = sacrebleu.sentence_chrf(hyp, refs).score
        case["sentence_chrf_pp"] = sacrebleu.sentence_chrf(hyp, refs, word_order=2).score
        case["tokens_13a"] = [sacrebleu.BLEU(tokenize="13a")._preprocess_segment(x) for x in [hyp] + refs]
        case["tokens_intl"] = [sacrebleu.BLEU(tokenize="intl")._preprocess_segment(x) for x in [hyp] + refs]
        for stem, tag in [(False, ""), (True, "_stem")]:
            sc = scorers[stem]
            # rouge-score takes (target, prediction); score_multi picks the best F per type.
            multi = sc.score_multi(refs, hyp)
            for t in types:
                case[t + tag] = score_dict(multi[t])
            case["rouge_tokens" + tag] = [sc._tokenizer.tokenize(x) for x in [hyp] + refs]
        case["squad_normalized"] = [normalize_answer(x) for x in [hyp] + refs]
        case["exact_match"] = any(hyp == r for r in refs)
        case["exact_match_normalized"] = bool(max(compute_exact(r, hyp) for r in refs))
        case["token_f1"] = float(max(compute_f1(r, hyp) for r in refs))
        cases.append(case)

    hyps = [c[1] for c in cases_in]
    refs = [c[2] for c in cases_in]
    streams = ref_streams(refs)
    single = [i for i, c in enumerate(cases_in) if len(c[2]) == 1]
    corpus = {
        "all": bleu_dict(sacrebleu.corpus_bleu(hyps, streams)),
        "all_lowercase": bleu_dict(sacrebleu.corpus_bleu(hyps, streams, lowercase=True)),
        "all_intl": bleu_dict(sacrebleu.corpus_bleu(hyps, streams, tokenize="intl")),
        "all_none_tok": bleu_dict(sacrebleu.corpus_bleu(hyps, streams, tokenize="none")),
        "all_floor": bleu_dict(sacrebleu.corpus_bleu(hyps, streams, smooth_method="floor")),
        "all_none_smooth": bleu_dict(sacrebleu.corpus_bleu(hyps, streams, smooth_method="none")),
        "all_effective": bleu_dict(sacrebleu.corpus_bleu(hyps, streams, use_effective_order=True)),
        "single_ref": bleu_dict(sacrebleu.corpus_bleu([hyps[i] for i in single],
                                                      [[refs[i][0] for i in single]])),
        "first5": bleu_dict(sacrebleu.corpus_bleu(hyps[:5], ref_streams(refs[:5]))),
        "chrf_all": sacrebleu.corpus_chrf(hyps, streams).score,
        "chrf_pp_all": sacrebleu.corpus_chrf(hyps, streams, word_order=2).score,
        "chrf_single_ref": sacrebleu.corpus_chrf([hyps[i] for i in single],
                                                 [[refs[i][0] for i in single]]).score,
        "single_ref_indices": single,
    }
    stemmer = porter.PorterStemmer()
    out = {
        "generator": "tools/make_eval_fixtures.py",
        "versions": {"sacrebleu": sacrebleu.__version__, "rouge_score": "0.1.2", "nltk": nltk.__version__},
        "note": "references[i] are the references of hypotheses[i]; sentence_* and rouge* use all of them "
                "(rouge via score_multi, best F per type). squad_* and tokens_* list [hyp, *refs].",
        "cases": cases,
        "corpus": corpus,
        "porter": {w: stemmer.stem(w) for w in stem_words},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}: {len(cases)} cases, {len(out['porter'])} stems")


if __name__ == "__main__":
    main()
