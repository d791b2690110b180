//! The GGUF tokenizer against llama.cpp's reference tokenizations (`tests/test-tokenizer-0.cpp`'s
//! `ggml-vocab-*.gguf.inp/.out` vectors) and against SmolLM2's real GGUF.
//!
//! The assets come from `scripts/fetch-assets.sh`; a missing asset fails the test (it is never
//! skipped).

use std::path::{Path, PathBuf};

use kiln_llama::gguf::{GgufFile, GgufTokenizerInfo, tokenizer_from_gguf};
use tokenizers::Tokenizer;

fn asset(rel: &str) -> PathBuf {
    kiln_llama::assets::asset(rel).unwrap_or_else(|e| panic!("{e}"))
}

/// The `(input, expected ids)` pairs of a llama.cpp vocab test, read the way
/// `test-tokenizer-0.cpp` reads them: inputs separated by `"\n__ggml_vocab_test__\n"`, one line of
/// space-separated ids per input.
fn read_vectors(vocab: &Path) -> Vec<(String, Vec<u32>)> {
    let inp_path = PathBuf::from(format!("{}.inp", vocab.display()));
    let out_path = PathBuf::from(format!("{}.out", vocab.display()));
    let (inp_rel, out_rel) = (
        format!("vocab/{}", file_name(&inp_path)),
        format!("vocab/{}", file_name(&out_path)),
    );
    let raw = std::fs::read_to_string(asset(&inp_rel)).unwrap();
    let out = std::fs::read_to_string(asset(&out_rel)).unwrap();
    const SEP: &str = "\n__ggml_vocab_test__\n";
    let mut inputs = Vec::new();
    let mut rest = raw.as_str();
    while !rest.is_empty() {
        match rest.find(SEP) {
            Some(i) => {
                inputs.push(rest[..i].to_owned());
                rest = &rest[i + SEP.len()..];
            }
            None => {
                inputs.push(rest.to_owned());
                rest = "";
            }
        }
    }
    let outputs: Vec<Vec<u32>> = out
        .lines()
        .map(|l| {
            l.split_whitespace()
                .map(|t| t.parse().expect("token id"))
                .collect()
        })
        .collect();
    assert_eq!(
        inputs.len(),
        outputs.len(),
        "{}: input and output counts differ",
        vocab.display()
    );
    inputs.into_iter().zip(outputs).collect()
}

fn file_name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

fn load(rel: &str) -> (Tokenizer, GgufTokenizerInfo) {
    let file = GgufFile::open(asset(rel)).unwrap();
    tokenizer_from_gguf(&file).unwrap()
}

fn pieces(tok: &Tokenizer, ids: &[u32]) -> Vec<String> {
    ids.iter()
        .map(|&id| format!("{id}:{:?}", tok.id_to_token(id).unwrap_or_default()))
        .collect()
}

/// Encodes every reference input without special tokens (as the llama.cpp test does) and reports
/// every mismatch; then checks that decoding gives the input back.
fn check_vocab(name: &str, expected_count: usize) {
    let (tok, _) = load(&format!("vocab/{name}"));
    let vectors = read_vectors(&asset(&format!("vocab/{name}")));
    assert_eq!(
        vectors.len(),
        expected_count,
        "{name}: unexpected number of test vectors"
    );
    let mut failures = Vec::new();
    let mut round_trip_failures = Vec::new();
    for (input, expected) in &vectors {
        let got = tok
            .encode(input.as_str(), false)
            .unwrap()
            .get_ids()
            .to_vec();
        if &got != expected {
            failures.push(format!(
                "input {input:?}\n  expected {:?}\n  got      {:?}",
                pieces(&tok, expected),
                pieces(&tok, &got)
            ));
        }
        let decoded = tok.decode(&got, false).unwrap();
        if &decoded != input {
            round_trip_failures.push(format!("input {input:?} decoded to {decoded:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: {} of {} reference tokenizations differ:\n{}",
        failures.len(),
        vectors.len(),
        failures.join("\n")
    );
    assert!(
        round_trip_failures.is_empty(),
        "{name}: decode(encode(x)) != x for {} inputs:\n{}",
        round_trip_failures.len(),
        round_trip_failures.join("\n")
    );
}

#[test]
fn llama_spm_matches_llama_cpp_reference() {
    check_vocab("ggml-vocab-llama-spm.gguf", 46);
}

#[test]
fn llama_bpe_matches_llama_cpp_reference() {
    check_vocab("ggml-vocab-llama-bpe.gguf", 46);
}

#[test]
fn llama_spm_special_tokens_and_bos() {
    let (tok, info) = load("vocab/ggml-vocab-llama-spm.gguf");
    assert_eq!(info.model, "llama");
    assert_eq!(
        (info.bos_token_id, info.eos_token_id, info.unknown_token_id),
        (Some(1), Some(2), Some(0))
    );
    assert_eq!(
        (info.bos_token.as_deref(), info.eos_token.as_deref()),
        (Some("<s>"), Some("</s>"))
    );
    assert!(info.add_bos_token && !info.add_eos_token && info.add_space_prefix);
    // BOS is added only with special tokens; "Hello world" is [15043, 3186] in the reference.
    assert_eq!(
        tok.encode("Hello world", true).unwrap().get_ids(),
        &[1, 15043, 3186]
    );
    assert_eq!(
        tok.encode("Hello world", false).unwrap().get_ids(),
        &[15043, 3186]
    );
    // Control tokens in text are matched (llama.cpp's parse_special = true) and a space prefix
    // follows them, like llama.cpp; decode can skip them.
    let ids = tok
        .encode("<s>Hello</s>", false)
        .unwrap()
        .get_ids()
        .to_vec();
    assert_eq!(ids, [1, 15043, 2]);
    assert_eq!(tok.decode(&ids, true).unwrap(), "Hello");
    // Characters outside the vocabulary fall back to bytes and decode back.
    let text = "\u{1F999} \u{10FFFF}";
    let ids = tok.encode(text, false).unwrap().get_ids().to_vec();
    assert!(
        ids.iter().any(|&id| (3..259).contains(&id)),
        "expected byte tokens in {ids:?}"
    );
    assert_eq!(tok.decode(&ids, false).unwrap(), text);
}

#[test]
fn llama_bpe_special_tokens_and_bos() {
    let (tok, info) = load("vocab/ggml-vocab-llama-bpe.gguf");
    assert_eq!(
        (info.model.as_str(), info.pre.as_deref()),
        ("gpt2", Some("llama-bpe"))
    );
    assert_eq!(
        (info.bos_token_id, info.eos_token_id),
        (Some(128000), Some(128001))
    );
    assert_eq!(info.bos_token.as_deref(), Some("<|begin_of_text|>"));
    // No add_bos_token key: llama.cpp's default for Llama 3 BPE is to add BOS.
    assert!(info.add_bos_token && !info.add_eos_token);
    assert_eq!(
        info.eot_token_id,
        Some(128009),
        "<|eot_id|> is found by text"
    );
    assert_eq!(info.eom_token_id, None, "Llama 3.0 has no <|eom_id|>");
    let ids = tok.encode("Hello world", true).unwrap().get_ids().to_vec();
    assert_eq!(ids, [128000, 9906, 1917]);
    let chat = "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>";
    let ids = tok.encode(chat, false).unwrap().get_ids().to_vec();
    assert_eq!(ids.first(), Some(&128006));
    assert_eq!(ids.last(), Some(&128009));
    assert_eq!(tok.decode(&ids, false).unwrap(), chat);
    assert_eq!(tok.decode(&ids, true).unwrap(), "user\n\nHi");
}

/// SmolLM's tokenization of llama.cpp's `CHK_TXT` (the last `ggml-vocab-*.inp` input). The SHA-256
/// of this list printed Python-style (`"[198, 220, ...]"`) is
/// `855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249`, the hash
/// `convert_hf_to_gguf.py` records for the Hugging Face SmolLM tokenizer (`res = "smollm"`), so it
/// is the reference tokenization, not just Kiln's own output.
const SMOLLM_CHK_IDS: [u32; 230] = [
    3805, 8866, 1116, 3805, 197, 216, 1656, 216, 197, 11181, 472, 2367, 3914, 198, 10813, 244, 218,
    365, 5472, 25, 40303, 131, 321, 231, 10813, 230, 121, 31752, 365, 30404, 649, 21658, 271,
    46336, 483, 25, 4636, 246, 223, 15107, 116, 243, 10813, 116, 243, 216, 35, 216, 35, 35, 216,
    35, 35, 35, 216, 35, 35, 35, 35, 216, 35, 35, 35, 35, 35, 216, 35, 35, 35, 35, 35, 35, 216, 35,
    35, 35, 35, 35, 35, 35, 216, 35, 35, 35, 35, 35, 35, 35, 35, 216, 35, 30, 35, 216, 35, 950, 35,
    216, 35, 2026, 35, 15822, 248, 218, 40478, 131, 40478, 237, 172, 249, 229, 40478, 233, 172,
    249, 220, 40478, 240, 40478, 132, 40478, 249, 172, 249, 219, 40478, 249, 40478, 112, 40478,
    131, 40478, 223, 10813, 242, 219, 9148, 19805, 235, 177, 221, 128, 32632, 21949, 36149, 115,
    40994, 33, 35, 33, 36, 33, 37, 33, 18614, 119, 186, 138, 248, 216, 21771, 2031, 28733, 28050,
    6643, 46438, 6485, 40610, 5470, 235, 156, 228, 12681, 29441, 6511, 9175, 39511, 7872, 7855,
    11193, 1969, 1969, 3725, 1093, 1093, 5592, 950, 36689, 10095, 16693, 16693, 16693, 339, 3543,
    719, 637, 100, 793, 384, 506, 665, 28, 637, 3256, 346, 2090, 47, 637, 61, 441, 2090, 339, 3060,
    919, 357, 28, 637, 52, 346, 702, 634, 7188, 47, 1046, 23, 25917, 253, 23, 92, 60,
];

#[test]
fn smollm2_metadata_and_round_trip() {
    let (tok, info) = load("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert_eq!(
        (info.model.as_str(), info.pre.as_deref()),
        ("gpt2", Some("smollm"))
    );
    assert_eq!(info.vocab_size, 49152);
    assert_eq!(
        (info.bos_token_id, info.bos_token.as_deref()),
        (Some(1), Some("<|im_start|>"))
    );
    assert_eq!(
        (info.eos_token_id, info.eos_token.as_deref()),
        (Some(2), Some("<|im_end|>"))
    );
    assert_eq!(info.eot_token_id, Some(2));
    assert_eq!(info.unknown_token_id, Some(0));
    assert_eq!(info.padding_token_id, Some(2));
    assert!(!info.add_bos_token && !info.add_eos_token);
    assert_eq!(info.eog_token_ids(), vec![2]);
    let template = info.chat_template.as_deref().expect("chat template");
    assert!(
        template.contains("<|im_start|>") && template.contains("add_generation_prompt"),
        "{template}"
    );

    let text = "Hello, world! Ünïcödé — 日本語のテキスト, emoji 🦙🚀👩‍👩‍👧 and code:\n\
                fn main() {\n    let x = vec![1, 2, 3];\t// tab\n}\n\n\n   trailing spaces   \r\n\
                numbers 1234567890 3.14159 and 'quotes' \"double\" <html>&amp;</html>";
    let ids = tok.encode(text, false).unwrap().get_ids().to_vec();
    assert_eq!(tok.decode(&ids, false).unwrap(), text);
    // No BOS is added (add_bos_token = false).
    assert_eq!(tok.encode(text, true).unwrap().get_ids(), ids.as_slice());
    // smollm splits digits one by one.
    let digits = tok.encode("2024", false).unwrap().get_ids().to_vec();
    assert_eq!(digits.len(), 4, "{:?}", pieces(&tok, &digits));

    // Chat markup: special tokens are single ids and can be skipped when decoding.
    let chat = "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n";
    let ids = tok.encode(chat, false).unwrap().get_ids().to_vec();
    assert_eq!(ids.first(), Some(&1));
    assert_eq!(ids.iter().filter(|&&id| id == 1).count(), 2);
    assert_eq!(ids.iter().filter(|&&id| id == 2).count(), 1);
    assert_eq!(tok.decode(&ids, false).unwrap(), chat);
    assert_eq!(
        tok.decode(&ids, true).unwrap(),
        "user\nWhat is 2+2?\nassistant\n"
    );

    // The pre-tokenizer check text from llama.cpp's converter: whitespace runs, emoji, digits,
    // Khmer, CJK, Cyrillic, quotes and contractions.
    let vectors = read_vectors(&asset("vocab/ggml-vocab-llama-bpe.gguf"));
    let (chk, _) = vectors.last().expect("vectors");
    assert!(
        chk.starts_with("\n \n\n \n\n\n \t") && chk.ends_with("We'Ve a'lL"),
        "unexpected CHK_TXT"
    );
    let ids = tok.encode(chk.as_str(), true).unwrap().get_ids().to_vec();
    assert_eq!(
        ids,
        SMOLLM_CHK_IDS,
        "SmolLM2 tokenization of CHK_TXT differs from Hugging Face's:\n{:?}",
        pieces(&tok, &ids)
    );
    assert_eq!(tok.decode(&ids, false).unwrap(), *chk);
}
