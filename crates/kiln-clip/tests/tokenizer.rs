//! kiln-clip's tokenizer against transformers' CLIPTokenizer.
//!
//! Fixtures: tools/make_clip_tokenizer_fixtures.py. The vocabulary comes from scripts/fetch-assets.sh
//! ($KILN_CACHE/assets/clip/bpe_simple_vocab_16e6.txt.gz); nothing is skipped when it is missing.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use kiln_clip::ClipError;
use kiln_clip::tokenizer::{BOS_ID, CONTEXT_LENGTH, ClipTokenizer, EOS_ID, Padding};
use serde_json::Value;

fn gz_path() -> PathBuf {
    let cache = std::env::var_os("KILN_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/kiln")
        });
    cache.join("assets/clip/bpe_simple_vocab_16e6.txt.gz")
}

fn tokenizer() -> &'static ClipTokenizer {
    static TOK: OnceLock<ClipTokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        ClipTokenizer::from_bpe_gz(gz_path())
            .unwrap_or_else(|e| panic!("{e} (run scripts/fetch-assets.sh)"))
    })
}

struct Case {
    text: String,
    ids: Vec<u32>,
    ids_77: Vec<u32>,
    decoded: String,
}

fn cases() -> Vec<Case> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip_tokenizer.json");
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json");
    let ids = |x: &Value| -> Vec<u32> {
        x.as_array()
            .expect("ids")
            .iter()
            .map(|i| i.as_u64().expect("id") as u32)
            .collect()
    };
    v["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| Case {
            text: c["text"].as_str().expect("text").to_string(),
            ids: ids(&c["ids"]),
            ids_77: ids(&c["ids_77"]),
            decoded: c["decoded"].as_str().expect("decoded").to_string(),
        })
        .collect()
}

#[test]
fn vocabulary_shape() {
    let tok = tokenizer();
    assert_eq!(tok.vocab_size(), 49408);
    assert_eq!(tok.bos_id(), BOS_ID);
    assert_eq!(tok.eos_id(), EOS_ID);
    assert_eq!(tok.token_to_id("!"), Some(0));
    assert_eq!(tok.token_to_id("!</w>"), Some(256));
    assert_eq!(tok.token_to_id("<|startoftext|>"), Some(49406));
}

#[test]
fn ids_match_transformers() {
    let tok = tokenizer();
    let cases = cases();
    assert!(
        cases.len() >= 200,
        "the issue asks for at least 200 strings"
    );
    let mut bad = Vec::new();
    for c in &cases {
        let got = tok.encode(&c.text);
        if got != c.ids {
            bad.push(format!(
                "{:?}\n  want {:?}\n  got  {:?}",
                c.text, c.ids, got
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {} differ:\n{}",
        bad.len(),
        cases.len(),
        bad.join("\n")
    );
    let texts: Vec<&str> = cases.iter().map(|c| c.text.as_str()).collect();
    let rows = tok
        .encode_batch(&texts, CONTEXT_LENGTH, true)
        .expect("batch");
    for (c, row) in cases.iter().zip(&rows) {
        assert_eq!(row, &c.ids_77, "truncated/padded {:?}", c.text);
    }
    assert!(
        cases.iter().any(|c| c.ids.len() > CONTEXT_LENGTH),
        "a text longer than the context"
    );
}

#[test]
fn decode_matches_transformers_and_round_trips() {
    let tok = tokenizer();
    let ws = regex::Regex::new(r"\s+").expect("re");
    let word_only = regex::Regex::new(r"^[\p{L}\s]*$").expect("re");
    let mut round_trips = 0;
    for c in cases() {
        let got = tok.decode(&c.ids).expect("decode");
        assert_eq!(got, c.decoded, "decode of {:?}", c.text);
        if word_only.is_match(&c.text) && !c.text.contains('\u{3000}') {
            let norm = ws.replace_all(c.text.trim(), " ").to_lowercase();
            if norm.is_ascii() {
                assert_eq!(got, norm, "round trip of {:?}", c.text);
                round_trips += 1;
            }
        }
    }
    assert!(round_trips >= 5, "{round_trips}");
    // Accents and CJK round-trip too (words are separated by `</w>`, so only spaced text is exact).
    for text in [
        "Café  Crème\tBRÛLÉE",
        "日本語の テキスト",
        "  Ελληνικά\nκείμενα ",
    ] {
        let norm = ws.replace_all(text.trim(), " ").to_lowercase();
        assert_eq!(tok.decode(&tok.encode(text)).expect("decode"), norm);
    }
    assert!(matches!(
        tok.decode(&[49408]),
        Err(ClipError::InvalidTokenId { id: 49408, .. })
    ));
}

#[test]
fn batch_truncation_padding_and_overflow() {
    let tok = tokenizer();
    let long = "a photo of a ".to_string() + &"very ".repeat(100) + "big dog";
    let rows = tok
        .encode_batch(&["a photo of a cat", long.as_str()], CONTEXT_LENGTH, true)
        .expect("batch");
    assert_eq!(rows[0][..7], [49406, 320, 1125, 539, 320, 2368, 49407]);
    assert!(rows[0][7..].iter().all(|&i| i == EOS_ID));
    assert_eq!(rows[1].len(), CONTEXT_LENGTH);
    assert_eq!(rows[1][0], BOS_ID);
    assert_eq!(rows[1][76], EOS_ID);
    assert_eq!(rows[1][75], tok.encode("very")[1]);
    match tok.encode_batch(&["ok", long.as_str()], CONTEXT_LENGTH, false) {
        Err(ClipError::TextTooLong {
            index: 1,
            context_length: 77,
            len,
        }) => assert!(len > 77),
        other => panic!("{other:?}"),
    }
    // Exactly 77 fits without truncation.
    let exact = "a photo of a ".to_string() + &"very ".repeat(70) + "big";
    assert_eq!(tok.encode(&exact).len(), 77);
    assert!(tok.encode_batch(&[exact.as_str()], 77, false).is_ok());
    assert!(matches!(
        tok.encode_batch(&["a"], 1, true),
        Err(ClipError::ContextTooSmall(1))
    ));

    let zero = ClipTokenizer::from_bpe_gz(gz_path())
        .expect("tok")
        .with_padding(Padding::Zero);
    assert_eq!(zero.padding(), Padding::Zero);
    let rows = zero
        .encode_batch(&["a photo of a cat"], CONTEXT_LENGTH, true)
        .expect("batch");
    assert_eq!(rows[0][6], EOS_ID);
    assert!(rows[0][7..].iter().all(|&i| i == 0));
}

fn bytes_to_unicode() -> Vec<char> {
    let mut bs: Vec<u32> = (33..=126).chain(161..=172).chain(174..=255).collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    cs.into_iter()
        .map(|c| char::from_u32(c).expect("char"))
        .collect()
}

#[test]
fn hf_vocab_and_merges_files_give_the_same_ids() {
    let mut raw = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(gz_path()).expect("gz"))
        .read_to_string(&mut raw)
        .expect("gunzip");
    let merges: Vec<&str> = raw.split('\n').skip(1).take(49152 - 256 - 2).collect();
    let syms = bytes_to_unicode();
    let mut vocab: Vec<String> = syms.iter().map(|c| c.to_string()).collect();
    vocab.extend(syms.iter().map(|c| format!("{c}</w>")));
    vocab.extend(merges.iter().map(|m| m.replace(' ', "")));
    vocab.push("<|startoftext|>".into());
    vocab.push("<|endoftext|>".into());
    let map: serde_json::Map<String, Value> = vocab
        .into_iter()
        .enumerate()
        .map(|(i, t)| (t, Value::from(i)))
        .collect();
    let dir = tempfile::tempdir().expect("tmp");
    let (vp, mp) = (dir.path().join("vocab.json"), dir.path().join("merges.txt"));
    std::fs::write(&vp, serde_json::to_string(&map).expect("json")).expect("write");
    let mut f = std::fs::File::create(&mp).expect("create");
    writeln!(f, "#version: 0.2").expect("w");
    for m in &merges {
        writeln!(f, "{m}").expect("w");
    }
    drop(f);
    let hf = ClipTokenizer::from_vocab_merges(&vp, &mp).expect("hf files");
    assert_eq!(hf.vocab_size(), 49408);
    for c in cases() {
        assert_eq!(hf.encode(&c.text), c.ids, "{:?}", c.text);
    }

    // Broken HF files are errors naming the file.
    std::fs::write(&vp, "{not json").expect("write");
    let e = ClipTokenizer::from_vocab_merges(&vp, &mp).expect_err("corrupt vocab.json");
    assert!(e.to_string().contains("vocab.json"), "{e}");
    std::fs::write(&vp, serde_json::to_string(&map).expect("json")).expect("write");
    std::fs::write(&mp, "#version: 0.2\nh e l l o\n").expect("write");
    let e = ClipTokenizer::from_vocab_merges(&vp, &mp).expect_err("corrupt merges.txt");
    assert!(e.to_string().contains("merges.txt"), "{e}");
    let missing = dir.path().join("nope.json");
    let e = ClipTokenizer::from_vocab_merges(&missing, &mp).expect_err("missing");
    assert!(
        matches!(e, ClipError::VocabIo { .. }) && e.to_string().contains("nope.json"),
        "{e}"
    );
}

#[test]
fn missing_or_corrupt_gz_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let missing = dir.path().join("missing_vocab.txt.gz");
    let e = ClipTokenizer::from_bpe_gz(&missing).expect_err("missing");
    assert!(matches!(e, ClipError::VocabIo { .. }), "{e}");
    assert!(e.to_string().contains("missing_vocab.txt.gz"), "{e}");

    let not_gz = dir.path().join("not_gzip.txt.gz");
    std::fs::write(&not_gz, b"this is not gzip").expect("write");
    let e = ClipTokenizer::from_bpe_gz(&not_gz).expect_err("not gzip");
    assert!(
        matches!(e, ClipError::VocabParse { .. }) && e.to_string().contains("not_gzip.txt.gz"),
        "{e}"
    );

    // A valid gzip file that is truncated to a few merges.
    let short = dir.path().join("short.txt.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"#version: 0.2\ni n\nt h\n").expect("gz");
    std::fs::write(&short, gz.finish().expect("gz")).expect("write");
    let e = ClipTokenizer::from_bpe_gz(&short).expect_err("short");
    assert!(e.to_string().contains("short.txt.gz"), "{e}");

    // A truncated gzip stream.
    let full = std::fs::read(gz_path()).expect("gz");
    let cut = dir.path().join("cut.txt.gz");
    std::fs::write(&cut, &full[..full.len() / 2]).expect("write");
    let e = ClipTokenizer::from_bpe_gz(&cut).expect_err("cut");
    assert!(e.to_string().contains("cut.txt.gz"), "{e}");
}
