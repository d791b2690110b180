//! End to end on loopback: a real listener, raw HTTP/1.1 over TCP, and a graceful shutdown that
//! lets an in-flight stream finish.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Scripted;
use kiln_serve::{AppState, ModelHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn request(addr: std::net::SocketAddr, body: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_on_loopback_and_drains_at_shutdown() {
    let mut model = Scripted::new("m", &"tok ".repeat(40));
    model.delay = Duration::from_millis(5);
    let state = AppState::single("m", ModelHandle::generator(Arc::new(model))).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(kiln_serve::serve_on(listener, state.clone(), async move {
        let _ = stop_rx.await;
    }));

    let plain = request(
        addr,
        r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":3}"#,
    )
    .await;
    assert!(plain.starts_with("HTTP/1.1 200"), "{plain}");
    assert!(plain.contains("x-request-id"), "{plain}");
    assert!(plain.contains("\"chat.completion\""), "{plain}");

    // A stream of ~200 ms is in flight when shutdown starts; it still ends with [DONE].
    let streaming = tokio::spawn(request(
        addr,
        r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}"#,
    ));
    let engine = state.model("m").unwrap().engine.as_ref().unwrap();
    for _ in 0..2000 {
        if engine.active_sequences() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(engine.active_sequences(), 1);
    stop_tx.send(()).unwrap();
    let streamed = streaming.await.unwrap();
    assert!(streamed.contains("data: [DONE]"), "{streamed}");
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
    assert!(!state.is_ready());
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
