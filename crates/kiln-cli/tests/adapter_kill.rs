//! SIGKILL during an adapter save (issue 9): `kiln adapters average` is killed at moments spread
//! over its whole run, alternating between two outputs with different configs (rank and alpha),
//! into the same directory. After every kill the directory must load as exactly the previous
//! result or the new one, never a torn or partial adapter, and no temporary file may be taken
//! for the adapter.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use kiln_lora::{LinearModule, LoraAdapter, LoraConfig};

fn modules() -> Vec<LinearModule> {
    (0..24)
        .flat_map(|l| {
            ["self_attn.q_proj", "mlp.down_proj"].map(|p| LinearModule {
                key: format!("model.layers.{l}.{p}"),
                in_features: 768,
                out_features: 768,
                is_output: false,
            })
        })
        .collect()
}

/// Two adapters of rank `r` (same config, different random factors) saved under `dir`.
fn sites(dir: &Path, r: usize, alpha: f64) -> [String; 2] {
    [1u64, 2].map(|seed| {
        let config = LoraConfig {
            r,
            lora_alpha: alpha,
            init_lora_weights: kiln_lora::config::InitLoraWeights::Bool(false),
            ..LoraConfig::default()
        };
        let a = LoraAdapter::init("site", config, &modules(), seed + r as u64).unwrap();
        let p = dir.join(format!("r{r}-site{seed}"));
        a.save(&p).unwrap();
        p.display().to_string()
    })
}

fn average(inputs: &[String; 2], out: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
    c.args([
        "adapters",
        "average",
        &inputs[0],
        &inputs[1],
        "--weights",
        "1,3",
        "--output",
    ])
    .arg(out)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    c
}

#[test]
fn a_killed_adapter_save_leaves_the_previous_or_the_new_adapter_whole() {
    let dir = tempfile::tempdir().unwrap();
    let small = sites(dir.path(), 4, 8.0);
    let large = sites(dir.path(), 16, 64.0);
    // The two valid results, made by uninterrupted runs.
    let (ref_small, ref_large) = (dir.path().join("ref-small"), dir.path().join("ref-large"));
    // An uninterrupted run's time (the slower of the two outputs, warm).
    assert!(average(&small, &ref_small).status().unwrap().success());
    let mut run_time = std::time::Duration::ZERO;
    for (inputs, out) in [(&small, &ref_small), (&large, &ref_large)] {
        let started = Instant::now();
        assert!(average(inputs, out).status().unwrap().success());
        run_time = run_time.max(started.elapsed());
    }
    let expected = [
        LoraAdapter::load(&ref_small).unwrap(),
        LoraAdapter::load(&ref_large).unwrap(),
    ];

    let out = dir.path().join("out");
    assert!(average(&small, &out).status().unwrap().success());
    let mut current = 0;
    let (mut interrupted, mut completed) = (0, 0);
    for i in 0..40u32 {
        let next = 1 - current;
        let inputs = if next == 0 { &small } else { &large };
        let mut child = average(inputs, &out).spawn().unwrap();
        // Kill moments spread over 0..1.5x an uninterrupted run.
        let delay = run_time.mul_f64(f64::from(i % 20) / 13.0);
        std::thread::sleep(delay);
        child.kill().unwrap();
        let status = child.wait().unwrap();
        let loaded = LoraAdapter::load(&out)
            .unwrap_or_else(|e| panic!("kill {i} after {delay:?}: the adapter is torn: {e}"));
        let which = expected
            .iter()
            .position(|e| e.modules == loaded.modules && e.config.r == loaded.config.r)
            .unwrap_or_else(|| panic!("kill {i}: the adapter is neither the old nor the new one"));
        assert_eq!(
            loaded.config.lora_alpha, expected[which].config.lora_alpha,
            "kill {i}: config and weights of different saves"
        );
        assert!(which == current || which == next);
        if status.success() || which == next {
            completed += 1;
        } else {
            interrupted += 1;
        }
        current = which;
    }
    eprintln!(
        "uninterrupted run {run_time:?}: {interrupted} runs killed before their save, {completed} saved"
    );
    assert!(
        interrupted > 0 && completed > 0,
        "the kills should land both before and after the save"
    );
    // The temporaries of killed writers are cleared by the next save: after one more
    // uninterrupted run, only the adapter's two files are left.
    assert!(average(&small, &out).status().unwrap().success());
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["adapter_config.json", "adapter_model.safetensors"]);
}
