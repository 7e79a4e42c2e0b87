"""Do ALFA's pairs on the missing-premise testbed prefer the question that retrieves the removed premise?

For each pair of a pairs dir built on the testbed's cases (ALFA's, from `alfa tasks premise-questions` and
configs/pipelines/gsm8k_premise.yaml; or CollabLLM's, from `alfa collab build ... --user fact`), the fact-select
patient of `alfa eval interactive` (top 1 fact, as on word problems) answers the chosen and the rejected question;
the table gives, per attribute and pair type, the share of each side that drew the removed premise out, with 95%
Wilson intervals. A preference set that teaches asking for the missing premise has the
chosen side above the rejected one.

    .venv/bin/python bench/premise_pairs_retrieval.py runs/gsm8k-premise-pairs/pairs runs/gsm8k/train.jsonl
    .venv/bin/python bench/premise_pairs_retrieval.py runs/collab-premise runs/gsm8k/train.jsonl

A pair's case is its `group_id` (the case id in both kinds: CollabLLM's qid also names the turn). The table also
counts each side's replies that hold a question mark: on this testbed a reply may draw the premise out without
asking anything.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import polars as pl

from alfa.dialogue.patients import FactSelectPatient, default_top_k
from alfa.eval.cases import load_cases
from alfa.llm.embedder import Embedder
from alfa.stats import wilson


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pairs", help="a pairs dir (DIR/data/{train,validation,test}.parquet)")
    parser.add_argument("cases", help="the case file its questions were made from (alfa tasks gsm8k's train.jsonl)")
    args = parser.parse_args()
    readable, unreadable = load_cases(Path(args.cases))
    if unreadable:  # a pair whose case cannot be read would be left out of the shares silently
        first = unreadable[0]
        parser.error(f"{args.cases}: {len(unreadable)} unreadable line(s); line {first['line']}: {first['reason']}")
    cases = {case.case_id: case for case in readable}
    pairs = pl.concat([pl.read_parquet(p) for p in sorted(Path(args.pairs, "data").glob("*.parquet"))])
    missing = sorted(set(pairs["group_id"].to_list()) - set(cases))
    if missing:
        parser.error(
            f"{args.cases} lacks the cases of {len(missing)} pair group(s), e.g. {missing[0]}: give the case file "
            "the pairs were built from"
        )
    patient = FactSelectPatient(Embedder(), top_k=default_top_k(False))

    def retrieves(case_id: str, side: list[dict]) -> bool:
        case = cases[case_id]
        return case.decisive_fact in patient.answer(case.facts, side[0]["content"])[1]

    pairs = pairs.with_columns(
        chosen_retrieves=pl.Series([retrieves(g, c) for g, c in zip(pairs["group_id"], pairs["chosen"].to_list())]),
        rejected_retrieves=pl.Series([retrieves(g, r) for g, r in zip(pairs["group_id"], pairs["rejected"].to_list())]),
        chosen_asks=pl.Series(["?" in c[0]["content"] for c in pairs["chosen"].to_list()]),
        rejected_asks=pl.Series(["?" in r[0]["content"] for r in pairs["rejected"].to_list()]),
    )
    groups = [("all", "all", pairs)] + [
        (a, t, g) for (a, t), g in sorted(pairs.group_by(["attribute", "pair_type"]), key=lambda kv: kv[0])
    ]
    print(
        "| attribute | pair type | pairs | chosen retrieves the premise | rejected retrieves it | with a '?': chosen, rejected |"
    )
    print("|---|---|---|---|---|---|")
    for attribute, pair_type, g in groups:
        cells = []
        for col in ("chosen_retrieves", "rejected_retrieves"):
            k, n = int(g[col].sum()), g.height
            low, high = wilson(k, n)
            cells.append(f"{k / n:.0%} ({low:.0%}-{high:.0%})")
        asks = f"{int(g['chosen_asks'].sum())}, {int(g['rejected_asks'].sum())}"
        print(f"| {attribute} | {pair_type} | {g.height} | {cells[0]} | {cells[1]} | {asks} |")


if __name__ == "__main__":
    main()
