#!/usr/bin/env bash
# End-to-end check of the retail assistant (issue 7), run by the test command:
#   1. `kiln retail serve` on loopback (SmolLM2 + the Fashion-MNIST CLIP + the store in the repo);
#   2. the official openai client: policies, own orders, another customer's order, injection,
#      personal data, a photo, streaming, bad keys and bodies, feedback (scripts/retail-client-check.py);
#   3. headless Chromium drives the web chat: a text question and a photo (scripts/retail-web-check.sh);
#   4. the server's log holds no personal data from the messages and no key;
#   5. the scripted evaluation runs with the base model and must not leak (kiln retail eval).
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${KILN_CACHE:-$HOME/.cache/kiln}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
ASSETS=$(bash scripts/fetch-assets.sh | tail -1)
cargo build --release -q -p kiln-cli
KILN="$CARGO_TARGET_DIR/release/kiln"
CLIP="$CACHE/runs/clip-fashion"
[ -f "$CLIP/config.json" ] || bash scripts/clip-fashion.sh "$CLIP" >/dev/null

TMP=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
SERVER=""
cleanup() { [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; wait 2>/dev/null; if [ -n "${KILN_LOG_DIR:-}" ]; then for f in "$TMP"/*.log; do [ -f "$f" ] && cp "$f" "$KILN_LOG_DIR/retail-$(basename "$f")"; done; fi; rm -rf "$TMP"; }
trap cleanup EXIT

"$KILN" retail serve --port "$PORT" --clip "$CLIP" --fashion-mnist "$ASSETS/fashion-mnist" \
  --state "$TMP/store.sqlite" >"$TMP/serve.log" 2>&1 &
SERVER=$!
for _ in $(seq 600); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/ready')" 2>/dev/null && break
  kill -0 $SERVER 2>/dev/null || { cat "$TMP/serve.log"; exit 1; }
  sleep 0.2
done

# A sneaker from the test split (the catalogue's photos come from the training split).
python3 tools/fashion_png.py "$ASSETS/fashion-mnist" test label=7 "$TMP/sneaker.png" >/dev/null
python3 scripts/retail-client-check.py "http://127.0.0.1:$PORT/v1" "$TMP/sneaker.png" sneaker \
  || { tail -20 "$TMP/serve.log"; exit 1; }

BASE_URL="http://127.0.0.1:$PORT" API_KEY=demo-c1002 IMAGE_PATH="$TMP/sneaker.png" IMAGE_EXPECT=sneaker \
  SCREENSHOT="${RETAIL_SCREENSHOT:-$TMP/chat.png}" bash scripts/retail-web-check.sh \
  || { tail -20 "$TMP/serve.log"; exit 1; }

# Personal data typed by customers and the keys never reach the log; the store logs them masked.
# (The card as a pattern, not its first digits alone: the log's timestamps and latencies, printed
# to the microsecond, contain any four digits now and then.)
for secret in '4111[ -]?1111' 'jane\.roe' '867-5309' 'demo-c100'; do
  if grep -Eq -- "$secret" "$TMP/serve.log"; then echo "FAIL: '$secret' appears in the server log"; exit 1; fi
done
python3 - "$TMP/store.sqlite" <<'PY'
import re, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
rows = db.execute("SELECT message, reply, tools FROM turns").fetchall()
rows += db.execute("SELECT COALESCE(comment, '') FROM feedback").fetchall()
text = "\n".join(" ".join(r) for r in rows)
if len(rows) < 8 or re.search(r"4111[ -]?1111|jane\.roe|867-5309", text):
    sys.exit(f"FAIL: {len(rows)} rows; personal data stored unmasked")
PY
echo "ok   no personal data or key in the server log or the store"
kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=""

"$KILN" retail eval --clip "$CLIP" --fashion-mnist "$ASSETS/fashion-mnist" --out "$TMP/eval" --label base \
  2>"$TMP/eval.log" | tail -3
python3 - "$TMP/eval.log" <<'PY'
import json, re, sys
cases = [json.loads(l) for l in open("crates/kiln-retail/data/eval/conversations.jsonl")]
log = open(sys.argv[1]).read().lower()
# The whole run's log against every case's forbidden data: names, e-mails, addresses, phone and card
# numbers (catalogue SKUs are public and legitimately logged for other cases' recommendations; the
# evaluation itself checks each turn's reply and stored log for them).
sku = re.compile(r"^[A-Z]{2}-[0-9]{3}$")
bad = sorted({f for c in cases for f in c["expect"]["forbidden"]
              if f and not sku.match(f) and f.lower() in log})
if bad:
    sys.exit(f"FAIL: the evaluation's log holds {bad}")
print("ok   evaluation: no case leaked, nothing forbidden in its log")
PY
echo "retail checks passed"
