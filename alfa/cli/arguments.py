"""Argument types the verbs share."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """1 or more: `--limit 0` used to mean no limit at all (0 is falsy), running every question."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: give 1 or more (leave the option out for all)")
    return value
