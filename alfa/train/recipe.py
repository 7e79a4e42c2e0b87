"""Training recipes: one YAML per run, mapping one-to-one onto `Recipe` below.

    stage: dpo                       # sft | dpo | reward | grpo
    model: {name_or_path: PATH}      # a local model folder (no hub here)
    data: {pairs_dir: runs/demo/pairs, attributes: [specificity], exclude_pair_types: []}
                                     # or, stage sft: {dialogues_dir: DIR} (conversations, loss on the model's turns)
                                     # or, stage grpo: {tasks_dir: DIR} (cases the policy consults a partner on)
    rollout: {partner: fact, turns: 3, rewards: [correct]}   # stage grpo only (alfa.train.rollout)
    launch: {num_processes: 1, deepspeed: configs/deepspeed/zero2.json}
    global_batch_size: 8             # optional: checked against world size x micro batch x accumulation
    trl: {output_dir: ..., learning_rate: 5.0e-7, beta: 2.0, ...}   # fields of TRL's DPOConfig/SFTConfig/RewardConfig
                                     # report_to defaults to [tensorboard] (OUTPUT_DIR/runs/); [] logs nowhere

Our keys are checked like every alfa YAML (unknown key -> error with its line). The `trl:` block is
checked against the config class of the *installed* TRL, so a key TRL renamed or removed is rejected
with TRL's version, and a value of the wrong type or outside its choices with its line (alfa.train.trl_values),
before any model loads. `alfa.train.checks` holds the pre-flight checks; `alfa train
RECIPE --dry-run` prints its findings, the resolved config and the launch command.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

from alfa.train.model_options import ModelConfig
from alfa.train.trl_values import trl_value_problems
from alfa.yamlconfig import ConfigError, apply_overrides, from_dict, load_yaml, where

STAGES = ("sft", "dpo", "reward", "grpo")
DEFAULT_REPORT_TO = ("tensorboard",)
# report_to names whose transformers availability check or pip package is not named after them
AVAILABILITY_CHECK = {"comet_ml": "comet", "azure_ml": "azureml", "flyte": "flytekit"}
PIP_PACKAGE = {"comet_ml": "comet-ml", "azure_ml": "azureml-core", "flyte": "flytekit"}


@dataclass
class RolloutConfig:
    """The recipe's `rollout:` block (stage grpo only; alfa.train.rollout runs it)."""

    partner: str = "fact"  # fact (fact-select patient) or a backend spec for an LLM patient shown only the facts
    turns: int = 3  # the policy's turns per conversation; one without an answer by then has none
    max_turn_tokens: int = 48  # tokens the policy may write in one turn
    rewards: list[str] = field(default_factory=lambda: ["correct", "asked_before_answer"])  # alfa.train.rewards
    judge: str | None = None  # backend word rating the `interactivity` reward (local, openai:MODEL@URL, ...)

    def __post_init__(self):
        if self.turns < 1 or self.max_turn_tokens < 1:
            raise ValueError("rollout.turns and rollout.max_turn_tokens must be at least 1")
        if not self.rewards:
            raise ValueError("rollout.rewards: name at least one reward function (alfa.train.rewards)")


@dataclass
class DataConfig:
    """Which pairs to train on. `attributes`: one attribute (per-attribute run), several, or None (all:
    the mixed run). SFT trains on the original questions of the run(s) behind the pairs dir.

    Or, for SFT, `dialogues_dir`: conversations (DIR/data/{split}.parquet with a `messages` column, as
    `alfa stargate` writes its kept set), trained with the loss on the assistant's turns only.

    Or, for GRPO, `tasks_dir`: cases as chat prompts with their facts and answer (DIR/data/train.parquet, as
    `alfa sml tasks` writes it), which the policy works through in conversation with a partner."""

    pairs_dir: str | None = None
    dialogues_dir: str | None = None
    tasks_dir: str | None = None
    attributes: list[str] | None = None
    exclude_pair_types: list[str] = field(default_factory=list)
    train_split: str = "train"
    eval_split: str | None = "validation"
    built_by: str | None = None  # the command that makes this data dir: the dry run names it when the dir is missing
    # Pairs only: a system turn put before every prompt that has none, so the model trains in the format it is
    # asked in (e.g. the consultation's, alfa.dialogue.consult, for pairs whose prompt is the case text).
    system_prompt: str | None = None
    # Pairs only: leave out the rows longer than trl.max_length (prompt + longest completion) instead of letting TRL
    # cut them, which keeps the start and so drops the question after a long post (alfa.train.overlong).
    drop_overlong: bool = False


@dataclass
class LoraConfig:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str = "all-linear"


@dataclass
class LaunchConfig:
    num_processes: int = 1  # processes (GPUs) per machine; the world size is this x num_machines
    num_machines: int = 1
    main_process_ip: str | None = None  # several machines: the address of machine 0, which every node reaches
    main_process_port: int = 29500
    deepspeed: str | None = None  # a DeepSpeed JSON (configs/deepspeed/); None: plain DDP / one process
    mixed_precision: str = "no"  # no | bf16 | fp16 (accelerate's flag)
    lora: LoraConfig | None = None  # train LoRA adapters with peft instead of all weights


@dataclass
class Recipe:
    stage: str
    model: ModelConfig
    data: DataConfig
    trl: dict[str, object]
    launch: LaunchConfig = field(default_factory=LaunchConfig)
    global_batch_size: int | None = None
    rollout: RolloutConfig | None = None  # stage grpo: how the policy's conversations are played out

    def __post_init__(self):
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}")
        given = [k for k in ("pairs_dir", "dialogues_dir", "tasks_dir") if getattr(self.data, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"data must give exactly one of pairs_dir, dialogues_dir and tasks_dir, got {given or 'none'}"
            )
        if self.data.dialogues_dir is not None and self.stage != "sft":
            raise ValueError(f"data.dialogues_dir (conversations) is for stage sft, not stage {self.stage!r}")
        if (self.data.tasks_dir is not None) != (self.stage == "grpo"):
            raise ValueError("stage grpo trains on data.tasks_dir (made by `alfa sml tasks`), and only it does")
        if self.data.system_prompt is not None and self.data.pairs_dir is None:
            raise ValueError("data.system_prompt is for pairs (data.pairs_dir); dialogues and tasks carry their own")
        if self.data.drop_overlong and (self.data.pairs_dir is None or self.stage not in ("sft", "dpo")):
            raise ValueError("data.drop_overlong is for stages sft and dpo on pairs (data.pairs_dir)")
        if self.rollout is not None and self.stage != "grpo":
            raise ValueError(f"rollout: is for stage grpo, not stage {self.stage!r}")
        if self.stage == "grpo" and self.rollout is None:
            self.rollout = RolloutConfig()

    @property
    def data_dir(self) -> Path:
        """The pairs, dialogues or tasks dir: DIR/data/{split}.parquet and DIR/README.md."""
        return Path(self.data.pairs_dir or self.data.dialogues_dir or self.data.tasks_dir)


def trl_config_class(stage: str):
    import trl

    return {"sft": trl.SFTConfig, "dpo": trl.DPOConfig, "reward": trl.RewardConfig, "grpo": trl.GRPOConfig}[stage]


def load_recipe(path: Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Parse and check the keys of a recipe (ours and TRL's), with `--set KEY.PATH=VALUE` overrides checked the
    same way. Loads no model, touches no GPU."""
    import trl

    path = Path(path)
    data, lines = load_yaml(path)
    if overrides:
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of Recipe fields")
        data = apply_overrides(data, lines, list(overrides))
    recipe = from_dict(Recipe, data, path, lines)
    cls = trl_config_class(recipe.stage)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in recipe.trl:
        if key not in known:
            close = [k for k in known if k.split("_")[0] == str(key).split("_")[0]][:5]
            raise ConfigError(
                f"{where(path, lines, ('trl', key))}: {key!r} is not a field of trl.{cls.__name__} in the installed "
                f"TRL {trl.__version__} (renamed, removed or misspelled)"
                + (f"; similar: {', '.join(sorted(close))}" if close else "")
            )
    problems = trl_value_problems(cls, recipe.trl)
    if problems:
        raise ConfigError(
            "\n".join(f"{where(path, lines, ('trl', k))}: {why}" for k, why in problems.items())
            + f"\n(checked against trl.{cls.__name__} of the installed TRL {trl.__version__})"
        )
    if "output_dir" not in recipe.trl:
        raise ConfigError(
            f"{where(path, lines, ('trl',))}: trl.output_dir is required (where checkpoints and the model go)"
        )
    # transformers logs nowhere unless told; alfa's default is TensorBoard (in the `train` extra), under
    # OUTPUT_DIR/runs/. `report_to: [wandb]` (or [] for nothing) in the recipe overrides it.
    recipe.trl.setdefault("report_to", list(DEFAULT_REPORT_TO))
    if recipe.data.dialogues_dir is not None:  # the partner's words are context, never a target
        recipe.trl.setdefault("assistant_only_loss", True)
    return recipe


def trl_value(recipe: Recipe, key: str):
    """A TRL setting as the trainer will see it: the recipe's value, else TRL's default."""
    if key in recipe.trl:
        return recipe.trl[key]
    f = {f.name: f for f in dataclasses.fields(trl_config_class(recipe.stage))}[key]
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def empty_eval_message(recipe: Recipe) -> str:
    return (
        f"{recipe.data_dir}: the {recipe.data.eval_split!r} split has no pairs after the attribute / "
        f"pair-type selection, but trl.eval_strategy is {trl_value(recipe, 'eval_strategy')!r}: set "
        "`trl: {eval_strategy: 'no'}` or `data: {eval_split: null}` to train without evaluation, or build "
        "more pairs"
    )


SECRET_KEY = re.compile(
    r"(?i)(?<![\w.-])((?:hub_|hf_|access_|auth_|api_|bearer_)?token|[\w.-]*(?:api_?key|secret|password)"
    r"[\w.-]*)(\s*:\s*)([^\s,}#]+)"
)


def redact_secrets(text: str) -> str:
    """A recipe's text with every secret-named key's value replaced by <redacted> (block and flow style)."""
    return SECRET_KEY.sub(lambda m: f"{m.group(1)}{m.group(2)}<redacted>", text)


# Secret `--set` overrides reach an `accelerate launch` child through this variable (a JSON list), never its
# command line, which any user of the machine can read in the process list.
SECRET_OVERRIDES_ENV = "ALFA_SECRET_OVERRIDES"


def is_secret_override(override: str) -> bool:
    """`trl.hub_token=hf_...`: the last part of the key path is secret-named (dotted keys included)."""
    key, sep, value = override.partition("=")
    return bool(sep and value and SECRET_KEY.fullmatch(f"{key.strip().rsplit('.', 1)[-1]}: x"))


def redact_override(override: str) -> str:
    """The one redaction of a `--set KEY.PATH=VALUE` for every place it is written or printed (alfa_train.json,
    the model card, the dry run, the launch command in the log)."""
    return override.partition("=")[0] + "=<redacted>" if is_secret_override(override) else override


def redact_mapping(value):
    """A resolved recipe (dicts and lists) with every secret-named key's value replaced by <redacted>."""
    if isinstance(value, dict):
        return {
            k: "<redacted>" if SECRET_KEY.fullmatch(f"{k}: x") and v else redact_mapping(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact_mapping(v) for v in value]
    return value
