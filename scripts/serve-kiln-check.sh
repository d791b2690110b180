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
trap '[ -n "$SERVER" ] && kill $SERVER 2>/dev/null; rm -rf "$TMP"' EXIT

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
