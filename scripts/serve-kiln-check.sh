#!/usr/bin/env bash
# The official `openai` Python client against the real `kiln serve` binary on loopback (issue 6,
# acceptance 1): SmolLM2-135M-Instruct (GGUF) for chat and completions, a small CLIP (made here with
# `kiln clip train`, one step from fresh weights) for embeddings, the tiny LLaVA fixture for chat with an
# image part (issue 10), with hashed API keys, roles and a rate limit from a TOML config.
set -euo pipefail
cd "$(dirname "$0")/.."
ASSETS=$(bash scripts/fetch-assets.sh | tail -1)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kiln/target}"
python3 -c "import openai" 2>/dev/null || python3 -m pip install --quiet openai 2>/dev/null \
  || python3 -m pip install --quiet --break-system-packages openai
cargo build --quiet --release -p kiln-cli
KILN="$CARGO_TARGET_DIR/release/kiln"
PORT="${PORT:-8098}"
TMP=$(mktemp -d)
SERVER=""
cleanup() { [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; wait 2>/dev/null || true; if [ -n "${KILN_LOG_DIR:-}" ]; then for f in "$TMP"/*.log; do [ -f "$f" ] && cp "$f" "$KILN_LOG_DIR/serve-kiln-$(basename "$f")"; done; fi; rm -rf "$TMP"; }
trap cleanup EXIT

# A CLIP directory in Hugging Face's layout with CLIP's real tokenizer.
cp "$ASSETS/skimage/astronaut.png" "$ASSETS/skimage/coffee.png" "$TMP/"
printf '%s\n' '{"image": "astronaut.png", "caption": "an astronaut"}' \
  '{"image": "coffee.png", "caption": "a cup of coffee"}' > "$TMP/pairs.jsonl"
"$KILN" clip train --init-config crates/kiln-clip/configs/fashion-tiny.json \
  --vocab "$ASSETS/clip/bpe_simple_vocab_16e6.txt.gz" --data "$TMP/pairs.jsonl" \
  --max-steps 1 --batch-size 2 --out "$TMP/clip" >/dev/null 2>&1

hash() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
cat > "$TMP/kiln.toml" <<TOML
[server]
host = "127.0.0.1"
port = $PORT
max_concurrent = 4

[[models]]
name = "smol"
path = "$ASSETS/SmolLM2-135M-Instruct.Q4_1.gguf"

[[models]]
name = "clip"
kind = "clip"
path = "$TMP/clip"

[[models]]
name = "llava"
kind = "llava"
path = "$(pwd)/tests/fixtures/llava/chat_tiny"

[roles.full]
models = ["*"]
endpoints = ["*"]

[roles.noembed]
models = ["*"]
endpoints = ["chat", "completions", "models"]

[[keys]]
name = "full"
sha256 = "$(hash sk-kiln-full)"
role = "full"

[[keys]]
name = "noembed"
sha256 = "$(hash sk-kiln-noembed)"
role = "noembed"

[[keys]]
name = "limited"
sha256 = "$(hash sk-kiln-limited)"
role = "full"
requests_per_minute = 1
TOML

"$KILN" serve --config "$TMP/kiln.toml" >"$TMP/serve.log" 2>&1 &
SERVER=$!
for _ in $(seq 300); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/ready')" 2>/dev/null && break
  kill -0 $SERVER 2>/dev/null || { cat "$TMP/serve.log"; exit 1; }
  sleep 0.2
done
python3 scripts/openai-kiln-check.py "http://127.0.0.1:$PORT/v1" "$(pwd)/tests/fixtures/llava/chat_tiny/picture.png" \
  || { tail -20 "$TMP/serve.log"; exit 1; }
# No key and no unmasked secret in the server's log.
if grep -q "sk-kiln-" "$TMP/serve.log"; then echo "a key appeared in the server log"; exit 1; fi

# Configuration reload (issue 9): a broken config file and SIGHUP leave the running config in
# force; a good one rotates a key at once; both counted in kiln_config_reloads_total.
status() { # KEY -> HTTP status of GET /v1/models
  python3 - "$PORT" "$1" <<'PY'
import sys, urllib.request, urllib.error
req = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/v1/models", headers={"Authorization": f"Bearer {sys.argv[2]}"})
try:
    print(urllib.request.urlopen(req).status)
except urllib.error.HTTPError as e:
    print(e.code)
PY
}
cp "$TMP/kiln.toml" "$TMP/kiln.good"
printf '[[models]\nname = \n' > "$TMP/kiln.toml"
kill -HUP $SERVER; sleep 1
kill -0 $SERVER || { echo "the server died on a bad reload"; exit 1; }
[ "$(status sk-kiln-full)" = 200 ] || { echo "a bad reload changed the running config"; exit 1; }
grep -q "reload rejected" "$TMP/serve.log" || { echo "the rejected reload was not logged"; exit 1; }
sed "s/$(hash sk-kiln-full)/$(hash sk-kiln-rotated)/" "$TMP/kiln.good" > "$TMP/kiln.toml"
kill -HUP $SERVER; sleep 1
[ "$(status sk-kiln-rotated)" = 200 ] && [ "$(status sk-kiln-full)" = 401 ] \
  || { echo "the reload did not rotate the key"; tail -5 "$TMP/serve.log"; exit 1; }
metrics=$(python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$PORT/metrics').read().decode())")
echo "$metrics" | grep -q 'kiln_config_reloads_total{result="ok"} 1' \
  && echo "$metrics" | grep -q 'kiln_config_reloads_total{result="rejected"} 1' \
  || { echo "reloads not counted"; echo "$metrics" | grep reload; exit 1; }
echo "config reload: a bad file kept the running config, a good one rotated a key"
if grep -q "sk-kiln-" "$TMP/serve.log"; then echo "a key appeared in the server log"; exit 1; fi
