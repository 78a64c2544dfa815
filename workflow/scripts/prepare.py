#!/usr/bin/env python3
"""Reshape, scale and split the verified CIFAR-10 archive into cifar10.npz (the `prepare` step).

See docs/outputs.md for the contract. The split is
`numpy.random.default_rng(split_seed).permutation(n)`: the first --n-val indices are the
validation set, the rest the training set, both kept in permutation order. Example:

    python workflow/scripts/prepare.py --archive results/data/cifar-10-python.tar.gz \\
        --out results/data/cifar10.npz --n-val 5000 --split-seed 0 \\
        --expected-train 50000 --expected-test 10000

Exit status 1 with a one-line message (no traceback) on any data problem.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from scratchcnn.cli import integer
from scratchcnn.data import DataError, prepare_dataset
from scratchcnn.io import save_npz_atomic
from scratchcnn.logs import exit_on_sigterm, setup_logging


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archive", required=True, help="verified CIFAR-10 python .tar.gz")
    ap.add_argument("--out", required=True, help="cifar10.npz to write")
    ap.add_argument("--n-val", type=integer(1), required=True, help="validation images")
    ap.add_argument("--split-seed", type=integer(0), required=True, help="seed of the train/val split")
    ap.add_argument(
        "--standardize", action="store_true",
        help="per-channel standardisation with training-split mean/std",
    )
    ap.add_argument("--expected-train", type=integer(1), required=True, help="training images in the archive")
    ap.add_argument("--expected-test", type=integer(1), required=True, help="test images in the archive")
    ap.add_argument("--log", help="also write the log to this file")
    args = ap.parse_args(argv)
    setup_logging(args.log)
    log = logging.getLogger("prepare")
    t0 = time.monotonic()
    try:
        arrays = prepare_dataset(
            args.archive,
            n_val=args.n_val,
            split_seed=args.split_seed,
            standardize=args.standardize,
            expected_train=args.expected_train,
            expected_test=args.expected_test,
        )
    except DataError as e:
        # the download step writes the archive only once its md5 checks out; a copy put there by
        # hand skips that check, and reruns would meet the same bad file (a problem of the
        # settings, such as n_val, names no archive and gets no such advice)
        hint = (f". If {args.archive} was put there by hand, not by the download step (which checks its md5), "
                "delete it and give the copy's path as data.url instead") if str(args.archive) in str(e) else ""  # fmt: skip
        log.error("%s%s", e, hint)
        return 1
    t1 = time.monotonic()
    try:
        save_npz_atomic(args.out, arrays)
    except OSError as e:  # a full disk, say
        log.error("cannot write %s (%s)", args.out, e.strerror or e)
        return 1
    t2 = time.monotonic()
    for k, v in arrays.items():
        if k != "meta_json":
            log.info("%-11s %-8s %s", k, v.dtype, v.shape)
    meta = json.loads(str(arrays["meta_json"]))
    means = [round(m, 4) for m in meta["train_channel_mean"]]
    stds = [round(s, 4) for s in meta["train_channel_std"]]
    log.info("x_train per-channel mean (R, G, B) of pixel/255: %s, std %s", means, stds)
    if meta["standardize"] is not None:
        log.info("standardised with the training-split mean/std above")
    log.info(
        "wrote %s in %.1f s (read + prepare %.1f s, save %.1f s)",
        args.out, t2 - t0, t1 - t0, t2 - t1,
    )
    return 0


if __name__ == "__main__":
    exit_on_sigterm()
    sys.exit(main())
