"""The reference log-prob store (DPO): per-attribute and mixed DPO runs from the same starting model need
the same reference log-probs for the same pairs. TRL caches them per dataset fingerprint, so every subset
recomputes them. `RefLogpStore` keeps them in a SQLite file shared by all runs: the first run fills it for
every pair of the pairs dir in one pass, every later run from the same model only reads.

A stored value is keyed on everything that decides it, and on nothing that does not: the reference weights'
content digest (read from disk, so every rank of a ZeRO-3 run computes the same one), and per pair the token
ids TRL actually scores (prompt + chosen, prompt + rejected, after its chat template and tokenizer) with every
setting that changes the value: truncation, the tokenizer's identity, TRL's `ld_alpha` (which down-weights the
longer completion's tail) and the precision the reference runs in (its dtype and any mixed-precision autocast).
A pair flipped by a review, retokenized by another tokenizer, cut at another max_length or scored in bfloat16
is another entry; a pair_id alone would hand it its mirror's values.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sqlite3
from pathlib import Path

import polars as pl

from alfa.llm.backends import tokenizer_digest
from alfa.train.recipe import Recipe


class RefLogpStore:
    """SQLite: (reference weights digest, scored-input key) -> (ref_chosen_logps, ref_rejected_logps)."""

    def __init__(self, path: Path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, timeout=60, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS ref_logps_v2 (model TEXT, input TEXT, chosen REAL, rejected REAL, "
            "PRIMARY KEY (model, input))"
        )

    def get(self, model_digest: str, keys: list[str]) -> dict[str, tuple[float, float]]:
        out = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            q = (
                f"SELECT input, chosen, rejected FROM ref_logps_v2 WHERE model = ? AND input IN "
                f"({','.join('?' * len(chunk))})"
            )
            out.update({k: (c, r) for k, c, r in self.db.execute(q, [model_digest, *chunk])})
        return out

    def put(self, model_digest: str, rows: list[tuple[str, float, float]]) -> None:
        self.db.execute("BEGIN")
        self.db.executemany(
            "INSERT OR REPLACE INTO ref_logps_v2 VALUES (?, ?, ?, ?)", [(model_digest, *r) for r in rows]
        )
        self.db.execute("COMMIT")

    def close(self):
        self.db.close()


def input_key(example: dict, scoring: dict) -> str:
    """Key of one tokenized pair as TRL's DPO collator scores it, under `scoring` (see `scoring_settings`)."""
    payload = json.dumps(
        [example["prompt_ids"] + example["chosen_ids"], example["prompt_ids"] + example["rejected_ids"], scoring],
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def scoring_settings(trainer) -> dict:
    """Everything besides the weights and the token ids that changes a stored reference log-prob."""
    reference = trainer.ref_model or trainer.model
    return {
        "max_length": trainer.args.max_length,
        "truncation_mode": trainer.args.truncation_mode,
        "tokenizer": tokenizer_digest(trainer.processing_class),
        "ld_alpha": trainer.args.ld_alpha,
        "dtype": str(reference.dtype),
        "mixed_precision": trainer.accelerator.mixed_precision,
    }


# The private TRL method the store hooks, with the signature it was written against (TRL 1.16). A TRL that
# renames or reshapes it would otherwise switch the store off without a word: check_trl_hook refuses it.
TRL_HOOK = ("_precompute_ref_logps", ["self", "dataset", "name", "batch_size"])


def check_trl_hook(trainer_class) -> None:
    import inspect

    import trl

    name, params = TRL_HOOK
    method = inspect.getattr_static(trainer_class, name, None)
    found = list(inspect.signature(method).parameters) if method is not None else None
    if found != params:
        raise RuntimeError(
            f"the installed TRL {trl.__version__} has {'no ' if found is None else ''}"
            f"DPOTrainer.{name}{'' if found is None else '(' + ', '.join(found) + ')'}; alfa's "
            f"reference store hooks {name}({', '.join(params)}), as in TRL 1.16: install the TRL "
            "range pyproject.toml pins (`pip install -e '.[train]'`), or train without --ref-store"
        )


def stored_ref_dpo_trainer():
    from trl import DPOTrainer

    check_trl_hook(DPOTrainer)

    class StoredRefDPOTrainer(DPOTrainer):
        """TRL's DPOTrainer whose reference log-prob precompute reads the shared store first and computes,
        with TRL's own code, only the pairs the store does not hold yet (then stores them)."""

        def __init__(self, *args, ref_store: RefLogpStore | None = None, ref_model_digest: str | None = None, **kwargs):
            self.ref_store, self.ref_model_digest = ref_store, ref_model_digest
            self.ref_counts = {"cached": 0, "computed": 0, "used": 0}
            super().__init__(*args, **kwargs)  # TRL tokenizes, then calls _precompute_ref_logps

        def _precompute_ref_logps(self, dataset, name, batch_size):
            if self.ref_store is None:
                return super()._precompute_ref_logps(dataset, name, batch_size)
            scoring = scoring_settings(self)
            keys = [
                input_key(ex, scoring) for ex in dataset.select_columns(["prompt_ids", "chosen_ids", "rejected_ids"])
            ]
            have = self.ref_store.get(self.ref_model_digest, keys)
            missing = [i for i, k in enumerate(keys) if k not in have]
            if missing:
                computed = super()._precompute_ref_logps(dataset.select(missing), name, batch_size)
                rows = list(
                    zip([keys[i] for i in missing], computed["ref_chosen_logps"], computed["ref_rejected_logps"])
                )
                if self.accelerator.is_main_process:
                    self.ref_store.put(self.ref_model_digest, rows)
                have.update({k: (c, r) for k, c, r in rows})
            self.ref_counts["cached"] += len(keys) - len(missing)
            self.ref_counts["computed"] += len(missing)
            self.ref_counts["used"] += len(keys)
            return dataset.add_column("ref_chosen_logps", [have[k][0] for k in keys]).add_column(
                "ref_rejected_logps", [have[k][1] for k in keys]
            )

    return StoredRefDPOTrainer


def all_pairs(recipe: Recipe):
    """Every pair of the pairs dir (all splits, attributes and pair types) as one Dataset."""
    import datasets

    d = Path(recipe.data.pairs_dir) / "data"
    df = pl.concat([pl.read_parquet(f) for f in sorted(d.glob("*.parquet"))], how="diagonal_relaxed")
    return datasets.Dataset.from_dict({c: df[c].to_list() for c in ("prompt", "chosen", "rejected")})


def fill_store(store: RefLogpStore, model_digest: str, model, tokenizer, config, recipe: Recipe) -> dict:
    """Make sure the store holds every pair of the pairs dir (so later per-attribute and mixed runs from the same
    model only read): one pass of TRL's own precompute over the pairs it does not hold yet."""
    probe_args = dataclasses.replace(
        config, precompute_ref_log_probs=True, report_to=[], output_dir=str(Path(config.output_dir) / "ref-precompute")
    )
    probe = stored_ref_dpo_trainer()(
        model=model,
        args=probe_args,
        train_dataset=all_pairs(recipe),
        processing_class=tokenizer,
        ref_store=store,
        ref_model_digest=model_digest,
    )
    counts = dict(probe.ref_counts)
    del probe
    return {"cached": counts["cached"], "computed": counts["computed"]}


def reference_digest(model_path: str | Path) -> str:
    """The reference model's identity: its weights' content digest, the same on every rank."""
    from alfa.llm.backends import weights_digest

    return weights_digest(Path(model_path)) if os.path.isdir(model_path) else str(model_path)
