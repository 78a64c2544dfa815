"""Logging set-up shared by the step scripts."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path


def setup_logging(log_path=None) -> None:
    """INFO lines with a timestamp on stderr (which the rules send to the step's log),
    and also into ``log_path`` when a script run by hand is given one."""
    handlers = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=handlers, force=True)  # fmt: skip


def exit_on_sigterm() -> None:
    """Let SIGTERM (a scheduler's time limit, scancel, kill) end a step as an exit does, so that
    its clean-up runs: temporary files removed, results kept all or none, a GPU slot let go.
    Python's default dies at once and leaves them. For a step run as a program, not on import."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
