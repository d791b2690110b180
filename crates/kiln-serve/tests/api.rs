//! The OpenAI-compatible endpoints and the engine behind them, with a scripted model: response
//! shapes (chat, streamed chat, completions, embeddings, models), `n`, `stop`, `logprobs`,
//! `tools`, `response_format`, the response cache, cancellation on disconnect, continuous
//! batching with two adapters, cascades, usage and cost, the watermark, admin adapters, and the
//! operational endpoints.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use kiln_serve::{AdapterManager, AppState, ModelHandle, ServeConfig, app};
use serde_json::{Value, json};
use tower::ServiceExt;

fn single(model: Scripted, extra_toml: &str) -> (axum::Router, AppState, Arc<Scripted>) {
    let config = ServeConfig::from_toml(
        &format!("[[models]]\nname = \"m\"\n{extra_toml}"),
        Path::new("."),
    )
    .unwrap();
    let model = Arc::new(model);
    let mut handles = BTreeMap::new();
    handles.insert(
        "m".to_owned(),
        ModelHandle::generator(model.clone()).with_tokenizer(Arc::new(WordTokenizer)),
    );
    let state = AppState::new(config, handles).unwrap();
    (app(state.clone()), state, model)
}

fn chat(text: &str) -> Value {
    json!({"model": "m", "messages": [{"role": "user", "content": text}]})
}

async fn metrics_text(app: &axum::Router) -> String {
    String::from_utf8(send(app, get("/metrics", None)).await.2).unwrap()
}

#[tokio::test]
async fn chat_completion_shape() {
    let (app, _, _) = single(Scripted::new("m", "Paris is the capital"), "");
    let (s, h, v) = post_json(
        &app,
        "/v1/chat/completions",
        None,
        &chat("capital of France?"),
    )
    .await;
    assert_eq!(s, 200);
    assert!(h.contains_key("x-request-id"));
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["model"], "m");
    let c = &v["choices"][0];
    assert_eq!(c["message"]["role"], "assistant");
    assert_eq!(c["message"]["content"], "Paris is the capital");
    assert_eq!(c["finish_reason"], "stop");
    assert_eq!(v["usage"]["completion_tokens"], 4);
    assert_eq!(
        v["usage"]["total_tokens"].as_u64().unwrap(),
        v["usage"]["prompt_tokens"].as_u64().unwrap() + 4
    );
}

#[tokio::test]
async fn chat_parameters_reach_the_model() {
    let (app, _, model) = single(Scripted::new("m", "one two STOP three"), "");
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "count"}],
        "stop": "STOP", "max_tokens": 10, "temperature": 0.5, "top_p": 0.9, "seed": 7, "n": 2,
        "logprobs": true, "top_logprobs": 2,
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}});
    let (s, _, v) = post_json(&app, "/v1/chat/completions", None, &body).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["choices"].as_array().unwrap().len(), 2);
    assert_eq!(v["choices"][1]["index"], 1);
    assert_eq!(v["choices"][0]["message"]["content"], "one two ");
    let lp = &v["choices"][0]["logprobs"]["content"];
    assert_eq!(lp.as_array().unwrap().len(), 3); // "one", " two", " "
    assert_eq!(lp[0]["top_logprobs"].as_array().unwrap().len(), 2);
    assert!(lp[0]["bytes"].is_array());
    let requests = model.requests.lock().unwrap().clone();
    // The two choices run concurrently: the model sees them in either order.
    let mut seeds: Vec<_> = requests.iter().map(|r| r.sampling.seed).collect();
    seeds.sort();
    assert_eq!(seeds, [Some(7), Some(8)]);
    let r = &requests[0];
    assert_eq!(r.stop.stop_strings, ["STOP"]);
    assert_eq!(r.max_tokens, 10);
    assert_eq!(r.sampling.top_p, 0.9);
    assert_eq!(r.logprobs, Some(2));
    assert!(matches!(
        r.response_format,
        kiln_core::ResponseFormat::JsonSchema { .. }
    ));
}

#[tokio::test]
async fn tools_become_tool_calls() {
    let reply = r#"<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>"#;
    let (app, _, model) = single(Scripted::new("m", reply), "");
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "weather?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]});
    let (s, _, v) = post_json(&app, "/v1/chat/completions", None, &body).await;
    assert_eq!(s, 200);
    let c = &v["choices"][0];
    assert_eq!(c["finish_reason"], "tool_calls");
    assert!(c["message"]["content"].is_null());
    let call = &c["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args["city"], "Paris");
    let prompt = format!("{:?}", model.last_request().prompt);
    assert!(
        prompt.contains("get_weather") && prompt.contains("<tool_call>"),
        "{prompt}"
    );
    // Streamed: one tool_calls delta, then the finish reason.
    let mut body = body;
    body["stream"] = json!(true);
    let (_, _, b) = send(&app, post("/v1/chat/completions", None, &body)).await;
    let data = sse_data(&b);
    assert!(
        data.iter()
            .any(|d| d.contains("\"tool_calls\"") && d.contains("get_weather")),
        "{data:?}"
    );
    assert!(
        data.iter()
            .any(|d| d.contains("\"finish_reason\":\"tool_calls\""))
    );
}

#[tokio::test]
async fn streamed_chat_sends_chunks_usage_and_done() {
    let (app, _, _) = single(Scripted::new("m", "a b c"), "");
    let mut body = chat("hi");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let (s, _, b) = send(&app, post("/v1/chat/completions", None, &body)).await;
    assert_eq!(s, 200);
    let data = sse_data(&b);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(sse_text(&data), "a b c");
    let finish: Vec<_> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
        .collect();
    assert_eq!(finish, ["stop"]);
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["completion_tokens"], 3);
    assert_eq!(chunks.last().unwrap()["choices"], json!([]));
}

#[tokio::test]
async fn completions_plain_and_streamed() {
    let (app, _, model) = single(Scripted::new("m", "upon a time"), "");
    let body = json!({"model": "m", "prompt": "Once", "max_tokens": 5, "logprobs": 1});
    let (s, _, v) = post_json(&app, "/v1/completions", None, &body).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["text"], "upon a time");
    assert_eq!(
        v["choices"][0]["logprobs"]["tokens"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(v["choices"][0]["logprobs"]["text_offset"], json!([0, 4, 6]));
    assert_eq!(
        model.last_request().prompt,
        kiln_core::Prompt::Text("Once".into())
    );
    let body = json!({"model": "m", "prompt": "Once", "stream": true});
    let (_, _, b) = send(&app, post("/v1/completions", None, &body)).await;
    let data = sse_data(&b);
    let text: String = data
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| {
            serde_json::from_str::<Value>(d).unwrap()["choices"][0]["text"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    assert_eq!(text, "upon a time");
    assert_eq!(data.last().unwrap(), "[DONE]");
    // Default max_tokens is 16, as OpenAI's.
    assert_eq!(model.last_request().max_tokens, 16);
}

#[tokio::test]
async fn embeddings_float_and_base64() {
    let config = ServeConfig::from_toml("[[models]]\nname = \"e\"\n", Path::new(".")).unwrap();
    let mut handles = BTreeMap::new();
    handles.insert("e".to_owned(), ModelHandle::embedder(Arc::new(LenEmbedder)));
    let app = app(AppState::new(config, handles).unwrap());
    let (s, _, v) = post_json(
        &app,
        "/v1/embeddings",
        None,
        &json!({"model": "e", "input": ["ab c", "x"]}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["embedding"], json!([4.0, 1.0, 1.0]));
    assert_eq!(v["data"][1]["index"], 1);
    let (_, _, v) = post_json(
        &app,
        "/v1/embeddings",
        None,
        &json!({"model": "e", "input": "x", "encoding_format": "base64"}),
    )
    .await;
    // [1.0, 0.0, 1.0] as little-endian f32.
    assert_eq!(v["data"][0]["embedding"], "AACAPwAAAAAAAIA/");
    let (s, _, _) = post_json(
        &app,
        "/v1/chat/completions",
        None,
        &json!({"model": "e", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn deterministic_requests_hit_the_response_cache() {
    let (app, _, model) = single(Scripted::new("m", "cached answer"), "");
    let mut body = chat("same question");
    body["temperature"] = json!(0);
    for _ in 0..2 {
        let (_, _, v) = post_json(&app, "/v1/chat/completions", None, &body).await;
        assert_eq!(v["choices"][0]["message"]["content"], "cached answer");
    }
    assert_eq!(model.calls.load(Ordering::SeqCst), 1);
    // Sampling without a seed is not cached.
    body["temperature"] = json!(0.8);
    post_json(&app, "/v1/chat/completions", None, &body).await;
    post_json(&app, "/v1/chat/completions", None, &body).await;
    assert_eq!(model.calls.load(Ordering::SeqCst), 3);
    let m = metrics_text(&app).await;
    assert_eq!(metric(&m, "kiln_cache_hits_total{model=\"m\"}"), 1.0, "{m}");
}

async fn disconnect_frees_the_slot(batch: bool) {
    let mut model = Scripted::new("m", &"word ".repeat(200));
    model.delay = Duration::from_millis(5);
    let model = Arc::new(model);
    let config = ServeConfig::from_toml(
        "[server]\nmax_concurrent = 1\nmax_queue = 0\n[[models]]\nname = \"m\"\n",
        Path::new("."),
    )
    .unwrap();
    let mut handle = ModelHandle::generator(model.clone());
    if batch {
        handle = handle.with_batch(model.clone());
    }
    let mut handles = BTreeMap::new();
    handles.insert("m".to_owned(), handle);
    let state = AppState::new(config, handles).unwrap();
    let app = app(state.clone());
    let mut body = chat("talk");
    body["stream"] = json!(true);
    let r = app
        .clone()
        .oneshot(post("/v1/chat/completions", None, &body))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let first = read_first_chunk_and_drop(r).await;
    assert!(first.contains("data:"), "{first}");
    let engine = state.model("m").unwrap().engine.as_ref().unwrap();
    for _ in 0..2000 {
        if engine.active_sequences() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let m = metrics_text(&app).await;
    assert_eq!(metric(&m, "kiln_active_sequences{model=\"m\"}"), 0.0, "{m}");
    assert_eq!(metric(&m, "kiln_queue_depth{model=\"m\"}"), 0.0, "{m}");
    assert_eq!(model.cancelled.load(Ordering::SeqCst), 1);
    // The freed slot takes the next request (the queue is 0, so a held slot would be a 503).
    let (s, _, _) = post_json(
        &app,
        "/v1/completions",
        None,
        &json!({"model": "m", "prompt": "x", "max_tokens": 2}),
    )
    .await;
    assert_eq!(s, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_cancels_and_frees_the_slot() {
    disconnect_frees_the_slot(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_leaves_the_batch() {
    disconnect_frees_the_slot(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_adapters_in_one_batch_each_get_their_own_output() {
    let mut model = Scripted::with(
        "m",
        Arc::new(|_: &str, r: &kiln_core::GenerationRequest| {
            let name = r.adapters.first().map_or("base", |a| a.name.as_str());
            format!("{name} {name} {name} {name} {name} {name}")
        }),
    );
    model.delay = Duration::from_millis(3);
    let model = Arc::new(model);
    let config = ServeConfig::from_toml(
        "[server]\nmax_concurrent = 4\n[[models]]\nname = \"m\"\n",
        Path::new("."),
    )
    .unwrap();
    let mut handles = BTreeMap::new();
    handles.insert(
        "m".to_owned(),
        ModelHandle::generator(model.clone()).with_batch(model.clone()),
    );
    let state = AppState::new(config, handles).unwrap();
    let app = app(state);
    // Held until all four have joined, so they certainly share decode steps.
    model.held.store(true, Ordering::SeqCst);
    let mut tasks = Vec::new();
    for adapter in ["alpha", "beta", "alpha", "beta"] {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let mut body = json!({"model": format!("m:{adapter}"), "messages": [{"role": "user", "content": "hi"}], "stream": true});
            body["temperature"] = json!(0.7);
            let (_, _, b) = send(&app, post("/v1/chat/completions", None, &body)).await;
            (adapter, sse_text(&sse_data(&b)))
        }));
    }
    for _ in 0..2000 {
        if model.calls.load(Ordering::SeqCst) == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    model.held.store(false, Ordering::SeqCst);
    for t in tasks {
        let (adapter, text) = t.await.unwrap();
        assert_eq!(text.trim(), [adapter; 6].join(" "));
    }
    assert_eq!(
        model.max_batch.load(Ordering::SeqCst),
        4,
        "the four did not share a step"
    );
    let m = metrics_text(&app).await;
    assert!(metric(&m, "kiln_batch_size_count{model=\"m\"}") > 0.0);
}

fn cascade(small_logprob: f32) -> (axum::Router, Arc<Scripted>, Arc<Scripted>) {
    let config = ServeConfig::from_toml(
        "[[models]]\nname = \"small\"\n[[models]]\nname = \"big\"\n[[routes]]\nname = \"auto\"\nmodels = [\"small\", \"big\"]\nmin_mean_logprob = -1.0\n",
        Path::new("."),
    )
    .unwrap();
    let mut small = Scripted::new("small", "small guess");
    small.logprob = small_logprob;
    let (small, big) = (
        Arc::new(small),
        Arc::new(Scripted::new("big", "big answer")),
    );
    let mut handles = BTreeMap::new();
    handles.insert("small".to_owned(), ModelHandle::generator(small.clone()));
    handles.insert("big".to_owned(), ModelHandle::generator(big.clone()));
    (app(AppState::new(config, handles).unwrap()), small, big)
}

#[tokio::test]
async fn cascade_escalates_on_low_confidence_and_says_who_answered() {
    let (app, small, big) = cascade(-3.0);
    let body = json!({"model": "auto", "messages": [{"role": "user", "content": "hard"}]});
    let (s, h, v) = post_json(&app, "/v1/chat/completions", None, &body).await;
    assert_eq!(s, 200);
    assert_eq!(v["model"], "big");
    assert_eq!(h["x-kiln-model"], "big");
    assert_eq!(v["choices"][0]["message"]["content"], "big answer");
    assert!(v["choices"][0]["logprobs"].is_null());
    assert_eq!(
        (
            small.calls.load(Ordering::SeqCst),
            big.calls.load(Ordering::SeqCst)
        ),
        (1, 1)
    );
    let m = metrics_text(&app).await;
    assert_eq!(
        metric(
            &m,
            "kiln_cascade_escalations_total{route=\"auto\",from=\"small\"}"
        ),
        1.0
    );

    let (app, _, big) = cascade(-0.2);
    let (_, _, v) = post_json(&app, "/v1/chat/completions", None, &body).await;
    assert_eq!(v["model"], "small");
    assert_eq!(big.calls.load(Ordering::SeqCst), 0);
    let mut stream = body.clone();
    stream["stream"] = json!(true);
    let (_, _, b) = send(&app, post("/v1/chat/completions", None, &stream)).await;
    assert_eq!(sse_text(&sse_data(&b)), "small guess");
}

#[tokio::test]
async fn usage_reports_tokens_and_cost_per_key() {
    let toml = format!(
        "[[models]]\nname = \"m\"\nprices = {{ prompt_per_1k = 1000.0, completion_per_1k = 2000.0 }}\n\
         [roles.user]\nmodels = [\"m\"]\nendpoints = [\"chat\", \"usage\"]\n[roles.admin]\nadmin = true\n\
         [[keys]]\nname = \"alice\"\nsha256 = \"{}\"\nrole = \"user\"\nbudget = 100.0\n\
         [[keys]]\nname = \"bob\"\nsha256 = \"{}\"\nrole = \"user\"\n\
         [[keys]]\nname = \"root\"\nsha256 = \"{}\"\nrole = \"admin\"\n",
        sha("sk-a"),
        sha("sk-b"),
        sha("sk-root")
    );
    let config = ServeConfig::from_toml(&toml, Path::new(".")).unwrap();
    let mut handles = BTreeMap::new();
    handles.insert(
        "m".to_owned(),
        ModelHandle::generator(Arc::new(Scripted::new("m", "x y"))),
    );
    let app = app(AppState::new(config, handles).unwrap());
    // "user: hi" is 2 prompt tokens, "x y" 2 completion tokens: 2 + 4 = 6 per request.
    let (_, _, v) = post_json(&app, "/v1/chat/completions", Some("sk-a"), &chat("hi")).await;
    assert_eq!(v["usage"]["prompt_tokens"], 2, "{v}");
    post_json(&app, "/v1/chat/completions", Some("sk-b"), &chat("hi")).await;
    let (_, _, b) = send(&app, get("/v1/usage", Some("sk-a"))).await;
    let v: Value = serde_json::from_slice(&b).unwrap();
    let keys = v["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["key"], "alice");
    assert_eq!(keys[0]["models"]["m"]["completion_tokens"], 2);
    assert!((keys[0]["cost"].as_f64().unwrap() - 6.0).abs() < 1e-9);
    let (_, _, b) = send(&app, get("/v1/usage", Some("sk-root"))).await;
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["keys"].as_array().unwrap().len(), 2);
    let m = metrics_text(&app).await;
    assert_eq!(
        metric(
            &m,
            "kiln_budget_alerts_total{key=\"alice\",threshold=\"0.5\"}"
        ),
        0.0
    );
    assert_eq!(
        metric(&m, "kiln_key_tokens_total{key=\"alice\"}"),
        4.0,
        "{m}"
    );
    assert!(!m.contains("sk-a"));
}

#[tokio::test]
async fn watermarked_output_is_detected() {
    let (app, _, _) = single(
        Scripted::new("m", "unused"),
        "watermark = { gamma = 0.25, delta = 4.0, key = 99 }\n",
    );
    let mut body = chat("write");
    body["max_tokens"] = json!(60);
    let (_, _, v) = post_json(&app, "/v1/chat/completions", None, &body).await;
    let text = v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(text.starts_with('w'), "{text}");
    let (s, _, d) = post_json(
        &app,
        "/v1/watermark/detect",
        None,
        &json!({"model": "m", "text": text}),
    )
    .await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(d["watermarked"], true, "{d}");
    assert!(d["z_score"].as_f64().unwrap() > 4.0, "{d}");
    let plain: String = (0..60)
        .map(|i| format!("w{} ", (i * 37 + 11) % 1000))
        .collect();
    let (_, _, d) = post_json(
        &app,
        "/v1/watermark/detect",
        None,
        &json!({"model": "m", "text": plain}),
    )
    .await;
    assert_eq!(d["watermarked"], false, "{d}");
}

#[derive(Default)]
struct FakeAdapters(Mutex<Vec<String>>);

impl AdapterManager for FakeAdapters {
    fn load_adapter(&self, name: &str, dir: &Path) -> kiln_core::Result<()> {
        assert!(dir.is_dir());
        self.0.lock().unwrap().push(name.to_owned());
        Ok(())
    }
    fn unload_adapter(&self, name: &str) -> kiln_core::Result<bool> {
        let mut v = self.0.lock().unwrap();
        let before = v.len();
        v.retain(|n| n != name);
        Ok(v.len() < before)
    }
    fn adapters(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn admin_loads_and_unloads_adapters_inside_adapters_dir() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("retail")).unwrap();
    let toml = format!(
        "[[models]]\nname = \"m\"\nadapters_dir = {:?}\n[roles.user]\nmodels = [\"m\"]\nadapters = [\"*\"]\nendpoints = [\"chat\"]\n\
         [roles.admin]\nadmin = true\n[[keys]]\nname = \"u\"\nsha256 = \"{}\"\nrole = \"user\"\n\
         [[keys]]\nname = \"root\"\nsha256 = \"{}\"\nrole = \"admin\"\n",
        dir.path().display().to_string(),
        sha("sk-u"),
        sha("sk-root")
    );
    let config = ServeConfig::from_toml(&toml, Path::new(".")).unwrap();
    let mut handles = BTreeMap::new();
    handles.insert(
        "m".to_owned(),
        ModelHandle::generator(Arc::new(Scripted::new("m", "ok")))
            .with_adapters(Arc::new(FakeAdapters::default())),
    );
    let app = app(AppState::new(config, handles).unwrap());
    let msg = json!({"model": "m:retail", "messages": [{"role": "user", "content": "hi"}]});
    let (s, _, _) = post_json(&app, "/v1/chat/completions", Some("sk-u"), &msg).await;
    assert_eq!(s, 404, "not loaded yet");
    let load = json!({"model": "m", "name": "retail"});
    let (s, _, _) = post_json(&app, "/v1/admin/adapters/load", Some("sk-u"), &load).await;
    assert_eq!(s, 403);
    let (s, _, v) = post_json(&app, "/v1/admin/adapters/load", Some("sk-root"), &load).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["adapters"], json!(["retail"]));
    let (s, _, _) = post_json(&app, "/v1/chat/completions", Some("sk-u"), &msg).await;
    assert_eq!(s, 200);
    for bad in ["../retail", "..", "/etc", "a/b"] {
        let (s, _, v) = post_json(
            &app,
            "/v1/admin/adapters/load",
            Some("sk-root"),
            &json!({"model": "m", "name": bad}),
        )
        .await;
        assert_eq!(s, 400, "{bad}: {v}");
    }
    let (s, _, _) = post_json(
        &app,
        "/v1/admin/adapters/load",
        Some("sk-root"),
        &json!({"model": "m", "name": "missing"}),
    )
    .await;
    assert_eq!(s, 404);
    let (s, _, v) = post_json(&app, "/v1/admin/adapters/unload", Some("sk-root"), &load).await;
    assert_eq!(s, 200, "{v}");
    let (s, _, _) = post_json(&app, "/v1/admin/adapters/unload", Some("sk-root"), &load).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn malformed_tools_and_tool_calls_are_rejected_by_name() {
    let (app, _, _) = single(Scripted::new("m", "ok"), "");
    let user = json!({"role": "user", "content": "hi"});
    for (extra, param) in [
        (json!({"tools": [{"type": "function"}]}), "tools[0]"),
        (
            json!({"tools": [{"type": "retrieval", "function": {"name": "f"}}]}),
            "tools[0]",
        ),
        (
            json!({"tools": [{"type": "function", "function": {"name": 3}}]}),
            "tools[0]",
        ),
        (json!({"tool_choice": "sometimes"}), "tool_choice"),
        (json!({"tool_choice": {"type": "function"}}), "tool_choice"),
    ] {
        let mut body = json!({"model": "m", "messages": [user]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (s, _, v) = post_json(&app, "/v1/chat/completions", None, &body).await;
        assert_eq!(
            (s, v["error"]["param"].as_str()),
            (400, Some(param)),
            "{body}"
        );
    }
    let messages =
        json!([user, {"role": "assistant", "tool_calls": [{"id": "c", "type": "function"}]}]);
    let body = json!({"model": "m", "messages": messages});
    let (s, _, v) = post_json(&app, "/v1/chat/completions", None, &body).await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["param"], "messages[1].tool_calls[0]");
    let body = json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "text"}]}]});
    let (s, _, v) = post_json(&app, "/v1/chat/completions", None, &body).await;
    assert_eq!(
        (s, v["error"]["param"].as_str()),
        (400, Some("messages[0].content"))
    );
    // A tiny positive top_p stays positive (it is read as f64); temperature is OpenAI's [0, 2].
    let mut body = chat("hi");
    body["top_p"] = json!(5e-324);
    assert_eq!(
        post_json(&app, "/v1/chat/completions", None, &body).await.0,
        200
    );
    body["temperature"] = json!(2.5);
    let (s, _, v) = post_json(&app, "/v1/chat/completions", None, &body).await;
    assert_eq!(
        (s, v["error"]["param"].as_str()),
        (400, Some("temperature"))
    );
}

#[tokio::test]
async fn health_ready_metrics_openapi() {
    let (app, state, _) = single(Scripted::new("m", "ok"), "");
    let (s, _, _) = send(&app, get("/health", None)).await;
    assert_eq!(s, 200);
    let (s, _, b) = send(&app, get("/ready", None)).await;
    assert_eq!(s, 200);
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["models"][0]["active_sequences"], 0);
    post_json(&app, "/v1/chat/completions", None, &chat("hi")).await;
    let m = metrics_text(&app).await;
    assert!(m.contains("# TYPE kiln_requests_total counter"));
    assert_eq!(
        metric(
            &m,
            "kiln_requests_total{endpoint=\"/v1/chat/completions\",status=\"200\"}"
        ),
        1.0,
        "{m}"
    );
    assert!(
        metric(&m, "kiln_time_to_first_token_seconds_count{model=\"m\"}") == 0.0
            || m.contains("kiln_time_to_first_token_seconds_bucket")
    );
    let (_, _, b) = send(&app, get("/openapi.json", None)).await;
    let doc: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    for p in [
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/models",
        "/v1/usage",
        "/health",
        "/ready",
        "/metrics",
    ] {
        assert!(doc["paths"].get(p).is_some(), "{p}");
    }
    // The document describes this server: one generator without embeddings, a watermark or
    // run-time adapters, so those operations are not offered, and `model` names what answers.
    for p in [
        "/v1/embeddings",
        "/v1/watermark/detect",
        "/v1/admin/adapters",
    ] {
        assert!(doc["paths"].get(p).is_none(), "{p}");
    }
    let props = &doc["components"]["schemas"]["ChatRequest"]["properties"];
    assert_eq!(props["model"]["anyOf"][0]["enum"], json!(["m"]));
    assert_eq!(
        props["max_tokens"]["maximum"],
        state.config().server.max_completion_tokens
    );
    // Every $ref points at a schema that exists.
    let text = doc.to_string();
    for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = &r[..r.find('"').unwrap()];
        assert!(doc["components"]["schemas"].get(name).is_some(), "{name}");
    }
    state.close();
    let (s, _, _) = send(&app, get("/ready", None)).await;
    assert_eq!(s, 503);
    let (s, _, v) = post_json(&app, "/v1/chat/completions", None, &chat("hi again")).await;
    assert_eq!(s, 503, "{v}");
}
