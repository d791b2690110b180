#!/usr/bin/env python3
"""Fixtures for kiln-clip's image preprocessing, made with transformers' PIL-based CLIP image processor.

The reference is what a user gets from `CLIPImageProcessor(use_fast=False)` (in transformers 5.x that class is
`CLIPImageProcessorPil`) fed with `PIL.Image.open(path)`: no EXIF transpose, transparency composited onto white by
transformers' `convert_to_rgb`, PIL bicubic resize of the shortest edge to 224, center crop 224, rescale 1/255,
normalize with the OpenAI mean/std. The processor is built with its defaults (the openai/clip-vit-base-patch32
values); nothing is downloaded.

Inputs: scikit-image's sample photos from the Debian package python3-skimage (cached by scripts/fetch-assets.sh
in $KILN_CACHE/assets/skimage) and small synthetic images written here by PIL (committed).

Outputs, in crates/kiln-clip/tests/fixtures/clip_preprocess/:
  <case>.crop.png     the uint8 image (224x224 RGB) the processor holds after resize + center crop; the
                      float32 output is, bit for bit, table[c][crop[c, y, x]] (asserted below), so the
                      PNG plus the table in meta.json encode the processor's float32 pixel_values losslessly.
  <case>.resized.png  for some cases, PIL's resized uint8 image before the crop (for a bit-exact resize check).
  meta.json           cases, input sha256s, output shapes, the per-channel float32 lookup table.

Usage: python3 tools/make_clip_preprocess_fixtures.py   (needs transformers, pillow, numpy)
"""
import hashlib
import io
import json
import os
import sys

import numpy as np
from PIL import Image

import transformers
from transformers import CLIPImageProcessorPil
from transformers.image_transforms import (
    convert_to_rgb,
    get_resize_output_image_size,
    normalize,
    rescale,
    resize,
)
from transformers.image_utils import ChannelDimension, PILImageResampling

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "crates/kiln-clip/tests/fixtures/clip_preprocess")
INPUTS = os.path.join(OUT, "inputs")
SKIMAGE = os.path.join(os.environ.get("KILN_CACHE", os.path.expanduser("~/.cache/kiln")), "assets/skimage")


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def write_png16(path, arr, color_type):
    """A 16-bit PNG (PIL cannot write 16-bit RGB, RGBA or LA): big-endian samples, filter 0."""
    import struct
    import zlib

    h, w = arr.shape[:2]
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def make_synthetic():
    os.makedirs(INPUTS, exist_ok=True)
    rng = np.random.default_rng(1234)
    # RGB gradient + low-amplitude noise, 500 wide x 333 high (portrait-free landscape, odd height).
    h, w = 333, 500
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / (w - 1), y * 255 / (h - 1), (x + y) * 255 / (w + h - 2)], -1)
    img = np.clip(base + rng.integers(-3, 4, size=base.shape), 0, 255).astype(np.uint8)
    Image.fromarray(img).save(os.path.join(INPUTS, "gradient_noise_500x333.png"))
    # 8-bit grayscale, portrait.
    g = ((np.add.outer(np.arange(120), np.arange(90)) * 7) % 256).astype(np.uint8)
    Image.fromarray(g).save(os.path.join(INPUTS, "gray8_90x120.png"))
    # 16-bit grayscale: PIL opens it as mode "I;16"; values above 255 clip to 255 in convert("RGB").
    g16 = (np.add.outer(np.arange(48) * 1000, np.arange(64) * 3) % 65536).astype(np.uint16)
    g16[:6, :] = np.arange(64)[None, :] * 4  # some values <= 255 survive
    Image.fromarray(g16).save(os.path.join(INPUTS, "gray16_64x48.png"))
    # RGBA with alpha varying over the whole range.
    a = np.zeros((40, 60, 4), np.uint8)
    a[..., 0] = np.arange(60)[None, :] * 4
    a[..., 1] = 200
    a[..., 2] = np.arange(40)[:, None] * 6
    a[..., 3] = (np.add.outer(np.arange(40) * 3, np.arange(60) * 4) % 256).astype(np.uint8)
    Image.fromarray(a).save(os.path.join(INPUTS, "rgba_alpha_60x40.png"))
    # Grayscale + alpha.
    la = np.stack([g[:40, :60], a[..., 3]], -1)
    Image.fromarray(la).save(os.path.join(INPUTS, "la_60x40.png"))
    # Palette image with a transparent index.
    p = Image.fromarray(img[:50, :70]).quantize(colors=16)
    p.info["transparency"] = 3
    p.save(os.path.join(INPUTS, "palette_trns_70x50.png"), transparency=3)
    # Grayscale and RGB with a tRNS colour key (PIL: info["transparency"], composited onto white).
    Image.fromarray(g[:40, :50]).save(os.path.join(INPUTS, "gray_trns_50x40.png"), transparency=int(g[5, 5]))
    Image.fromarray(img[:40, :50]).save(os.path.join(INPUTS, "rgb_trns_50x40.png"),
                                        transparency=tuple(int(v) for v in img[7, 9]))
    # Palette image without transparency.
    Image.fromarray(img[100:160, 200:280]).quantize(colors=32).save(os.path.join(INPUTS, "palette_80x60.png"))
    # Tiny (smaller than the crop), and very wide.
    Image.fromarray(img[:15, :20]).save(os.path.join(INPUTS, "tiny_20x15.png"))
    wide = np.stack([np.tile(np.arange(1000) % 256, (50, 1)), np.tile(np.arange(50)[:, None] * 5, (1, 1000)),
                     np.full((50, 1000), 90)], -1).astype(np.uint8)
    Image.fromarray(wide).save(os.path.join(INPUTS, "wide_1000x50.png"))
    # 16-bit RGB, RGBA and LA PNGs: PIL reads them with 8 bits per sample (the high byte); LA16 opens as RGBA.
    yy, xx = np.mgrid[0:30, 0:40]
    c16 = np.stack([xx * 1600 + yy * 7, yy * 2100 + 300, (xx * yy * 50) % 65536, (xx * 1500 + yy * 600) % 65536], -1)
    c16 = c16.astype(np.uint16)
    write_png16(os.path.join(INPUTS, "rgb16_40x30.png"), c16[..., :3], 2)
    write_png16(os.path.join(INPUTS, "rgba16_40x30.png"), c16, 6)
    write_png16(os.path.join(INPUTS, "la16_40x30.png"), c16[..., [0, 3]], 4)
    # CMYK JPEG (PIL writes Adobe-inverted CMYK; PIL's convert("RGB") and the image crate both undo it).
    cm = np.stack([xx * 6, yy * 8, (xx + yy) * 3, (xx * yy) % 256], -1).astype(np.uint8)
    Image.fromarray(cm, "CMYK").save(os.path.join(INPUTS, "cmyk_40x30.jpg"), quality=95)
    # Tall: 300x2000 -> 224x1493, where Pillow runs the vertical pass first.
    tall = np.stack([np.tile(np.arange(300)[None, :] * 3 % 256, (2000, 1)), np.tile(np.arange(2000)[:, None] * 7 % 256, (1, 300)),
                     np.tile((np.arange(2000)[:, None] // 9 * 37) % 256, (1, 300))], -1).astype(np.uint8)
    Image.fromarray(tall).save(os.path.join(INPUTS, "tall_300x2000.png"))
    # JPEG with EXIF orientation 6 (transformers does not transpose it).
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(img[:60, :80]).save(os.path.join(INPUTS, "exif6_80x60.jpg"), quality=90, exif=exif)


CASES = [
    # name, source ("skimage" or "synthetic"), file, extra processor kwargs, save resized?
    ("astronaut", "skimage", "astronaut.png", {}, False),
    ("camera", "skimage", "camera.png", {}, False),
    ("coffee", "skimage", "coffee.png", {}, True),
    ("chelsea", "skimage", "chelsea.png", {}, True),
    ("rocket", "skimage", "rocket.jpg", {}, False),
    ("logo_rgba", "skimage", "logo.png", {}, False),
    ("horse_rgba", "skimage", "horse.png", {}, False),
    ("green_palette", "skimage", "green_palette.png", {}, False),
    ("gradient_noise", "synthetic", "gradient_noise_500x333.png", {}, True),
    ("gray8", "synthetic", "gray8_90x120.png", {}, False),
    ("gray16", "synthetic", "gray16_64x48.png", {}, False),
    ("rgb16", "synthetic", "rgb16_40x30.png", {}, False),
    ("rgba16", "synthetic", "rgba16_40x30.png", {}, False),
    ("la16", "synthetic", "la16_40x30.png", {}, False),
    ("rgba_alpha", "synthetic", "rgba_alpha_60x40.png", {}, False),
    ("la", "synthetic", "la_60x40.png", {}, False),
    ("palette_trns", "synthetic", "palette_trns_70x50.png", {}, False),
    ("gray_trns", "synthetic", "gray_trns_50x40.png", {}, False),
    ("rgb_trns", "synthetic", "rgb_trns_50x40.png", {}, False),
    ("palette", "synthetic", "palette_80x60.png", {}, False),
    ("tiny", "synthetic", "tiny_20x15.png", {}, True),
    ("wide", "synthetic", "wide_1000x50.png", {}, True),
    ("cmyk", "synthetic", "cmyk_40x30.jpg", {}, False),
    ("tall", "synthetic", "tall_300x2000.png", {}, True),
    ("exif6", "synthetic", "exif6_80x60.jpg", {}, False),
    # No resize: the 20x15 image is padded with zeros by the center crop.
    ("tiny_no_resize", "synthetic", "tiny_20x15.png", {"do_resize": False}, False),
    # Bilinear resize and a non-square crop.
    ("coffee_bilinear", "skimage", "coffee.png", {"resample": 2, "crop_size": {"height": 200, "width": 160}}, False),
]


# Includes sizes where Pillow runs the vertical pass first (height shrinks by more than twice the width).
RESIZE_TARGETS = [(1, 1), (5, 3), (16, 9), (37, 60), (100, 7), (74, 46), (23, 37), (200, 150), (3, 90), (37, 23),
                  (36, 2), (30, 9), (60, 12), (37, 5), (33, 14)]


def main():
    make_synthetic()
    if not os.path.isdir(SKIMAGE):
        sys.exit(f"missing {SKIMAGE}: run scripts/fetch-assets.sh first")
    cases = []
    luts = []
    for name, source, fname, kwargs, save_resized in CASES:
        path = os.path.join(SKIMAGE if source == "skimage" else INPUTS, fname)
        p = CLIPImageProcessorPil(**kwargs)
        with Image.open(path) as im:
            mode = im.mode
            out = p(images=im, return_tensors="np")["pixel_values"][0]
        with Image.open(path) as im:
            raw = p(images=im, do_rescale=False, do_normalize=False, return_tensors="np")["pixel_values"][0]
        assert out.dtype == np.float32, out.dtype
        crop = raw.astype(np.uint8)
        assert np.array_equal(crop, raw)
        # The float32 lookup table: rescale then normalize, exactly as the processor does them.
        lut_in = np.tile(np.arange(256, dtype=np.uint8)[None, None, :], (3, 1, 1))
        lut = normalize(rescale(lut_in, p.rescale_factor, input_data_format=ChannelDimension.FIRST),
                        p.image_mean, p.image_std, input_data_format=ChannelDimension.FIRST)[:, 0, :]
        decoded = np.stack([lut[c][crop[c]] for c in range(3)])
        assert np.array_equal(decoded.view(np.uint32), out.view(np.uint32)), name
        Image.fromarray(np.moveaxis(crop, 0, -1), "RGB").save(os.path.join(OUT, f"{name}.crop.png"), optimize=True)
        case = {"name": name, "source": source, "file": fname, "sha256": sha256(path), "pil_mode": mode,
                "config": kwargs, "crop_shape": list(out.shape)}
        if mode != "I;16" and Image.open(path).format == "JPEG":
            # JPEG: for a small one, keep PIL's decoded pixels too, so the test checks the decode itself
            # (kiln-jpeg, libjpeg-turbo's decoder) apart from the resize and crop.
            case["jpeg"] = True
            with Image.open(path) as im:
                if im.width * im.height <= 10000:
                    im.convert("RGB").save(os.path.join(OUT, f"{name}.pil_decoded.png"), optimize=True)
                    case["pil_decoded"] = True
        if luts and not np.array_equal(luts[0], lut):
            sys.exit("all cases share mean/std/rescale_factor: one lookup table")
        luts.append(lut)
        if save_resized:
            with Image.open(path) as im:
                arr = np.moveaxis(convert_to_rgb(im, return_numpy=True), -1, 0)
            hw = get_resize_output_image_size(arr, 224, default_to_square=False,
                                              input_data_format=ChannelDimension.FIRST)
            r = resize(arr, hw, resample=PILImageResampling.BICUBIC, data_format=ChannelDimension.FIRST,
                       input_data_format=ChannelDimension.FIRST)
            assert r.dtype == np.uint8
            Image.fromarray(np.moveaxis(r, 0, -1), "RGB").save(os.path.join(OUT, f"{name}.resized.png"),
                                                               optimize=True)
            case["resized_hw"] = list(hw)
        cases.append(case)
        print(name, mode, out.shape, file=sys.stderr)
    # Pillow's resampler alone, on one small image, over up/down scales and odd sizes, for both filters.
    rdir = os.path.join(OUT, "resize")
    os.makedirs(rdir, exist_ok=True)
    src_path = os.path.join(INPUTS, "gradient_noise_500x333.png")
    with Image.open(src_path) as im:
        src = im.crop((101, 57, 138, 80))  # 37x23
    src.save(os.path.join(rdir, "src_37x23.png"))
    resize_cases = []
    for filt, code in (("bicubic", Image.Resampling.BICUBIC), ("bilinear", Image.Resampling.BILINEAR)):
        for w, h in RESIZE_TARGETS:
            fn = f"{filt}_{w}x{h}.png"
            src.resize((w, h), resample=code).save(os.path.join(rdir, fn), optimize=True)
            resize_cases.append({"filter": int(code), "width": w, "height": h, "file": fn})
    meta = {"transformers": transformers.__version__, "pillow": Image.__version__, "numpy": np.__version__,
            "processor": "CLIPImageProcessorPil (CLIPImageProcessor use_fast=False), defaults", "cases": cases, "resize_cases": resize_cases,
            "lut": [[float(v) for v in row] for row in luts[0]]}
    with open(os.path.join(OUT, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)


if __name__ == "__main__":
    main()
