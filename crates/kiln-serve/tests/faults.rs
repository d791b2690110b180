//! Faults inside a model: a generation that panics fails its own request only, with the
//! single-sequence workers and with continuous batching (issue 9).

mod common;

use std::sync::Arc;

use common::{Scripted, post_json};
use kiln_core::GenerationRequest;
use kiln_serve::{AppState, ModelHandle, app};
use serde_json::json;

fn chat(text: &str) -> serde_json::Value {
    json!({"model": "m", "messages": [{"role": "user", "content": text}]})
}

#[tokio::test]
async fn a_panicking_generation_fails_only_its_request() {
    for batching in [false, true] {
        let model = Arc::new(Scripted::with(
            "m",
            Arc::new(|prompt: &str, _: &GenerationRequest| {
                assert!(!prompt.contains("boom"), "secret-internal-detail");
                "fine words".to_owned()
            }),
        ));
        let mut handle = ModelHandle::generator(model.clone());
        if batching {
            handle = handle.with_batch(model.clone());
        }
        let app = app(AppState::single("m", handle).unwrap());
        let (s, _, v) = post_json(&app, "/v1/chat/completions", None, &chat("boom")).await;
        assert_eq!(s, 500, "batching {batching}: {v}");
        assert!(v["error"]["message"].is_string(), "{v}");
        assert!(!v.to_string().contains("secret-internal-detail"), "{v}");
        // The server, its workers and the batch scheduler carry on.
        for _ in 0..3 {
            let (s, _, v) = post_json(&app, "/v1/chat/completions", None, &chat("hello")).await;
            assert_eq!(s, 200, "batching {batching}: {v}");
            assert_eq!(v["choices"][0]["message"]["content"], "fine words");
        }
        let (s, _, _) = post_json(&app, "/v1/chat/completions", None, &chat("boom again")).await;
        assert_eq!(s, 500);
        let (s, _, _) = post_json(&app, "/v1/chat/completions", None, &chat("hello")).await;
        assert_eq!(s, 200);
    }
}
