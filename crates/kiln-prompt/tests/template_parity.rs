//! Byte-for-byte parity with transformers' `apply_chat_template` on real chat templates.
//!
//! The fixtures are made by `tools/make_chat_template_fixtures.py` (transformers'
//! `render_jinja_template`); this test needs no Python.

use std::path::{Path, PathBuf};

use kiln_prompt::{BuiltinTemplate, ChatTemplate, RenderInput};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct Fixture {
    template: String,
    bos_token: Option<String>,
    eos_token: Option<String>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    messages: Vec<Value>,
    tools: Option<Vec<Value>>,
    add_generation_prompt: bool,
    #[serde(default)]
    extra: serde_json::Map<String, Value>,
    rendered: Option<String>,
    error: Option<String>,
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/chat_templates")
}

fn load(path: &Path) -> Fixture {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn input(f: &Fixture, case: &Case) -> RenderInput {
    let mut input =
        RenderInput::new(case.messages.clone()).add_generation_prompt(case.add_generation_prompt);
    if let Some(tools) = &case.tools {
        input = input.tools(tools.clone());
    }
    if let Some(bos) = &f.bos_token {
        input = input.bos_token(bos);
    }
    if let Some(eos) = &f.eos_token {
        input = input.eos_token(eos);
    }
    for (k, v) in &case.extra {
        input = input.var(k, v.clone());
    }
    input
}

#[test]
fn every_fixture_renders_byte_for_byte() {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(fixture_dir())
        .expect("fixture directory")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    assert!(
        paths.len() >= 8,
        "expected at least 8 templates, found {}",
        paths.len()
    );
    let mut failures = Vec::new();
    let mut checked = 0;
    for path in &paths {
        let f = load(path);
        let template = ChatTemplate::new(f.template.as_str())
            .unwrap_or_else(|e| panic!("{}: compile: {e}", path.display()));
        for case in &f.cases {
            let label = format!(
                "{} / {} (add_generation_prompt={})",
                path.file_stem().unwrap_or_default().to_string_lossy(),
                case.name,
                case.add_generation_prompt
            );
            let got = template.render(&input(&f, case));
            match (&case.rendered, &case.error, got) {
                (Some(want), _, Ok(got)) if *want == got => {}
                (Some(want), _, Ok(got)) => {
                    failures.push(format!("{label}:\n want {want:?}\n  got {got:?}"))
                }
                (Some(_), _, Err(e)) => failures.push(format!("{label}: unexpected error {e}")),
                (None, Some(want), Err(e)) if e.to_string().contains(want.as_str()) => {}
                (None, Some(want), Err(e)) => {
                    failures.push(format!("{label}: error {e:?}, want {want:?}"))
                }
                (None, _, Ok(got)) => {
                    failures.push(format!("{label}: rendered {got:?}, want an error"))
                }
                (None, None, Err(e)) => {
                    failures.push(format!("{label}: case has neither rendered nor error: {e}"))
                }
            }
            checked += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} cases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked >= 100, "only {checked} cases");
}

#[test]
fn builtin_sources_are_the_ones_the_fixtures_were_made_from() {
    for t in BuiltinTemplate::ALL {
        let f = load(&fixture_dir().join(format!("builtin-{}.json", t.name())));
        assert_eq!(f.template, t.source(), "{}", t.name());
        let (bos, eos) = t.special_tokens();
        assert_eq!(
            (f.bos_token.as_deref(), f.eos_token.as_deref()),
            (Some(bos), Some(eos)),
            "{}",
            t.name()
        );
    }
}
