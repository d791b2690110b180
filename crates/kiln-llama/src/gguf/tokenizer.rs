//! A Hugging Face [`tokenizers::Tokenizer`] built from a GGUF file's `tokenizer.ggml.*` metadata,
//! reproducing llama.cpp's tokenization (`src/llama-vocab.cpp`).
//!
//! - `tokenizer.ggml.model = "llama"` (SentencePiece, `llm_tokenizer_spm`): a BPE model whose merges
//!   are derived from the vocabulary, ranked by the score of the merged piece (highest first), with
//!   byte fallback; the normalizer prepends `▁` (`add_space_prefix`, default true) and replaces
//!   spaces with `▁`; the decoder undoes that. This is how `transformers` converts Llama's
//!   SentencePiece model, and it reproduces llama.cpp's highest-score-first merging: llama.cpp
//!   merges the adjacent pair whose concatenation is the best-scoring vocabulary piece, leftmost
//!   first on ties; equal scores between different pieces (Llama's runs of `▁` all score -1e9) are
//!   ranked longer piece first, which reproduces the leftmost-first growth of such runs.
//! - `tokenizer.ggml.model = "gpt2"` (byte-level BPE): the vocabulary and `tokenizer.ggml.merges`,
//!   pre-tokenized by the regexes llama.cpp picks for `tokenizer.ggml.pre` (see
//!   `tokenizer_pre.rs`), then GPT-2's byte-to-unicode mapping; a ByteLevel decoder. An unknown
//!   `tokenizer.ggml.pre` is an error ([`Error::Tokenizer`]), as it is for llama.cpp, rather than a
//!   silent fallback that would tokenize differently; an absent one uses llama.cpp's `"default"`
//!   regexes, as llama.cpp does.
//!
//! Control tokens (type 3) and the unknown token (type 2) become special added tokens, user-defined
//! tokens (type 4) plain added tokens; both are matched in raw input text (like llama.cpp with
//! `parse_special = true`) and control tokens are dropped by `decode(.., skip_special_tokens =
//! true)`. A `TemplateProcessing` post-processor adds BOS/EOS when `encode(.., add_special_tokens =
//! true)` and the file asks for them.

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::{SpecialToken, TemplateProcessing};
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior,
    Tokenizer,
};

use super::reader::GgufFile;
use super::tokenizer_pre::{KNOWN_PRE, pre_tokenizer_config};
use super::value::GgufValue;
use crate::error::{Error, Result};

/// llama.cpp token types (`tokenizer.ggml.token_type`).
mod token_type {
    pub const NORMAL: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const CONTROL: i32 = 3;
    pub const USER_DEFINED: i32 = 4;
    pub const BYTE: i32 = 6;
}

/// Texts llama.cpp recognizes as end-of-turn tokens when `tokenizer.ggml.eot_token_id` is absent,
/// in the order Kiln prefers them.
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];

/// What a GGUF file says about its tokenizer besides the vocabulary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GgufTokenizerInfo {
    /// `tokenizer.ggml.model`: `"llama"` (SentencePiece) or `"gpt2"` (byte-level BPE).
    pub model: String,
    /// `tokenizer.ggml.pre`, the pre-tokenizer name of a BPE vocabulary (`"llama-bpe"`, `"smollm"`).
    pub pre: Option<String>,
    /// Number of tokens in the vocabulary.
    pub vocab_size: usize,
    /// Beginning-of-sequence token (`tokenizer.ggml.bos_token_id`; SentencePiece defaults to 1).
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token (`tokenizer.ggml.eos_token_id`; SentencePiece defaults to 2).
    pub eos_token_id: Option<u32>,
    /// End-of-turn token: `tokenizer.ggml.eot_token_id`, else the first control-looking token found
    /// by text (`<|eot_id|>`, `<|im_end|>`, `<|end|>`, `<end_of_turn>`, `<|endoftext|>`, ...), as
    /// llama.cpp does.
    pub eot_token_id: Option<u32>,
    /// End-of-message token: `tokenizer.ggml.eom_token_id`, else `<|eom_id|>` if present.
    pub eom_token_id: Option<u32>,
    /// Unknown token (`tokenizer.ggml.unknown_token_id`; SentencePiece defaults to 0).
    pub unknown_token_id: Option<u32>,
    /// Padding token (`tokenizer.ggml.padding_token_id`).
    pub padding_token_id: Option<u32>,
    /// Whether encoding with special tokens prepends BOS (`tokenizer.ggml.add_bos_token`; default as
    /// in llama.cpp: true for SentencePiece and for Llama-3-style BPE, else false).
    pub add_bos_token: bool,
    /// Whether encoding with special tokens appends EOS (`tokenizer.ggml.add_eos_token`, default
    /// false).
    pub add_eos_token: bool,
    /// Whether SentencePiece text gets a leading `▁` (`tokenizer.ggml.add_space_prefix`; default
    /// true for SentencePiece; unused by BPE).
    pub add_space_prefix: bool,
    /// `tokenizer.chat_template`, the Jinja chat template.
    pub chat_template: Option<String>,
    /// The text of the BOS token.
    pub bos_token: Option<String>,
    /// The text of the EOS token.
    pub eos_token: Option<String>,
}

impl GgufTokenizerInfo {
    /// The tokens that end generation: EOS, EOT and EOM, deduplicated.
    pub fn eog_token_ids(&self) -> Vec<u32> {
        let mut out = Vec::new();
        for id in [self.eos_token_id, self.eot_token_id, self.eom_token_id]
            .into_iter()
            .flatten()
        {
            if !out.contains(&id) {
                out.push(id);
            }
        }
        out
    }
}

/// Builds the tokenizer described by `file`'s `tokenizer.ggml.*` metadata, and its
/// [`GgufTokenizerInfo`].
///
/// Errors: [`Error::Metadata`] for missing or ill-typed keys (tokens, scores, types, merges, token
/// ids out of range); [`Error::Tokenizer`] for an unknown `tokenizer.ggml.model` or
/// `tokenizer.ggml.pre`, or when `tokenizers` rejects the result.
pub fn tokenizer_from_gguf(file: &GgufFile) -> Result<(Tokenizer, GgufTokenizerInfo)> {
    let source = format!("{} (GGUF metadata)", file.path().display());
    let tok_err = |message: String| Error::Tokenizer {
        source_name: source.clone(),
        message,
    };
    let model = file.get_str("tokenizer.ggml.model")?.to_owned();
    let pre = file.opt_str("tokenizer.ggml.pre")?.map(str::to_owned);

    let tokens = string_array(file, "tokenizer.ggml.tokens")?;
    let n = tokens.len();
    let types = match file.get("tokenizer.ggml.token_type") {
        None => vec![token_type::NORMAL; n],
        Some(_) => int_array(file, "tokenizer.ggml.token_type", n)?,
    };

    let is_spm = match model.as_str() {
        "llama" => true,
        "gpt2" => false,
        other => {
            return Err(tok_err(format!(
                "unsupported tokenizer.ggml.model `{other}` (Kiln supports \"llama\" (SentencePiece) and \"gpt2\" \
                 (byte-level BPE))"
            )));
        }
    };
    let pre_cfg = if is_spm {
        None
    } else {
        Some(pre_tokenizer_config(pre.as_deref()).ok_or_else(|| {
            tok_err(format!(
                "unknown tokenizer.ggml.pre `{}` (llama.cpp refuses it too); known: {KNOWN_PRE}",
                pre.as_deref().unwrap_or_default()
            ))
        })?)
    };

    let token_id = |key: &str, default: Option<u32>| -> Result<Option<u32>> {
        match file.opt_u64(key)? {
            None => Ok(default),
            Some(id) if (id as usize) < n => Ok(Some(id as u32)),
            Some(id) => Err(Error::Metadata {
                path: file.path().display().to_string(),
                key: key.to_owned(),
                message: format!("token id {id} is out of range for a vocabulary of {n} tokens"),
            }),
        }
    };
    let spm_default = |id: u32| {
        if is_spm && (id as usize) < n {
            Some(id)
        } else {
            None
        }
    };
    let find_text = |texts: &[&str]| {
        texts
            .iter()
            .find_map(|t| tokens.iter().position(|tok| tok == t).map(|i| i as u32))
    };
    let bos = token_id("tokenizer.ggml.bos_token_id", spm_default(1))?;
    let eos = token_id("tokenizer.ggml.eos_token_id", spm_default(2))?;
    let info = GgufTokenizerInfo {
        model: model.clone(),
        pre: pre.clone(),
        vocab_size: n,
        bos_token_id: bos,
        eos_token_id: eos,
        eot_token_id: token_id("tokenizer.ggml.eot_token_id", find_text(EOT_TEXTS))?,
        eom_token_id: token_id("tokenizer.ggml.eom_token_id", find_text(&["<|eom_id|>"]))?,
        unknown_token_id: token_id("tokenizer.ggml.unknown_token_id", spm_default(0))?,
        padding_token_id: token_id("tokenizer.ggml.padding_token_id", None)?,
        add_bos_token: file
            .opt_bool("tokenizer.ggml.add_bos_token")?
            .unwrap_or(pre_cfg.is_none_or(|c| c.add_bos)),
        add_eos_token: file
            .opt_bool("tokenizer.ggml.add_eos_token")?
            .unwrap_or(false),
        add_space_prefix: file
            .opt_bool("tokenizer.ggml.add_space_prefix")?
            .unwrap_or(is_spm),
        chat_template: file.opt_str("tokenizer.chat_template")?.map(str::to_owned),
        bos_token: bos.and_then(|id| tokens.get(id as usize).cloned()),
        eos_token: eos.and_then(|id| tokens.get(id as usize).cloned()),
    };

    let mut tokenizer = match pre_cfg {
        None => {
            let scores = match file.get("tokenizer.ggml.scores") {
                None => vec![0.0; n],
                Some(_) => float_array(file, "tokenizer.ggml.scores", n)?,
            };
            spm_tokenizer(&tokens, &types, &scores, &info).map_err(&tok_err)?
        }
        Some(cfg) => {
            let merges = string_array(file, "tokenizer.ggml.merges")?;
            bpe_tokenizer(&tokens, &merges, cfg.regexes, cfg.ignore_merges).map_err(&tok_err)?
        }
    };

    let mut special = Vec::new();
    let mut user = Vec::new();
    for (text, &ty) in tokens.iter().zip(&types) {
        match ty {
            token_type::CONTROL | token_type::UNKNOWN => {
                special.push(AddedToken::from(text.clone(), true).normalized(false))
            }
            token_type::USER_DEFINED => {
                user.push(AddedToken::from(text.clone(), false).normalized(false))
            }
            _ => {}
        }
    }
    tokenizer.add_special_tokens(&special);
    tokenizer.add_tokens(&user);

    if let Some(post) = post_processor(&info).map_err(&tok_err)? {
        tokenizer.with_post_processor(Some(post));
    }
    Ok((tokenizer, info))
}

/// The BOS/EOS template, or `None` when the file adds neither.
fn post_processor(
    info: &GgufTokenizerInfo,
) -> std::result::Result<Option<TemplateProcessing>, String> {
    let bos = if info.add_bos_token {
        info.bos_token_id.zip(info.bos_token.clone())
    } else {
        None
    };
    let eos = if info.add_eos_token {
        info.eos_token_id.zip(info.eos_token.clone())
    } else {
        None
    };
    if bos.is_none() && eos.is_none() {
        return Ok(None);
    }
    let (mut single, mut pair, mut specials) = (Vec::new(), Vec::new(), Vec::new());
    if let Some((id, text)) = bos.clone() {
        single.push("BOS");
        pair.push("BOS");
        specials.push(
            SpecialToken::new("BOS".into(), vec![id], vec![text]).map_err(|e| e.to_string())?,
        );
    }
    single.push("$A");
    pair.push("$A");
    if let Some((id, text)) = eos.clone() {
        single.push("EOS");
        pair.push("EOS");
        specials.push(
            SpecialToken::new("EOS".into(), vec![id], vec![text]).map_err(|e| e.to_string())?,
        );
    }
    let mut pair_b: Vec<&str> = Vec::new();
    if bos.is_some() {
        pair_b.push("BOS:1");
    }
    pair_b.push("$B:1");
    if eos.is_some() {
        pair_b.push("EOS:1");
    }
    pair.extend(pair_b);
    TemplateProcessing::builder()
        .try_single(single)
        .and_then(|b| b.try_pair(pair))
        .map_err(|e| e.to_string())?
        .special_tokens(specials)
        .build()
        .map(Some)
        .map_err(|e| e.to_string())
}

/// The SentencePiece tokenizer (see the module docs).
fn spm_tokenizer(
    tokens: &[String],
    types: &[i32],
    scores: &[f32],
    info: &GgufTokenizerInfo,
) -> std::result::Result<Tokenizer, String> {
    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    // A piece takes part in merges unless it is a byte, control or unknown token.
    let mergeable = |id: u32| {
        !matches!(
            types.get(id as usize),
            Some(&token_type::BYTE) | Some(&token_type::CONTROL) | Some(&token_type::UNKNOWN)
        )
    };
    let mut candidates: Vec<(f32, usize, usize, &str, &str)> = Vec::new();
    for (id, text) in tokens.iter().enumerate() {
        if vocab.get(text) != Some(&(id as u32)) || !mergeable(id as u32) {
            continue;
        }
        let score = scores.get(id).copied().unwrap_or(0.0);
        for (k, _) in text.char_indices().skip(1) {
            let (left, right) = text.split_at(k);
            let ok = |s: &str| vocab.get(s).is_some_and(|&i| mergeable(i));
            if ok(left) && ok(right) {
                candidates.push((score, text.len(), left.len(), left, right));
            }
        }
    }
    // Highest score first; on equal scores the longer piece, then the longer left part.
    candidates.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)).then(b.2.cmp(&a.2)));
    let merges = candidates
        .into_iter()
        .map(|(_, _, _, l, r)| (l.to_owned(), r.to_owned()))
        .collect();

    let mut builder = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .byte_fallback(true)
        .fuse_unk(true);
    if let Some(unk) = info.unknown_token_id.and_then(|id| tokens.get(id as usize)) {
        builder = builder.unk_token(unk.clone());
    }
    let bpe = builder
        .build()
        .map_err(|e| format!("building the SentencePiece BPE model: {e}"))?;
    let mut tokenizer = Tokenizer::new(bpe);

    let replace = |from: &str, to: &str| Replace::new(from, to).map_err(|e| e.to_string());
    let mut normalizers: Vec<NormalizerWrapper> = Vec::new();
    if info.add_space_prefix {
        normalizers.push(Prepend::new("▁".into()).into());
    }
    normalizers.push(replace(" ", "▁")?.into());
    tokenizer.with_normalizer(Some(NormalizerSequence::new(normalizers)));

    let mut decoders: Vec<DecoderWrapper> = vec![
        replace("▁", " ")?.into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    if info.add_space_prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }
    tokenizer.with_decoder(Some(DecoderSequence::new(decoders)));
    Ok(tokenizer)
}

/// The byte-level BPE tokenizer (see the module docs).
fn bpe_tokenizer(
    tokens: &[String],
    merges: &[String],
    regexes: &[&str],
    ignore_merges: bool,
) -> std::result::Result<Tokenizer, String> {
    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    // Like llama.cpp, split each merge at the first space after its first character. Merges whose parts
    // or result are not in the vocabulary can never apply; they are skipped.
    let mut pairs = Vec::with_capacity(merges.len());
    for m in merges {
        let first = m.chars().next().map_or(0, char::len_utf8);
        let Some(pos) = m
            .get(first..)
            .and_then(|rest| rest.find(' '))
            .map(|p| p + first)
        else {
            continue;
        };
        let (left, right) = (&m[..pos], &m[pos + 1..]);
        if vocab.contains_key(left)
            && vocab.contains_key(right)
            && vocab.contains_key(&format!("{left}{right}"))
        {
            pairs.push((left.to_owned(), right.to_owned()));
        }
    }
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, pairs)
        .ignore_merges(ignore_merges)
        .build()
        .map_err(|e| format!("building the BPE model: {e}"))?;
    let mut tokenizer = Tokenizer::new(bpe);

    let mut pre: Vec<PreTokenizerWrapper> = Vec::with_capacity(regexes.len() + 1);
    for re in regexes {
        let split = Split::new(
            SplitPattern::Regex((*re).to_owned()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| format!("pre-tokenizer regex {re:?}: {e}"))?;
        pre.push(split.into());
    }
    pre.push(ByteLevel::new(false, true, false).into());
    tokenizer.with_pre_tokenizer(Some(PreTokenizerSequence::new(pre)));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    Ok(tokenizer)
}

fn metadata_err(file: &GgufFile, key: &str, message: String) -> Error {
    Error::Metadata {
        path: file.path().display().to_string(),
        key: key.to_owned(),
        message,
    }
}

/// Metadata `key` as an array of strings.
fn string_array(file: &GgufFile, key: &str) -> Result<Vec<String>> {
    file.get_array(key)?
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            GgufValue::String(s) => Ok(s.clone()),
            other => Err(metadata_err(
                file,
                key,
                format!("element {i} is {}, expected a string", other.type_name()),
            )),
        })
        .collect()
}

/// Metadata `key` as an array of `n` integers.
fn int_array(file: &GgufFile, key: &str, n: usize) -> Result<Vec<i32>> {
    let items = file.get_array(key)?;
    if items.len() != n {
        return Err(metadata_err(
            file,
            key,
            format!("has {} entries for {n} tokens", items.len()),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, v)| {
            v.as_i64()
                .and_then(|x| i32::try_from(x).ok())
                .ok_or_else(|| {
                    metadata_err(
                        file,
                        key,
                        format!(
                            "element {i} is {} {v}, expected a 32-bit integer",
                            v.type_name()
                        ),
                    )
                })
        })
        .collect()
}

/// Metadata `key` as an array of `n` floats.
fn float_array(file: &GgufFile, key: &str, n: usize) -> Result<Vec<f32>> {
    let items = file.get_array(key)?;
    if items.len() != n {
        return Err(metadata_err(
            file,
            key,
            format!("has {} entries for {n} tokens", items.len()),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, v)| {
            v.as_f32().ok_or_else(|| {
                metadata_err(
                    file,
                    key,
                    format!("element {i} is {}, expected a number", v.type_name()),
                )
            })
        })
        .collect()
}
