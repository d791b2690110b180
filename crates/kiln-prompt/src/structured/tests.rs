//! The automaton on its own, and the processor over a toy vocabulary.

use std::sync::Arc;

use kiln_core::{LogitsProcessor, TokenVocabulary};
use serde_json::{Value, json};

use super::JsonConstraint;

fn c(schema: Value) -> JsonConstraint {
    JsonConstraint::from_schema(&schema).expect("schema compiles")
}

#[test]
fn objects_follow_properties_and_required() {
    let p = c(json!({
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}, "city": {"type": "string"}},
        "required": ["name", "age"]
    }));
    assert!(p.accepts(r#"{"name":"Ada","age":36}"#));
    assert!(p.accepts("{\n  \"age\": 36,\n  \"name\": \"Ada\",\n  \"city\": \"Paris\"\n}"));
    assert!(!p.accepts(r#"{"name":"Ada"}"#), "age is required");
    assert!(
        !p.accepts(r#"{"name":"Ada","age":36,"zip":1}"#),
        "undeclared key"
    );
    assert!(
        !p.accepts(r#"{"name":"Ada","name":"Bo","age":1}"#),
        "repeated key"
    );
    assert!(!p.accepts(r#"{"name":"Ada","age":3.5}"#), "integer");
    assert!(
        !p.accepts(r#" {"name":"Ada","age":1}"#),
        "no leading whitespace"
    );
    assert!(
        !p.accepts(r#"{"name":"Ada","age":1} "#),
        "nothing after the value"
    );
    assert!(p.accepts_prefix(r#"{"na"#));
    assert!(!p.accepts_prefix(r#"{"x"#));
}

#[test]
fn strings_enums_numbers_and_literals() {
    let s = c(json!({"type": "string", "minLength": 2, "maxLength": 4}));
    assert!(s.accepts(r#""ab""#) && s.accepts(r#""abcd""#) && s.accepts(r#""é\n""#));
    assert!(!s.accepts(r#""a""#) && !s.accepts(r#""abcde""#));
    assert!(
        !s.accepts("\"a\u{1}\""),
        "control characters must be escaped"
    );
    assert!(s.accepts(r#""\u00e9x""#));
    let e = c(json!({"enum": ["order_status", "order", 3, null]}));
    for ok in [r#""order_status""#, r#""order""#, "3", "null"] {
        assert!(e.accepts(ok), "{ok}");
    }
    assert!(!e.accepts(r#""orders""#) && !e.accepts("4"));
    let n = c(json!({"type": "number"}));
    for ok in ["0", "-1.5", "12e3", "3.25E-2", "10"] {
        assert!(n.accepts(ok), "{ok}");
    }
    for bad in ["01", "-", "1.", ".5", "+1", "1e"] {
        assert!(!n.accepts(bad), "{bad}");
    }
    assert!(!n.accepts("1234567890123456"), "at most 15 digits");
    let b = c(json!({"type": ["boolean", "null"]}));
    assert!(b.accepts("true") && b.accepts("false") && b.accepts("null") && !b.accepts("nul"));
}

#[test]
fn arrays_nesting_unions_and_refs() {
    let a = c(json!({"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 3}));
    assert!(a.accepts("[1]") && a.accepts("[1, 2, 3]") && a.accepts("[\n 1,\n 2\n]"));
    assert!(!a.accepts("[]") && !a.accepts("[1,2,3,4]") && !a.accepts("[1,]"));
    let u = c(json!({"anyOf": [
        {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
        {"type": "object", "properties": {"b": {"type": "string"}}, "required": ["b"]},
        {"type": "string", "maxLength": 2}
    ]}));
    assert!(u.accepts(r#"{"a": 1}"#) && u.accepts(r#"{"b": "x"}"#) && u.accepts(r#""hi""#));
    assert!(!u.accepts(r#"{"a": "x"}"#) && !u.accepts(r#""hey""#));
    let r = c(json!({
        "$defs": {"node": {"type": "object", "properties": {
            "v": {"type": "integer"},
            "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}
        }, "required": ["v"]}},
        "$ref": "#/$defs/node"
    }));
    assert!(r.accepts(r#"{"v": 1, "kids": [{"v": 2}, {"v": 3, "kids": []}]}"#));
    assert!(!r.accepts(r#"{"v": 1, "kids": [{}]}"#));
    let any = JsonConstraint::any_object();
    assert!(any.accepts(r#"{"x": [1, {"y": null}], "z": "w"}"#));
    assert!(!any.accepts("[1]") && !any.accepts(r#""s""#));
}

#[test]
fn whitespace_runs_are_bounded() {
    let any = JsonConstraint::any_object();
    assert!(any.accepts(&format!("{{{}}}", " ".repeat(24))));
    assert!(!any.accepts(&format!("{{{}}}", " ".repeat(25))));
}

#[test]
fn unsupported_keywords_are_errors() {
    for (schema, needle) in [
        (json!({"type": "string", "pattern": "x"}), "pattern"),
        (json!({"type": "integer", "minimum": 0}), "minimum"),
        (
            json!({"type": "object", "properties": {"a": {"type": "string", "format": "date"}}}),
            "/properties/a",
        ),
        (
            json!({"type": "object", "properties": {}, "required": ["a"]}),
            "required property `a`",
        ),
        (json!({"$ref": "http://x/y"}), "$ref"),
        (json!({"type": "tuple"}), "unknown type"),
    ] {
        let err = JsonConstraint::from_schema(&schema)
            .expect_err("refused")
            .to_string();
        assert!(err.contains(needle), "{err}");
    }
}

/// A toy vocabulary: single bytes of `{}":,[] ` and letters, some words, and EOS (id 0).
fn vocab() -> Arc<TokenVocabulary> {
    let mut bytes: Vec<Vec<u8>> = vec![Vec::new()];
    for t in [
        "{", "}", "\"", ":", ",", " ", "a", "b", "1", "2", "{\"", "\":", "\"}", "ab", "true",
        "\"a\"", "}\n",
    ] {
        bytes.push(t.as_bytes().to_vec());
    }
    Arc::new(TokenVocabulary {
        bytes,
        eos_token_ids: vec![0],
    })
}

fn allowed(p: &mut dyn LogitsProcessor, generated: &[u32], v: &TokenVocabulary) -> Vec<String> {
    let mut logits = vec![0.0f32; v.bytes.len()];
    p.process(generated, &mut logits).expect("process");
    logits
        .iter()
        .enumerate()
        .filter(|(_, l)| l.is_finite())
        .map(|(i, _)| {
            if i == 0 {
                "<eos>".to_string()
            } else {
                String::from_utf8_lossy(&v.bytes[i]).into_owned()
            }
        })
        .collect()
}

#[test]
fn processor_masks_tokens_and_completes() {
    let v = vocab();
    let id = |t: &str| {
        v.bytes
            .iter()
            .position(|b| b == t.as_bytes())
            .expect("token") as u32
    };
    let schema =
        c(json!({"type": "object", "properties": {"a": {"type": "boolean"}}, "required": ["a"]}));
    let mut p = schema.processor(&v);
    assert_eq!(allowed(&mut p, &[], &v), ["{", "{\""]);
    let mut out = vec![id("{\"")];
    assert_eq!(allowed(&mut p, &out, &v), ["a"]);
    out.push(id("a"));
    assert_eq!(allowed(&mut p, &out, &v), ["\"", "\":"]);
    out.extend([id("\":"), id(" ")]);
    assert_eq!(allowed(&mut p, &out, &v), [" ", "true"]);
    out.push(id("true"));
    assert!(!p.is_complete(&out));
    assert_eq!(
        allowed(&mut p, &out, &v),
        ["}", " "],
        "no comma: `a` was the only property"
    );
    out.push(id("}"));
    assert!(p.is_complete(&out));
    assert_eq!(allowed(&mut p, &out, &v), ["<eos>"]);
    // A token that breaks the grammar is an error, not a silent pass.
    let mut p = schema.processor(&v);
    let mut logits = vec![0.0f32; v.bytes.len()];
    assert!(p.process(&[id("a")], &mut logits).is_err());
}

#[test]
fn top_level_numbers_may_end_or_go_on() {
    let v = vocab();
    let id = |t: &str| {
        v.bytes
            .iter()
            .position(|b| b == t.as_bytes())
            .expect("token") as u32
    };
    let mut p = c(json!({"type": "integer"})).processor(&v);
    assert_eq!(allowed(&mut p, &[], &v), ["1", "2"]);
    assert_eq!(allowed(&mut p, &[id("1")], &v), ["<eos>", "1", "2"]);
    assert!(!p.is_complete(&[id("1")]));
}
