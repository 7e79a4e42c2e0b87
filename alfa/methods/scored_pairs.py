"""Pairs that a method scored itself (UoT's expected reward, CollabLLM's multiturn-aware reward) or ranked by rule
(flawed problems), written in alfa's pairs schema with their scores (`chosen_score`, `rejected_score`), split by
group so no case or conversation lands in two splits, with a manifest (`pairs.json`, its keys documented in
alfa.data.method_card) and a dataset card. `alfa lint`, `alfa card`, `alfa review push` and `alfa train` read the
dir like any other."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import polars as pl

from alfa.data.method_card import write_method_card
from alfa.data.pairs import PAIR_SCHEMA, SplitConfig, split_groups, write_split_files

SCORED_SCHEMA = {**PAIR_SCHEMA, "chosen_score": pl.Float64, "rejected_score": pl.Float64}
MANIFEST_KEYS = ("method", "made_by", "description", "attribute_definitions", "roles", "settings", "source")


def write_scored_pairs(rows: list[dict], out: Path, manifest: dict, split: SplitConfig | None = None) -> dict[str, int]:
    """OUT/data/{train,validation,test}.parquet from `rows` (every schema field but `split`), OUT/pairs.json from
    `manifest` (MANIFEST_KEYS) and OUT/README.md (the card, licence `other` until `alfa card --license` names
    the source's); returns the split sizes."""
    missing = [k for k in MANIFEST_KEYS if k not in manifest]
    if missing:
        raise ValueError(f"pairs manifest lacks {missing}")
    split = split or SplitConfig()
    out = Path(out)
    pairs = pl.DataFrame(rows, schema={k: v for k, v in SCORED_SCHEMA.items() if k != "split"})
    groups = pairs["group_id"].to_list()
    sizes = {g: groups.count(g) for g in set(groups)}
    assignment = split_groups(groups, sizes, split)
    pairs = pairs.with_columns(split=pl.Series([assignment[g] for g in groups], dtype=pl.String))
    write_split_files(pairs.select(list(SCORED_SCHEMA)), out)
    splits = {s: int((pairs["split"] == s).sum()) for s in ("train", "validation", "test")}
    (out / "pairs.json").write_text(json.dumps({**manifest, "split": asdict(split), "splits": splits}, indent=2))
    write_method_card(out, license="other")
    return splits
