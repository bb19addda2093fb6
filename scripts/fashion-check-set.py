#!/usr/bin/env python3
"""Writes a check set for the CPU recipe (issue 11) from Fashion-MNIST, in the MNIST layout:
the first 8,000 training and 2,000 test images, intensities inverted (dark garments on a white
background), so that a recipe tuned on Fashion-MNIST meets a smaller set with other statistics.

    python3 scripts/fashion-check-set.py /usr/share/datasets/fashion-mnist OUT_DIR
    msbreg train --data mnist:OUT_DIR

Standard library only."""
import gzip
import os
import struct
import sys


def read(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        return f.read()


def find(src, stem):
    for name in (stem, stem + ".gz"):
        if os.path.exists(os.path.join(src, name)):
            return os.path.join(src, name)
    sys.exit(f"{src}: no {stem} or {stem}.gz (is this a Fashion-MNIST folder?)")


def subset(src, out, split, count):
    images = read(find(src, f"{split}-images-idx3-ubyte"))
    labels = read(find(src, f"{split}-labels-idx1-ubyte"))
    magic, n, rows, cols = struct.unpack(">IIII", images[:16])
    assert magic == 2051 and n >= count, f"{split}: bad image header"
    size = rows * cols
    pixels = bytes(255 - b for b in images[16 : 16 + count * size])
    with open(os.path.join(out, f"{split}-images-idx3-ubyte"), "wb") as f:
        f.write(struct.pack(">IIII", 2051, count, rows, cols) + pixels)
    with open(os.path.join(out, f"{split}-labels-idx1-ubyte"), "wb") as f:
        f.write(struct.pack(">II", 2049, count) + labels[8 : 8 + count])


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    subset(src, out, "train", 8000)
    subset(src, out, "t10k", 2000)
    print(f"wrote {out}: 8,000 train / 2,000 test, inverted")


main()
