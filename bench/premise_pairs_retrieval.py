"""Do ALFA's pairs on the missing-premise testbed prefer the question that retrieves the removed premise?

For each pair of a pairs dir built from `alfa tasks premise-questions` (configs/pipelines/gsm8k_premise.yaml), the
fact-select patient of `alfa eval interactive` (top 1 fact, as on word problems) answers the chosen and the
rejected question; the table gives, per attribute and pair type, the share of each side that drew the removed
premise out, with 95% Wilson intervals. A preference set that teaches asking for the missing premise has the
chosen side above the rejected one.

    .venv/bin/python bench/premise_pairs_retrieval.py runs/gsm8k-premise-pairs/pairs runs/gsm8k/train.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import polars as pl

from alfa.dialogue.patients import FactSelectPatient, default_top_k
from alfa.llm.embedder import Embedder
from alfa.stats import wilson


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pairs", help="a pairs dir (DIR/data/{train,validation,test}.parquet)")
    parser.add_argument("cases", help="the case file its questions were made from (alfa tasks gsm8k's train.jsonl)")
    args = parser.parse_args()
    cases = {}
    with open(args.cases, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                case = json.loads(line)
                cases[case["id"]] = case
    pairs = pl.concat([pl.read_parquet(p) for p in sorted(Path(args.pairs, "data").glob("*.parquet"))])
    patient = FactSelectPatient(Embedder(), top_k=default_top_k(False))

    def retrieves(qid: str, side: list[dict]) -> bool:
        case = cases[qid]
        return case["decisive_fact"] in patient.answer(case["facts"], side[0]["content"])[1]

    pairs = pairs.with_columns(
        chosen_retrieves=pl.Series([retrieves(q, c) for q, c in zip(pairs["qid"], pairs["chosen"].to_list())]),
        rejected_retrieves=pl.Series([retrieves(q, r) for q, r in zip(pairs["qid"], pairs["rejected"].to_list())]),
    )
    groups = [("all", "all", pairs)] + [
        (a, t, g) for (a, t), g in sorted(pairs.group_by(["attribute", "pair_type"]), key=lambda kv: kv[0])
    ]
    print("| attribute | pair type | pairs | chosen retrieves the premise | rejected retrieves it |")
    print("|---|---|---|---|---|")
    for attribute, pair_type, g in groups:
        cells = []
        for col in ("chosen_retrieves", "rejected_retrieves"):
            k, n = int(g[col].sum()), g.height
            low, high = wilson(k, n)
            cells.append(f"{k / n:.0%} ({low:.0%}-{high:.0%})")
        print(f"| {attribute} | {pair_type} | {g.height} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
