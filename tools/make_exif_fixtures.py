#!/usr/bin/env python3
"""Fixtures for kiln-clip's `load_image_upright`: images with EXIF/XMP orientations and what
`transformers.image_utils.load_image(path)` returns for them (`PIL.ImageOps.exif_transpose`, then
`convert("RGB")`, which drops alpha).

Cases: JPEG with every EXIF orientation 1-8 (little-endian EXIF as Pillow writes it), a JPEG with a
big-endian EXIF block, PNG with an eXIf chunk (orientations 3, 6, 8), a JPEG whose only orientation
is an XMP `tiff:Orientation`, an RGBA PNG rotated by its eXIf chunk, and a JPEG with an invalid
orientation value (9). Content: a crop of scikit-image's chelsea photo (cached by
scripts/fetch-assets.sh), 13x7 pixels so every transposition is visible.

Outputs in crates/kiln-clip/tests/fixtures/exif/: <case>.jpg|png and <case>.expected.png, meta.json.
Usage: python3 tools/make_exif_fixtures.py   (needs transformers, pillow, numpy)
"""
import glob
import hashlib
import io
import json
import os
import struct

import numpy as np
from PIL import Image
from transformers.image_utils import load_image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "crates/kiln-clip/tests/fixtures/exif")
CACHE = os.environ.get("KILN_CACHE", os.path.expanduser("~/.cache/kiln"))


def exif_le(orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def exif_be(orientation):
    """A big-endian TIFF block with IFD0 = {Orientation: SHORT}."""
    ifd = struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0)
    return b"Exif\x00\x00" + b"MM\x00*" + struct.pack(">I", 8) + ifd


def main():
    os.makedirs(OUT, exist_ok=True)
    for old in glob.glob(os.path.join(OUT, "*")):
        os.remove(old)
    chelsea = np.asarray(Image.open(os.path.join(CACHE, "assets/skimage/chelsea.png")).convert("RGB"))
    rgb = chelsea[100:107, 150:163]
    alpha = (np.arange(13 * 7).reshape(7, 13) * 7 % 256).astype(np.uint8)
    rgba = np.concatenate([rgb, alpha[..., None]], -1)
    cases = {}

    def jpeg(arr, **kw):
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, "JPEG", quality=95, **kw)
        return buf.getvalue(), "jpg"

    def png(arr, **kw):
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, "PNG", **kw)
        return buf.getvalue(), "png"

    for o in range(1, 9):
        cases[f"jpeg_exif{o}"] = jpeg(rgb, exif=exif_le(o))
    cases["jpeg_exif6_big_endian"] = jpeg(rgb, exif=exif_be(6))
    for o in (3, 6, 8):
        cases[f"png_exif{o}"] = png(rgb, exif=exif_le(o))
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="8"/></rdf:RDF></x:xmpmeta>')
    cases["jpeg_xmp8"] = jpeg(rgb, xmp=xmp)
    cases["png_rgba_exif6"] = png(rgba, exif=exif_le(6))
    cases["jpeg_exif9_ignored"] = jpeg(rgb, exif=exif_le(9))

    meta = []
    for name, (data, ext) in sorted(cases.items()):
        path = os.path.join(OUT, f"{name}.{ext}")
        with open(path, "wb") as f:
            f.write(data)
        want = np.asarray(load_image(path))
        Image.fromarray(want, "RGB").save(os.path.join(OUT, f"{name}.expected.png"))
        with Image.open(path) as im:
            orientation = im.getexif().get(0x0112)
        meta.append({"name": name, "file": f"{name}.{ext}", "sha256": hashlib.sha256(data).hexdigest(),
                     "orientation": orientation, "expected_size": [want.shape[1], want.shape[0]]})
    with open(os.path.join(OUT, "meta.json"), "w") as f:
        json.dump({"reference": "np.asarray(transformers.image_utils.load_image(path))", "cases": meta}, f, indent=1)
        f.write("\n")
    print(f"{len(meta)} cases")
    for m in meta:
        print(m["name"], m["orientation"], m["expected_size"])


if __name__ == "__main__":
    main()
