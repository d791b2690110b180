#!/usr/bin/env bash
# Kiln's test command (the README's, and what CI runs): fetch the real assets the tests read, then
# formatting, lints and the whole workspace's tests in release mode (the model tests are compute-bound).
set -euo pipefail
cd "$(dirname "$0")/.."
# Everything the suite prints, and the logs of every server the scripts start, go to one folder
# that is scanned for keys and personal data at the end (issue 9).
# A folder made here is removed when everything passes (set KILN_LOG_DIR to keep the logs).
OWN_LOG_DIR=""
if [ -z "${KILN_LOG_DIR:-}" ]; then
  KILN_LOG_DIR="$(mktemp -d -t kiln-test-logs.XXXXXX)"
  OWN_LOG_DIR=1
fi
export KILN_LOG_DIR
mkdir -p "$KILN_LOG_DIR"
exec > >(tee "$KILN_LOG_DIR/test-suite.log") 2>&1
echo "test logs: $KILN_LOG_DIR"

bash scripts/fetch-assets.sh >/dev/null
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --release -- -D warnings
cargo test --workspace --release
# The facade's prompt feature: the prompting examples and the end-to-end ReAct weather test.
cargo clippy -p kiln --features prompt,lora,eval --all-targets --release -- -D warnings
cargo test -p kiln --features prompt --release --test react_weather
# kiln-serve: the official `openai` Python client against a running server on loopback (issue 6).
bash scripts/serve-openai-check.sh
# schemathesis against the server's /openapi.json (issue 9): no failure of any check.
bash scripts/schemathesis-check.sh
# ... and against the real `kiln serve` binary: SmolLM2 chat/completions, CLIP embeddings, keys, roles, limits.
bash scripts/serve-kiln-check.sh
# The retail assistant (issue 7): the real server with SmolLM2 and CLIP, the openai client, headless
# Chromium on the web chat, log scans for personal data, and the scripted evaluation without leaks.
bash scripts/retail-check.sh
# Scale-out (issue 9): two `kiln serve` processes share one Redis and enforce one per-key limit; the
# Kubernetes manifests validate against the Kubernetes schemas and the Dockerfile lints clean.
bash scripts/redis-limits-check.sh
bash scripts/deploy-check.sh
# Reliability (issue 9): panics, RBAC and faults are in kiln-serve's tests; the soak test runs the
# real server under concurrent mixed traffic (45 s here; docs/RELIABILITY.md has a longer run).
bash scripts/soak.sh 45 6
# Fuzzing (issue 9): every parser of outside input, 20 s each here (docs/RELIABILITY.md has longer
# runs); the saved inputs are replayed by `cargo test -p kiln-fuzz` above.
bash scripts/fuzz.sh "${KILN_FUZZ_SECONDS:-20}"
# The whole suite's output and every server log: no key and no personal data.
python3 tools/scan_logs.py "$KILN_LOG_DIR"/*.log
if [ -n "$OWN_LOG_DIR" ]; then rm -rf "$KILN_LOG_DIR"; fi
