"""Stage 9, merge: per-attribute policies (or reward models) -> one model, through mergekit.

`alfa merge MERGE.yaml` maps onto `MergeRecipe`:

    method: linear                 # linear (uniform average: the ALFA paper), task_arithmetic, ties, dare_ties, model_stock
    models: [runs/train/dpo-clarity, runs/train/dpo-specificity]
    base_model: runs/train/sft     # required by task_arithmetic, ties, dare_ties, model_stock
    weights: null                  # default: uniform
    density: 0.5                   # ties / dare_ties: share of each task vector kept
    output_dir: runs/merged/uniform
    leave_one_out: false           # also OUTPUT_DIR/without-<model> for every model

Before mergekit runs, the models are checked against each other without loading weights: model type,
every tensor's name and shape (safetensors headers), and the tokenizer vocabulary. A mismatch names
the two models and the first difference.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from alfa.yamlconfig import from_dict, load_yaml

log = logging.getLogger(__name__)

METHODS = ("linear", "task_arithmetic", "ties", "dare_ties", "model_stock")
NEEDS_BASE = {"task_arithmetic", "ties", "dare_ties", "model_stock"}


@dataclass
class MergeRecipe:
    method: str
    models: list[str]
    output_dir: str
    base_model: str | None = None
    weights: list[float] | None = None
    density: float = 0.5
    leave_one_out: bool = False

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if len(self.models) < 2:
            raise ValueError("models needs at least two model folders to merge")
        if self.method in NEEDS_BASE and not self.base_model:
            raise ValueError(f"method {self.method!r} needs base_model (the model the others were trained from)")
        if self.weights is not None and len(self.weights) != len(self.models):
            raise ValueError(f"weights has {len(self.weights)} entries for {len(self.models)} models")
        if self.leave_one_out and len(self.models) < 3:
            raise ValueError("leave_one_out needs at least three models (each merge keeps two or more)")


def load_merge_recipe(path: Path) -> MergeRecipe:
    data, lines = load_yaml(path)
    return from_dict(MergeRecipe, data, Path(path), lines)


def _tensor_shapes(model_dir: Path) -> dict[str, tuple]:
    from safetensors import safe_open

    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise ValueError(f"{model_dir}: no .safetensors weights (save the model with safe_serialization)")
    shapes = {}
    for f in files:
        with safe_open(str(f), framework="pt") as st:
            for k in st.keys():
                shapes[k] = tuple(st.get_slice(k).get_shape())
    return shapes


def check_compatible(model_dirs: list[Path]) -> None:
    """Raise ValueError naming the first difference that makes these models unmergeable."""
    from transformers import AutoTokenizer

    ref = model_dirs[0]
    for d in model_dirs:
        if not (d / "config.json").exists():
            raise ValueError(f"{d}: not a model folder (no config.json)")
    ref_cfg = json.loads((ref / "config.json").read_text())
    ref_shapes = _tensor_shapes(ref)
    ref_vocab = AutoTokenizer.from_pretrained(ref).get_vocab()
    for d in model_dirs[1:]:
        cfg = json.loads((d / "config.json").read_text())
        for key in ("model_type", "architectures"):
            if cfg.get(key) != ref_cfg.get(key):
                raise ValueError(f"{ref} and {d} differ in {key}: {ref_cfg.get(key)} vs {cfg.get(key)}")
        shapes = _tensor_shapes(d)
        if set(shapes) != set(ref_shapes):
            only = sorted(set(shapes) ^ set(ref_shapes))[:3]
            raise ValueError(f"{ref} and {d} have different tensors, e.g. {only}")
        for k, s in ref_shapes.items():
            if shapes[k] != s:
                raise ValueError(f"{ref} and {d} differ in the shape of {k}: {s} vs {shapes[k]}")
        if AutoTokenizer.from_pretrained(d).get_vocab() != ref_vocab:
            raise ValueError(f"{ref} and {d} have different tokenizer vocabularies: merging would mix token ids")


def mergekit_config(recipe: MergeRecipe, models: list[str], weights: list[float] | None) -> dict:
    weights = weights or [1.0 / len(models)] * len(models)
    entries = []
    for m, w in zip(models, weights):
        params = {"weight": w}
        if recipe.method in ("ties", "dare_ties"):
            params["density"] = recipe.density
        entries.append({"model": m, "parameters": params})
    config = {"merge_method": recipe.method, "models": entries, "dtype": "float32"}
    if recipe.method == "model_stock":
        config["models"] = [{"model": m} for m in models]
    if recipe.base_model:
        config["base_model"] = recipe.base_model
    if recipe.method == "linear":
        config["parameters"] = {"normalize": False}
    return config


def run_merge_recipe(recipe: MergeRecipe) -> list[Path]:
    """Check, then merge (and leave-one-out merges). Returns the output folders."""
    from mergekit.config import MergeConfiguration
    from mergekit.merge import MergeOptions, run_merge

    dirs = [Path(m) for m in recipe.models] + ([Path(recipe.base_model)] if recipe.base_model else [])
    check_compatible(dirs)
    jobs = [(Path(recipe.output_dir), recipe.models, recipe.weights)]
    if recipe.leave_one_out:
        for i, m in enumerate(recipe.models):
            rest = recipe.models[:i] + recipe.models[i + 1:]
            w = None
            if recipe.weights:
                kept = recipe.weights[:i] + recipe.weights[i + 1:]
                w = [x / sum(kept) for x in kept]
            jobs.append((Path(recipe.output_dir) / f"without-{Path(m).name}", rest, w))
    options = MergeOptions(cuda=False, copy_tokenizer=True, lazy_unpickle=False, quiet=True)
    outputs = []
    for out, models, weights in jobs:
        config = mergekit_config(recipe, models, weights)
        log.info("merge %s of %d models -> %s", recipe.method, len(models), out)
        run_merge(MergeConfiguration.model_validate(config), str(out), options=options)
        (out / "alfa_merge.json").write_text(json.dumps({"mergekit_config": config}, indent=2))
        outputs.append(out)
    return outputs
