"""The reference log-prob store (DPO): per-attribute and mixed DPO runs from the same starting model need
the same reference log-probs for the same pairs. TRL caches them per dataset fingerprint, so every subset
recomputes them. `RefLogpStore` keeps them once per (reference model hash, pair_id) in a SQLite file shared
by all runs: the first run fills it for every pair of the pairs dir in one pass, every later run from the
same model only reads.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import polars as pl

from alfa.train.recipe import Recipe


class RefLogpStore:
    """SQLite: (reference model hash, pair_id) -> (ref_chosen_logps, ref_rejected_logps)."""

    def __init__(self, path: Path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, timeout=60, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS ref_logps (model TEXT, pair_id TEXT, chosen REAL, rejected REAL, "
                        "PRIMARY KEY (model, pair_id))")

    def get(self, model_hash: str, pair_ids: list[str]) -> dict[str, tuple[float, float]]:
        out = {}
        for i in range(0, len(pair_ids), 500):
            chunk = pair_ids[i : i + 500]
            q = f"SELECT pair_id, chosen, rejected FROM ref_logps WHERE model = ? AND pair_id IN ({','.join('?' * len(chunk))})"
            out.update({p: (c, r) for p, c, r in self.db.execute(q, [model_hash, *chunk])})
        return out

    def put(self, model_hash: str, rows: list[tuple[str, float, float]]) -> None:
        self.db.execute("BEGIN")
        self.db.executemany("INSERT OR REPLACE INTO ref_logps VALUES (?, ?, ?, ?)", [(model_hash, *r) for r in rows])
        self.db.execute("COMMIT")

    def close(self):
        self.db.close()


def stored_ref_dpo_trainer():
    from trl import DPOTrainer

    class StoredRefDPOTrainer(DPOTrainer):
        """TRL's DPOTrainer, except that a dataset which already carries reference log-probs (from the
        shared store) is used as is instead of being recomputed."""

        def _precompute_ref_logps(self, dataset, name, batch_size):
            if "ref_chosen_logps" in dataset.column_names:
                return dataset
            return super()._precompute_ref_logps(dataset, name, batch_size)

    return StoredRefDPOTrainer


def all_pairs(recipe: Recipe):
    """Every pair of the pairs dir (all splits, attributes and pair types) as one Dataset."""
    import datasets

    d = Path(recipe.data.pairs_dir) / "data"
    df = pl.concat([pl.read_parquet(f) for f in sorted(d.glob("*.parquet"))])
    return datasets.Dataset.from_dict({c: df[c].to_list() for c in ("pair_id", "prompt", "chosen", "rejected")})


def attach_ref_logps(store: RefLogpStore, model, tokenizer, config, recipe: Recipe, datasets_by_split: dict) -> dict:
    """Add ref_chosen_logps/ref_rejected_logps to each dataset from the store. The first run that
    uses a store fills it for *every* pair of the pairs dir in one pass (with TRL's own code), so the
    later per-attribute and mixed runs from the same model only read. Returns {"cached", "computed"}."""
    from trl.trainer.utils import hash_module

    model_hash = hash_module(model)
    everything = all_pairs(recipe)
    have = store.get(model_hash, everything["pair_id"])
    missing = [i for i, p in enumerate(everything["pair_id"]) if p not in have]
    if missing:
        sub = everything.select(missing)
        probe_args = dataclasses.replace(config, precompute_ref_log_probs=True, report_to=[],
                                         output_dir=str(Path(config.output_dir) / "ref-precompute"))
        probe = stored_ref_dpo_trainer()(model=model, args=probe_args, train_dataset=sub.remove_columns("pair_id"),
                                     processing_class=tokenizer)
        computed = probe.train_dataset
        store.put(model_hash, list(zip(sub["pair_id"], computed["ref_chosen_logps"], computed["ref_rejected_logps"])))
        have = store.get(model_hash, everything["pair_id"])
        del probe
    used = 0
    for split, ds in datasets_by_split.items():
        ids = ds["pair_id"]
        used += len(ids)
        datasets_by_split[split] = ds.add_column("ref_chosen_logps", [have[p][0] for p in ids]).add_column(
            "ref_rejected_logps", [have[p][1] for p in ids])
    return {"cached": len(everything) - len(missing), "computed": len(missing), "used": used}
