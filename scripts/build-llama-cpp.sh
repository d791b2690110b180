#!/usr/bin/env bash
# Builds llama.cpp from source (CPU only) as the performance peer for Kiln, and prints the path of
# llama-bench on stdout (everything else goes to stderr).
#
# Source: the llama.cpp tree vendored in the PyPI sdist llama-cpp-python==0.3.36, which
# scripts/fetch-assets.sh unpacks to $KILN_CACHE/src/llama.cpp (run that first).
# Build:  $KILN_CACHE/build/llama.cpp (out of tree; the source is not touched).
# Config: Release, -DGGML_NATIVE=ON (tuned for this CPU: AVX2/AVX-512 where present), static libs,
#         no GPU backends, no CURL/OpenSSL, no tests/examples/server; only the targets listed in
#         LLAMA_TARGETS are built (default: llama-bench llama-simple).
# Idempotent: when every target binary exists, the configuration is unchanged and no source file
# is newer than the binaries, it does nothing but print the path. Builds run under `nice`.
#
# Usage: scripts/build-llama-cpp.sh
# Environment:
#   KILN_CACHE      cache root (default ~/.cache/kiln)
#   JOBS            parallel compile jobs (default 2)
#   NICE            niceness of the build (default 10)
#   LLAMA_TARGETS   cmake targets to build (default "llama-bench llama-simple"; llama-perplexity,
#                   llama-completion, ... also work; llama-cli needs the server, which is off)
#   LLAMA_CPP_COMMIT  upstream commit to stamp into the binaries (default: read from the sdist)
#   FORCE=1         rebuild even if up to date
#
# Needs cmake (>= 3.14), a C/C++ compiler and make. If cmake is missing it is installed with
# apt-get when running as root, otherwise with `pip install --user cmake`; if neither works the
# script says so and exits 2.
set -euo pipefail

CACHE="${KILN_CACHE:-$HOME/.cache/kiln}"
SRC="$CACHE/src/llama.cpp"
BUILD="$CACHE/build/llama.cpp"
JOBS="${JOBS:-2}"
NICE="${NICE:-10}"
TARGETS="${LLAMA_TARGETS:-llama-bench llama-simple}"
SDIST="$CACHE/downloads/llama_cpp_python-0.3.36.tar.gz"
STAMP="$BUILD/.kiln-build-stamp"

log() { printf '[build-llama-cpp] %s\n' "$*" >&2; }
die() { local code=$1; shift; log "$*"; exit "$code"; }

[ -f "$SRC/CMakeLists.txt" ] || die 2 "no llama.cpp source at $SRC; run scripts/fetch-assets.sh first"

# --- tools --------------------------------------------------------------------------------------
ensure_cmake() {
  command -v cmake >/dev/null 2>&1 && return 0
  [ -x "$HOME/.local/bin/cmake" ] && { export PATH="$HOME/.local/bin:$PATH"; return 0; }
  log "cmake not found; trying to install it"
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake; } >&2 || true
  fi
  if ! command -v cmake >/dev/null 2>&1 && command -v pip >/dev/null 2>&1; then
    pip install --quiet --user cmake >&2 || true
    export PATH="$HOME/.local/bin:$PATH"
  fi
  command -v cmake >/dev/null 2>&1 || die 2 "cmake is required and could not be installed; install it (apt-get install cmake, or pip install cmake) and rerun"
}
ensure_cmake
for t in cc c++ make; do command -v "$t" >/dev/null 2>&1 || die 2 "$t is required (apt-get install build-essential)"; done

# --- upstream commit ----------------------------------------------------------------------------
# The sdist has no llama.cpp .git, but llama-cpp-python's own .git/index (shipped in the sdist)
# records the submodule's gitlink, i.e. the exact upstream commit. Fallback: its CHANGELOG.
upstream_commit() {
  [ -n "${LLAMA_CPP_COMMIT:-}" ] && { echo "$LLAMA_CPP_COMMIT"; return; }
  [ -f "$BUILD/llama-cpp-commit.txt" ] && { cat "$BUILD/llama-cpp-commit.txt"; return; }
  local c="" tmp
  if [ -f "$SDIST" ] && command -v git >/dev/null 2>&1; then
    tmp=$(mktemp -d)
    if git init -q "$tmp" 2>/dev/null \
       && tar -xzOf "$SDIST" llama_cpp_python-0.3.36/.git/index >"$tmp/.git/index" 2>/dev/null; then
      c=$(git -C "$tmp" ls-files -s vendor/llama.cpp 2>/dev/null | awk '$1=="160000"{print $2}')
    fi
    rm -rf "$tmp"
  fi
  if [ -z "$c" ] && [ -f "$SDIST" ]; then
    c=$(tar -xzOf "$SDIST" llama_cpp_python-0.3.36/CHANGELOG.md 2>/dev/null \
        | grep -m1 -o 'ggml-org/llama.cpp@[0-9a-f]*' | cut -d@ -f2) || true
  fi
  echo "${c:-unknown}"
}
mkdir -p "$BUILD"
COMMIT=$(upstream_commit)
[ "$COMMIT" = unknown ] || echo "$COMMIT" >"$BUILD/llama-cpp-commit.txt"
SHORT=${COMMIT:0:9}

CMAKE_ARGS=(
  -DCMAKE_BUILD_TYPE=Release
  -DBUILD_SHARED_LIBS=OFF
  -DGGML_NATIVE=ON
  -DGGML_CPU=ON
  -DGGML_CUDA=OFF -DGGML_HIP=OFF -DGGML_VULKAN=OFF -DGGML_METAL=OFF -DGGML_SYCL=OFF -DGGML_OPENCL=OFF
  -DGGML_RPC=OFF -DGGML_BLAS=OFF
  -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=ON -DLLAMA_BUILD_TOOLS=ON
  -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF
  # The source tree is not a git checkout: stamp the upstream commit ourselves. The build number
  # (upstream's commit count) is not recoverable offline, so it is 0, not a guess.
  -DLLAMA_BUILD_COMMIT="$SHORT" -DLLAMA_BUILD_NUMBER=0
)

# Everything that decides the binaries' contents, except the sources themselves.
CONFIG_KEY=$(printf '%s\n' "src=$SRC" "commit=$COMMIT" "targets=$TARGETS" "cc=$(cc --version | head -1)" \
  "cxx=$(c++ --version | head -1)" "${CMAKE_ARGS[@]}" | sha256sum | cut -d' ' -f1)

up_to_date() {
  [ "${FORCE:-0}" = 1 ] && return 1
  [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$CONFIG_KEY" ] || return 1
  local t oldest=""
  for t in $TARGETS; do
    [ -x "$BUILD/bin/$t" ] || return 1
    if [ -z "$oldest" ] || [ "$BUILD/bin/$t" -ot "$oldest" ]; then oldest="$BUILD/bin/$t"; fi
  done
  # Any source file newer than the oldest binary means a rebuild.
  [ -z "$(find "$SRC" -type f -newer "$oldest" -print -quit)" ]
}

if up_to_date; then
  log "up to date (llama.cpp $SHORT in $BUILD); FORCE=1 to rebuild"
  echo "$BUILD/bin/llama-bench"
  exit 0
fi

start=$(date +%s)
if [ ! -f "$BUILD/CMakeCache.txt" ] || [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$CONFIG_KEY" ]; then
  log "configuring llama.cpp $SHORT in $BUILD"
  rm -f "$STAMP"
  nice -n "$NICE" cmake -S "$SRC" -B "$BUILD" "${CMAKE_ARGS[@]}" >"$BUILD/configure.log" 2>&1 \
    || { tail -40 "$BUILD/configure.log" >&2; die 1 "cmake configure failed (full log: $BUILD/configure.log)"; }
fi
log "building $TARGETS with -j$JOBS (nice $NICE); log: $BUILD/build.log"
# shellcheck disable=SC2086
nice -n "$NICE" cmake --build "$BUILD" --config Release -j "$JOBS" --target $TARGETS >"$BUILD/build.log" 2>&1 \
  || { tail -40 "$BUILD/build.log" >&2; die 1 "build failed (full log: $BUILD/build.log)"; }
for t in $TARGETS; do [ -x "$BUILD/bin/$t" ] || die 1 "build finished but $BUILD/bin/$t is missing"; done
echo "$CONFIG_KEY" >"$STAMP"
log "built in $(( $(date +%s) - start ))s"
echo "$BUILD/bin/llama-bench"
