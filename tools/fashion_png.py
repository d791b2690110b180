"""Writes one Fashion-MNIST image as a PNG (pure Python: gzip, struct, zlib), for the retail
assistant's photo checks.

Usage: python3 tools/fashion_png.py FASHION_DIR (train|test) (INDEX | label=N) OUT.png
With label=N, the first image of that label (0 t-shirt ... 7 sneaker ... 9 ankle boot) is written.
Prints the index written.
"""

import gzip
import struct
import sys
import zlib


def main():
    root, split, which, out = sys.argv[1:5]
    prefix = "train" if split == "train" else "t10k"
    images = gzip.open(f"{root}/{prefix}-images-idx3-ubyte.gz").read()
    labels = gzip.open(f"{root}/{prefix}-labels-idx1-ubyte.gz").read()
    magic, count, rows, cols = struct.unpack(">IIII", images[:16])
    if magic != 2051:
        sys.exit(f"{root}: not an IDX3 image file")
    if which.startswith("label="):
        want = int(which.split("=", 1)[1])
        index = next(i for i in range(count) if labels[8 + i] == want)
    else:
        index = int(which)
    size = rows * cols
    pixels = images[16 + index * size : 16 + (index + 1) * size]
    raw = b"".join(b"\x00" + pixels[r * cols : (r + 1) * cols] for r in range(rows))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", cols, rows, 8, 0, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    with open(out, "wb") as f:
        f.write(png)
    print(index)


if __name__ == "__main__":
    main()
