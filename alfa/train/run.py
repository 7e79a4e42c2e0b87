"""Stage 8, train: one recipe -> one TRL run (SFT, DPO, a reward model, or GRPO over conversations).

Each stage is a plain function over TRL: load the pairs the recipe selects, load the model, build
TRL's config from the recipe's `trl:` block, train, save the model with a model card that names its
data card and recipe. `alfa train RECIPE` calls `run_recipe`; with several processes or DeepSpeed it
re-runs itself under `accelerate launch` (see alfa.train.launch).

The reference log-prob store shared by DPO runs lives in alfa.train.ref_store.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import polars as pl

from alfa.card_templates import render
from alfa.llm.reward_inputs import encoder_max_length, reward_input_ids
from alfa.train.chat_templates import training_chat_template
from alfa.train.launch import launch_command
from alfa.train.model_options import load_tokenizer, loading_kwargs
from alfa.train.recipe import (
    SECRET_OVERRIDES_ENV,
    Recipe,
    empty_eval_message,
    is_secret_override,
    load_recipe,
    redact_override,
    redact_secrets,
    trl_config_class,
)
from alfa.train.ref_store import RefLogpStore, fill_store, reference_digest, stored_ref_dpo_trainer
from alfa.train.resume import checkpoint_to_resume

log = logging.getLogger(__name__)
MODEL_CARD_TEMPLATES = Path(__file__).resolve().parent / "templates"  # model_card.md.j2


def load_split(recipe: Recipe, split: str):
    """The recipe's selection of one split as a datasets.Dataset (prompt/chosen/rejected + pair_id; for a
    dialogues dir, `messages`)."""
    import datasets

    df = pl.read_parquet(recipe.data_dir / "data" / f"{split}.parquet")
    if recipe.data.dialogues_dir is not None:
        return datasets.Dataset.from_dict({"messages": df["messages"].to_list()})
    if recipe.data.tasks_dir is not None:  # GRPO: every column reaches the reward functions as a keyword argument
        from alfa.train.rollout import tagged_prompt

        columns = {c: df[c].to_list() for c in df.columns}
        columns["prompt"] = [tagged_prompt(p, t) for p, t in zip(columns["prompt"], columns["task_id"])]
        return datasets.Dataset.from_dict(columns)
    if recipe.data.attributes:
        df = df.filter(pl.col("attribute").is_in(recipe.data.attributes))
    df = df.filter(~pl.col("pair_type").is_in(recipe.data.exclude_pair_types))
    if recipe.data.system_prompt is not None:
        system = {"role": "system", "content": recipe.data.system_prompt}
        df = df.with_columns(
            prompt=pl.Series([p if p and p[0]["role"] == "system" else [system, *p] for p in df["prompt"].to_list()])
        )
    if recipe.stage == "sft":
        # SFT on the original questions in context: one row per question, completion = the original.
        originals = df.filter(pl.col("pair_type") == "original_vs_corrupted").unique("qid", keep="first")
        return datasets.Dataset.from_dict(
            {
                "prompt": originals["prompt"].to_list(),
                "completion": originals["chosen"].to_list(),
            }
        )
    return datasets.Dataset.from_dict({c: df[c].to_list() for c in ("pair_id", "prompt", "chosen", "rejected")})


def trained_on(recipe: Recipe) -> dict:
    """For a model trained on pairs: its attributes and the group ids (posts) of its train split, recorded in
    alfa_train.json so an evaluation can refuse to judge a post the model saw (`alfa eval winrate --judge rm:DIR`)."""
    if recipe.data.dialogues_dir is not None or recipe.data.tasks_dir is not None:
        return {}
    df = pl.read_parquet(recipe.data_dir / "data" / f"{recipe.data.train_split}.parquet")
    if recipe.data.attributes:
        df = df.filter(pl.col("attribute").is_in(recipe.data.attributes))
    return {"attributes": recipe.data.attributes, "train_group_ids": sorted(set(df["group_id"].to_list()))}


def text_pair_ids(ds, tokenizer, max_length: int):
    """Reward pairs pre-tokenized for a model without a chat template (TRL's RewardTrainer would call
    apply_chat_template on them and fail); the same rendering alfa.eval.reward_scorecard scores them with."""
    import datasets

    ids = {
        side: [reward_input_ids(tokenizer, p, c, max_length) for p, c in zip(ds["prompt"], ds[side])]
        for side in ("chosen", "rejected")
    }
    return datasets.Dataset.from_dict(
        {"pair_id": ds["pair_id"], "chosen_ids": ids["chosen"], "rejected_ids": ids["rejected"]}
    )


def _peft_config(recipe: Recipe):
    if recipe.launch.lora is None:
        return None
    from peft import LoraConfig

    lora = recipe.launch.lora
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="SEQ_CLS" if recipe.stage == "reward" else "CAUSAL_LM",
    )


def run_recipe(
    recipe_path: Path,
    ref_store: Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    overrides: list[str] | tuple[str, ...] = (),
) -> dict:
    """Train what the recipe says, in this process. Returns a summary (also written as alfa_train.json)."""
    recipe = load_recipe(recipe_path, overrides)
    partner = None
    if recipe.stage == "grpo":  # before TRL's config: under ZeRO-3 that config makes every later model load partitioned
        from alfa.train.rollout import make_partner

        partner = make_partner(recipe.rollout.partner, str(recipe.trl["output_dir"]))
    config = trl_config_class(recipe.stage)(**recipe.trl)
    keep_secrets_off_disk(config)
    tokenizer = load_tokenizer(recipe.model)
    train = load_split(recipe, recipe.data.train_split)
    evals = load_split(recipe, recipe.data.eval_split) if recipe.data.eval_split else None
    dropped = {}
    if recipe.data.drop_overlong:
        from alfa.train.overlong import drop_overlong

        train, dropped["train"] = drop_overlong(train, tokenizer, config.max_length)
        if evals is not None:
            evals, dropped["eval"] = drop_overlong(evals, tokenizer, config.max_length)
        log.info("drop_overlong: left out %s rows longer than max_length %s", dropped, config.max_length)
    if evals is not None and len(evals) == 0:
        evals = None
    if evals is None and config.eval_strategy != "no":  # the Trainer would fail only after the model loads
        raise ValueError(empty_eval_message(recipe))
    # Before any model loads: another recipe's checkpoint stops the run here. RANK: set by the launcher.
    checkpoint = checkpoint_to_resume(
        recipe, recipe_path, config.output_dir, resume, overwrite, main_process=os.environ.get("RANK", "0") == "0"
    )
    summary = {
        "recipe": str(recipe_path),
        "overrides": [redact_override(o) for o in overrides],
        "stage": recipe.stage,
        "output_dir": config.output_dir,
        "train_rows": len(train),
        "eval_rows": len(evals) if evals is not None else 0,
        **({"dropped_overlong": dropped} if dropped else {}),
    } | trained_on(recipe)

    trainer = build_trainer(recipe, config, tokenizer, train, evals, ref_store, summary, partner)
    plugin = trainer.accelerator.state.deepspeed_plugin
    summary["deepspeed"] = {
        "enabled": bool(trainer.is_deepspeed_enabled),
        "zero_stage": plugin.zero_stage if plugin is not None else None,
    }
    result = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(config.output_dir)  # collective under ZeRO-3 (gathers the shards); writes on rank 0 only
    summary.update(
        {
            "global_steps": trainer.state.global_step,
            "train_loss": result.training_loss,
            **run_figures(trainer.state.log_history, result.metrics),
            "log_history": trainer.state.log_history,
            "processes": trainer.accelerator.num_processes,
        }
    )
    if recipe.stage == "grpo":
        from alfa.train.rewards import judge_figures

        summary["interactivity_judge"] = judge_figures(trainer.reward_funcs)
    if trainer.accelerator.is_main_process:  # one writer; the other ranks wait below
        write_outputs(recipe, recipe_path, config.output_dir, tokenizer, summary, trainer.accelerator.process_index)
    trainer.accelerator.wait_for_everyone()
    return summary


def build_trainer(recipe: Recipe, config, tokenizer, train, evals, ref_store: Path | None, summary: dict, partner=None):
    """The TRL trainer for the recipe's stage, with the model loaded as its `model:` block says (GRPO: `partner`
    answers the policy's questions, alfa.train.rollout)."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    load = loading_kwargs(recipe.model)
    if recipe.stage == "reward":
        from trl import RewardTrainer

        model = AutoModelForSequenceClassification.from_pretrained(recipe.model.name_or_path, num_labels=1, **load)
        model.config.pad_token_id = tokenizer.pad_token_id
        if tokenizer.chat_template is None:  # an encoder (MiniLM/BERT): text pairs, tokenized by us
            max_length = encoder_max_length(tokenizer, model.config, config.max_length)
            train, evals = (text_pair_ids(d, tokenizer, max_length) if d is not None else None for d in (train, evals))
            summary["input"] = f"text pairs (context, question), context truncated to {max_length} tokens"
            tokenizer.model_max_length = max_length  # saved with the model: its scorers cut contexts where training did
        trainer = RewardTrainer(
            model=model,
            args=config,
            train_dataset=train.remove_columns("pair_id"),
            eval_dataset=evals.remove_columns("pair_id") if evals is not None else None,
            processing_class=tokenizer,
            peft_config=_peft_config(recipe),
        )
    elif recipe.stage == "dpo":
        model = AutoModelForCausalLM.from_pretrained(recipe.model.name_or_path, **load)
        splits = {"train": train, **({"eval": evals} if evals is not None else {})}
        store = digest = None
        if ref_store is not None:
            if recipe.launch.lora is not None:
                raise ValueError("the reference log-prob store needs a full model as reference; drop launch.lora")
            config.precompute_ref_log_probs = True
            store, digest = RefLogpStore(ref_store), reference_digest(recipe.model.name_or_path)
            filled = fill_store(store, digest, model, tokenizer, config, recipe)
        trainer = stored_ref_dpo_trainer()(
            model=model,
            args=config,
            train_dataset=splits["train"].remove_columns("pair_id"),
            eval_dataset=splits["eval"].remove_columns("pair_id") if "eval" in splits else None,
            processing_class=tokenizer,
            peft_config=_peft_config(recipe),
            ref_store=store,
            ref_model_digest=digest,
        )
        if store is not None:
            summary["ref_logps"] = {**filled, "used": trainer.ref_counts["used"]}
            store.close()
    elif recipe.stage == "grpo":
        trainer = grpo_trainer(recipe, config, tokenizer, train, evals, load, partner)
    else:
        from trl import SFTTrainer

        model = AutoModelForCausalLM.from_pretrained(recipe.model.name_or_path, **load)
        if config.assistant_only_loss:  # a ChatML template gets alfa's marked copy; TRL patches the families it knows
            template = training_chat_template(tokenizer, recipe.model.name_or_path)
            if template is not None:
                tokenizer.chat_template = template
                summary["chat_template"] = "alfa's ChatML training template (loss on the assistant's turns)"
        trainer = SFTTrainer(
            model=model,
            args=config,
            train_dataset=train,
            eval_dataset=evals,
            processing_class=tokenizer,
            peft_config=_peft_config(recipe),
        )
    return trainer


def grpo_trainer(recipe: Recipe, config, tokenizer, train, evals, load: dict, partner):
    """TRL's GRPOTrainer with alfa's multi-turn rollout (alfa.train.rollout) and the recipe's reward functions."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is experimental in TRL 1.16: pinned, tested
    from transformers import AutoModelForCausalLM
    from trl import GRPOTrainer

    from alfa.train.rewards import reward_function
    from alfa.train.rollout import MultiTurnRollout

    tasks = list(train) + (list(evals) if evals is not None else [])
    rollout = MultiTurnRollout(tasks, recipe.rollout, partner)
    return GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(recipe.model.name_or_path, **load),
        reward_funcs=[
            reward_function(name, recipe.rollout.judge, config.output_dir) for name in recipe.rollout.rewards
        ],
        args=config,
        train_dataset=train,
        eval_dataset=evals,
        processing_class=tokenizer,
        peft_config=_peft_config(recipe),
        rollout_func=rollout,
    )


def write_outputs(recipe: Recipe, recipe_path: Path, output_dir: str, tokenizer, summary: dict, process: int) -> None:
    """The tokenizer, the model card and alfa_train.json: written by the main process only."""
    tokenizer.save_pretrained(output_dir)
    _write_model_card(recipe, recipe_path, output_dir, summary)
    Path(output_dir, "alfa_train.json").write_text(json.dumps(summary, indent=2, default=str))
    log.info("process %d wrote the tokenizer, README.md and alfa_train.json to %s", process, output_dir)


def run_figures(log_history: list[dict], metrics: dict) -> dict:
    """First and last logged loss, wall time, tokens and peak memory of a finished run, for the summary
    and for bench/plain_trl_dpo.py (so alfa and the plain TRL baseline are measured the same way).

    Tokens are TRL's `num_tokens`: non-padding tokens the model read (DPO: prompt + chosen and prompt +
    rejected), summed over processes. TRL logs it at logging steps only: the count is the last one logged,
    exact with logging_steps: 1."""
    import resource

    import torch

    losses = [h["loss"] for h in log_history if "loss" in h]
    tokens = [h["num_tokens"] for h in log_history if "num_tokens" in h]
    runtime = metrics.get("train_runtime")
    out = {
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "train_runtime_s": runtime,
        "num_tokens": tokens[-1] if tokens else None,
        "tokens_per_second": tokens[-1] / runtime if tokens and runtime else None,
        # this process's peak resident memory (Linux reports KiB): the figure on a CPU-only machine
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }
    if torch.cuda.is_available():  # this process's peak: PyTorch's allocator, and what it held from the driver
        out["peak_gpu_allocated_gib"] = torch.cuda.max_memory_allocated() / 2**30
        out["peak_gpu_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
    return out


def keep_secrets_off_disk(config) -> None:
    """TRL's config is pickled into output_dir (training_args.bin, every checkpoint): a hub_token in the recipe
    would be written there in the clear. Hand it to huggingface_hub through the environment instead."""
    if config.hub_token:
        os.environ["HF_TOKEN"] = config.hub_token
        config.hub_token = None


def _write_model_card(recipe: Recipe, recipe_path: Path, output_dir: str, summary: dict) -> None:
    """OUTPUT_DIR/README.md from alfa/train/templates/model_card.md.j2."""
    text = render(
        "model_card.md.j2",
        MODEL_CARD_TEMPLATES,
        recipe=recipe,
        recipe_path=recipe_path,
        model_name=Path(output_dir).name,
        data_card=recipe.data_dir / "README.md",
        summary=summary,
        recipe_text=redact_secrets(Path(recipe_path).read_text()),
        overrides=summary["overrides"],  # redacted where the summary was made
    )
    Path(output_dir, "README.md").write_text(text)


def train_command(
    recipe_path: Path,
    ref_store: Path | None = None,
    machine_rank: int = 0,
    resume: bool = False,
    overwrite: bool = False,
    overrides: list[str] | tuple[str, ...] = (),
) -> int:
    """`alfa train RECIPE`: in this process for one process without DeepSpeed, else under accelerate."""
    launched = os.environ.get("ALFA_LAUNCHED") == "1"
    if launched:  # the parent passed the secret overrides through the environment, not the command line
        overrides = [*overrides, *json.loads(os.environ.get(SECRET_OVERRIDES_ENV, "[]"))]
    recipe = load_recipe(recipe_path, overrides)
    if not launched and (recipe.launch.num_processes * recipe.launch.num_machines > 1 or recipe.launch.deepspeed):
        secret = [o for o in overrides if is_secret_override(o)]
        cmd = launch_command(recipe_path, recipe, machine_rank, [o for o in overrides if o not in secret])
        cmd += (
            (["--ref-store", str(ref_store)] if ref_store is not None else [])
            + (["--resume"] if resume else [])
            + (["--overwrite"] if overwrite else [])
        )
        log.info("launching: %s", " ".join(cmd))
        env = {**os.environ, "ALFA_LAUNCHED": "1", SECRET_OVERRIDES_ENV: json.dumps(secret)}
        return subprocess.call(cmd, env=env)
    summary = run_recipe(recipe_path, ref_store, resume=resume, overwrite=overwrite, overrides=overrides)
    loss = (
        f"loss {summary['first_loss']:.4f} -> {summary['last_loss']:.4f}"
        if summary["first_loss"] is not None
        else f"mean loss {summary['train_loss']:.4f} (no step logged: logging_steps > steps)"
    )
    print(
        f"trained {summary['stage']}: {summary['global_steps']} steps, {loss}; model in {summary['output_dir']}",
        file=sys.stderr,
    )
    return 0
