#!/usr/bin/env python
"""Draw report figures: ``results/figures/NAME.pdf`` and ``NAME.png``.

Each figure reads only the inputs its registry entry names
(``scratchcnn.figures.FIGURES``); a figure can be built on its own, e.g.::

    python workflow/scripts/plot_figures.py --which loss_curve \\
        --history results/final/seeds/0/history.csv --out-dir results/figures --lang zh
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from scratchcnn import figures
from scratchcnn.checkpoint import load_checkpoint
from scratchcnn.data import load_prepared
from scratchcnn.io import InputError, read_input, read_json_object
from scratchcnn.logs import exit_on_sigterm, setup_logging


def _flag(role: str) -> str:
    return "--" + role.replace("_", "-")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--which", nargs="+", required=True, metavar="NAME",
                   choices=list(figures.FIGURES) + ["all"], help="figures to draw (or 'all')")  # fmt: skip
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--lang", choices=["zh", "en"], required=True, help="the figures' language (report.language)")
    p.add_argument("--dpi", type=int, default=figures.PNG_DPI, help="PNG resolution")
    p.add_argument("--seed", type=int, help="which images the figures that draw a random sample show (test_samples)")
    for role, what in figures.INPUTS.items():
        p.add_argument(_flag(role), type=Path, help=what)
    args = p.parse_args(argv)
    if "all" in args.which:
        args.which = list(figures.FIGURES)
    for name in args.which:
        if figures.FIGURES[name].seeded and args.seed is None:
            p.error(f"figure {name!r} needs --seed (it draws a random sample)")
        for role in figures.FIGURES[name].inputs:
            path = getattr(args, role)
            if path is None:
                p.error(f"figure {name!r} needs {_flag(role)}")
            if not path.exists():
                p.error(f"{_flag(role)} {path} does not exist (needed by figure {name!r})")
    return args


def _read_data(path) -> dict:
    data = load_prepared(path, arrays=("x_test", "y_test"))
    return {**data.arrays, "class_names": data.class_names, "meta": data.meta}


def _read_npz(path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _read_table(path) -> pd.DataFrame:
    table = pd.read_csv(path)
    if table.empty:  # a figure of nothing would pass for a result
        raise ValueError("it has a header but no rows")
    return table


# role -> how its file is read
READERS = {
    "history": _read_table,
    "summary": _read_table,
    "model": load_checkpoint,
    "test_metrics": read_json_object,
    "data": _read_data,
    "predictions": _read_npz,
}
assert set(READERS) == set(figures.INPUTS)


class Inputs(dict):
    """Reads each input file once, when a figure first asks for its role."""

    def __init__(self, args: argparse.Namespace):
        super().__init__()
        self.args = args

    def __missing__(self, role):
        self[role] = read_input(_flag(role), getattr(self.args, role), READERS[role])
        return self[role]


def main(argv=None) -> int:
    setup_logging()
    args = parse_args(argv)
    lang = figures.setup_style(args.lang)
    inputs = Inputs(args)
    drawn = {}  # every figure is drawn before any is written: a failure leaves no partial set
    for name in args.which:
        try:
            drawn[name] = figures.FIGURES[name].draw(inputs, lang, args.seed)
        except InputError as exc:
            raise SystemExit(f"error: figure {name!r}: {exc}")
        except (ValueError, KeyError, IndexError, TypeError) as exc:  # a column, key or class the file lacks
            files = ", ".join(f"{_flag(role)} {getattr(args, role)}" for role in figures.FIGURES[name].inputs)
            raise SystemExit(f"error: figure {name!r} cannot be drawn from {files} ({type(exc).__name__}: {exc})")
    written = []
    for name, fig in drawn.items():
        try:
            written += figures.save_figure(fig, args.out_dir / name, dpi=args.dpi)
        except Exception as exc:  # a full disk, or text matplotlib cannot typeset (found only when written)
            for path in written:
                path.unlink(missing_ok=True)
            raise SystemExit(f"error: figure {name!r} cannot be written to {args.out_dir} ({type(exc).__name__}: {exc})")
    for path in written:
        logging.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    exit_on_sigterm()
    sys.exit(main())
