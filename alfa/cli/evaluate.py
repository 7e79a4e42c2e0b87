"""`alfa evaluate-rm`: the reward-model scorecard (alfa.eval)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_evaluate_rm(sub) -> None:
    """alfa evaluate-rm"""
    fmt = argparse.RawDescriptionHelpFormatter
    s = sub.add_parser(
        "evaluate-rm",
        help="reward-model accuracy per attribute: a scorecard table and heatmap",
        formatter_class=fmt,
        description="Each reward model is scored on every attribute's pairs of a "
        "split (right when chosen scores above rejected). Writes scorecard.csv/.md/.png.",
        epilog="Example:\n  alfa evaluate-rm --model clarity=runs/train/rm-clarity "
        "--model focus=runs/train/rm-focus --pairs runs/pairs --split test -o runs/eval",
    )
    s.add_argument("--model", action="append", required=True, metavar="NAME=PATH", help="a reward model (repeat)")
    s.add_argument("--pairs", required=True, help="pairs dir")
    s.add_argument("--split", default="test")
    s.add_argument("-o", "--output", required=True, help="folder for the scorecard")
    s.set_defaults(func=_evaluate_rm)


def _evaluate_rm(args) -> int:
    from alfa.eval.reward_scorecard import scorecard

    models = {}
    for spec in args.model:
        name, sep, path = spec.partition("=")
        if not sep:
            raise ValueError(f"--model {spec!r}: expected NAME=PATH, e.g. clarity=runs/train/rm-clarity")
        models[name] = Path(path)
    table = scorecard(models, Path(args.pairs), args.split, Path(args.output))
    print((Path(args.output) / "scorecard.md").read_text())
    print(f"table, CSV and heatmap -> {args.output}")
    return 0 if table.height else 1
