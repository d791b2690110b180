//! CLIP's byte-level BPE tokenizer, identical to transformers' `CLIPTokenizer`.
//!
//! The reference is transformers 5.x `CLIPTokenizer`, which is backed by the `tokenizers` library (the
//! slow Python tokenizer, with its ftfy / `BasicTokenizer` fallback, no longer exists there). Its
//! pipeline, reproduced here step by step:
//!
//! 1. The special tokens `<|startoftext|>` and `<|endoftext|>` are cut out of the **raw** text first
//!    (case-sensitive, not normalised) and map straight to their ids; the rest is processed in segments.
//! 2. Normalisation of each segment: Unicode NFC, every run of whitespace (`\s+`) replaced by one space,
//!    lower-casing character by character (`char::to_lowercase`, as the `tokenizers` Lowercase
//!    normalizer: no context-dependent rules, so a word-final `Σ` becomes `σ`, not `ς`).
//! 3. Pre-tokenisation: the CLIP regex
//!    `<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`
//!    keeps its matches and drops everything else (so whitespace disappears); then the GPT-2 byte-level
//!    pre-tokeniser splits each piece again with the GPT-2 regex (this only matters for lower-cased
//!    special-token look-alikes such as `<|STARTOFTEXT|>`, which become `<|`, `startoftext`, `|>`) and maps
//!    the UTF-8 bytes through `bytes_to_unicode`.
//! 4. BPE on each word with the end-of-word suffix `</w>` on its last symbol, merges applied by rank
//!    (results are cached per word).
//! 5. `<|startoftext|>` (49406) and `<|endoftext|>` (49407) around the result.
//!
//! ## Difference from open_clip / OpenAI CLIP
//!
//! OpenAI's and open_clip's `SimpleTokenizer` clean text with `ftfy.fix_text` and a double
//! `html.unescape` (so `&amp;` becomes `&`, mojibake is repaired), strip and collapse whitespace with
//! Python's `str.split`, and do no NFC normalisation. This tokenizer does **not** do the ftfy / HTML
//! cleaning: it matches transformers, where `&amp;` stays `&amp;`. Checked on this crate's 67 fixture
//! texts against open_clip 3.3.0's `SimpleTokenizer` (with `ftfy.fix_text` stubbed as the identity), 6
//! differ, all for these reasons: HTML entities, a decomposed `e\u{301}` (NFC here, not in open_clip),
//! and special-token strings inside the text, which open_clip's `encode` BPE-encodes as ordinary text
//! (`<|endoftext|>` -> `<`, `|`, `endoftext`, `|>`) while transformers and this crate map them to
//! 49406 / 49407. For clean NFC text without those strings the ids are the same.
//!
//! ## Padding
//!
//! transformers' `openai/clip-vit-*` tokenizers pad with `<|endoftext|>` (49407, the default here,
//! [`Padding::EndOfText`]); open_clip pads with 0 ([`Padding::Zero`]), which is the token `!` but is
//! never attended to by CLIP's causal text model before the EOS position it pools.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::Mutex;

use regex::Regex;
use unicode_normalization_alignments::UnicodeNormalization;

use crate::preprocess::{ClipError, Result};

/// The id of `<|startoftext|>` in the CLIP vocabulary.
pub const BOS_ID: u32 = 49406;
/// The id of `<|endoftext|>` in the CLIP vocabulary.
pub const EOS_ID: u32 = 49407;
/// CLIP's text context length.
pub const CONTEXT_LENGTH: usize = 77;

const BOS_TOKEN: &str = "<|startoftext|>";
const EOS_TOKEN: &str = "<|endoftext|>";
const END_OF_WORD: &str = "</w>";
/// Number of merges of the 16e6 vocabulary used by CLIP: `49152 - 256 - 2`.
const GZ_MERGES: usize = 49152 - 256 - 2;
/// The per-word cache stops growing at this many entries (as `tokenizers`' BPE cache).
const CACHE_CAPACITY: usize = 10_000;

const CLIP_PATTERN: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";
/// GPT-2's byte-level regex without its `\s+(?!\S)` branch: the pieces it is applied to contain no
/// whitespace, where that branch cannot match.
const GPT2_PATTERN: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+";

/// The token used to pad [`ClipTokenizer::encode_batch`] rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Padding {
    /// `<|endoftext|>` (49407), as transformers' `openai/clip-vit-*` tokenizer configs.
    #[default]
    EndOfText,
    /// Id 0, as open_clip's `tokenize`.
    Zero,
}

impl Padding {
    fn id(self) -> u32 {
        match self {
            Padding::EndOfText => EOS_ID,
            Padding::Zero => 0,
        }
    }
}

/// GPT-2's `bytes_to_unicode`: a reversible map of the 256 byte values onto printable characters, in
/// the order of the reference's dict (printable ranges first, then the remaining bytes as `256 + n`).
fn bytes_to_unicode() -> Vec<(u8, char)> {
    let mut bs: Vec<u32> = (u32::from(b'!')..=u32::from(b'~'))
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    bs.into_iter()
        .zip(cs)
        .filter_map(|(b, c)| Some((u8::try_from(b).ok()?, char::from_u32(c)?)))
        .collect()
}

/// CLIP's BPE tokenizer. See the [module documentation](self) for the exact pipeline.
pub struct ClipTokenizer {
    encoder: HashMap<String, u32>,
    decoder: Vec<Option<String>>,
    /// `(left id, right id) -> (rank, merged id)`.
    merges: HashMap<(u32, u32), (u32, u32)>,
    byte_encoder: [char; 256],
    byte_decoder: HashMap<char, u8>,
    clip_re: Regex,
    gpt2_re: Regex,
    ws_re: Regex,
    cache: Mutex<HashMap<String, Vec<u32>>>,
    bos: u32,
    eos: u32,
    padding: Padding,
}

impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTokenizer")
            .field("vocab_size", &self.decoder.len())
            .field("merges", &self.merges.len())
            .field("padding", &self.padding)
            .finish_non_exhaustive()
    }
}

fn parse_err(path: &Path, reason: impl Into<String>) -> ClipError {
    ClipError::VocabParse {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| ClipError::VocabIo {
        path: path.to_path_buf(),
        source,
    })
}

fn utf8(path: &Path, bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| parse_err(path, format!("not UTF-8: {e}")))
}

impl ClipTokenizer {
    /// Loads OpenAI's `bpe_simple_vocab_16e6.txt.gz` (as shipped by open_clip): a header line, then
    /// merges. As the reference, it keeps merge lines `1 ..= 48894` and builds the vocabulary as the 256
    /// `bytes_to_unicode` symbols, the same with `</w>`, every merge joined, then `<|startoftext|>` and
    /// `<|endoftext|>` (49408 tokens).
    pub fn from_bpe_gz(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let raw = read_file(path)?;
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut text)
            .map_err(|e| parse_err(path, format!("not a valid gzip file: {e}")))?;
        let text = utf8(path, text)?;
        let lines: Vec<&str> = text.split('\n').collect();
        if lines.len() < GZ_MERGES + 1 {
            return Err(parse_err(
                path,
                format!(
                    "{} lines, expected at least {} (a header and {GZ_MERGES} merges)",
                    lines.len(),
                    GZ_MERGES + 1
                ),
            ));
        }
        let mut merges = Vec::with_capacity(GZ_MERGES);
        for (i, line) in lines[1..=GZ_MERGES].iter().enumerate() {
            let mut parts = line.split_whitespace();
            match (parts.next(), parts.next(), parts.next()) {
                (Some(a), Some(b), None) => merges.push((a.to_string(), b.to_string())),
                _ => {
                    return Err(parse_err(
                        path,
                        format!("line {}: expected a merge `a b`, got {line:?}", i + 2),
                    ));
                }
            }
        }
        let symbols: Vec<char> = bytes_to_unicode().into_iter().map(|(_, c)| c).collect();
        let mut vocab: Vec<String> = symbols.iter().map(|c| c.to_string()).collect();
        vocab.extend(symbols.iter().map(|c| format!("{c}{END_OF_WORD}")));
        vocab.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
        vocab.push(BOS_TOKEN.to_string());
        vocab.push(EOS_TOKEN.to_string());
        let mut encoder = HashMap::with_capacity(vocab.len());
        for (i, tok) in vocab.into_iter().enumerate() {
            let id = u32::try_from(i).map_err(|_| parse_err(path, "vocabulary too large"))?;
            // As a Python dict built from a list: a later duplicate wins.
            encoder.insert(tok, id);
        }
        Self::build(encoder, merges, path)
    }

    /// Loads the Hugging Face files: `vocab.json` (token -> id) and `merges.txt` (`#version` header
    /// lines are skipped, then one `a b` merge per line, by rank).
    pub fn from_vocab_merges(
        vocab_json: impl AsRef<Path>,
        merges_txt: impl AsRef<Path>,
    ) -> Result<Self> {
        let vpath = vocab_json.as_ref();
        let mpath = merges_txt.as_ref();
        let vtext = utf8(vpath, read_file(vpath)?)?;
        let encoder: HashMap<String, u32> = serde_json::from_str(&vtext)
            .map_err(|e| parse_err(vpath, format!("not a JSON object of token ids: {e}")))?;
        let mtext = utf8(mpath, read_file(mpath)?)?;
        let mut merges = Vec::new();
        for (i, line) in mtext.lines().enumerate() {
            if line.starts_with("#version") || line.trim().is_empty() {
                continue;
            }
            let mut parts = line.split(' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(a), Some(b), None) if !a.is_empty() && !b.is_empty() => {
                    merges.push((a.to_string(), b.to_string()));
                }
                _ => {
                    return Err(parse_err(
                        mpath,
                        format!("line {}: expected a merge `a b`, got {line:?}", i + 1),
                    ));
                }
            }
        }
        if merges.is_empty() {
            return Err(parse_err(mpath, "no merges"));
        }
        for special in [BOS_TOKEN, EOS_TOKEN] {
            if !encoder.contains_key(special) {
                return Err(parse_err(vpath, format!("no {special} token")));
            }
        }
        Self::build(encoder, merges, mpath)
    }

    /// Loads a `tokenizers` `tokenizer.json` with a BPE model (`model.vocab`, `model.merges` as
    /// `"a b"` strings or `["a", "b"]` pairs), as transformers' fast CLIP tokenizers are saved.
    pub fn from_tokenizer_json(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = utf8(path, read_file(path)?)?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| parse_err(path, format!("not JSON: {e}")))?;
        let model = json
            .get("model")
            .ok_or_else(|| parse_err(path, "no `model` object"))?;
        if let Some(kind) = model.get("type").and_then(|t| t.as_str())
            && kind != "BPE"
        {
            return Err(parse_err(
                path,
                format!("`model.type` is {kind:?}, expected \"BPE\""),
            ));
        }
        let encoder: HashMap<String, u32> = serde_json::from_value(
            model
                .get("vocab")
                .cloned()
                .ok_or_else(|| parse_err(path, "no `model.vocab`"))?,
        )
        .map_err(|e| parse_err(path, format!("`model.vocab`: {e}")))?;
        let list = model
            .get("merges")
            .and_then(|m| m.as_array())
            .ok_or_else(|| parse_err(path, "no `model.merges` array"))?;
        let mut merges = Vec::with_capacity(list.len());
        for (i, m) in list.iter().enumerate() {
            let pair = match m {
                serde_json::Value::String(line) => line
                    .split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string())),
                serde_json::Value::Array(v) if v.len() == 2 => {
                    match (v[0].as_str(), v[1].as_str()) {
                        (Some(a), Some(b)) => Some((a.to_string(), b.to_string())),
                        _ => None,
                    }
                }
                _ => None,
            };
            merges.push(
                pair.ok_or_else(|| parse_err(path, format!("`model.merges[{i}]` is not a merge")))?,
            );
        }
        if merges.is_empty() {
            return Err(parse_err(path, "no merges"));
        }
        Self::build(encoder, merges, path)
    }

    /// Writes `vocab.json`, `merges.txt` and a `tokenizer_config.json` into `dir` (each file
    /// atomically), the files transformers' `CLIPTokenizer.from_pretrained(dir)` reads.
    ///
    /// # Errors
    /// [`ClipError::Io`] naming the file.
    pub fn save(&self, dir: impl AsRef<Path>, model_max_length: usize) -> Result<()> {
        let dir = dir.as_ref();
        let mut vocab: Vec<(&String, &u32)> = self.encoder.iter().collect();
        vocab.sort_by_key(|(_, id)| **id);
        let vocab: serde_json::Map<String, serde_json::Value> = vocab
            .into_iter()
            .map(|(t, id)| (t.clone(), serde_json::Value::from(*id)))
            .collect();
        let mut ranked: Vec<_> = self.merges.iter().collect();
        ranked.sort_by_key(|(_, (rank, _))| *rank);
        let mut merges = String::from("#version: 0.2\n");
        for ((a, b), _) in ranked {
            let tok = |id: u32| {
                self.decoder
                    .get(id as usize)
                    .and_then(Option::as_deref)
                    .unwrap_or("")
            };
            merges.push_str(tok(*a));
            merges.push(' ');
            merges.push_str(tok(*b));
            merges.push('\n');
        }
        let config = serde_json::json!({
            "tokenizer_class": "CLIPTokenizer",
            "model_max_length": model_max_length,
            "bos_token": BOS_TOKEN,
            "eos_token": EOS_TOKEN,
            "unk_token": EOS_TOKEN,
            "pad_token": EOS_TOKEN,
            "do_lower_case": true,
        });
        let write = |name: &str, bytes: &[u8]| {
            let p = dir.join(name);
            kiln_core::fs::write_atomic(&p, bytes).map_err(|e| crate::ClipError::io(&p, e))
        };
        let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
        write(
            "vocab.json",
            serde_json::Value::Object(vocab).to_string().as_bytes(),
        )?;
        write("merges.txt", merges.as_bytes())?;
        write("tokenizer_config.json", pretty(&config).as_bytes())
    }

    fn build(
        encoder: HashMap<String, u32>,
        merge_list: Vec<(String, String)>,
        merges_path: &Path,
    ) -> Result<Self> {
        let max_id = encoder.values().copied().max().unwrap_or(0) as usize;
        let mut decoder = vec![None; max_id + 1];
        for (tok, &id) in &encoder {
            decoder[id as usize] = Some(tok.clone());
        }
        let mut merges = HashMap::with_capacity(merge_list.len());
        for (rank, (a, b)) in merge_list.iter().enumerate() {
            let lookup = |t: &str| {
                encoder.get(t).copied().ok_or_else(|| {
                    parse_err(
                        merges_path,
                        format!("merge {a} {b}: token {t:?} is not in the vocabulary"),
                    )
                })
            };
            let (ia, ib, im) = (lookup(a)?, lookup(b)?, lookup(&format!("{a}{b}"))?);
            let rank =
                u32::try_from(rank).map_err(|_| parse_err(merges_path, "too many merges"))?;
            // The first (lowest-rank) occurrence of a pair wins.
            merges.entry((ia, ib)).or_insert((rank, im));
        }
        let table = bytes_to_unicode();
        let mut byte_encoder = ['\0'; 256];
        let mut byte_decoder = HashMap::with_capacity(256);
        for (b, c) in table {
            byte_encoder[usize::from(b)] = c;
            byte_decoder.insert(c, b);
        }
        let special = |t: &str| {
            encoder
                .get(t)
                .copied()
                .ok_or_else(|| parse_err(merges_path, format!("no {t} token in the vocabulary")))
        };
        let (bos, eos) = (special(BOS_TOKEN)?, special(EOS_TOKEN)?);
        let re = |p: &str| {
            Regex::new(p).map_err(|e| parse_err(merges_path, format!("internal regex error: {e}")))
        };
        Ok(Self {
            encoder,
            decoder,
            merges,
            byte_encoder,
            byte_decoder,
            clip_re: re(CLIP_PATTERN)?,
            gpt2_re: re(GPT2_PATTERN)?,
            ws_re: re(r"\s+")?,
            cache: Mutex::new(HashMap::new()),
            bos,
            eos,
            padding: Padding::default(),
        })
    }

    /// Sets the padding token of [`encode_batch`](Self::encode_batch).
    pub fn with_padding(mut self, padding: Padding) -> Self {
        self.padding = padding;
        self
    }

    /// The padding in use.
    pub fn padding(&self) -> Padding {
        self.padding
    }

    /// Number of ids (largest id + 1): 49408 for CLIP.
    pub fn vocab_size(&self) -> usize {
        self.decoder.len()
    }

    /// The id of `<|startoftext|>`.
    pub fn bos_id(&self) -> u32 {
        self.bos
    }

    /// The id of `<|endoftext|>`.
    pub fn eos_id(&self) -> u32 {
        self.eos
    }

    /// The id of a token string, if it is in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.encoder.get(token).copied()
    }

    /// Encodes `text` as transformers' `tokenizer(text)["input_ids"]`: BOS, the tokens, EOS; no
    /// truncation.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = vec![self.bos];
        self.encode_into(text, &mut out);
        out.push(self.eos);
        out
    }

    /// Encodes a batch into rows of exactly `context_length` ids (BOS, tokens, EOS, padding). With
    /// `truncate` a longer text keeps its first `context_length - 2` tokens and EOS stays last (as
    /// transformers' `truncation=True, max_length=context_length`); without it a longer text is a
    /// [`ClipError::TextTooLong`].
    pub fn encode_batch<S: AsRef<str>>(
        &self,
        texts: &[S],
        context_length: usize,
        truncate: bool,
    ) -> Result<Vec<Vec<u32>>> {
        if context_length < 2 {
            return Err(ClipError::ContextTooSmall(context_length));
        }
        let pad = self.padding.id();
        texts
            .iter()
            .enumerate()
            .map(|(index, text)| {
                let mut ids = self.encode(text.as_ref());
                if ids.len() > context_length {
                    if !truncate {
                        return Err(ClipError::TextTooLong {
                            index,
                            len: ids.len(),
                            context_length,
                        });
                    }
                    ids.truncate(context_length - 1);
                    ids.push(self.eos);
                }
                ids.resize(context_length, pad);
                Ok(ids)
            })
            .collect()
    }

    /// Decodes ids as transformers' `decode(ids, skip_special_tokens=True)`: special tokens dropped, the
    /// byte-level symbols turned back into UTF-8 (invalid sequences become U+FFFD), every `</w>` turned
    /// into a space and the result stripped. Id 0 padding (`!`) is not special and decodes as `!`.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let mut bytes = Vec::new();
        for &id in ids {
            if id == self.bos || id == self.eos {
                continue;
            }
            let tok = self
                .decoder
                .get(id as usize)
                .and_then(Option::as_deref)
                .ok_or(ClipError::InvalidTokenId {
                    id,
                    vocab_size: self.decoder.len(),
                })?;
            bytes.extend(
                tok.chars()
                    .filter_map(|c| self.byte_decoder.get(&c).copied()),
            );
        }
        let text = String::from_utf8_lossy(&bytes).replace(END_OF_WORD, " ");
        Ok(text.trim().to_string())
    }

    fn encode_into(&self, text: &str, out: &mut Vec<u32>) {
        let mut rest = text;
        loop {
            let next = [(BOS_TOKEN, self.bos), (EOS_TOKEN, self.eos)]
                .into_iter()
                .filter_map(|(tok, id)| rest.find(tok).map(|pos| (pos, tok.len(), id)))
                .min_by_key(|&(pos, _, _)| pos);
            match next {
                Some((pos, len, id)) => {
                    self.encode_segment(&rest[..pos], out);
                    out.push(id);
                    rest = &rest[pos + len..];
                }
                None => {
                    self.encode_segment(rest, out);
                    return;
                }
            }
        }
    }

    fn encode_segment(&self, segment: &str, out: &mut Vec<u32>) {
        if segment.is_empty() {
            return;
        }
        let nfc: String = segment.nfc().map(|(c, _)| c).collect();
        let normalized: String = self
            .ws_re
            .replace_all(&nfc, " ")
            .chars()
            .flat_map(char::to_lowercase)
            .collect();
        for piece in self.clip_re.find_iter(&normalized) {
            for word in self.gpt2_re.find_iter(piece.as_str()) {
                let mapped: String = word
                    .as_str()
                    .bytes()
                    .map(|b| self.byte_encoder[usize::from(b)])
                    .collect();
                self.bpe(&mapped, out);
            }
        }
    }

    fn bpe(&self, word: &str, out: &mut Vec<u32>) {
        if let Some(ids) = self.cache.lock().ok().and_then(|c| c.get(word).cloned()) {
            out.extend(ids);
            return;
        }
        let unk = self.eos;
        let chars: Vec<char> = word.chars().collect();
        let mut symbols: Vec<u32> = chars
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let s = if i + 1 == chars.len() {
                    format!("{c}{END_OF_WORD}")
                } else {
                    c.to_string()
                };
                self.encoder.get(&s).copied().unwrap_or(unk)
            })
            .collect();
        loop {
            let best = symbols
                .windows(2)
                .filter_map(|w| {
                    self.merges
                        .get(&(w[0], w[1]))
                        .map(|&(rank, merged)| (rank, w[0], w[1], merged))
                })
                .min_by_key(|&(rank, ..)| rank);
            let Some((_, a, b, merged)) = best else { break };
            let mut next = Vec::with_capacity(symbols.len());
            let mut i = 0;
            while i < symbols.len() {
                if i + 1 < symbols.len() && symbols[i] == a && symbols[i + 1] == b {
                    next.push(merged);
                    i += 2;
                } else {
                    next.push(symbols[i]);
                    i += 1;
                }
            }
            symbols = next;
        }
        if let Ok(mut cache) = self.cache.lock()
            && cache.len() < CACHE_CAPACITY
        {
            cache.insert(word.to_string(), symbols.clone());
        }
        out.extend(symbols);
    }
}
