//! Pruning the real SmolLM2-135M GGUF (`kiln_llama::prune`): a no-op prune is the same model bit
//! for bit, structured pruning rewrites the config and keeps the surviving rows byte for byte,
//! activation-aware (calibrated) channel pruning keeps the model usable, and bad requests are
//! errors naming the file.

use kiln_core::Tokenizer;
use kiln_llama::gguf::GgufFile;
use kiln_llama::prune::{PruneConfig, prune_gguf};
use kiln_llama::{EngineKind, LlamaGenerator, LoadOptions, perplexity};

fn asset() -> std::path::PathBuf {
    kiln_llama::assets::asset(kiln_llama::assets::SMOLLM2_GGUF).unwrap_or_else(|e| panic!("{e}"))
}

fn cpu(path: &std::path::Path) -> LlamaGenerator {
    let options = LoadOptions {
        engine: EngineKind::Cpu,
        ..LoadOptions::default()
    };
    LlamaGenerator::load(path, &options).unwrap()
}

const TEXT: &str = "Returns are accepted within 30 days of delivery with the original receipt. \
    Members get free shipping on orders over 25 dollars, and store hours are 9 to 9 on weekdays. \
    Gift cards can be used online and in every store; they never expire.";

#[test]
fn a_no_op_prune_is_the_same_model() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("same.gguf");
    let report = prune_gguf(&asset(), &out, &PruneConfig::default()).unwrap();
    assert_eq!(report.heads, (9, 9));
    assert_eq!(report.zeroed, 0);
    let (a, b) = (cpu(&asset()), cpu(&out));
    let ids = a.tokenizer().encode(TEXT, false).unwrap();
    assert_eq!(a.score_ids(&ids).unwrap(), b.score_ids(&ids).unwrap());
}

#[test]
fn structured_pruning_rewrites_the_config_and_keeps_rows_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pruned.gguf");
    let base = cpu(&asset());
    let ids = base.tokenizer().encode(TEXT, false).unwrap();
    let config = PruneConfig {
        heads_removed_per_group: 1,
        mlp_channels_kept: Some(1152),
        calibration: ids.clone(),
        ..PruneConfig::default()
    };
    let report = prune_gguf(&asset(), &out, &config).unwrap();
    assert_eq!(report.heads, (9, 6));
    assert_eq!(report.mlp_channels, (1536, 1152));
    assert!(report.bytes.1 < report.bytes.0 * 9 / 10, "{report:?}");
    let pruned = cpu(&out);
    let c = pruned.config();
    assert_eq!((c.num_attention_heads, c.num_key_value_heads), (6, 3));
    assert_eq!(c.intermediate_size, 1152);
    // Every kept attn_q row (64 per head) is a row of the original, byte for byte, in order.
    let (orig, new) = (
        GgufFile::open(asset()).unwrap(),
        GgufFile::open(&out).unwrap(),
    );
    let rows = |f: &GgufFile| {
        let bytes = f.tensor_bytes("blk.3.attn_q.weight").unwrap().to_vec();
        let rb = bytes.len() / f.tensor_info("blk.3.attn_q.weight").unwrap().shape()[0];
        bytes.chunks(rb).map(<[u8]>::to_vec).collect::<Vec<_>>()
    };
    let (o, n) = (rows(&orig), rows(&new));
    assert_eq!(n.len(), 6 * 64);
    let mut at = 0;
    for row in &n {
        at += o[at..]
            .iter()
            .position(|r| r == row)
            .expect("a kept row of the original");
        at += 1;
    }
    // The pruned model still runs, on both engines with the same result.
    let lp = pruned.score_ids(&ids).unwrap();
    assert!(perplexity(&lp).is_finite());
    let burn = LlamaGenerator::open(&out, &kiln_backend::device("cpu").unwrap()).unwrap();
    let lb = burn.score_ids(&ids).unwrap();
    let max = lp
        .iter()
        .zip(&lb)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(max < 5e-4, "engines disagree by {max}");
}

#[test]
fn calibrated_channel_pruning_beats_weight_norms() {
    let dir = tempfile::tempdir().unwrap();
    let base = cpu(&asset());
    let ids = base.tokenizer().encode(TEXT, false).unwrap();
    let ppl = |calibration: Vec<u32>| {
        let out = dir.path().join(format!("mlp-{}.gguf", calibration.len()));
        let config = PruneConfig {
            mlp_channels_kept: Some(1344),
            calibration,
            ..PruneConfig::default()
        };
        prune_gguf(&asset(), &out, &config).unwrap();
        perplexity(&cpu(&out).score_ids(&ids).unwrap())
    };
    let (weights_only, calibrated) = (ppl(Vec::new()), ppl(ids.clone()));
    let original = perplexity(&base.score_ids(&ids).unwrap());
    assert!(calibrated < weights_only, "{calibrated} vs {weights_only}");
    assert!(
        calibrated < original * 3.0,
        "{calibrated} vs unpruned {original}"
    );
}

#[test]
fn impossible_requests_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.gguf");
    for config in [
        PruneConfig {
            heads_removed_per_group: 3,
            ..PruneConfig::default()
        },
        PruneConfig {
            mlp_channels_kept: Some(0),
            ..PruneConfig::default()
        },
        PruneConfig {
            magnitude_sparsity: 1.0,
            ..PruneConfig::default()
        },
    ] {
        let e = prune_gguf(&asset(), &out, &config).unwrap_err().to_string();
        assert!(e.contains("SmolLM2-135M-Instruct.Q4_1.gguf"), "{e}");
        assert!(!out.exists());
    }
}
