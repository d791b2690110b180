//! Configuration reload (issue 9): a good reload takes effect for the next request (keys, roles,
//! PII); a bad one (malformed TOML, a role that does not exist, a restart-only change, an
//! unreadable file) is rejected with the field named, and the running configuration stays in
//! force; rate-limit windows survive a reload.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use common::*;
use kiln_serve::{AppState, ModelHandle, ServeConfig, app};
use serde_json::{Value, json};

fn toml(user_key: &str, user_role: &str, extra: &str) -> String {
    toml_rpm(user_key, user_role, 100, extra)
}

fn toml_rpm(user_key: &str, user_role: &str, rpm: u32, extra: &str) -> String {
    format!(
        r#"
[[models]]
name = "m"

[roles.admin]
admin = true

[roles.user]
models = ["m"]
endpoints = ["chat"]

[roles.reader]
models = ["m"]
endpoints = ["models"]

[[keys]]
name = "admin"
sha256 = "{}"
role = "admin"

[[keys]]
name = "user"
sha256 = "{}"
role = "{user_role}"
requests_per_minute = {rpm}
{extra}"#,
        sha("sk-admin"),
        sha(user_key),
    )
}

fn chat() -> Value {
    json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
}

fn state(text: &str) -> (AppState, axum::Router) {
    let config = ServeConfig::from_toml(text, Path::new(".")).unwrap();
    let mut handles = BTreeMap::new();
    handles.insert(
        "m".to_owned(),
        ModelHandle::generator(Arc::new(Scripted::new("m", "ok"))),
    );
    let state = AppState::new(config, handles).unwrap();
    (state.clone(), app(state))
}

async fn status(app: &axum::Router, key: &str) -> u16 {
    post_json(app, "/v1/chat/completions", Some(key), &chat())
        .await
        .0
}

fn reloads(state: &AppState, result: &str) -> f64 {
    state.metrics().get(
        "kiln_config_reloads_total",
        &vec![("result", result.to_owned())],
    )
}

#[tokio::test]
async fn a_good_reload_applies_and_a_bad_one_keeps_the_running_config() {
    let (state, app) = state(&toml("sk-one", "user", ""));
    assert_eq!(status(&app, "sk-one").await, 200);

    // Rotating the user's key: the old one stops working at once, the new one works.
    let changed = state
        .reload(ServeConfig::from_toml(&toml("sk-two", "user", ""), Path::new(".")).unwrap())
        .unwrap();
    assert_eq!(changed, vec!["keys"]);
    assert_eq!(status(&app, "sk-one").await, 401);
    assert_eq!(status(&app, "sk-two").await, 200);

    // Restart-only sections are refused by name, and nothing changes.
    let mut moved = ServeConfig::from_toml(&toml("sk-three", "user", ""), Path::new(".")).unwrap();
    moved.server.port += 1;
    let e = state.reload(moved).unwrap_err();
    assert_eq!(e.body()["error"]["param"], "server", "{e}");
    let mut more = ServeConfig::from_toml(&toml("sk-three", "user", ""), Path::new(".")).unwrap();
    more.models[0].name = "other".into();
    more.roles.get_mut("user").unwrap().models = vec!["other".into()];
    more.roles.get_mut("reader").unwrap().models = vec!["other".into()];
    assert!(state.reload(more).is_err());
    assert_eq!(status(&app, "sk-two").await, 200);
    assert_eq!(status(&app, "sk-three").await, 401);
    assert_eq!(reloads(&state, "ok"), 1.0);
    assert_eq!(reloads(&state, "rejected"), 2.0);
    let text = String::from_utf8(send(&app, get("/metrics", None)).await.2).unwrap();
    assert!(
        text.contains("kiln_config_reloads_total{result=\"rejected\"} 2"),
        "{text}"
    );

    // A role change takes effect for the next request: the user may now only list models.
    state
        .reload(ServeConfig::from_toml(&toml("sk-two", "reader", ""), Path::new(".")).unwrap())
        .unwrap();
    assert_eq!(status(&app, "sk-two").await, 403);
    let (s, _, _) = send(&app, get("/v1/models", Some("sk-two"))).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn rate_limit_windows_survive_a_reload() {
    let (state, app) = state(&toml_rpm("sk-one", "user", 2, ""));
    assert_eq!(status(&app, "sk-one").await, 200);
    assert_eq!(status(&app, "sk-one").await, 200);
    assert_eq!(status(&app, "sk-one").await, 429);
    let pii = "\n[pii]\nenabled = true\n";
    let changed = state
        .reload(
            ServeConfig::from_toml(&toml_rpm("sk-one", "user", 2, pii), Path::new(".")).unwrap(),
        )
        .unwrap();
    assert_eq!(changed, vec!["pii"]);
    assert!(state.config().pii.enabled);
    assert_eq!(status(&app, "sk-one").await, 429);
}

#[tokio::test]
async fn the_admin_endpoint_reads_the_file_again_and_names_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kiln.toml");
    std::fs::write(&file, toml("sk-one", "user", "")).unwrap();
    let (state, app) = state(&std::fs::read_to_string(&file).unwrap());
    // Without a source, a reload is a clean 400.
    let (s, _, v) = post_json(&app, "/v1/admin/reload", Some("sk-admin"), &json!({})).await;
    assert_eq!((s, v["error"]["param"].as_str()), (400, Some("config")));
    let path = file.clone();
    state.set_config_source(move || ServeConfig::from_file(&path));

    for (text, param) in [
        ("[[models]\nname = ", None),
        (toml("sk-one", "ghost", "").as_str(), Some("keys[1].role")),
    ] {
        std::fs::write(&file, text).unwrap();
        let (s, _, v) = post_json(&app, "/v1/admin/reload", Some("sk-admin"), &json!({})).await;
        assert_eq!(s, 400, "{v}");
        if let Some(p) = param {
            assert_eq!(v["error"]["param"], p, "{v}");
        }
        assert_eq!(status(&app, "sk-one").await, 200, "the old config is kept");
    }
    std::fs::remove_file(&file).unwrap();
    let (s, _, _) = post_json(&app, "/v1/admin/reload", Some("sk-admin"), &json!({})).await;
    assert!(s >= 400, "a vanished file is an error");
    assert_eq!(status(&app, "sk-one").await, 200);

    // Only an admin may reload.
    std::fs::write(&file, toml("sk-new", "user", "")).unwrap();
    let (s, _, _) = post_json(&app, "/v1/admin/reload", Some("sk-one"), &json!({})).await;
    assert_eq!(s, 403);
    let (s, _, v) = post_json(&app, "/v1/admin/reload", Some("sk-admin"), &json!({})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["changed"], json!(["keys"]));
    assert_eq!(status(&app, "sk-new").await, 200);
    assert_eq!(status(&app, "sk-one").await, 401);
    let doc: Value =
        serde_json::from_slice(&send(&app, get("/openapi.json", None)).await.2).unwrap();
    assert!(doc["paths"].get("/v1/admin/reload").is_some());
}
