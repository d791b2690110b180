//! JSON-schema constrained generation with the real SmolLM2-135M-Instruct: 20 prompts, each output
//! must parse and validate against its schema (checked by an independent validator below, not by the
//! automaton that constrained the output). Half are greedy, half sampled (the full mask path).

use kiln_core::{
    ChatMessage, FinishReason, GenerationRequest, ResponseFormat, SamplingParams, TextGenerator,
};
use kiln_llama::{EngineKind, LlamaGenerator, LoadOptions};
use serde_json::{Value, json};

fn model(engine: EngineKind) -> LlamaGenerator {
    let path = kiln_llama::assets::asset(kiln_llama::assets::SMOLLM2_GGUF)
        .unwrap_or_else(|e| panic!("{e}"));
    LlamaGenerator::load(
        path,
        &LoadOptions {
            engine,
            ..LoadOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Validates `v` against the schema subset the cases use (type, properties, required,
/// additionalProperties: false by default, enum, maxLength, minLength, items, minItems, maxItems,
/// anyOf).
fn validate(schema: &Value, v: &Value, path: &str) -> Result<(), String> {
    let fail = |m: &str| Err(format!("{path}: {m} (got {v})"));
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        return if options.contains(v) {
            Ok(())
        } else {
            fail("not in enum")
        };
    }
    if let Some(branches) = schema.get("anyOf").and_then(Value::as_array) {
        return if branches.iter().any(|b| validate(b, v, path).is_ok()) {
            Ok(())
        } else {
            fail("matches no anyOf branch")
        };
    }
    let ty = schema.get("type").and_then(Value::as_str).unwrap_or("any");
    match ty {
        "object" => {
            let Some(obj) = v.as_object() else {
                return fail("not an object");
            };
            let props = schema["properties"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            for r in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let r = r.as_str().unwrap_or_default();
                if !obj.contains_key(r) {
                    return fail(&format!("missing required `{r}`"));
                }
            }
            for (k, val) in obj {
                match props.get(k) {
                    Some(s) => validate(s, val, &format!("{path}.{k}"))?,
                    None => return fail(&format!("unexpected key `{k}`")),
                }
            }
            Ok(())
        }
        "array" => {
            let Some(items) = v.as_array() else {
                return fail("not an array");
            };
            let min = schema.get("minItems").and_then(Value::as_u64).unwrap_or(0) as usize;
            let max = schema
                .get("maxItems")
                .and_then(Value::as_u64)
                .map_or(usize::MAX, |m| m as usize);
            if items.len() < min || items.len() > max {
                return fail("item count out of range");
            }
            for (i, item) in items.iter().enumerate() {
                validate(&schema["items"], item, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        "string" => {
            let Some(s) = v.as_str() else {
                return fail("not a string");
            };
            let n = s.chars().count() as u64;
            let min = schema.get("minLength").and_then(Value::as_u64).unwrap_or(0);
            let max = schema
                .get("maxLength")
                .and_then(Value::as_u64)
                .unwrap_or(u64::MAX);
            if n < min || n > max {
                fail("length out of range")
            } else {
                Ok(())
            }
        }
        "integer" => {
            if v.is_i64() || v.is_u64() {
                Ok(())
            } else {
                fail("not an integer")
            }
        }
        "number" => {
            if v.is_number() {
                Ok(())
            } else {
                fail("not a number")
            }
        }
        "boolean" => {
            if v.is_boolean() {
                Ok(())
            } else {
                fail("not a boolean")
            }
        }
        "null" => {
            if v.is_null() {
                Ok(())
            } else {
                fail("not null")
            }
        }
        _ => Ok(()),
    }
}

fn s(max: u64) -> Value {
    json!({"type": "string", "maxLength": max})
}

fn obj(props: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": props, "required": required})
}

/// (prompt, schema): extraction, classification, nested objects, arrays, unions.
fn cases() -> Vec<(&'static str, Value)> {
    let intent = json!({"enum": ["order_status", "return_request", "product_question", "shipping_info",
        "store_hours", "payment", "complaint", "recommendation", "account"]});
    vec![
        (
            "Extract the person: John Smith is 34 years old and lives in Boston.",
            obj(
                json!({"name": s(40), "age": {"type": "integer"}, "city": s(40)}),
                &["name", "age", "city"],
            ),
        ),
        (
            "Extract the person: Maria Garcia, 28, from Madrid.",
            obj(
                json!({"name": s(40), "age": {"type": "integer"}, "city": s(40)}),
                &["name", "age", "city"],
            ),
        ),
        (
            "Extract the order: I want 3 blue t-shirts, please.",
            obj(
                json!({"product": s(40), "quantity": {"type": "integer"}, "color": s(20)}),
                &["product", "quantity"],
            ),
        ),
        (
            "Extract the order: two large pizzas and one lemonade.",
            obj(
                json!({"items": {"type": "array", "items": obj(json!({"product": s(30), "quantity": {"type": "integer"}}), &["product", "quantity"]), "minItems": 1, "maxItems": 4}}),
                &["items"],
            ),
        ),
        (
            "Classify the intent: Where is my package? It was supposed to arrive yesterday.",
            obj(json!({"intent": intent}), &["intent"]),
        ),
        (
            "Classify the intent: I'd like to send back the shoes I bought, they don't fit.",
            obj(json!({"intent": intent}), &["intent"]),
        ),
        (
            "Classify the intent: What time do you open on Sunday?",
            obj(json!({"intent": intent}), &["intent"]),
        ),
        (
            "Classify the intent: Can you suggest a good laptop for a student?",
            obj(json!({"intent": intent}), &["intent"]),
        ),
        (
            "Is this review positive? 'The blender is fantastic, works great.' Give sentiment and a confidence between 0 and 1.",
            obj(
                json!({"sentiment": {"enum": ["positive", "negative", "neutral"]}, "confidence": {"type": "number"}}),
                &["sentiment", "confidence"],
            ),
        ),
        (
            "Give three colors of the French flag.",
            obj(
                json!({"colors": {"type": "array", "items": s(15), "minItems": 3, "maxItems": 3}}),
                &["colors"],
            ),
        ),
        (
            "Describe a book: '1984' by George Orwell, published 1949.",
            obj(
                json!({"title": s(40), "author": s(40), "year": {"type": "integer"}}),
                &["title", "author", "year"],
            ),
        ),
        (
            "Extract the address: 10 Downing Street, London, SW1A 2AA, United Kingdom.",
            obj(
                json!({"street": s(40), "city": s(30), "postcode": s(12), "country": s(30)}),
                &["street", "city", "country"],
            ),
        ),
        (
            "Is Paris the capital of France? Answer with a boolean and a short reason.",
            obj(
                json!({"answer": {"type": "boolean"}, "reason": s(60)}),
                &["answer", "reason"],
            ),
        ),
        (
            "Convert to a calendar event: lunch with Anna on Friday at noon at the Blue Cafe.",
            obj(
                json!({"title": s(40), "day": {"enum": ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]}, "time": s(10), "location": s(40)}),
                &["title", "day"],
            ),
        ),
        (
            "Extract the contact: email bob@example.com, phone 555-1234.",
            obj(
                json!({"email": s(40), "phone": {"anyOf": [s(20), {"type": "null"}]}}),
                &["email", "phone"],
            ),
        ),
        (
            "List two fruits and their colors.",
            json!({"type": "array", "items": obj(json!({"fruit": s(20), "color": s(20)}), &["fruit", "color"]), "minItems": 2, "maxItems": 2}),
        ),
        (
            "Rate the movie 'Inception' from 1 to 10 and give a one-line summary.",
            obj(
                json!({"rating": {"type": "integer"}, "summary": s(80)}),
                &["rating", "summary"],
            ),
        ),
        (
            "What is 12 plus 30? Give the expression and the result.",
            obj(
                json!({"expression": s(20), "result": {"type": "number"}}),
                &["expression", "result"],
            ),
        ),
        (
            "Extract the flight: AF 1234 from Paris to New York, departing 10:30.",
            obj(
                json!({"flight": s(12), "from": s(30), "to": s(30), "departure": s(10), "delayed": {"type": ["boolean", "null"]}}),
                &["flight", "from", "to"],
            ),
        ),
        (
            "Create a user profile for Alice, an engineer who likes hiking and chess.",
            obj(
                json!({"name": s(30), "job": s(30), "hobbies": {"type": "array", "items": s(20), "maxItems": 4}, "address": obj(json!({"city": s(30)}), &[])}),
                &["name", "job", "hobbies"],
            ),
        ),
    ]
}

fn request(prompt: &str, schema: &Value, i: usize) -> GenerationRequest {
    let sampling = if i.is_multiple_of(2) {
        SamplingParams::greedy()
    } else {
        SamplingParams {
            temperature: 0.7,
            seed: Some(i as u64),
            ..SamplingParams::default()
        }
    };
    GenerationRequest::chat(vec![
        ChatMessage::system("You are a helpful assistant that answers in JSON."),
        ChatMessage::user(format!(
            "{prompt}\nAnswer with JSON matching this schema: {schema}"
        )),
    ])
    .with_sampling(sampling)
    .with_max_tokens(160)
    .with_response_format(ResponseFormat::json_schema(schema.clone()))
}

#[test]
fn twenty_prompts_return_valid_json() {
    let m = model(EngineKind::Cpu);
    let cases = cases();
    assert_eq!(cases.len(), 20);
    let mut valid = 0;
    let mut failures = Vec::new();
    for (i, (prompt, schema)) in cases.iter().enumerate() {
        let out = m
            .generate(&request(prompt, schema, i))
            .unwrap_or_else(|e| panic!("case {i}: {e}"));
        eprintln!(
            "case {i:2} [{} tokens, {:?}, {:.0} tok/s]: {}",
            out.usage.completion_tokens,
            out.finish_reason,
            out.timings.decode_tokens_per_second,
            out.text
        );
        // KILN_STRUCTURED_DUMP=FILE writes {schema, output} lines for an outside validator.
        if let Some(path) = std::env::var_os("KILN_STRUCTURED_DUMP") {
            use std::io::Write as _;
            let line = json!({"schema": schema, "output": out.text});
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap_or_else(|e| panic!("{e}"));
            writeln!(f, "{line}").unwrap_or_else(|e| panic!("{e}"));
        }
        let checked = serde_json::from_str::<Value>(&out.text)
            .map_err(|e| format!("does not parse: {e}"))
            .and_then(|v| validate(schema, &v, "$"));
        match (checked, out.finish_reason) {
            (Ok(()), FinishReason::Stop) => valid += 1,
            (r, f) => failures.push(format!("case {i} ({f:?}): {r:?}: {}", out.text)),
        }
    }
    eprintln!("valid JSON: {valid}/20");
    assert_eq!(valid, 20, "{failures:#?}");
}

#[test]
fn the_burn_engine_honours_the_constraint_too() {
    let m = model(EngineKind::Burn);
    let (prompt, schema) = &cases()[4];
    let out = m
        .generate(&request(prompt, schema, 0))
        .unwrap_or_else(|e| panic!("{e}"));
    let v: Value = serde_json::from_str(&out.text).unwrap_or_else(|e| panic!("{e}: {}", out.text));
    validate(schema, &v, "$").unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn json_object_mode_and_bad_schemas() {
    let m = model(EngineKind::Cpu);
    let req = GenerationRequest::chat(vec![ChatMessage::user(
        "Describe a cat as a JSON object with a name and an age.",
    )])
    .with_sampling(SamplingParams::greedy())
    .with_max_tokens(96)
    .with_response_format(ResponseFormat::JsonObject);
    let out = m.generate(&req).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("json_object: {}", out.text);
    let v: Value = serde_json::from_str(&out.text).unwrap_or_else(|e| panic!("{e}: {}", out.text));
    assert!(v.is_object());
    let bad = req.with_response_format(ResponseFormat::json_schema(
        json!({"type": "string", "pattern": "^a"}),
    ));
    let err = m
        .generate(&bad)
        .expect_err("pattern is refused")
        .to_string();
    assert!(
        err.contains("response_format") && err.contains("pattern"),
        "{err}"
    );
}
