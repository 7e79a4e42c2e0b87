"""ALFA's four claims, read without a judge: paired differences of preference accuracy between the arms.

Reads the margins.parquet of `alfa evaluate-policy` runs (docs/results.md, "ALFA's main table at small scale"):
the fine-grained pairs' run holds the policies clarity, relevance, specificity, mixed (and mixed-seed1, the same arm
on another draw of its pairs, if run), merged-uniform, merged-ties, unfiltered and coarse; `--coarse` adds the run
on the coarse pairs.
Each line is arm A minus arm B on the same held-out pairs, in points, with a 95% bootstrap interval over posts.
Where a name is missing from a run, its lines are left out and said so.

    .venv/bin/python bench/policy_claims.py runs/eval/askdocs-policy/margins.parquet \\
        --coarse runs/eval/askdocs-policy-coarse/margins.parquet
"""

from __future__ import annotations

import argparse
from pathlib import Path

import polars as pl

from alfa.train.policy_scorecard import paired_difference

ATTRIBUTES = ("clarity", "relevance", "specificity")


def paired(margins: pl.DataFrame, a: str, b: str, attribute: str | None = None) -> str:
    """`a` minus `b` on the pairs both scored (of one attribute, or all), as text."""
    part = margins if attribute is None else margins.filter(pl.col("attribute") == attribute)
    models = set(part["model"].unique().to_list())
    if not {a, b} <= models:
        return f"{a} vs {b}: not in this run ({', '.join(sorted({a, b} - models))} missing)"
    diff = paired_difference(margins, a, b, attribute)
    return (
        f"{a} vs {b}, {attribute or 'all pairs'} (n={diff['n']}): {100 * diff['a']:.1f}% vs {100 * diff['b']:.1f}%, "
        f"{100 * diff['value']:+.1f} points ({100 * diff['ci_low']:+.1f} to {100 * diff['ci_high']:+.1f})"
    )


def claims(fine: pl.DataFrame, coarse: pl.DataFrame | None) -> list[str]:
    # a second draw of the mixed arm's pairs (`--set trl.seed=1`), where the run holds one, is read beside it
    mixed_arms = [m for m in ("mixed", "mixed-seed1") if m in set(fine["model"].unique().to_list())] or ["mixed"]
    lines = ["Each arm against the two length rules on its own pairs (did it learn more than length?):"]
    for arm in ATTRIBUTES:
        lines += [f"  {paired(fine, arm, rule, arm)}" for rule in ("shorter question", "longer question")]
    if coarse is not None:
        lines += [f"  {paired(coarse, 'coarse', rule)}" for rule in ("shorter question", "longer question")]
    lines += ["Each attribute's policy wins on its own attribute's pairs:"]
    for attribute in ATTRIBUTES:
        rivals = [*mixed_arms, "merged-uniform", *[a for a in ATTRIBUTES if a != attribute]]
        lines += [f"  {paired(fine, attribute, rival, attribute)}" for rival in rivals]
    lines += ["Merged beats mixed:"]
    lines += [f"  {paired(fine, merged, m)}" for m in mixed_arms for merged in ("merged-uniform", "merged-ties")]
    lines += ["Filtered beats unfiltered:", *[f"  {paired(fine, m, 'unfiltered')}" for m in mixed_arms]]
    lines += ["Fine-grained beats coarse (on the fine-grained pairs, then on the coarse pairs):"]
    arms = [*mixed_arms, "merged-uniform"]
    lines += [f"  {paired(fine, arm, 'coarse')}" for arm in arms]
    if coarse is not None:
        lines += [f"  {paired(coarse, arm, 'coarse')}" for arm in arms]
    if len(mixed_arms) == 2:
        lines += ["Seed check, the mixed arm against itself on another draw of its 80 pairs:"]
        lines += [f"  {paired(fine, 'mixed-seed1', 'mixed', a)}" for a in (*ATTRIBUTES, None)]
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("margins", type=Path, help="margins.parquet of the fine-grained pairs' run")
    p.add_argument("--coarse", type=Path, help="margins.parquet of the coarse pairs' run")
    args = p.parse_args()
    coarse = pl.read_parquet(args.coarse) if args.coarse else None
    print("\n".join(claims(pl.read_parquet(args.margins), coarse)))


if __name__ == "__main__":
    main()
