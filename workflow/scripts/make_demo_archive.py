#!/usr/bin/env python3
"""Write a small synthetic CIFAR-10-format archive (the demo data set) and print its md5.

The archive has exactly the official python-version layout, so the pipeline reads it like the
real one. Same arguments give the same bytes. Example:

    python workflow/scripts/make_demo_archive.py --out results/demo/cifar-10-python.tar.gz \\
        --n-train-per-class 100 --n-test-per-class 20 --seed 0
"""

from __future__ import annotations

import argparse
import logging
import sys

from scratchcnn.cli import integer
from scratchcnn.data import make_synthetic_images, md5sum, write_archive
from scratchcnn.logs import exit_on_sigterm, setup_logging


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="archive to write (.tar.gz)")
    ap.add_argument("--n-train-per-class", type=integer(1), required=True, help="training images of each class")
    ap.add_argument("--n-test-per-class", type=integer(1), required=True, help="test images of each class")
    ap.add_argument("--seed", type=integer(0), required=True, help="seed of the images (same seed, same bytes)")
    args = ap.parse_args(argv)
    setup_logging()
    log = logging.getLogger("make_demo_archive")
    x, y, xt, yt, names = make_synthetic_images(
        args.n_train_per_class, args.n_test_per_class, args.seed
    )
    try:
        out = write_archive(args.out, x, y, xt, yt, names)  # temp file + rename
    except OSError as exc:
        print(f"error: cannot write the archive {args.out} ({exc})", file=sys.stderr)
        return 1
    md5 = md5sum(out)
    log.info("wrote %s: %d train, %d test images, md5 %s", out, len(x), len(xt), md5)
    print(md5)
    return 0


if __name__ == "__main__":
    exit_on_sigterm()
    sys.exit(main())
