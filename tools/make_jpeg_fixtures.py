#!/usr/bin/env python3
"""Fixtures for kiln-jpeg: JPEG files of many kinds and what Pillow decodes them to.

The reference is `np.asarray(PIL.Image.open(path).convert("RGB"))`: Pillow decodes with its bundled
libjpeg-turbo (accurate integer IDCT, fancy upsampling, 16-bit YCbCr tables; CMYK read as Adobe-inverted
`CMYK;I` then Pillow's CMYK to RGB). Where Pillow refuses a file (truncated data, ...) the case records
the refusal and kiln-jpeg must refuse it too.

Encoders: Pillow itself (4:4:4 / 4:2:2 / 4:2:0, progressive, optimized, grayscale, Adobe CMYK, EXIF) and
libjpeg-turbo's `cjpeg` from the Debian package libjpeg-turbo-progs (downloaded with `apt-get download`
into $KILN_CACHE/tools, unpacked with dpkg -x) for what Pillow cannot write: 4:4:0 and 4:1:1 sampling,
odd per-component factors, arithmetic coding, restart intervals, RGB-coded files, floating-point DCT
encodes, smoothing. Content: crops of scikit-image's astronaut and chelsea photos (cached by
scripts/fetch-assets.sh) plus a synthetic gradient with noise, at sizes that leave partial MCUs.

Outputs, in crates/kiln-jpeg/tests/fixtures/:
  <case>.jpg        the file
  <case>.png        Pillow's RGB decode (only for cases Pillow decodes)
  meta.json         per case: how it was made, the sha256 of the .jpg, Pillow's verdict and size

Usage: bash scripts/fetch-assets.sh && python3 tools/make_jpeg_fixtures.py   (needs pillow, numpy)
"""
import glob
import hashlib
import io
import json
import os
import subprocess
import tempfile

import numpy as np
from PIL import Image, features

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "crates/kiln-jpeg/tests/fixtures")
CACHE = os.environ.get("KILN_CACHE", os.path.expanduser("~/.cache/kiln"))
SKIMAGE = os.path.join(CACHE, "assets/skimage")
PROGS = os.path.join(CACHE, "tools/libjpeg-turbo-progs")


def cjpeg_path():
    """cjpeg from Debian's libjpeg-turbo-progs, unpacked once into the cache."""
    exe = os.path.join(PROGS, "usr/bin/cjpeg")
    if not os.path.exists(exe):
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["apt-get", "download", "libjpeg-turbo-progs"], cwd=tmp, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deb = glob.glob(os.path.join(tmp, "libjpeg-turbo-progs_*.deb"))[0]
            os.makedirs(PROGS, exist_ok=True)
            subprocess.run(["dpkg", "-x", deb, PROGS], check=True)
    return exe


def sources():
    astronaut = np.asarray(Image.open(os.path.join(SKIMAGE, "astronaut.png")).convert("RGB"))
    chelsea = np.asarray(Image.open(os.path.join(SKIMAGE, "chelsea.png")).convert("RGB"))
    rng = np.random.default_rng(20261129)
    yy, xx = np.mgrid[0:45, 0:61]
    synth = np.stack([xx * 4, yy * 5, (xx + yy) * 2], -1) + rng.integers(-20, 21, (45, 61, 3))
    return {
        "astronaut": astronaut[100:157, 180:243],  # 63x57: partial MCUs for every sampling
        "chelsea": chelsea[60:101, 120:173],  # 53x41
        "synth": np.clip(synth, 0, 255).astype(np.uint8),  # 61x45
        "strip": astronaut[200:203, 10:171],  # 161x3
        "pixel": astronaut[250:251, 250:251],  # 1x1
    }


def pillow_cases(src):
    def save(arr, mode="RGB", **kw):
        buf = io.BytesIO()
        img = Image.fromarray(arr)
        if mode != "RGB":
            img = img.convert(mode)
        img.save(buf, "JPEG", **kw)
        return buf.getvalue()

    exif = Image.Exif()
    exif[0x0112] = 6
    cases = {
        "pil_444_q95": (src["astronaut"], {"quality": 95, "subsampling": 0}),
        "pil_422_q75": (src["astronaut"], {"quality": 75, "subsampling": 1}),
        "pil_420_q50": (src["chelsea"], {"quality": 50, "subsampling": 2}),
        "pil_420_q5": (src["synth"], {"quality": 5, "subsampling": 2}),
        "pil_420_q100": (src["synth"], {"quality": 100, "subsampling": 2}),
        "pil_progressive_420": (src["astronaut"], {"quality": 85, "progressive": True}),
        "pil_progressive_444_optimized": (src["chelsea"], {"quality": 90, "progressive": True,
                                                           "optimize": True, "subsampling": 0}),
        "pil_optimized_422": (src["synth"], {"quality": 80, "optimize": True, "subsampling": 1}),
        "pil_strip_420": (src["strip"], {"quality": 90}),
        "pil_pixel": (src["pixel"], {"quality": 90}),
        "pil_exif6": (src["chelsea"], {"quality": 90, "exif": exif}),
    }
    out = {name: (save(arr, **kw), f"Pillow save {kw!r}" if "exif" not in kw else
                  "Pillow save quality=90 with EXIF orientation 6") for name, (arr, kw) in cases.items()}
    out["pil_gray"] = (save(src["astronaut"], "L", quality=90), "Pillow save of mode L, quality=90")
    out["pil_gray_progressive"] = (save(src["chelsea"], "L", quality=70, progressive=True),
                                   "Pillow save of mode L, quality=70, progressive")
    cmyk = np.concatenate([255 - src["synth"], src["synth"][..., :1] // 3], -1)
    buf = io.BytesIO()
    Image.fromarray(cmyk, "CMYK").save(buf, "JPEG", quality=90)
    out["pil_cmyk"] = (buf.getvalue(), "Pillow save of a CMYK array (Adobe marker, inverted), quality=90")
    return out


def cjpeg_cases(src):
    exe = cjpeg_path()
    env = dict(os.environ, LD_LIBRARY_PATH=os.path.join(PROGS, "usr/lib/x86_64-linux-gnu"))

    def run(arr, args, gray=False):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "in.pgm" if gray else "in.ppm")
            img = Image.fromarray(arr)
            (img.convert("L") if gray else img).save(path)
            return subprocess.run([exe, *args, path], check=True, capture_output=True, env=env).stdout

    specs = {
        "cjpeg_440": ("astronaut", ["-quality", "85", "-sample", "1x2"]),
        "cjpeg_411": ("chelsea", ["-quality", "85", "-sample", "4x1"]),
        "cjpeg_mixed_factors": ("synth", ["-quality", "90", "-sample", "2x2,2x1,1x2"]),
        "cjpeg_h3v1": ("astronaut", ["-quality", "90", "-sample", "3x1"]),
        "cjpeg_arithmetic": ("astronaut", ["-quality", "85", "-arithmetic"]),
        "cjpeg_arithmetic_progressive": ("chelsea", ["-quality", "85", "-arithmetic", "-progressive"]),
        "cjpeg_restart_rows": ("synth", ["-quality", "80", "-restart", "1"]),
        "cjpeg_restart_blocks_progressive": ("astronaut", ["-quality", "80", "-restart", "3B",
                                                          "-progressive"]),
        "cjpeg_rgb_coded": ("chelsea", ["-quality", "90", "-rgb"]),
        "cjpeg_float_dct_q100": ("synth", ["-quality", "100", "-dct", "float"]),
        "cjpeg_smooth": ("astronaut", ["-quality", "60", "-smooth", "40"]),
        "cjpeg_chroma_quality": ("chelsea", ["-quality", "95,20", "-sample", "2x2"]),
        "cjpeg_strip_411": ("strip", ["-quality", "90", "-sample", "4x1"]),
    }
    out = {name: (run(src[s], args), f"cjpeg {' '.join(args)} ({s})") for name, (s, args) in specs.items()}
    out["cjpeg_gray_arithmetic"] = (run(src["astronaut"], ["-quality", "75", "-arithmetic"], gray=True),
                                    "cjpeg -quality 75 -arithmetic (astronaut, grayscale)")
    return out


def damaged_cases(made):
    base = made["pil_420_q50"][0]
    prog = made["pil_progressive_420"][0]
    sos = base.index(b"\xff\xda")
    flipped = bytearray(base)
    for i in range(sos + 40, len(base) - 40, 97):
        flipped[i] ^= 0x55
    return {
        "damaged_truncated_baseline": (base[: len(base) * 6 // 10], "pil_420_q50 cut at 60 %"),
        "damaged_truncated_progressive": (prog[: len(prog) * 7 // 10], "pil_progressive_420 cut at 70 %"),
        "damaged_no_eoi": (base[:-2], "pil_420_q50 without its EOI marker"),
        "damaged_flipped_bits": (bytes(flipped), "pil_420_q50 with every 97th entropy-coded byte XOR 0x55"),
        "damaged_header_only": (base[:sos], "pil_420_q50 cut before its scan"),
    }


def pillow_verdict(data):
    try:
        with Image.open(io.BytesIO(data)) as img:
            rgb = np.asarray(img.convert("RGB"))
        return rgb, None
    except Exception as exc:  # noqa: BLE001 - recording Pillow's refusal is the point
        return None, f"{type(exc).__name__}: {exc}"


def main():
    os.makedirs(OUT, exist_ok=True)
    for old in glob.glob(os.path.join(OUT, "*.jpg")) + glob.glob(os.path.join(OUT, "*.png")):
        os.remove(old)
    src = sources()
    made = {**pillow_cases(src), **cjpeg_cases(src)}
    made.update(damaged_cases(made))
    cases = []
    for name, (data, how) in sorted(made.items()):
        with open(os.path.join(OUT, name + ".jpg"), "wb") as f:
            f.write(data)
        rgb, error = pillow_verdict(data)
        case = {"name": name, "made_by": how, "sha256": hashlib.sha256(data).hexdigest()}
        if error is None:
            Image.fromarray(rgb, "RGB").save(os.path.join(OUT, name + ".png"))
            case.update({"pillow": "decoded", "width": rgb.shape[1], "height": rgb.shape[0]})
        else:
            case.update({"pillow": "refused", "error": error})
        cases.append(case)
    meta = {
        "pillow": Image.__version__,
        "libjpeg_turbo": features.version("libjpeg_turbo"),
        "reference": 'np.asarray(PIL.Image.open(path).convert("RGB"))',
        "cases": cases,
    }
    with open(os.path.join(OUT, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print(f"{len(cases)} cases, {sum(c['pillow'] == 'refused' for c in cases)} refused by Pillow")


if __name__ == "__main__":
    main()
