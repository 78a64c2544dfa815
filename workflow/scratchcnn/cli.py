"""Argument types for the step scripts: a flag value the code cannot run with is argparse's
one-line usage error (naming the flag and what it takes), not a traceback from deep inside a run.
Which values a study may use is the config schema's business (workflow/schemas/)."""

from __future__ import annotations

import argparse
import re


def integer(minimum: int):
    """An int of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum}")
        return value

    return parse


def md5(text: str) -> str:
    """32 hexadecimal digits (what md5sum prints), lower-cased."""
    if not re.fullmatch(r"[0-9a-fA-F]{32}", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not an md5 (32 hexadecimal digits)")
    return text.lower()
