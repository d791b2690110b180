#!/usr/bin/env bash
# Two `kiln serve` processes sharing one Redis enforce one per-key limit together (issue 9): a key
# allowed 3 requests a minute gets 3 answers across both replicas, then 429 with Retry-After from
# either; its window lives in Redis. They also share the response cache: a deterministic request
# answered by one replica is a cache hit on the other. Installs Debian's redis-server when missing and runs it on
# loopback for the check only.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${KILN_CACHE:-$HOME/.cache/kiln}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; }
ASSETS=$(bash scripts/fetch-assets.sh | tail -1)
cargo build --release -q -p kiln-cli
KILN="$CARGO_TARGET_DIR/release/kiln"

TMP=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
RPORT=$(free_port); PA=$(free_port); PB=$(free_port)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; if [ -n "${KILN_LOG_DIR:-}" ]; then for f in "$TMP"/*.log; do [ -f "$f" ] && cp "$f" "$KILN_LOG_DIR/redis-$(basename "$f")"; done; fi; rm -rf "$TMP"; }
trap cleanup EXIT

redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize no >"$TMP/redis.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

hash() { "$KILN" serve --hash-key "$1"; }
for port in $PA $PB; do
  cat > "$TMP/kiln-$port.toml" <<TOML
[server]
host = "127.0.0.1"
port = $port
redis_url = "redis://127.0.0.1:$RPORT/"
redis_prefix = "kiln-check"
cache_entries = 64

[[models]]
name = "smol"
path = "$ASSETS/SmolLM2-135M-Instruct.Q4_1.gguf"

[roles.user]
models = ["*"]
endpoints = ["*"]

[[keys]]
name = "shared"
sha256 = "$(hash sk-shared)"
role = "user"
requests_per_minute = 3

[[keys]]
name = "free"
sha256 = "$(hash sk-free)"
role = "user"
TOML
  "$KILN" serve --config "$TMP/kiln-$port.toml" >"$TMP/serve-$port.log" 2>&1 &
  PIDS+=($!)
done
for port in $PA $PB; do
  for _ in $(seq 300); do
    python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/ready')" 2>/dev/null && break
    sleep 0.2
  done
done

python3 - "$PA" "$PB" "$RPORT" <<'PY'
import json, subprocess, sys, urllib.error, urllib.request
a, b, rport = sys.argv[1:4]

def ask(port, key):
    body = json.dumps({"model": "smol", "max_tokens": 1,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=body,
                                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, None
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Retry-After")

def check(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else f": {detail}"))
    if not ok:
        sys.exit(1)

got = [ask(p, "sk-shared")[0] for p in (a, b, a)]
check("3 requests across two replicas admitted", got == [200, 200, 200], got)
for p in (b, a):
    status, retry = ask(p, "sk-shared")
    check(f"the 4th request on replica {p} is refused together", status == 429 and retry and 1 <= int(retry) <= 61, (status, retry))
n = int(subprocess.check_output(["redis-cli", "-p", rport, "ZCARD", "kiln-check:rpm:shared"]).strip())
check("the window lives in Redis", n == 3, n)
check("another key is not limited", [ask(p, "sk-free")[0] for p in (a, b, a, b)] == [200] * 4)

def greedy(port):
    body = json.dumps({"model": "smol", "max_tokens": 12, "temperature": 0,
                       "messages": [{"role": "user", "content": "Name a colour."}]}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=body,
                                 headers={"Authorization": "Bearer sk-free", "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)["choices"][0]["message"]["content"]

def hits(port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    return sum(float(l.split()[-1]) for l in text.splitlines() if l.startswith('kiln_cache_hits_total{model="smol"}'))

import time
first = greedy(a)
time.sleep(0.3)  # the store is written in the background
before = hits(b)
second = greedy(b)
check("a deterministic answer of one replica is a cache hit on the other",
      second == first and hits(b) == before + 1, (first, second, before, hits(b)))
cached = subprocess.check_output(["redis-cli", "-p", rport, "--scan", "--pattern", "kiln-check:cache:*"]).split()
check("the shared cache lives in Redis", len(cached) == 1, cached)
PY
# Redis gone: limits fail closed with 503, the server stays up.
kill "${PIDS[0]}"; wait "${PIDS[0]}" 2>/dev/null || true
python3 - "$PA" <<'PY'
import json, sys, urllib.error, urllib.request
body = json.dumps({"model": "smol", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}).encode()
req = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/v1/chat/completions", data=body,
                             headers={"Authorization": "Bearer sk-shared", "Content-Type": "application/json"})
try:
    urllib.request.urlopen(req)
    sys.exit("FAIL: admitted without the limit store")
except urllib.error.HTTPError as e:
    if e.code != 503:
        sys.exit(f"FAIL: {e.code} without the limit store (503 expected)")
health = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health").status
print("ok   Redis unreachable: 503 for limited keys, the server stays up" if health == 200 else "FAIL health")
# The cache fails open: an unlimited key's new deterministic request is answered by the model.
body = json.dumps({"model": "smol", "max_tokens": 4, "temperature": 0,
                   "messages": [{"role": "user", "content": "Name a fruit."}]}).encode()
req = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/v1/chat/completions", data=body,
                             headers={"Authorization": "Bearer sk-free", "Content-Type": "application/json"})
if urllib.request.urlopen(req).status != 200:
    sys.exit("FAIL: the shared cache failed closed")
print("ok   Redis unreachable: the response cache is a miss, the model answers")
PY
echo "redis limit checks passed"
