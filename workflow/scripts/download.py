#!/usr/bin/env python3
"""Fetch the CIFAR-10 archive and verify its md5 (the `download` step).

The source may be an http(s) URL, a file:// URL or a plain local path; an archive already at
--out with the right md5 is left alone. Example:

    python workflow/scripts/download.py --source /data/cifar-10-python.tar.gz \\
        --md5 c58f30108f718f92721af3b95e74349a --out results/data/cifar-10-python.tar.gz

Exit status 1 with a one-line message (no traceback) on any data problem.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from scratchcnn.cli import md5
from scratchcnn.data import DataError, fetch_archive
from scratchcnn.logs import exit_on_sigterm, setup_logging


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", required=True, help="http(s) URL, file:// URL or local path")
    ap.add_argument("--md5", required=True, type=md5, help="expected md5 of the archive")
    ap.add_argument("--out", required=True, help="where the verified archive goes")
    ap.add_argument("--log", help="also write the log to this file")
    ap.add_argument("--retries", type=int, default=4, help="retries on transient errors")
    ap.add_argument("--backoff", type=float, default=1.0, help="first retry wait, seconds")
    ap.add_argument("--timeout", type=float, default=60, help="socket timeout, seconds")
    args = ap.parse_args(argv)
    setup_logging(args.log)
    try:
        fetch_archive(
            args.source,
            Path(args.out),
            args.md5,
            retries=args.retries,
            backoff=args.backoff,
            timeout=args.timeout,
        )
    except DataError as e:
        logging.getLogger("download").error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    exit_on_sigterm()
    sys.exit(main())
