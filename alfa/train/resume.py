"""Resuming `alfa train`: a checkpoint in output_dir is continued only when the same recipe on the same data
made it. `alfa_recipe.json` beside the checkpoints records both identities; anything else stops the run before
the model loads, naming --resume (continue anyway) and --overwrite (delete the checkpoints, start over)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

from alfa.data.pairs import data_digest
from alfa.train.recipe import Recipe


def recipe_hash(recipe: Recipe) -> str:
    """Identity of what a recipe trains (its resolved values, not its comments or layout)."""
    return hashlib.sha256(json.dumps(dataclasses.asdict(recipe), sort_keys=True, default=str).encode()).hexdigest()[:16]


def checkpoint_to_resume(
    recipe: Recipe, recipe_path: Path, output_dir: str, resume: bool, overwrite: bool, main_process: bool = True
) -> str | None:
    """The newest checkpoint in output_dir, only if the same recipe made it from the same data (the bytes of
    DATA_DIR/data/*.parquet: a rebuilt pairs dir at the same path is other data)."""
    from transformers.trainer_utils import get_last_checkpoint

    out = Path(output_dir)
    stamp = out / "alfa_recipe.json"
    wanted = {"recipe_hash": recipe_hash(recipe), "data_digest": data_digest(recipe.data_dir)}
    last = get_last_checkpoint(str(out)) if out.is_dir() else None
    if last and overwrite:
        if main_process:
            for old in out.glob("checkpoint-*"):
                shutil.rmtree(old)
        last = None
    if last and not resume:
        made_by = json.loads(stamp.read_text()) if stamp.exists() else {}
        differ = [k for k in wanted if made_by.get(k) != wanted[k]]
        if differ:
            what = {"recipe_hash": "another recipe", "data_digest": f"other data than {recipe.data_dir} holds now"}
            raise ValueError(
                f"{output_dir} holds {Path(last).name} from "
                + (" and ".join(what[k] for k in differ) if made_by else "a run that recorded no recipe")
                + f" ({', '.join(f'{k} {made_by.get(k)} there, {wanted[k]} now' for k in differ)}): "
                f"`alfa train {recipe_path} --overwrite` deletes its checkpoints and starts over, "
                "`--resume` continues from it anyway"
            )
    if main_process:
        out.mkdir(parents=True, exist_ok=True)
        stamp.write_text(json.dumps({**wanted, "recipe": str(recipe_path)}, indent=2))
    return last
