"""`alfa train RECIPE --dry-run`: every pre-flight check of a recipe, before any model loads or any GPU is
touched (batch arithmetic, the model folder and its loading options, DeepSpeed with "auto" resolved, the data
and its selection, the logger, the chat template), then the exact launch command."""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from alfa.train.model_options import option_checks
from alfa.train.recipe import (
    AVAILABILITY_CHECK,
    PIP_PACKAGE,
    Recipe,
    empty_eval_message,
    is_secret_override,
    load_recipe,
    redact_mapping,
    redact_override,
    trl_value,
)


@dataclass
class Check:
    name: str
    ok: bool
    message: str


def _batch(recipe: Recipe) -> tuple[int, int, int, int]:
    world = recipe.launch.num_processes * recipe.launch.num_machines
    micro = int(trl_value(recipe, "per_device_train_batch_size"))
    accum = int(trl_value(recipe, "gradient_accumulation_steps"))
    return world, micro, accum, world * micro * accum


def resolve_deepspeed(recipe: Recipe, ds: dict, hidden_size: int | None) -> dict:
    """Fill DeepSpeed's "auto" values the way the HF integration does at launch."""
    world, micro, accum, global_batch = _batch(recipe)
    out = json.loads(json.dumps(ds))
    top = {
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": accum,
        "train_batch_size": global_batch,
        "gradient_clipping": float(trl_value(recipe, "max_grad_norm")),
    }
    for k, v in top.items():
        if out.get(k) == "auto":
            out[k] = v
    for k, flag in (("bf16", "bf16"), ("fp16", "fp16")):
        if isinstance(out.get(k), dict) and out[k].get("enabled") == "auto":
            out[k]["enabled"] = bool(trl_value(recipe, flag))
    zero = out.get("zero_optimization", {})
    h = hidden_size or 1024
    sizes = {
        "reduce_bucket_size": h * h,
        "stage3_prefetch_bucket_size": int(0.9 * h * h),
        "stage3_param_persistence_threshold": 10 * h,
    }
    for k, v in sizes.items():
        if zero.get(k) == "auto":
            zero[k] = v
    for section in ("optimizer", "scheduler"):
        params = out.get(section, {}).get("params", {})
        for k, v in list(params.items()):
            if v == "auto":
                params[k] = {
                    "lr": float(trl_value(recipe, "learning_rate")),
                    "weight_decay": float(trl_value(recipe, "weight_decay")),
                }.get(k, 0.0)
    return out


# DeepSpeed's top-level config sections (its config documentation); scalar keys come from its
# constants module below. DeepSpeed itself ignores any other top-level key without a word.
DEEPSPEED_SECTIONS = {
    "zero_optimization",
    "bf16",
    "fp16",
    "amp",
    "optimizer",
    "scheduler",
    "activation_checkpointing",
    "flops_profiler",
    "tensorboard",
    "wandb",
    "csv_monitor",
    "comet",
    "aio",
    "checkpoint",
    "compression_training",
    "autotuning",
    "data_efficiency",
    "curriculum_learning",
    "elasticity",
    "nebula",
    "weight_quantization",
    "hybrid_engine",
    "compile",
    "timers",
    "torch_autocast",
    "pipeline",
}


def deepspeed_top_level_keys() -> set[str]:
    from deepspeed.runtime import constants

    return DEEPSPEED_SECTIONS | {v for k, v in vars(constants).items() if k.isupper() and isinstance(v, str)}


def check_recipe(recipe: Recipe) -> list[Check]:
    """Every pre-flight check; loads no model weights."""
    checks: list[Check] = []
    world, micro, accum, global_batch = _batch(recipe)
    if recipe.global_batch_size is not None:
        ok = recipe.global_batch_size == global_batch
        checks.append(
            Check(
                "global_batch",
                ok,
                f"{world} processes x {micro} per device x {accum} accumulation = "
                f"{global_batch}"
                + (
                    ""
                    if ok
                    else f", but global_batch_size is {recipe.global_batch_size}: "
                    "change per_device_train_batch_size or gradient_accumulation_steps"
                ),
            )
        )
    else:
        checks.append(Check("global_batch", True, f"{world} x {micro} x {accum} = {global_batch}"))

    hidden = None
    model_dir = Path(recipe.model.name_or_path)
    if (model_dir / "config.json").exists():
        cfg = json.loads((model_dir / "config.json").read_text())
        hidden = cfg.get("hidden_size") or cfg.get("d_model")
        checks.append(Check("model", True, f"{model_dir} ({cfg.get('model_type', '?')}, hidden {hidden})"))
    else:
        make = recipe.model.built_by or "alfa models export GGUF -o DIR"  # a folder TRL trains, from a GGUF
        checks.append(Check("model", False, f"{model_dir}: no config.json: make the model folder with `{make}`"))

    checks += [Check(*c) for c in option_checks(recipe.model, recipe.launch.lora is not None)]
    if recipe.launch.deepspeed:
        checks.append(_check_deepspeed(recipe, Path(recipe.launch.deepspeed), hidden))

    if recipe.stage == "grpo":
        checks += _check_grpo(recipe, global_batch)
    else:
        checks.append(_check_data(recipe))
    checks.append(_check_report_to(recipe))

    tok_path = recipe.model.tokenizer or recipe.model.name_or_path
    if not Path(tok_path).is_dir():
        # Not a local folder: transformers would take it for a hub id and retry the network for a minute.
        checks.append(Check("chat_template", False, f"tokenizer {tok_path}: no such local folder"))
        return checks
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(tok_path)
        if tok.chat_template is not None and recipe.data.dialogues_dir is not None:
            checks.append(_check_training_template(tok, tok_path))
        elif tok.chat_template is not None:
            checks.append(Check("chat_template", True, f"tokenizer {tok_path} has a chat template"))
        elif recipe.stage == "reward":
            # An encoder reward model (MiniLM/BERT) reads (context, question) as a text pair instead.
            checks.append(
                Check(
                    "chat_template",
                    True,
                    f"tokenizer {tok_path} has no chat template: the reward model "
                    "reads each pair as a text pair (context, question)",
                )
            )
        else:
            checks.append(
                Check(
                    "chat_template",
                    False,
                    f"tokenizer {tok_path} has no chat template: the "
                    "conversational pairs cannot be rendered; use a chat model or set model.tokenizer "
                    "to one that has a template",
                )
            )
    except (OSError, ValueError) as e:
        checks.append(Check("chat_template", False, f"tokenizer {tok_path} does not load: {e}"))
    return checks


def _check_grpo(recipe: Recipe, global_batch: int) -> list[Check]:
    """The tasks dir, the rewards and the partner (alfa.train.rollout), and the group arithmetic."""
    from alfa.train.rollout import rollout_checks

    splits = [recipe.data.train_split] + ([recipe.data.eval_split] if recipe.data.eval_split else [])
    checks = [Check(*c) for c in rollout_checks(recipe.data_dir, splits, recipe.rollout, recipe.data.built_by)]
    groups = int(trl_value(recipe, "num_generations"))  # TRL would refuse it only once the model is loaded
    ok = global_batch % groups == 0
    message = f"{global_batch} conversations a step in groups of {groups}"
    checks.append(Check("num_generations", ok, message + ("" if ok else ": make the global batch a multiple of it")))
    weights = trl_value(recipe, "reward_weights")
    if weights is not None:  # TRL checks it only after loading the model
        ok = len(weights) == len(recipe.rollout.rewards)
        message = f"{len(weights)} weights for {len(recipe.rollout.rewards)} rewards {recipe.rollout.rewards}"
        checks.append(Check("reward_weights", ok, message + ("" if ok else ": one weight per reward, in order")))
    return checks


def _check_deepspeed(recipe: Recipe, path: Path, hidden: int | None) -> Check:
    if not path.exists():
        return Check("deepspeed", False, f"{path}: no such file (shipped configs are in configs/deepspeed/)")
    try:
        ds = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        return Check("deepspeed", False, f"{path}: not valid JSON: {e}")
    unknown = sorted(set(ds) - deepspeed_top_level_keys())
    if unknown:
        return Check(
            "deepspeed", False, f"{path}: unknown top-level key(s) {unknown}: DeepSpeed would ignore them silently"
        )
    resolved = resolve_deepspeed(recipe, ds, hidden)
    try:
        from deepspeed.runtime.config import DeepSpeedConfig

        # Offline there is no process group and DeepSpeed assumes one process, so it validates the
        # one-process view of the batch; the world-size arithmetic is the global_batch check's job.
        one_process = {**resolved}
        if isinstance(one_process.get("train_batch_size"), int):
            one_process["train_batch_size"] = one_process["train_batch_size"] // (
                recipe.launch.num_processes * recipe.launch.num_machines
            )
        DeepSpeedConfig(one_process)
    except Exception as e:  # DeepSpeed raises assertion/value/pydantic errors alike
        return Check("deepspeed", False, f"{path}: DeepSpeed rejects it after resolving 'auto': {e}")
    _, micro, accum, global_batch = _batch(recipe)
    for k, v in (
        ("train_micro_batch_size_per_gpu", micro),
        ("gradient_accumulation_steps", accum),
        ("train_batch_size", global_batch),
    ):
        if k in resolved and resolved[k] != v:
            return Check("deepspeed", False, f'{path}: {k} is {resolved[k]} but the recipe gives {v}: set it to "auto"')
    stage = resolved.get("zero_optimization", {}).get("stage", 0)
    return Check("deepspeed", True, f"{path} validates (ZeRO stage {stage}) with 'auto' resolved")


def _check_data(recipe: Recipe) -> Check:
    import polars as pl

    from alfa.data.pairs import ALL_PAIR_TYPES

    if recipe.data.dialogues_dir is not None:
        return _check_dialogues(recipe)
    d = Path(recipe.data.pairs_dir)
    bad_types = [t for t in recipe.data.exclude_pair_types if t not in ALL_PAIR_TYPES]
    if bad_types:
        return Check("data", False, f"exclude_pair_types {bad_types} unknown; pair types: {', '.join(ALL_PAIR_TYPES)}")
    splits = [recipe.data.train_split] + ([recipe.data.eval_split] if recipe.data.eval_split else [])
    need = {
        "sft": ["prompt", "chosen"],
        "dpo": ["prompt", "chosen", "rejected"],
        "reward": ["prompt", "chosen", "rejected"],
    }[recipe.stage]
    counts = []
    for s in splits:
        f = d / "data" / f"{s}.parquet"
        if not f.exists():
            make = recipe.data.built_by or "alfa pairs RUN_DIR -o PAIRS_DIR` (or `alfa build PIPELINE.yaml"
            return Check("data", False, f"{f}: split {s!r} not found; build the pairs with `{make}`")
        df = pl.read_parquet(f)
        missing = [c for c in need + ["attribute", "pair_type"] if c not in df.columns]
        if missing:
            return Check("data", False, f"{f}: missing columns {missing}")
        if recipe.data.attributes:
            unknown = sorted(set(recipe.data.attributes) - set(df["attribute"].unique().to_list()))
            if unknown and s == recipe.data.train_split:
                return Check(
                    "data",
                    False,
                    f"{f}: no pairs for attribute(s) {unknown}; it has "
                    f"{', '.join(sorted(df['attribute'].unique().to_list()))}",
                )
            df = df.filter(pl.col("attribute").is_in(recipe.data.attributes))
        df = df.filter(~pl.col("pair_type").is_in(recipe.data.exclude_pair_types))
        if s == recipe.data.train_split and df.height == 0:
            return Check("data", False, f"{f}: no training pairs left after the attribute / pair-type selection")
        if s == recipe.data.eval_split and df.height == 0 and trl_value(recipe, "eval_strategy") != "no":
            return Check("data", False, empty_eval_message(recipe))
        counts.append(f"{s} {df.height}")
    return Check("data", True, f"{d}: " + ", ".join(counts) + " pairs after selection")


def _check_training_template(tok, tok_path: str) -> Check:
    """Dialogue SFT: which template will mark the model's turns for the loss."""
    from trl.chat_template_utils import has_generation_markers

    from alfa.train.chat_templates import chatml_training_template

    if has_generation_markers(tok.chat_template):
        return Check("chat_template", True, f"tokenizer {tok_path}: its template marks the assistant's turns")
    if chatml_training_template(tok) is not None:
        return Check("chat_template", True, f"tokenizer {tok_path}: ChatML, trained with alfa's marked copy")
    return Check(
        "chat_template",
        True,
        f"tokenizer {tok_path}: no generation markers and not ChatML; TRL patches the families it knows and "
        "refuses the others (then give model.chat_template a file with {% generation %} markers)",
    )


def _check_dialogues(recipe: Recipe) -> Check:
    import polars as pl

    splits = [recipe.data.train_split] + ([recipe.data.eval_split] if recipe.data.eval_split else [])
    counts = []
    for s in splits:
        f = recipe.data_dir / "data" / f"{s}.parquet"
        if not f.exists():
            make = recipe.data.built_by or "alfa stargate ...` (its iter_K/kept) or `alfa sml dialogues ..."
            return Check("data", False, f"{f}: split {s!r} not found; make the dialogues with `{make}`")
        df = pl.read_parquet(f)
        if "messages" not in df.columns:
            return Check("data", False, f"{f}: no `messages` column (a list of {{role, content}} per conversation)")
        if s == recipe.data.train_split and df.height == 0:
            return Check("data", False, f"{f}: no conversations to train on")
        counts.append(f"{s}: {df.height} conversations")
    return Check("data", True, f"{recipe.data_dir}: " + ", ".join(counts) + " (loss on the assistant's turns)")


def _check_report_to(recipe: Recipe) -> Check:
    """Every logger in trl.report_to is installed: transformers would fail only once the model is loaded."""
    from transformers.integrations import integration_utils as hf

    value = trl_value(recipe, "report_to")
    names = [value] if isinstance(value, str) else list(value or [])
    if names in ([], ["none"]):
        return Check("report_to", True, "no logger (report_to is empty)")
    if names == ["all"]:
        installed = hf.get_available_reporting_integrations()
        return Check("report_to", True, f"every installed logger: {', '.join(installed) or 'none installed'}")
    unknown = [n for n in names if n not in hf.INTEGRATION_TO_CALLBACK]
    if unknown:
        return Check(
            "report_to",
            False,
            f"trl.report_to {unknown}: unknown; transformers knows {', '.join(sorted(hf.INTEGRATION_TO_CALLBACK))}",
        )
    missing = [n for n in names if not getattr(hf, f"is_{AVAILABILITY_CHECK.get(n, n)}_available")()]
    if missing:
        install = " ".join(PIP_PACKAGE.get(n, n) for n in missing)
        return Check(
            "report_to",
            False,
            f"trl.report_to {missing}: not installed; `pip install {install}` or drop it from report_to",
        )
    return Check("report_to", True, ", ".join(names))


# Keys whose values are secrets (hub_token, api_key, ...): never copied into a card, a summary or a run dir.


def dry_run(recipe_path: Path, overrides: list[str] | tuple[str, ...] = ()) -> int:
    """Print the resolved recipe, each check, and the launch command. 0 when every check passes."""
    from alfa.train.launch import launch_lines

    recipe = load_recipe(recipe_path, overrides)
    resolved = redact_mapping(dataclasses.asdict(recipe))  # printed: no token may reach a terminal log
    print(
        f"# recipe {recipe_path} (stage {recipe.stage}, TRL {_trl_version()})"
        + "".join(f"\n# --set {redact_override(o)}" for o in overrides)
    )
    print(json.dumps(resolved, indent=2, default=str))
    checks = check_recipe(recipe)
    for c in checks:
        print(f"[{'ok' if c.ok else 'FAIL'}] {c.name}: {c.message}")
    plain = [o for o in overrides if not is_secret_override(o)]  # secret ones reach the child by its environment
    for line in launch_lines(recipe_path, recipe, plain):
        print(line)
    failed = [c for c in checks if not c.ok]
    if failed:
        print(f"{len(failed)} check(s) failed: fix them before training", file=sys.stderr)
    return 1 if failed else 0


def _trl_version() -> str:
    import trl

    return trl.__version__
