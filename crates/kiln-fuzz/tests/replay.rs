//! Replays every saved fuzz input through its target: the seeds (`fuzz/seeds/<target>/`, made by
//! `tools/make_fuzz_seeds.py`) and the inputs of crashes found and fixed
//! (`fuzz/regressions/<target>/`). No input may panic; seeds named `valid-*` must be accepted and
//! `invalid-*` rejected, so the fuzzer's starting points reach deep into each parser.

use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

#[test]
fn every_target_has_accepted_and_rejected_seeds() {
    for (name, target) in kiln_fuzz::TARGETS {
        let seeds = files(&fuzz_dir().join("seeds").join(name));
        let (mut valid, mut invalid) = (0, 0);
        for path in &seeds {
            let data = std::fs::read(path).unwrap();
            let accepted = target(&data);
            let file = path.file_name().unwrap().to_string_lossy();
            if file.starts_with("valid-") {
                assert!(accepted, "{name}: seed {file} was rejected");
                valid += 1;
            } else if file.starts_with("invalid-") {
                assert!(!accepted, "{name}: seed {file} was accepted");
                invalid += 1;
            }
        }
        assert!(
            valid > 0 && invalid > 0,
            "{name}: {valid} valid and {invalid} invalid seeds"
        );
    }
}

#[test]
fn regression_inputs_do_not_crash() {
    let root = fuzz_dir().join("regressions");
    let mut n = 0;
    for dir in files(&root) {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let target = kiln_fuzz::target(&name)
            .unwrap_or_else(|| panic!("fuzz/regressions/{name}: no such target"));
        for path in files(&dir) {
            let data = std::fs::read(&path).unwrap();
            // Returning at all is the test: these inputs once panicked, hung or overflowed.
            let _ = target(&data);
            n += 1;
        }
    }
    eprintln!("{n} regression inputs replayed");
}
