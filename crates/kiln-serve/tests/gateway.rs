//! Every gateway rule, through the router with `oneshot` and a scripted model: keys (401), roles
//! (403), limits and quotas (429 + Retry-After), body size (413), prompt length (400), a full
//! queue (503), PII masking (with false-positive checks), output filters (also on streams),
//! OpenAI's error shape.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use kiln_serve::{AppState, ModelHandle, ServeConfig, app};
use serde_json::{Value, json};

pub struct Fx {
    pub app: axum::Router,
    pub state: AppState,
    pub small: Arc<Scripted>,
    pub big: Arc<Scripted>,
}

pub fn base_toml() -> String {
    format!(
        r#"
[server]
max_body_bytes = 4096
max_prompt_tokens = 200
max_concurrent = 2
max_queue = 1

[[models]]
name = "small"
prices = {{ prompt_per_1k = 1.0, completion_per_1k = 2.0 }}

[[models]]
name = "big"

[[models]]
name = "embed"

[[routes]]
name = "auto"
models = ["small", "big"]
min_mean_logprob = -1.0

[roles.admin]
admin = true

[roles.user]
models = ["small", "auto", "embed"]
adapters = ["retail"]
endpoints = ["chat", "completions", "models", "usage"]

[[keys]]
name = "admin"
sha256 = "{}"
role = "admin"

[[keys]]
name = "user"
sha256 = "{}"
role = "user"

[[keys]]
name = "limited"
sha256 = "{}"
role = "user"
requests_per_minute = 1

[[keys]]
name = "quota"
sha256 = "{}"
role = "user"
tokens_per_day = 40
"#,
        sha("sk-admin"),
        sha("sk-user"),
        sha("sk-limited"),
        sha("sk-quota")
    )
}

pub fn fixture(extra: &str, small: Scripted, big: Scripted) -> Fx {
    let config = ServeConfig::from_toml(&(base_toml() + extra), std::path::Path::new(".")).unwrap();
    let small = Arc::new(small);
    let big = Arc::new(big);
    let mut handles = BTreeMap::new();
    handles.insert(
        "small".to_owned(),
        ModelHandle::generator(small.clone()).with_tokenizer(Arc::new(WordTokenizer)),
    );
    handles.insert("big".to_owned(), ModelHandle::generator(big.clone()));
    handles.insert(
        "embed".to_owned(),
        ModelHandle::embedder(Arc::new(LenEmbedder)),
    );
    let state = AppState::new(config, handles).unwrap();
    Fx {
        app: app(state.clone()),
        state,
        small,
        big,
    }
}

fn simple() -> Fx {
    fixture(
        "",
        Scripted::new("small", "Hello there friend"),
        Scripted::new("big", "Big answer"),
    )
}

fn chat(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

fn assert_openai_error(v: &Value) {
    let e = &v["error"];
    assert!(e["message"].is_string(), "{v}");
    assert!(e["type"].is_string(), "{v}");
    assert!(e.get("param").is_some() && e.get("code").is_some(), "{v}");
}

#[tokio::test]
async fn missing_or_wrong_key_is_401() {
    let fx = simple();
    let (s, _, v) = post_json(&fx.app, "/v1/chat/completions", None, &chat("small", "hi")).await;
    assert_eq!(s, 401);
    assert_openai_error(&v);
    assert_eq!(v["error"]["code"], "invalid_api_key");
    let (s, _, v) = post_json(
        &fx.app,
        "/v1/chat/completions",
        Some("sk-nope"),
        &chat("small", "hi"),
    )
    .await;
    assert_eq!(s, 401);
    assert!(!v.to_string().contains("sk-nope"));
    let (s, _, _) = post_json(
        &fx.app,
        "/v1/chat/completions",
        Some("sk-user"),
        &chat("small", "hi"),
    )
    .await;
    assert_eq!(s, 200);
    // The generator learns who called: the key's configured name, never a field of the body.
    assert_eq!(fx.small.last_request().caller.as_deref(), Some("user"));
    let mut spoof = chat("small", "hi");
    spoof["caller"] = json!("admin");
    spoof["user"] = json!("admin");
    let (s, _, _) = post_json(&fx.app, "/v1/chat/completions", Some("sk-user"), &spoof).await;
    assert_eq!(s, 200);
    assert_eq!(fx.small.last_request().caller.as_deref(), Some("user"));
}

#[tokio::test]
async fn roles_forbid_models_adapters_and_endpoints_with_403() {
    let fx = simple();
    let (s, _, v) = post_json(
        &fx.app,
        "/v1/chat/completions",
        Some("sk-user"),
        &chat("big", "hi"),
    )
    .await;
    assert_eq!(s, 403);
    assert_openai_error(&v);
    let (s, _, _) = post_json(
        &fx.app,
        "/v1/chat/completions",
        Some("sk-user"),
        &chat("small:other", "hi"),
    )
    .await;
    assert_eq!(s, 403);
    let (s, _, _) = post_json(
        &fx.app,
        "/v1/embeddings",
        Some("sk-user"),
        &json!({"model": "embed", "input": "x"}),
    )
    .await;
    assert_eq!(s, 403);
    // The admin may use everything; an allowed adapter reaches the model.
    let (s, _, _) = post_json(
        &fx.app,
        "/v1/chat/completions",
        Some("sk-admin"),
        &chat("big", "hi"),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _, _) = post_json(
        &fx.app,
        "/v1/chat/completions",
        Some("sk-user"),
        &chat("small:retail", "hi"),
    )
    .await;
    assert_eq!(s, 200);
    let r = fx.small.last_request();
    assert_eq!(r.adapters.len(), 1);
    assert_eq!(r.adapters[0].name, "retail");
    // Unknown models are 404; models lists only what the role may use.
    let (s, _, v) = post_json(
        &fx.app,
        "/v1/chat/completions",
        Some("sk-admin"),
        &chat("nope", "hi"),
    )
    .await;
    assert_eq!(s, 404);
    assert_eq!(v["error"]["param"], "model");
    let (_, _, body) = send(&fx.app, get("/v1/models", Some("sk-user"))).await;
    let v: Value = serde_json::from_slice(&body).unwrap();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, ["embed", "small", "auto"]);
}

#[tokio::test]
async fn rate_limit_and_quota_are_429_with_retry_after() {
    let fx = simple();
    let (s, _, _) = post_json(
        &fx.app,
        "/v1/chat/completions",
        Some("sk-limited"),
        &chat("small", "hi"),
    )
    .await;
    assert_eq!(s, 200);
    let (s, h, v) = post_json(
        &fx.app,
        "/v1/chat/completions",
        Some("sk-limited"),
        &chat("small", "hi"),
    )
    .await;
    assert_eq!(s, 429);
    assert_openai_error(&v);
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    let secs: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=61).contains(&secs), "{secs}");
    // 40 tokens per day: the first answer uses 5; one that may need 2 + 38 more is refused.
    let body =
        json!({"model": "small", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3});
    let (s, _, v) = post_json(&fx.app, "/v1/chat/completions", Some("sk-quota"), &body).await;
    assert_eq!(s, 200, "{v}");
    let big = json!({"model": "small", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 38});
    let (s, h, v) = post_json(&fx.app, "/v1/chat/completions", Some("sk-quota"), &big).await;
    assert_eq!(s, 429, "{v}");
    assert_eq!(v["error"]["type"], "insufficient_quota");
    assert!(h.contains_key("retry-after"));
}

#[tokio::test]
async fn oversize_body_is_413_and_long_prompt_is_400() {
    let fx = simple();
    let long = "word ".repeat(1000);
    let (s, _, v) = post_json(
        &fx.app,
        "/v1/chat/completions",
        Some("sk-user"),
        &chat("small", &long),
    )
    .await;
    assert_eq!(s, 413);
    assert_openai_error(&v);
    let long = "w1 ".repeat(300);
    let (s, _, v) = post_json(
        &fx.app,
        "/v1/completions",
        Some("sk-user"),
        &json!({"model": "small", "prompt": long}),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["code"], "context_length_exceeded");
    let (s, _, v) = send(
        &fx.app,
        post(
            "/v1/chat/completions",
            Some("sk-user"),
            &json!("not an object"),
        ),
    )
    .await;
    assert_eq!(s, 400);
    assert_openai_error(&serde_json::from_slice(&v).unwrap());
    let bad =
        json!({"model": "small", "messages": [{"role": "user", "content": "hi"}], "top_p": 0.0});
    let (s, _, v) = post_json(&fx.app, "/v1/chat/completions", Some("sk-user"), &bad).await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["param"], "top_p");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_queue_is_503_with_retry_after() {
    let fx = simple();
    fx.small.held.store(true, Ordering::SeqCst);
    // Two slots and a queue of one: three requests are taken, the fourth is refused.
    let mut running = Vec::new();
    for _ in 0..3 {
        let app = fx.app.clone();
        running.push(tokio::spawn(async move {
            post_json(
                &app,
                "/v1/chat/completions",
                Some("sk-admin"),
                &chat("small", "hi"),
            )
            .await
            .0
        }));
    }
    for _ in 0..2000 {
        let e = fx.state.model("small").unwrap().engine.as_ref().unwrap();
        if e.active_sequences() == 2 && e.queue_depth() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (s, h, v) = post_json(
        &fx.app,
        "/v1/chat/completions",
        Some("sk-admin"),
        &chat("small", "hi"),
    )
    .await;
    assert_eq!(s, 503, "{v}");
    assert_openai_error(&v);
    assert!(h.contains_key("retry-after"));
    fx.small.held.store(false, Ordering::SeqCst);
    for r in running {
        assert_eq!(r.await.unwrap(), 200);
    }
    let e = fx.state.model("small").unwrap().engine.as_ref().unwrap();
    assert_eq!((e.active_sequences(), e.queue_depth()), (0, 0));
}

fn echo() -> Scripted {
    // Replies with the last user line it saw, so tests can see what the model was given.
    Scripted::with(
        "small",
        Arc::new(|prompt: &str, _: &_| {
            let line = prompt
                .lines()
                .rev()
                .find(|l| l.starts_with("user: "))
                .unwrap_or("");
            format!("You said {}", line.trim_start_matches("user: "))
        }),
    )
}

#[tokio::test]
async fn pii_is_masked_before_the_model_and_restored_in_the_reply() {
    let fx = fixture(
        "[pii]\nenabled = true\nrestore = true\n",
        echo(),
        Scripted::new("big", "x"),
    );
    let text =
        "mail bob@example.com, phone 13812345678, id 11010519491231002X, card 4111 1111 1111 1111";
    let (s, _, v) = post_json(
        &fx.app,
        "/v1/chat/completions",
        Some("sk-user"),
        &chat("small", text),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let seen = format!("{:?}", fx.small.last_request().prompt);
    for secret in [
        "bob@example.com",
        "13812345678",
        "11010519491231002X",
        "4111",
    ] {
        assert!(!seen.contains(secret), "{secret} reached the model: {seen}");
    }
    assert!(
        seen.contains("[EMAIL_1]")
            && seen.contains("[PHONE_1]")
            && seen.contains("[CN_ID_1]")
            && seen.contains("[BANK_CARD_1]"),
        "{seen}"
    );
    // Restored in the reply.
    assert_eq!(
        v["choices"][0]["message"]["content"],
        format!("You said {text}")
    );
    let (_, _, m) = send(&fx.app, get("/metrics", None)).await;
    let m = String::from_utf8(m).unwrap();
    assert_eq!(
        metric(&m, "kiln_pii_masked_total{kind=\"email\"}"),
        1.0,
        "{m}"
    );
    assert_eq!(metric(&m, "kiln_pii_masked_total{kind=\"cn_id\"}"), 1.0);
}

#[tokio::test]
async fn pii_false_positives_reach_the_model_unchanged() {
    let fx = fixture("[pii]\nenabled = true\n", echo(), Scripted::new("big", "x"));
    // A valid-looking ID with a wrong check digit, a 16-digit number failing Luhn, an order number.
    let text = "id 110105194912310021 card 4111111111111112 order A13812345678 year 2024";
    let (s, _, v) = post_json(
        &fx.app,
        "/v1/chat/completions",
        Some("sk-user"),
        &chat("small", text),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        v["choices"][0]["message"]["content"],
        format!("You said {text}")
    );
    let seen = format!("{:?}", fx.small.last_request().prompt);
    assert!(
        seen.contains("110105194912310021") && seen.contains("4111111111111112"),
        "{seen}"
    );
}

#[tokio::test]
async fn pii_masked_but_not_restored_when_restore_is_off() {
    let fx = fixture("[pii]\nenabled = true\n", echo(), Scripted::new("big", "x"));
    let (_, _, v) = post_json(
        &fx.app,
        "/v1/chat/completions",
        Some("sk-user"),
        &chat("small", "to a@b.io"),
    )
    .await;
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "You said to [EMAIL_1]"
    );
}

const FILTERS: &str = r#"
[[filters]]
name = "secret"
block = ["Project Falcon"]

[[filters]]
name = "keys"
regex = ["sk-[a-z]{6}"]
action = "redact"
max_match_bytes = 9
"#;

#[tokio::test]
async fn output_filter_blocks_and_redacts_whole_answers() {
    let fx = fixture(
        FILTERS,
        Scripted::new("small", "The plan is Project Falcon now"),
        Scripted::new("big", "use sk-abcdef ok"),
    );
    let (_, _, v) = post_json(
        &fx.app,
        "/v1/chat/completions",
        Some("sk-user"),
        &chat("small", "hi"),
    )
    .await;
    assert_eq!(v["choices"][0]["message"]["content"], "The plan is ");
    assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
    let (_, _, v) = post_json(
        &fx.app,
        "/v1/chat/completions",
        Some("sk-admin"),
        &chat("big", "hi"),
    )
    .await;
    assert_eq!(v["choices"][0]["message"]["content"], "use [REDACTED] ok");
}

#[tokio::test]
async fn output_filter_works_on_streams_across_chunks() {
    // "Project" and "Falcon" arrive as separate tokens.
    let fx = fixture(
        FILTERS,
        Scripted::new("small", "The plan is Project Falcon and more words"),
        Scripted::new("big", "use sk-abcdef ok then"),
    );
    let mut body = chat("small", "hi");
    body["stream"] = json!(true);
    let (s, h, b) = send(
        &fx.app,
        post("/v1/chat/completions", Some("sk-user"), &body),
    )
    .await;
    assert_eq!(s, 200);
    assert!(
        h["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let data = sse_data(&b);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let text = sse_text(&data);
    assert_eq!(text, "The plan is ");
    assert!(
        data.iter()
            .any(|d| d.contains("\"finish_reason\":\"content_filter\"")),
        "{data:?}"
    );
    let mut body = chat("big", "hi");
    body["stream"] = json!(true);
    let (_, _, b) = send(
        &fx.app,
        post("/v1/chat/completions", Some("sk-admin"), &body),
    )
    .await;
    assert_eq!(sse_text(&sse_data(&b)), "use [REDACTED] ok then");
    let (_, _, m) = send(&fx.app, get("/metrics", None)).await;
    let m = String::from_utf8(m).unwrap();
    assert_eq!(
        metric(
            &m,
            "kiln_filter_actions_total{policy=\"secret\",action=\"block\"}"
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "kiln_filter_actions_total{policy=\"keys\",action=\"redact\"}"
        ),
        1.0,
        "{m}"
    );
}

#[tokio::test]
async fn unknown_endpoints_and_bad_methods_answer_in_openai_shape() {
    let fx = simple();
    let (s, _, b) = send(&fx.app, get("/v1/nothing", Some("sk-user"))).await;
    assert_eq!(s, 404);
    assert_openai_error(&serde_json::from_slice(&b).unwrap());
}

#[tokio::test]
async fn no_config_mode_needs_no_key() {
    let state = AppState::single(
        "m",
        ModelHandle::generator(Arc::new(Scripted::new("m", "ok"))),
    )
    .unwrap();
    let app = app(state);
    let (s, _, v) = post_json(&app, "/v1/chat/completions", None, &chat("m", "hi")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], "ok");
}

/// The RBAC matrix (issue 9): every role against every protected endpoint and every model. A
/// request is refused with 403 exactly when the role lacks the endpoint or the model (admins have
/// everything); otherwise the gateway lets it through (whatever the endpoint then answers).
#[tokio::test]
async fn rbac_matrix_every_role_every_endpoint_every_model() {
    let extra = format!(
        r#"
[roles.embedder]
models = ["embed"]
endpoints = ["embeddings"]

[roles.nothing]
models = []
endpoints = []

[roles.bigchat]
models = ["big"]
endpoints = ["chat", "usage", "watermark"]

[[keys]]
name = "embedder"
sha256 = "{}"
role = "embedder"

[[keys]]
name = "nothing"
sha256 = "{}"
role = "nothing"

[[keys]]
name = "bigchat"
sha256 = "{}"
role = "bigchat"
"#,
        sha("sk-embedder"),
        sha("sk-nothing"),
        sha("sk-bigchat")
    );
    let fx = fixture(
        &extra,
        Scripted::new("small", "ok"),
        Scripted::new("big", "ok"),
    );
    // (key, admin, endpoints, models) as configured above and in base_toml.
    let roles: [(&str, bool, &[&str], &[&str]); 5] = [
        ("sk-admin", true, &[], &[]),
        (
            "sk-user",
            false,
            &["chat", "completions", "models", "usage"],
            &["small", "auto", "embed"],
        ),
        ("sk-embedder", false, &["embeddings"], &["embed"]),
        ("sk-nothing", false, &[], &[]),
        (
            "sk-bigchat",
            false,
            &["chat", "usage", "watermark"],
            &["big"],
        ),
    ];
    let models = ["small", "big", "auto", "embed"];
    let mut checked = 0;
    for (key, admin, endpoints, allowed) in roles {
        let may = |endpoint: &str| admin || endpoints.contains(&endpoint);
        let uses = |model: &str| admin || allowed.contains(&model);
        for model in models {
            let generates = model != "embed";
            let cases = [
                (
                    "chat",
                    "/v1/chat/completions",
                    json!({"model": model, "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}),
                ),
                (
                    "completions",
                    "/v1/completions",
                    json!({"model": model, "max_tokens": 2, "prompt": "hi"}),
                ),
                (
                    "embeddings",
                    "/v1/embeddings",
                    json!({"model": model, "input": "hi"}),
                ),
            ];
            for (endpoint, path, body) in cases {
                let (s, _, v) = post_json(&fx.app, path, Some(key), &body).await;
                assert_ne!(s, 401, "{key}");
                let kind_fits = (endpoint == "embeddings") != generates;
                if !may(endpoint) {
                    assert_eq!(s, 403, "{key} {endpoint} {model}: {v}");
                } else if !kind_fits {
                    // The wrong kind of model for the endpoint: never served; refused as not found
                    // or, for a model outside the role, as forbidden.
                    let refused = s == 404 || s == 400 || (s == 403 && !uses(model));
                    assert!(refused, "{key} {endpoint} {model}: {s} {v}");
                } else if uses(model) {
                    assert_eq!(s, 200, "{key} {endpoint} {model}: {v}");
                } else {
                    assert_eq!(s, 403, "{key} {endpoint} {model}: {v}");
                }
                checked += 1;
            }
        }
        let (s, _, _) = send(&fx.app, get("/v1/usage", Some(key))).await;
        assert_eq!(s == 403, !may("usage"), "{key} usage: {s}");
        let (s, _, _) = send(&fx.app, get("/v1/admin/adapters?model=small", Some(key))).await;
        assert_eq!(s == 403, !admin, "{key} admin: {s}");
        let (s, _, v) = post_json(
            &fx.app,
            "/v1/admin/adapters/load",
            Some(key),
            &json!({"model": "small", "name": "x"}),
        )
        .await;
        assert_eq!(s == 403, !admin, "{key} admin load: {s} {v}");
        let (s, _, v) = post_json(&fx.app, "/v1/admin/reload", Some(key), &json!({})).await;
        assert_eq!(s == 403, !admin, "{key} admin reload: {s} {v}");
        let (s, _, _) = post_json(
            &fx.app,
            "/v1/watermark/detect",
            Some(key),
            &json!({"model": "small", "text": "hi"}),
        )
        .await;
        assert_eq!(
            s == 403,
            !may("watermark") || !uses("small"),
            "{key} watermark: {s}"
        );
        // Public endpoints need no role.
        for path in ["/health", "/ready", "/openapi.json"] {
            assert_eq!(
                send(&fx.app, get(path, Some(key))).await.0,
                200,
                "{key} {path}"
            );
        }
        checked += 7;
    }
    assert_eq!(checked, 5 * (4 * 3 + 7));
}
