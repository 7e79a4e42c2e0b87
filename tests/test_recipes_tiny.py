"""The shipped tiny recipes and tiny merge configs, trained and merged for real on CPU: each recipe as
shipped, with only its model, pairs dir and output dir pointed at the test's own (the tiny Llama and the
synthetic pairs of conftest). What test_train / test_merge already assert (store parity, exact averages)
is not repeated here; this checks that what we ship runs and learns."""

from pathlib import Path

import polars as pl
import pytest
import torch
import yaml

from alfa.cli import main
from alfa.train.merge import load_merge_recipe
from alfa.train.run import run_recipe

ROOT = Path(__file__).resolve().parents[1]
# sft_dialogues trains on conversations and grpo on tasks, not pairs: tests/test_stargate.py, test_sml.py and
# test_grpo.py run them
TINY = sorted(p for p in (ROOT / "recipes" / "tiny").glob("*.yaml") if p.stem not in ("sft_dialogues", "grpo"))


def _localize(recipe: Path, out: Path, model: Path, pairs: Path) -> Path:
    data = yaml.safe_load(recipe.read_text())
    data["model"]["name_or_path"] = str(model)
    data["data"]["pairs_dir"] = str(pairs)
    data["trl"]["output_dir"] = str(out / "train" / Path(data["trl"]["output_dir"]).name)
    path = out / recipe.name
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir, pairs_dir) -> dict[str, dict]:
    """{recipe stem: run summary} for every shipped tiny recipe (~2 s each)."""
    out = tmp_path_factory.mktemp("tiny-recipes")
    return {r.stem: run_recipe(_localize(r, out, tiny_model_dir, pairs_dir)) for r in TINY}


def test_every_tiny_recipe_trains_and_learns(trained, pairs_dir):
    assert set(trained) >= {
        "sft",
        "dpo_clarity",
        "dpo_specificity",
        "dpo_mixed",
        "reward_specificity",
        "lora_dpo_clarity",
        "lora_dpo_specificity",
    }
    for name, summary in trained.items():
        assert summary["global_steps"] == 20, name
        assert summary["last_loss"] < summary["first_loss"], (name, summary["first_loss"], summary["last_loss"])
    train = pl.read_parquet(pairs_dir / "data" / "train.parquet")
    # dpo_mixed: every attribute, without the original-vs-corrupted pairs
    assert trained["dpo_mixed"]["train_rows"] == train.filter(pl.col("pair_type") != "original_vs_corrupted").height
    assert trained["dpo_specificity"]["train_rows"] == train.filter(pl.col("attribute") == "specificity").height
    # the LoRA runs saved an adapter, not a full model
    lora = Path(trained["lora_dpo_clarity"]["output_dir"])
    assert (lora / "adapter_config.json").exists() and not (lora / "model.safetensors").exists()


def test_default_logger_is_tensorboard(trained):
    """dpo_mixed says nothing about report_to: alfa's default, TensorBoard, logged every step's loss."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    summary = trained["dpo_mixed"]
    runs = list((Path(summary["output_dir"]) / "runs").iterdir())
    assert len(runs) == 1 and list(runs[0].glob("events.out.tfevents.*"))
    events = EventAccumulator(str(runs[0]))
    events.Reload()
    logged = [(e.step, e.value) for e in events.Scalars("train/loss")]
    expected = [(h["step"], h["loss"]) for h in summary["log_history"] if "loss" in h]
    assert [s for s, _ in logged] == [s for s, _ in expected] == list(range(1, 21))
    assert [v for _, v in logged] == pytest.approx([v for _, v in expected], abs=1e-5)


def _margin(model, tokenizer, pairs: pl.DataFrame) -> float:
    """Mean log p(chosen) - log p(rejected) over the pairs: what DPO pushes up."""

    def logp(prompt, completion):
        full = tokenizer.apply_chat_template(prompt + completion, tokenize=True, return_dict=True)["input_ids"]
        start = len(
            tokenizer.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True, return_dict=True)[
                "input_ids"
            ]
        )
        ids = torch.tensor([full])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, :-1].log_softmax(-1)
        return logits[torch.arange(start - 1, len(full) - 1), ids[0, start:]].sum().item()

    rows = pairs.to_dicts()
    return sum(logp(r["prompt"], r["chosen"]) - logp(r["prompt"], r["rejected"]) for r in rows) / len(rows)


def test_tiny_merge_configs_keep_what_the_runs_learned(trained, tiny_model_dir, pairs_dir, tmp_path):
    """configs/merge/tiny_*.yaml on the tiny runs: the merged policy prefers the chosen questions more
    than the model the runs started from (the exact arithmetic is test_merge's)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    by_name = {Path(s["output_dir"]).name: s["output_dir"] for s in trained.values()}
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    pairs = pl.read_parquet(pairs_dir / "data" / "validation.parquet")
    base_margin = _margin(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tokenizer, pairs)
    configs = sorted((ROOT / "configs" / "merge").glob("tiny_*.yaml"))
    assert {c.stem for c in configs} == {"tiny_uniform", "tiny_lora_cat"}
    for config in configs:
        data = yaml.safe_load(config.read_text())
        data["models"] = [by_name[Path(m).name] for m in data["models"]]
        data["output_dir"] = str(tmp_path / config.stem)
        path = tmp_path / config.name
        path.write_text(yaml.safe_dump(data))
        recipe = load_merge_recipe(path)
        assert main(["merge", str(path)]) == 0
        if recipe.method.startswith("lora_"):
            merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), recipe.output_dir)
        else:
            merged = AutoModelForCausalLM.from_pretrained(recipe.output_dir)
        # measured: from -155 nats to about -126 (LoRA cat) and -103 (uniform)
        assert _margin(merged.eval(), tokenizer, pairs) > base_margin + 10, config.name
