"""Pairs that a method scored itself (UoT's expected reward, CollabLLM's multiturn-aware reward), written in alfa's
pairs schema with their scores (`chosen_score`, `rejected_score`) and split by group, so no case or conversation
lands in two splits. `alfa lint` and `alfa train` read the dir like any other."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from alfa.data.pairs import PAIR_SCHEMA, SplitConfig, split_groups, write_split_files

SCORED_SCHEMA = {**PAIR_SCHEMA, "chosen_score": pl.Float64, "rejected_score": pl.Float64}


def write_scored_pairs(rows: list[dict], out: Path, split: SplitConfig | None = None) -> dict[str, int]:
    """OUT/data/{train,validation,test}.parquet from `rows` (every schema field but `split`); returns split sizes."""
    pairs = pl.DataFrame(rows, schema={k: v for k, v in SCORED_SCHEMA.items() if k != "split"})
    groups = pairs["group_id"].to_list()
    sizes = {g: groups.count(g) for g in set(groups)}
    assignment = split_groups(groups, sizes, split or SplitConfig())
    pairs = pairs.with_columns(split=pl.Series([assignment[g] for g in groups], dtype=pl.String))
    write_split_files(pairs.select(list(SCORED_SCHEMA)), Path(out))
    return {s: int((pairs["split"] == s).sum()) for s in ("train", "validation", "test")}
