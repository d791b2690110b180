#!/usr/bin/env bash
# The GPU path of the Llama model against the CPU: burn's wgpu backend must give the CPU (flex)
# backend's logits within 1e-3 and transformers' greedy tokens on the tiny fixtures
# (crates/kiln-llama/tests/gpu.rs). On a machine with a GPU, wgpu takes the system's default adapter
# (DEVICE=wgpu) or Vulkan (DEVICE=vulkan). Without one (no /dev/dri, no /dev/nvidia*), it runs on
# Mesa's software Vulkan, lavapipe: Mesa 22.3's lavapipe (Debian bookworm) crashes compiling burn's
# compute shaders, so on bookworm the script installs mesa-vulkan-drivers from bookworm-backports
# (Mesa 25), and it points the Vulkan loader at lavapipe only (the hardware drivers' probes crash in a
# VM). Builds into its own target directory ($CARGO_TARGET_DIR-wgpu). The same test on CUDA:
# RUN=1 bash scripts/cuda-check.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE="${DEVICE:-wgpu}"
log() { echo "[gpu-check] $*" >&2; }

hardware_gpu() { ls /dev/dri/renderD* /dev/nvidia0 >/dev/null 2>&1; }
mesa_major() { dpkg-query -W -f '${Version}' mesa-vulkan-drivers 2>/dev/null | cut -d. -f1; }

if ! hardware_gpu; then
  lvp=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json
  if [ ! -f "$lvp" ] || [ "$(mesa_major || echo 0)" -lt 24 ] 2>/dev/null; then
    codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
    extra=()
    if [ "$codename" = bookworm ]; then
      echo "deb http://deb.debian.org/debian bookworm-backports main" >/etc/apt/sources.list.d/kiln-backports.list
      extra=(-t bookworm-backports)
    fi
    log "installing mesa-vulkan-drivers ${extra[*]} (software Vulkan)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${extra[@]}" mesa-vulkan-drivers >/dev/null
  fi
  export VK_ICD_FILENAMES="$lvp"
  export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
  log "no GPU: wgpu on lavapipe (Mesa $(dpkg-query -W -f '${Version}' mesa-vulkan-drivers))"
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kiln/target}-wgpu"
KILN_GPU_DEVICE="$DEVICE" cargo test --release -p kiln-llama --features wgpu --test gpu -- --nocapture
