"""`alfa train` and `alfa merge`: recipes over TRL and merges (alfa.train)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_train(sub) -> None:
    """alfa train"""
    fmt = argparse.RawDescriptionHelpFormatter
    s = sub.add_parser(
        "train",
        help="train from a recipe YAML (SFT / DPO / reward model / GRPO); --dry-run checks it first",
        formatter_class=fmt,
        description="A recipe YAML maps onto alfa.train.recipe.Recipe; its `trl:` block "
        "onto the installed TRL's DPOConfig / SFTConfig / RewardConfig. --dry-run checks, before any "
        "model loads: unknown keys (ours and TRL's, naming TRL's version), world size x micro batch x "
        "accumulation = global batch, the DeepSpeed JSON (validated by DeepSpeed with 'auto' resolved), "
        "dataset columns, splits and selected attributes, the logger (report_to, TensorBoard by default), "
        "the tokenizer's chat template; then prints the launch command. Without --dry-run: trains in "
        "this process, or under that `accelerate launch` command for several processes or DeepSpeed; "
        "resumes from the newest checkpoint in output_dir when it was made by the same recipe; writes the model, alfa_train.json (losses, "
        "tokens/s, peak memory) and a model card.",
        epilog="Examples:\n  alfa train recipes/paper-scale/dpo_clinical_llama8b.yaml --dry-run\n"
        "  alfa train recipes/tiny/dpo_specificity.yaml --ref-store runs/ref_logps.sqlite\n"
        "  alfa train recipes/tiny/dpo_clarity.yaml --set trl.learning_rate=1e-6 --set data.attributes=[clarity]\n"
        "  alfa train recipes/smollm2-135m/dpo_mixed_zero2.yaml      # DeepSpeed ZeRO-2 via accelerate\n"
        "  alfa train recipes/minilm/reward_clarity.yaml             # a MiniLM reward model\n"
        "Every shipped recipe and its figures: docs/training.md",
    )
    s.add_argument("recipe", help="recipe YAML (see recipes/)")
    s.add_argument("--dry-run", action="store_true", help="check and print; load no model, touch no GPU")
    s.add_argument(
        "--ref-store",
        help="DPO: SQLite file of reference log-probs shared by all runs from the same "
        "model (computed once per pair, reused by every per-attribute and mixed run)",
    )
    again = s.add_mutually_exclusive_group()
    again.add_argument(
        "--resume",
        action="store_true",
        help="continue from output_dir's newest checkpoint even though it was made by another version of the recipe",
    )
    again.add_argument("--overwrite", action="store_true", help="delete output_dir's checkpoints and start over")
    s.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        dest="overrides",
        help="change one recipe value for this run, checked like the YAML (repeat), e.g. "
        "--set trl.learning_rate=1e-6 --set data.attributes=[clarity]; recorded in alfa_train.json and "
        "the model card",
    )
    s.add_argument(
        "--machine-rank",
        type=int,
        default=0,
        help="several machines: this node's rank (0 = the main one); --dry-run prints each node's command",
    )
    s.set_defaults(func=_train)


def _train(args) -> int:
    from alfa.train.checks import dry_run
    from alfa.train.run import train_command

    if args.dry_run:
        return dry_run(Path(args.recipe), args.overrides)
    return train_command(
        Path(args.recipe),
        Path(args.ref_store) if args.ref_store else None,
        machine_rank=args.machine_rank,
        resume=args.resume,
        overwrite=args.overwrite,
        overrides=args.overrides,
    )


def add_merge(sub) -> None:
    """alfa merge"""
    fmt = argparse.RawDescriptionHelpFormatter
    s = sub.add_parser(
        "merge",
        help="merge per-attribute models (mergekit) or LoRA adapters (peft) into one",
        formatter_class=fmt,
        description="A merge YAML maps onto alfa.train.merge.MergeRecipe. Full models "
        "merge through mergekit (method: linear = the paper's uniform average, task_arithmetic, ties, "
        "dare_ties, model_stock), checked against each other first (model type, every tensor's shape, "
        "tokenizer vocabulary). LoRA adapters merge through peft (method: lora_cat = the exact weighted "
        "sum of the adapters' deltas, lora_svd, lora_linear, lora_ties, lora_dare_ties, "
        "lora_dare_linear), checked first for base model, target modules and rank. leave_one_out: true "
        "also writes one merge without each model.",
        epilog="Examples:\n  alfa merge configs/merge/uniform.yaml\n"
        "  alfa merge configs/merge/tiny_lora_cat.yaml   # two LoRA adapters -> one",
    )
    s.add_argument("recipe", help="merge YAML (see configs/merge/)")
    s.set_defaults(func=_merge)


def _merge(args) -> int:
    from alfa.train.merge import load_merge_recipe, run_merge_recipe

    for out in run_merge_recipe(load_merge_recipe(Path(args.recipe))):
        print(f"merged -> {out}")
    return 0
