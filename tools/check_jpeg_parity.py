#!/usr/bin/env python3
"""Side-by-side check of kiln-jpeg against Pillow on many JPEG files it has not seen.

Writes N JPEG files with random settings (size, quality, chroma subsampling 4:4:4/4:2:2/4:2:0, progressive,
optimized Huffman tables, grayscale, Adobe CMYK; and, when libjpeg-turbo's cjpeg is cached by
tools/make_jpeg_fixtures.py, 4:4:0/4:1:1/odd sampling factors, arithmetic coding and restart intervals)
from random crops of every scikit-image sample photo, adds the JPEG files that ship with scikit-image,
decodes all of them with kiln-jpeg (examples/jpeg_to_rgb.rs) and with
`np.asarray(PIL.Image.open(path).convert("RGB"))`, and counts files whose bytes differ.

Usage: python3 tools/check_jpeg_parity.py [N] [SEED]   (default 300 files, seed 20261129; needs a
release build: cargo build --release -p kiln-jpeg --example jpeg_to_rgb)
"""
import glob
import io
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("KILN_CACHE", os.path.expanduser("~/.cache/kiln"))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
PROGS = os.path.join(CACHE, "tools/libjpeg-turbo-progs")


def photos():
    out = []
    for path in sorted(glob.glob(os.path.join(CACHE, "assets/skimage/*"))):
        with Image.open(path) as img:
            out.append(np.asarray(img.convert("RGB")))
    return out


def random_jpeg(rng, photo, tmp):
    h = int(rng.integers(1, min(photo.shape[0], 300) + 1))
    w = int(rng.integers(1, min(photo.shape[1], 300) + 1))
    y = int(rng.integers(0, photo.shape[0] - h + 1))
    x = int(rng.integers(0, photo.shape[1] - w + 1))
    crop = photo[y:y + h, x:x + w]
    quality = int(rng.integers(1, 101))
    cjpeg = os.path.join(PROGS, "usr/bin/cjpeg")
    kind = rng.integers(0, 10 if os.path.exists(cjpeg) else 7)
    if kind <= 4:
        buf = io.BytesIO()
        Image.fromarray(crop).save(buf, "JPEG", quality=quality, subsampling=int(rng.integers(0, 3)),
                                   progressive=bool(rng.integers(0, 2)), optimize=bool(rng.integers(0, 2)))
        return buf.getvalue(), f"pillow rgb q{quality}"
    if kind == 5:
        buf = io.BytesIO()
        Image.fromarray(crop).convert("L").save(buf, "JPEG", quality=quality, progressive=bool(rng.integers(0, 2)))
        return buf.getvalue(), f"pillow gray q{quality}"
    if kind == 6:
        buf = io.BytesIO()
        cmyk = np.concatenate([255 - crop, crop.min(-1, keepdims=True) // 2], -1)
        Image.fromarray(cmyk, "CMYK").save(buf, "JPEG", quality=quality)
        return buf.getvalue(), f"pillow cmyk q{quality}"
    sample = ["1x1", "2x1", "2x2", "1x2", "4x1", "3x1", "2x2,2x1,1x2", "1x4"][int(rng.integers(0, 8))]
    args = ["-quality", str(quality), "-sample", sample]
    if rng.integers(0, 2):
        args.append("-arithmetic")
    if rng.integers(0, 2):
        args.append("-progressive")
    if rng.integers(0, 2):
        args += ["-restart", str(int(rng.integers(1, 5))) + ("B" if rng.integers(0, 2) else "")]
    src = os.path.join(tmp, "in.ppm")
    Image.fromarray(crop).save(src)
    env = dict(os.environ, LD_LIBRARY_PATH=os.path.join(PROGS, "usr/lib/x86_64-linux-gnu"))
    data = subprocess.run([cjpeg, *args, src], check=True, capture_output=True, env=env).stdout
    return data, "cjpeg " + " ".join(args)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    rng = np.random.default_rng(int(sys.argv[2]) if len(sys.argv) > 2 else 20261129)
    exe = os.path.join(TARGET, "release/examples/jpeg_to_rgb")
    pics = photos()
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i in range(n):
            data, how = random_jpeg(rng, pics[int(rng.integers(0, len(pics)))], tmp)
            path = os.path.join(tmp, f"{i}.jpg")
            open(path, "wb").write(data)
            files.append((path, how))
        for path in sorted(glob.glob(os.path.join(CACHE, "assets/skimage/*.jpg"))):
            files.append((path, "scikit-image " + os.path.basename(path)))
        args = []
        for i, (path, _) in enumerate(files):
            args += [path, os.path.join(tmp, f"{i}.rgb")]
        subprocess.run([exe, *args], check=True)
        bad = 0
        for i, (path, how) in enumerate(files):
            got = open(os.path.join(tmp, f"{i}.rgb"), "rb").read()
            with Image.open(path) as img:
                want = np.asarray(img.convert("RGB"))
            head, _, body = got.partition(b"\n")
            if head.startswith(b"error"):
                print(f"kiln refused {how}: {head.decode()}")
                bad += 1
                continue
            w, h = map(int, head.split())
            arr = np.frombuffer(body, np.uint8).reshape(h, w, 3)
            if arr.shape != want.shape or (arr != want).any():
                diff = int(np.abs(arr.astype(int) - want).max()) if arr.shape == want.shape else -1
                print(f"differs: {how} {w}x{h} max {diff}")
                bad += 1
        print(f"{len(files)} files, {len(files) - bad} identical to Pillow, {bad} differ")
        sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
