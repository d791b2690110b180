//! `kiln serve` end to end: a real process on loopback serving a tiny fixture model, called over
//! raw HTTP/1.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/llama")
        .join(name)
}

fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let status = out[9..12].parse().expect("status");
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (status, body)
}

#[test]
fn serves_a_fixture_model_over_http() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["serve", "--model"])
        .arg(fixture("gqa"))
        .args(["--name", "tiny", "--port", "0"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("kiln serve starts");
    let stderr = child.stderr.take().expect("stderr");
    let server = Server(child);
    // Read stderr on a thread for the whole run (a closed pipe would fail the server's logging).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut warned = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            warned |= line.contains("authentication is off");
            if let Some(a) = line.strip_prefix("kiln serve listening on http://") {
                let _ = tx.send((a.trim().to_owned(), warned));
            }
        }
    });
    let (addr, warned) = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the server printed its address");
    assert!(warned, "no warning that authentication is off");

    let (status, body) = http(&addr, "GET", "/v1/models", "");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"id\":\"tiny\""), "{body}");

    let (status, body) = http(
        &addr,
        "POST",
        "/v1/completions",
        r#"{"model": "tiny", "prompt": "hello", "max_tokens": 4, "temperature": 0, "logprobs": 1}"#,
    );
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["usage"]["completion_tokens"], 4, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(
        v["choices"][0]["logprobs"]["tokens"]
            .as_array()
            .map(Vec::len),
        Some(4)
    );

    let (status, body) = http(
        &addr,
        "POST",
        "/v1/completions",
        r#"{"model": "nope", "prompt": "x"}"#,
    );
    assert_eq!(status, 404);
    assert!(body.contains("\"error\""), "{body}");
    drop(server);
}
