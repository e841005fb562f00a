#!/usr/bin/env python3
"""Fills a directory for benches/run.sh: FILES files holding TOTAL bytes together,
in subdirectories of 1,000 files, with random (incompressible, never repeated) data.

    python3 benches/fill.py DIR FILES TOTAL_BYTES
"""
import os
import sys


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__.strip())
    root, files, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    each = total // files
    for i in range(files):
        d = os.path.join(root, "d%03d" % (i // 1000))
        if i % 1000 == 0:
            os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "f%06d" % i), "wb") as f:
            left = each
            while left > 0:
                n = min(left, 1 << 20)
                f.write(os.urandom(n))
                left -= n
    os.sync()


if __name__ == "__main__":
    main()
