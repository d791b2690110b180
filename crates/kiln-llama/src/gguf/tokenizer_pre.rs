//! The pre-tokenizer regexes of byte-level BPE vocabularies, chosen by `tokenizer.ggml.pre` the way
//! llama.cpp's `llm_tokenizer_bpe` does (`src/llama-vocab.cpp`).
//!
//! Each entry is a list of regexes applied in turn, every one splitting the pieces the previous
//! left, keeping both the matches and the text between them (Hugging Face `Split` with
//! `Isolated`). Where llama.cpp rewrote a regex for `std::regex` and kept the original from the
//! model's `tokenizer.json` in a comment, the original is used here: fancy-regex supports it, and it
//! is what the reference tokenizations were made with.

/// How a byte-level BPE vocabulary pre-tokenizes and merges.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PreTokenizerConfig {
    /// The regexes, applied in order.
    pub regexes: &'static [&'static str],
    /// Whether a pre-token that is itself in the vocabulary skips merging (`ignore_merges`).
    pub ignore_merges: bool,
    /// llama.cpp's default for `add_bos` when `tokenizer.ggml.add_bos_token` is absent.
    pub add_bos: bool,
}

/// GPT-2's regex (`tokenizers`' ByteLevel regex).
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// Llama 3's regex (also DBRX, Smaug, ChatGLM4).
const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen 2's regex (single digits).
const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

const GPT4O: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

const PORO: &str = r" ?[^(\s|.,!?…。，、।۔،)]+";

const CJK: &str = "[\u{4e00}-\u{9fa5}\u{800}-\u{4e00}\u{ac00}-\u{d7ff}]+";

const DEEPSEEK_LLM: &[&str] = &[
    "[\r\n]",
    "\\s?[A-Za-z\u{b5}\u{c0}-\u{d6}\u{d8}-\u{f6}\u{f8}-\u{1ba}\u{1bc}-\u{1bf}\u{1c4}-\u{293}\u{295}-\u{2af}\u{370}-\u{373}\u{376}\u{377}\u{37b}-\u{37d}\u{37f}\u{386}\u{388}-\u{38a}\u{38c}\u{38e}-\u{3a1}\u{3a3}-\u{3f5}\u{3f7}-\u{481}\u{48a}-\u{52f}\u{531}-\u{556}\u{10a0}-\u{10c5}\u{13a0}-\u{13f5}\u{13f8}-\u{13fd}\u{1c90}-\u{1cba}\u{1cbd}-\u{1cbf}\u{1d00}-\u{1d2b}\u{1d6b}-\u{1d77}\u{1d79}-\u{1d9a}\u{1e00}-\u{1f15}\u{1f18}-\u{1f1d}\u{1f20}-\u{1f45}\u{1f48}-\u{1f4d}\u{1f50}-\u{1f57}\u{1f59}\u{1f5b}\u{1f5d}\u{1f5f}-\u{1f7d}\u{1f80}-\u{1fb4}\u{1fb6}-\u{1fbc}\u{1fbe}\u{1fc2}-\u{1fc4}\u{1fc6}-\u{1fcc}\u{1fd0}-\u{1fd3}\u{1fd6}-\u{1fdb}\u{1fe0}-\u{1fec}\u{1ff2}-\u{1ff4}\u{1ff6}-\u{1ffc}\u{2102}\u{2107}\u{210a}-\u{2113}\u{2115}\u{2119}-\u{211d}\u{2124}\u{2126}\u{2128}\u{212a}-\u{212d}\u{212f}-\u{2134}\u{2139}\u{213c}-\u{213f}\u{2145}-\u{2149}\u{214e}\u{2183}\u{2184}\u{2c00}-\u{2c7b}\u{2c7e}-\u{2ce4}\u{2ceb}-\u{2cee}\u{2cf2}\u{2cf3}\u{a640}-\u{a66d}\u{a680}-\u{a69b}\u{a722}-\u{a76f}\u{a771}-\u{a787}\u{a78b}-\u{a78e}\u{ab70}-\u{abbf}\u{fb00}-\u{fb06}\u{fb13}-\u{fb17}\u{ff21}-\u{ff3a}\u{ff41}-\u{ff5a}\u{10400}-\u{1044f}\u{104b0}-\u{104d3}\u{104d8}-\u{104fb}\u{10c80}-\u{10cb2}\u{10cc0}-\u{10cf2}\u{118a0}-\u{118df}\u{1e900}-\u{1e943}]+",
    "\\s?[!-/:-~\u{ff01}-\u{ff0f}\u{ff1a}-\u{ff5e}\u{2018}-\u{201f}\u{3000}-\u{3002}]+",
    r"\s+$",
    CJK,
    r"\p{N}+",
];

const DEEPSEEK_CODER: &[&str] = &["[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", CJK, r"\p{N}"];

const FALCON: &[&str] = &[
    r"[\p{P}\$\+<=>\^~\|`]+",
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)",
    r"[0-9][0-9][0-9]",
];

/// llama.cpp's `LLAMA_VOCAB_PRE_TYPE_DEFAULT`, used for `"default"` and a missing `pre`.
const DEFAULT: &[&str] = &[
    r"[\p{P}\$\+<=>\^~\|]+",
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)",
    r"\p{N}+",
    r"[0-9][0-9][0-9]",
];

const fn cfg(
    regexes: &'static [&'static str],
    ignore_merges: bool,
    add_bos: bool,
) -> PreTokenizerConfig {
    PreTokenizerConfig {
        regexes,
        ignore_merges,
        add_bos,
    }
}

/// The configuration for `tokenizer.ggml.pre` = `pre` (`None`: absent), or `None` for a value
/// llama.cpp does not know either (it refuses to load such a model).
pub(crate) fn pre_tokenizer_config(pre: Option<&str>) -> Option<PreTokenizerConfig> {
    let Some(pre) = pre else {
        return Some(cfg(DEFAULT, false, false));
    };
    Some(match pre {
        "default" => cfg(DEFAULT, false, false),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" => cfg(&[LLAMA3], true, true),
        "dbrx" | "smaug-bpe" | "chatglm-bpe" => cfg(&[LLAMA3], false, false),
        "glm4" => cfg(&[LLAMA3], true, false),
        "deepseek-llm" => cfg(DEEPSEEK_LLM, false, false),
        "deepseek-coder" => cfg(DEEPSEEK_CODER, false, false),
        "falcon" => cfg(FALCON, false, false),
        "starcoder" | "refact" | "command-r" | "smollm" | "codeshell" | "exaone" | "minerva-7b" => {
            cfg(&[r"\p{N}", GPT2], false, false)
        }
        "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de"
        | "a.x-4.0" | "mellum" | "modern-bert" | "jina-v1-en" | "jina-v2-code" | "roberta-bpe"
        | "mpt" | "olmo" | "jais" | "trillion" | "exaone4" => cfg(&[GPT2], false, false),
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "stablelm2" | "megrez" | "hunyuan" => {
            cfg(&[QWEN2], false, false)
        }
        "poro-chat" | "bloom" | "gpt3-finnish" => cfg(&[PORO], false, false),
        "viking" => cfg(&[PORO, r"\p{N}"], false, false),
        "tekken" => cfg(&[TEKKEN], true, true),
        "gpt-4o" | "llama4" => cfg(&[GPT4O], false, false),
        _ => return None,
    })
}

/// The `tokenizer.ggml.pre` values [`pre_tokenizer_config`] knows, for error messages.
pub(crate) const KNOWN_PRE: &str = "default, llama3/llama-bpe (and llama-v3, falcon3, falcon-h1, pixtral, \
    midm-2.0, lfm2), dbrx, smaug-bpe, chatglm-bpe, glm4, deepseek-llm, deepseek-coder, falcon, starcoder, refact, \
    command-r, smollm, codeshell, exaone, minerva-7b, gpt-2 (and phi-2, mpt, olmo, jais, roberta-bpe, ...), \
    qwen2 (and stablelm2, deepseek-r1-qwen, megrez, hunyuan, ...), poro-chat, bloom, gpt3-finnish, viking, tekken, \
    gpt-4o, llama4";

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::SplitDelimiterBehavior;
    use tokenizers::pre_tokenizers::split::{Split, SplitPattern};

    #[test]
    fn every_regex_compiles_with_fancy_regex() {
        let names = [
            "default",
            "llama-bpe",
            "dbrx",
            "glm4",
            "deepseek-llm",
            "deepseek-coder",
            "falcon",
            "smollm",
            "gpt-2",
            "qwen2",
            "poro-chat",
            "viking",
            "tekken",
            "gpt-4o",
        ];
        for name in names {
            let cfg = pre_tokenizer_config(Some(name)).unwrap();
            for re in cfg.regexes {
                Split::new(
                    SplitPattern::Regex((*re).to_owned()),
                    SplitDelimiterBehavior::Isolated,
                    false,
                )
                .unwrap_or_else(|e| panic!("{name}: {re}: {e}"));
            }
        }
        assert!(pre_tokenizer_config(Some("no-such-pre")).is_none());
        assert!(pre_tokenizer_config(None).is_some());
    }
}
