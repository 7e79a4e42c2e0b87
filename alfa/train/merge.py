"""Stage 9, merge: per-attribute policies (or reward models) -> one model, through mergekit, or
per-attribute LoRA adapters -> one adapter, through peft.

`alfa merge MERGE.yaml` maps onto `MergeRecipe`:

    method: linear                 # full models (mergekit): linear (uniform average: the ALFA paper),
                                   #   task_arithmetic, ties, dare_ties, model_stock
                                   # LoRA adapters (peft add_weighted_adapter): lora_cat, lora_linear,
                                   #   lora_svd, lora_ties, lora_dare_ties, lora_dare_linear
    models: [runs/train/dpo-clarity, runs/train/dpo-specificity]   # model folders, or adapter folders for lora_*
    base_model: runs/train/sft     # required by task_arithmetic, ties, dare_ties, model_stock; for lora_*:
                                   #   optional, where to load the adapters' base from (default: as recorded)
    weights: null                  # default: uniform. linear: must sum to 1 (an average), or set normalize
    normalize: false               # linear only: rescale the weights to sum to 1
    density: 0.5                   # ties / dare_ties (and lora_ties, lora_dare_*): share of each task vector kept
    output_dir: runs/merged/uniform
    leave_one_out: false           # also OUTPUT_DIR/without-<model> for every model: linear averages the rest
                                   #   (their weights rescaled to sum to 1); task-vector methods keep each
                                   #   model's weight as given, so a task vector keeps its scale

Model paths are resolved before mergekit reads them: a relative local folder such as runs/train/dpo-clarity
would otherwise look like a Hub repo id to it, and a merge of local folders never reaches the network.

Before anything loads, the inputs are checked against each other. Full models: model type, every
tensor's name and shape (safetensors headers), and the tokenizer vocabulary. Adapters: LoRA, the same
base model, the same target modules, no `modules_to_save` (peft cannot merge full module copies such
as a reward head), and the same rank for the methods that need it. A mismatch names the two inputs
and the first difference.

LoRA combination types (peft's semantics, for weights w_i and each adapter's delta dW_i = s_i B_i A_i):
`lora_cat` stacks the scaled factors, so the merged delta is exactly sum w_i dW_i (rank = sum of ranks);
`lora_svd` computes that sum and truncates it to the largest input rank; `lora_linear` averages A and B
separately (sqrt(w_i s_i) on each), which is cheap but not the weighted sum of deltas; `lora_ties` and
`lora_dare_*` apply TIES / DARE to A and B separately. The output is a peft adapter folder
(adapter_config.json + adapter_model.safetensors) for the same base model.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from alfa.yamlconfig import from_dict, load_yaml

log = logging.getLogger(__name__)

MERGEKIT_METHODS = ("linear", "task_arithmetic", "ties", "dare_ties", "model_stock")
NEEDS_BASE = {"task_arithmetic", "ties", "dare_ties", "model_stock"}
# peft's add_weighted_adapter combination types, prefixed so one `method` key says what is merged
LORA_METHODS = ("lora_cat", "lora_linear", "lora_svd", "lora_ties", "lora_dare_ties", "lora_dare_linear")
LORA_SAME_RANK = {"lora_linear", "lora_ties", "lora_dare_ties", "lora_dare_linear"}  # peft merges A, B directly
LORA_DENSITY = {"lora_ties", "lora_dare_ties", "lora_dare_linear"}
METHODS = MERGEKIT_METHODS + LORA_METHODS


@dataclass
class MergeRecipe:
    method: str
    models: list[str]
    output_dir: str
    base_model: str | None = None
    weights: list[float] | None = None
    density: float = 0.5
    leave_one_out: bool = False
    normalize: bool = False

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if len(self.models) < 2:
            raise ValueError("models needs at least two model folders to merge")
        if self.method in NEEDS_BASE and not self.base_model:
            raise ValueError(f"method {self.method!r} needs base_model (the model the others were trained from)")
        if self.weights is not None and len(self.weights) != len(self.models):
            raise ValueError(f"weights has {len(self.weights)} entries for {len(self.models)} models")
        if self.normalize and self.method != "linear":
            raise ValueError(f"normalize is for method linear; {self.method} takes its weights as given")
        if self.method == "linear" and self.weights is not None and not self.normalize:
            total = sum(self.weights)
            if abs(total - 1.0) > 1e-6:
                raise ValueError(
                    f"weights sum to {total:g}: linear adds the models scaled by their weights, so the merge "
                    f"would be {total:g}x a model; give weights that sum to 1, or set normalize: true"
                )
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


def _adapter_config(d: Path, method: str) -> dict:
    f = d / "adapter_config.json"
    if not f.exists():
        raise ValueError(
            f"{d}: no adapter_config.json, but method {method} merges peft LoRA adapters (trained with "
            f"launch.lora); to merge full models use one of {', '.join(MERGEKIT_METHODS)}"
        )
    return json.loads(f.read_text())


def _same_path(a: str | None, b: str | None) -> bool:
    if a == b or not a or not b:
        return a == b
    return Path(a).exists() and Path(b).exists() and Path(a).resolve() == Path(b).resolve()


def check_lora_compatible(adapter_dirs: list[Path], method: str) -> str:
    """Raise ValueError naming the first difference that makes these adapters unmergeable with `method`;
    return the base model they were trained on (adapter_config.json's base_model_name_or_path)."""
    configs = [_adapter_config(d, method) for d in adapter_dirs]
    for d, c in zip(adapter_dirs, configs):
        if c.get("peft_type") != "LORA":
            raise ValueError(f"{d}: a {c.get('peft_type')} adapter; {method} merges LoRA adapters only")
        if c.get("modules_to_save"):
            raise ValueError(
                f"{d}: the adapter keeps full copies of {c['modules_to_save']} (modules_to_save, e.g. a "
                "reward model's head), which peft's add_weighted_adapter cannot merge; merge_and_unload "
                "each adapter and merge the full models with method: linear instead"
            )
        if c.get("task_type") != "CAUSAL_LM":
            raise ValueError(f"{d}: task_type {c.get('task_type')}; LoRA merging here is for CAUSAL_LM policies")
    ref, ref_cfg = adapter_dirs[0], configs[0]

    def targets(c):
        t = c.get("target_modules")
        return sorted(t) if isinstance(t, list) else t

    for d, c in zip(adapter_dirs[1:], configs[1:]):
        if not _same_path(c.get("base_model_name_or_path"), ref_cfg.get("base_model_name_or_path")):
            raise ValueError(
                f"{ref} and {d} were trained on different base models: "
                f"{ref_cfg.get('base_model_name_or_path')} vs {c.get('base_model_name_or_path')}"
            )
        if targets(c) != targets(ref_cfg):
            raise ValueError(f"{ref} and {d} adapt different modules: {targets(ref_cfg)} vs {targets(c)}")
        ranks = (ref_cfg.get("r"), c.get("r"))
        if method in LORA_SAME_RANK and (ranks[0] != ranks[1] or c.get("rank_pattern") or ref_cfg.get("rank_pattern")):
            raise ValueError(
                f"{ref} and {d} have LoRA ranks {ranks[0]} and {ranks[1]} (or a rank_pattern): {method} "
                "needs one rank for all; use lora_cat or lora_svd, which take different ranks"
            )
    return ref_cfg["base_model_name_or_path"]


def merge_lora_adapters(recipe: MergeRecipe, adapters: list[str], weights: list[float], base: str, out: Path) -> dict:
    """peft's add_weighted_adapter over the adapters, saved as one adapter folder. Returns what was done."""
    import torch
    from peft import PeftModel, get_peft_model_state_dict
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    names = [f"adapter{i}" for i in range(len(adapters))]
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), adapters[0], adapter_name=names[0]
    )
    for name, adapter in zip(names[1:], adapters[1:]):
        model.load_adapter(adapter, adapter_name=name)
    combination = recipe.method.removeprefix("lora_")
    density = {"density": recipe.density} if recipe.method in LORA_DENSITY else {}
    torch.manual_seed(0)  # DARE drops entries at random: the same YAML gives the same merge
    model.add_weighted_adapter(names, weights, "merged", combination_type=combination, **density)
    out.mkdir(parents=True, exist_ok=True)
    config = model.peft_config["merged"]
    config.base_model_name_or_path = base
    config.save_pretrained(out)
    # lora_svd leaves transposed views (non-contiguous), which safetensors refuses to save
    state = {k: v.contiguous() for k, v in get_peft_model_state_dict(model, adapter_name="merged").items()}
    save_file(state, out / "adapter_model.safetensors")
    if (Path(adapters[0]) / "tokenizer_config.json").exists():
        AutoTokenizer.from_pretrained(adapters[0]).save_pretrained(out)
    return {
        "peft_add_weighted_adapter": {
            "combination_type": combination,
            "adapters": adapters,
            "weights": weights,
            "base_model": base,
            "merged_rank": config.r,
            **density,
        }
    }


def mergekit_config(recipe: MergeRecipe, models: list[str], weights: list[float]) -> dict:
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
        config["base_model"] = local(recipe.base_model)
    if recipe.method == "linear":
        config["parameters"] = {"normalize": False}
    return config


def local(path: str) -> str:
    """An existing local folder as an absolute path, `~` expanded as in a recipe's model (mergekit takes a relative
    one for a Hub repo id)."""
    folder = Path(path).expanduser()
    return str(folder.resolve()) if folder.exists() else path


def merge_jobs(recipe: MergeRecipe) -> list[tuple[Path, list[str], list[float]]]:
    """(output folder, models, weights) of the merge and of each leave-one-out merge, paths resolved."""
    models = [local(m) for m in recipe.models]
    weights = recipe.weights or [1.0 / len(models)] * len(models)
    if recipe.method == "linear":  # an average: of all the models, and of the rest in each leave-one-out
        weights = [w / sum(weights) for w in weights]
    jobs = [(Path(recipe.output_dir), models, weights)]
    for i, name in enumerate(recipe.models if recipe.leave_one_out else []):
        rest, kept = models[:i] + models[i + 1 :], weights[:i] + weights[i + 1 :]
        if recipe.method == "linear":
            kept = [w / sum(kept) for w in kept]
        jobs.append((Path(recipe.output_dir) / f"without-{Path(name).name}", rest, kept))
    return jobs


def run_merge_recipe(recipe: MergeRecipe) -> list[Path]:
    """Check, then merge (and leave-one-out merges). Returns the output folders."""
    lora = recipe.method in LORA_METHODS
    if lora:
        recorded = check_lora_compatible([Path(m) for m in recipe.models], recipe.method)
        base = local(recipe.base_model or recorded)  # base_model: where the recorded base lives now, if it moved
        if not base:
            raise ValueError(f"{recipe.models[0]}: adapter_config.json records no base model; set base_model")
    else:
        check_compatible([Path(m) for m in recipe.models] + ([Path(recipe.base_model)] if recipe.base_model else []))
    jobs = merge_jobs(recipe)
    outputs = []
    for out, models, weights in jobs:
        log.info("merge %s of %d models -> %s", recipe.method, len(models), out)
        if lora:
            record = merge_lora_adapters(recipe, models, weights, base, out)
        else:
            record = _mergekit(recipe, models, weights, out)
        (out / "alfa_merge.json").write_text(json.dumps(record, indent=2))
        outputs.append(out)
    return outputs


def _mergekit(recipe: MergeRecipe, models: list[str], weights: list[float], out: Path) -> dict:
    from mergekit.config import MergeConfiguration
    from mergekit.merge import MergeOptions, run_merge

    config = mergekit_config(recipe, models, weights)
    options = MergeOptions(cuda=False, copy_tokenizer=True, lazy_unpickle=False, quiet=True)
    run_merge(MergeConfiguration.model_validate(config), str(out), options=options)
    return {"mergekit_config": config}
