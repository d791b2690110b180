#!/usr/bin/env bash
# Soak test (issue 9): the real `kiln serve` (SmolLM2, continuous batching, a LoRA adapter) under
# CLIENTS concurrent clients for SECONDS, mixing streaming, cancellations, the adapter and bad
# requests: zero unexpected errors and memory that stops growing (tools/soak.py).
#
#   bash scripts/soak.sh [SECONDS=45] [CLIENTS=6] [OUT.json]
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${KILN_CACHE:-$HOME/.cache/kiln}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
SECONDS_RUN="${1:-45}"; CLIENTS="${2:-6}"
ASSETS=$(bash scripts/fetch-assets.sh | tail -1)
cargo build --release -q -p kiln-cli
KILN="$CARGO_TARGET_DIR/release/kiln"
MODEL="$ASSETS/SmolLM2-135M-Instruct.Q4_1.gguf"
TMP=$(mktemp -d)
OUT="${3:-$TMP/soak.json}"
SERVER=""
cleanup() { [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; wait 2>/dev/null || true; if [ -n "${KILN_LOG_DIR:-}" ]; then for f in "$TMP"/*.log; do [ -f "$f" ] && cp "$f" "$KILN_LOG_DIR/soak-$(basename "$f")"; done; fi; rm -rf "$TMP"; }
trap cleanup EXIT

# A LoRA adapter for SmolLM2 (two training steps on the retail intents; cached).
ADAPTERS="$CACHE/runs/soak-adapters"
if [ ! -f "$ADAPTERS/soak/adapter_config.json" ]; then
  "$KILN" retail export-train --out "$TMP/train.jsonl" >/dev/null
  "$KILN" finetune --model "$MODEL" --data "$TMP/train.jsonl" --output "$ADAPTERS/soak" --method lora \
    --max-steps 2 --batch-size 2 --seed 0 --max-len 128 >/dev/null 2>&1
fi
# The server gets its own copies of the model and adapters, which vanish after the soak.
cp "$MODEL" "$TMP/model.gguf"
cp -r "$ADAPTERS" "$TMP/adapters"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$TMP/kiln.toml" <<TOML
[server]
host = "127.0.0.1"
port = $PORT
max_concurrent = 4
max_queue = 64
max_completion_tokens = 256

[[models]]
name = "smol"
path = "$TMP/model.gguf"
adapters_dir = "$TMP/adapters"

[roles.user]
models = ["*"]
adapters = ["*"]
endpoints = ["*"]

[roles.ops]
admin = true

[[keys]]
name = "soak"
sha256 = "$("$KILN" serve --hash-key sk-soak)"
role = "user"

[[keys]]
name = "ops"
sha256 = "$("$KILN" serve --hash-key sk-ops)"
role = "ops"
TOML
"$KILN" serve --config "$TMP/kiln.toml" >"$TMP/serve.log" 2>&1 &
SERVER=$!
for _ in $(seq 300); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/ready')" 2>/dev/null && break
  kill -0 $SERVER 2>/dev/null || { cat "$TMP/serve.log"; exit 1; }
  sleep 0.2
done
python3 - "$PORT" <<'PY'
import json, sys, urllib.request
req = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/v1/admin/adapters/load",
                             data=json.dumps({"model": "smol", "name": "soak"}).encode(),
                             headers={"Authorization": "Bearer sk-ops", "Content-Type": "application/json"})
assert urllib.request.urlopen(req).status == 200
PY
python3 tools/soak.py "http://127.0.0.1:$PORT" "$SERVER" "$SECONDS_RUN" "$CLIENTS" "$OUT" \
  || { tail -20 "$TMP/serve.log"; exit 1; }
kill -0 "$SERVER" || { echo "FAIL: the server died"; exit 1; }

# Files that vanish while serving: the loaded model and adapter keep answering (their weights are
# in memory or mapped), loading the deleted adapter again is a clean 4xx, and the server stays up.
rm -rf "$TMP/model.gguf" "$TMP/adapters/soak"
python3 - "$PORT" <<'PY'
import json, sys, urllib.error, urllib.request
base = f"http://127.0.0.1:{sys.argv[1]}"
def post(path, body, key):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
chat = lambda m: {"model": m, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
for model in ("smol", "smol:soak"):
    s, v = post("/v1/chat/completions", chat(model), "sk-soak")
    assert s == 200, (model, s, v)
post("/v1/admin/adapters/unload", {"model": "smol", "name": "soak"}, "sk-ops")
s, v = post("/v1/admin/adapters/load", {"model": "smol", "name": "soak"}, "sk-ops")
assert 400 <= s < 500 and "soak" in v["error"]["message"], (s, v)
s, v = post("/v1/chat/completions", chat("smol:soak"), "sk-soak")
assert 400 <= s < 500, (s, v)
assert urllib.request.urlopen(base + "/health").status == 200
print("ok   vanished model and adapter files: answers go on, reloading the adapter is a clean", s)
PY
kill -0 "$SERVER" || { echo "FAIL: the server died"; exit 1; }
echo "soak passed"
