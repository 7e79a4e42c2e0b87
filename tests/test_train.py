"""Real TRL training on CPU with the tiny Llama: DPO with the shared reference log-prob store (and its
numerical parity with TRL's own precompute), a reward model, SFT, and resuming from a checkpoint; and a
MiniLM reward model (no chat template: text pairs)."""

import json
import textwrap

import polars as pl
import pytest

from alfa.cli import main
from alfa.train.run import run_recipe


def _recipe(tmp_path, name, model, pairs, stage="dpo", attributes="null", **trl):
    settings = {
        "output_dir": str(tmp_path / name),
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 1,
        "learning_rate": 1.0e-3,
        "max_steps": 12,
        "max_length": 256,
        "logging_steps": 1,
        "save_strategy": "no",
        "bf16": False,
        "report_to": [],
        "seed": 0,
        **trl,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        textwrap.dedent(f"""\
        stage: {stage}
        model: {{name_or_path: {model}}}
        data: {{pairs_dir: {pairs}, attributes: {attributes}}}
        """)
        + "trl:\n"
        + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in settings.items())
    )
    return path


def _losses(summary):
    return [h["loss"] for h in summary["log_history"] if "loss" in h]


def test_dpo_shared_ref_store_matches_trl_and_computes_each_pair_once(tmp_path, tiny_model_dir, pairs_dir):
    store = tmp_path / "ref.sqlite"
    n_all = sum(pl.read_parquet(f).height for f in (pairs_dir / "data").glob("*.parquet"))
    clarity = run_recipe(
        _recipe(tmp_path, "clarity", tiny_model_dir, pairs_dir, attributes="[clarity]", beta=0.1), store
    )
    n_clarity = clarity["train_rows"] + clarity["eval_rows"]
    # the first run fills the store for every pair, once
    assert clarity["ref_logps"] == {"cached": 0, "computed": n_all, "used": n_clarity}
    mixed = run_recipe(_recipe(tmp_path, "mixed", tiny_model_dir, pairs_dir, beta=0.1), store)
    assert mixed["ref_logps"] == {"cached": n_all, "computed": 0, "used": mixed["train_rows"] + mixed["eval_rows"]}
    # parity: the same mixed run with TRL computing its own reference log-probs
    plain = run_recipe(_recipe(tmp_path, "plain", tiny_model_dir, pairs_dir, beta=0.1, precompute_ref_log_probs=True))
    assert "ref_logps" not in plain
    assert _losses(mixed) == pytest.approx(_losses(plain), abs=1e-4)
    # and DPO learned: the loss fell from log 2
    assert _losses(mixed)[0] == pytest.approx(0.6931, abs=1e-3)
    assert _losses(mixed)[-1] < 0.6
    card = (tmp_path / "mixed" / "README.md").read_text()
    assert "stage `dpo`" in card and str(pairs_dir) in card and "personal health information" in card


def test_reward_models_rank_training_pairs_above_chance_and_the_scorecard(tmp_path, tiny_model_dir, pairs_dir, capsys):
    from alfa.eval.reward_scorecard import RewardScorer, accuracy_by_attribute

    for attribute in ("clarity", "specificity"):
        summary = run_recipe(
            _recipe(
                tmp_path,
                f"rm-{attribute}",
                tiny_model_dir,
                pairs_dir,
                stage="reward",
                attributes=f"[{attribute}]",
                max_steps=30,
            )
        )
        assert summary["last_loss"] < summary["first_loss"]
    train = pl.read_parquet(pairs_dir / "data" / "train.parquet")
    acc = accuracy_by_attribute(RewardScorer(tmp_path / "rm-clarity"), train)
    assert acc["clarity"][0] > 0.8 and acc["clarity"][1] == train.filter(pl.col("attribute") == "clarity").height
    # scorecard: every model on every attribute, as CSV, a markdown table and a heatmap
    assert (
        main(
            [
                "evaluate-rm",
                "--model",
                f"clarity={tmp_path / 'rm-clarity'}",
                "--model",
                f"specificity={tmp_path / 'rm-specificity'}",
                "--pairs",
                str(pairs_dir),
                "--split",
                "train",
                "-o",
                str(tmp_path / "eval"),
            ]
        )
        == 0
    )
    table = pl.read_csv(tmp_path / "eval" / "scorecard.csv")
    assert table["model"].to_list() == ["clarity", "specificity"]
    assert table.filter(pl.col("model") == "clarity")["clarity"][0] == pytest.approx(acc["clarity"][0])
    assert table.filter(pl.col("model") == "specificity")["specificity"][0] > 0.8
    assert (tmp_path / "eval" / "scorecard.png").read_bytes()[:4] == b"\x89PNG"
    assert "| clarity |" in capsys.readouterr().out
    _reward_models_as_a_judge(tmp_path, train)


def _reward_models_as_a_judge(tmp_path, train):
    """`--judge rm:DIR,DIR`: the trained models judge questions on posts they never saw, and refuse the others."""
    import json

    from alfa.eval.judges import RewardModelJudge
    from alfa.eval.winrate import judge_winrate

    record = json.loads((tmp_path / "rm-clarity" / "alfa_train.json").read_text())
    assert record["attributes"] == ["clarity"]
    assert record["train_group_ids"] == sorted(set(train.filter(pl.col("attribute") == "clarity")["group_id"]))
    judge = RewardModelJudge([tmp_path / "rm-clarity", tmp_path / "rm-specificity"])
    posts = ["My knee hurts when I climb stairs.", "I get headaches every afternoon."]
    rows = [{"qid": f"t{i}", "group_id": f"unseen{i}", "context": [{"role": "user", "content": p}],
             "question": "When exactly did it start, and how bad is it from 1 to 10?"} for i, p in enumerate(posts)]  # fmt: skip
    questions = pl.DataFrame(rows)
    vague = {r["qid"]: "Anything else?" for r in rows}
    specific = {r["qid"]: r["question"] for r in rows}
    report = judge_winrate(specific, vague, questions, judge, {}, tmp_path / "rm-judge")
    assert report["reading"] == "reward model" and report["win_rate"]["value"] == 1.0  # it learned specific > vague
    seen = questions.with_columns(pl.lit(record["train_group_ids"][0]).alias("group_id"))
    with pytest.raises(ValueError, match="were in its reward models' training data"):
        judge_winrate(specific, vague, seen, judge, {}, tmp_path / "refused")


def test_sft_on_original_questions(tmp_path, tiny_model_dir, pairs_dir):
    summary = run_recipe(_recipe(tmp_path, "sft", tiny_model_dir, pairs_dir, stage="sft"))
    train = pl.read_parquet(pairs_dir / "data" / "train.parquet")
    originals = train.filter(pl.col("pair_type") == "original_vs_corrupted")["qid"].n_unique()
    assert summary["train_rows"] == originals > 0  # one row per question, completion = its original
    assert summary["last_loss"] < summary["first_loss"]


def test_resume_from_checkpoint(tmp_path, tiny_model_dir, pairs_dir, capsys):
    path = _recipe(tmp_path, "resume", tiny_model_dir, pairs_dir, beta=0.1)
    text = (
        path.read_text()
        .replace('save_strategy: "no"', 'save_strategy: "steps"\n  save_steps: 6')
        .replace("max_steps: 12", "max_steps: 6")
    )
    path.write_text(text)
    first = run_recipe(path)
    assert first["global_steps"] == 6 and (tmp_path / "resume" / "checkpoint-6").is_dir()
    # a changed recipe does not silently continue another recipe's checkpoint: it stops, naming both ways on
    path.write_text(text.replace("max_steps: 6", "max_steps: 10"))
    capsys.readouterr()
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert "checkpoint-6 from another recipe" in err and "--overwrite" in err and "--resume" in err
    assert main(["train", str(path), "--resume"]) == 0
    second = json.loads((tmp_path / "resume" / "alfa_train.json").read_text())
    steps = [h["step"] for h in second["log_history"] if "loss" in h]
    assert second["global_steps"] == 10 and steps[-1] == 10
    assert min(s for s in steps if s > 6) == 7  # continued after step 6 instead of starting over
    # --overwrite starts over from step 1
    path.write_text(text.replace("max_steps: 6", "max_steps: 4"))
    assert main(["train", str(path), "--overwrite"]) == 0
    third = json.loads((tmp_path / "resume" / "alfa_train.json").read_text())
    assert [h["step"] for h in third["log_history"] if "loss" in h] == [1, 2, 3, 4]


@pytest.mark.parametrize("zero", ["zero2", "zero3"])
def test_deepspeed_dpo_launch_on_cpu(tmp_path, tiny_model_dir, pairs_dir, zero):
    """The launcher users use: `alfa train` re-runs itself under `accelerate launch --use_deepspeed`
    (one CPU process, gloo), with the shipped ZeRO config."""
    import subprocess
    import sys
    from pathlib import Path

    ds = Path(__file__).resolve().parents[1] / "configs" / "deepspeed" / f"{zero}.json"
    path = _recipe(tmp_path, zero, tiny_model_dir, pairs_dir, beta=0.1, max_steps=4, per_device_train_batch_size=2)
    text = path.read_text().replace("trl:\n", f"launch: {{num_processes: 1, deepspeed: {ds}}}\ntrl:\n", 1)
    path.write_text(text)
    env = {**__import__("os").environ, "PATH": f"{Path(sys.executable).parent}:{__import__('os').environ['PATH']}"}
    out = subprocess.run(
        [sys.executable, "-m", "alfa.cli", "train", str(path)], capture_output=True, text=True, timeout=600, env=env
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "accelerate launch --num_processes 1" in out.stderr and "--use_deepspeed" in out.stderr
    summary = json.loads((tmp_path / zero / "alfa_train.json").read_text())
    assert summary["deepspeed"] == {"enabled": True, "zero_stage": int(zero[-1])}
    assert summary["global_steps"] == 4 and (tmp_path / zero / "model.safetensors").exists()


def test_minilm_reward_model_reads_text_pairs(tmp_path, pairs_dir):
    """An encoder without a chat template (MiniLM, the real backbone the package ships) trains and scores
    on (context, question) text pairs; a long context is cut, never the question."""
    from transformers import AutoTokenizer

    from alfa.eval.reward_scorecard import RewardScorer, accuracy_by_attribute, reward_input_ids
    from alfa.llm.embedded import minilm_path

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    question = [{"role": "assistant", "content": "When did the pain start?"}]
    ids = reward_input_ids(tokenizer, [{"role": "user", "content": "My knee hurts. " * 400}], question, 128)
    tail = tokenizer(question[0]["content"], add_special_tokens=False)["input_ids"] + [tokenizer.sep_token_id]
    assert len(ids) == 128 and ids[-len(tail) :] == tail
    summary = run_recipe(
        _recipe(
            tmp_path,
            "rm-minilm",
            minilm_path(),
            pairs_dir,
            stage="reward",
            attributes="[specificity]",
            max_steps=5,
            learning_rate=2.0e-4,
        )
    )
    assert summary["input"] == "text pairs (context, question), context truncated to 256 tokens"
    train = pl.read_parquet(pairs_dir / "data" / "train.parquet")
    scorer = RewardScorer(tmp_path / "rm-minilm")
    assert scorer.max_length == 256  # scored with contexts cut where training cut them, not at MiniLM's 512
    assert accuracy_by_attribute(scorer, train)["specificity"][0] > 0.9


def test_run_summary_counts_every_token_the_policy_read(tmp_path, tiny_model_dir, pairs_dir):
    """One epoch: num_tokens is exactly both rendered conversations of every training pair (what the
    tokens/s of docs/training.md and bench/bench_train_vs_trl.py divide), and tokens/s uses TRL's runtime."""
    from transformers import AutoTokenizer

    summary = run_recipe(
        _recipe(tmp_path, "tokens", tiny_model_dir, pairs_dir, max_steps=-1, num_train_epochs=1, beta=0.1)
    )
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    length = lambda messages: len(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"])  # noqa: E731
    train = pl.read_parquet(pairs_dir / "data" / "train.parquet").to_dicts()
    assert summary["train_rows"] == len(train)
    assert summary["num_tokens"] == sum(
        length(r["prompt"] + r["chosen"]) + length(r["prompt"] + r["rejected"]) for r in train
    )
    assert summary["tokens_per_second"] == pytest.approx(summary["num_tokens"] / summary["train_runtime_s"])
    assert "peak_gpu_allocated_gib" not in summary  # CPU: no accelerator figure is made up
    assert 0.2 < summary["peak_rss_gib"] < 20  # this process, torch loaded: hundreds of MiB, not bytes or TiB


def test_a_checkpoint_is_resumed_only_by_the_recipe_and_data_that_made_it(tmp_path, tiny_model_dir, pairs_dir):
    import shutil

    from alfa.train.recipe import load_recipe
    from alfa.train.resume import checkpoint_to_resume

    data = tmp_path / "pairs"
    shutil.copytree(pairs_dir, data)
    path = _recipe(tmp_path, "out", tiny_model_dir, data)
    recipe = load_recipe(path)
    out = tmp_path / "out"
    assert checkpoint_to_resume(recipe, path, str(out), resume=False, overwrite=False) is None  # a fresh start
    (out / "checkpoint-3").mkdir()
    (out / "checkpoint-3" / "trainer_state.json").write_text("{}")
    assert checkpoint_to_resume(recipe, path, str(out), False, False) == str(out / "checkpoint-3")  # same recipe
    other = load_recipe(_recipe(tmp_path, "out", tiny_model_dir, data, learning_rate=5e-4))
    with pytest.raises(ValueError, match="checkpoint-3 from another recipe"):
        checkpoint_to_resume(other, path, str(out), False, False)
    # the same recipe on rebuilt data at the same path: not the run that made the checkpoint
    train = pl.read_parquet(data / "data" / "train.parquet")
    train.head(train.height - 1).write_parquet(data / "data" / "train.parquet")
    with pytest.raises(ValueError, match="checkpoint-3 from other data than .* holds now"):
        checkpoint_to_resume(recipe, path, str(out), False, False)
    assert checkpoint_to_resume(other, path, str(out), resume=True, overwrite=False) == str(out / "checkpoint-3")
    assert checkpoint_to_resume(other, path, str(out), resume=False, overwrite=True) is None
    assert not (out / "checkpoint-3").exists()


def test_the_ref_store_keys_on_what_the_reference_scores(tmp_path, tiny_model_dir, pairs_dir):
    """A reviewed copy whose pair was flipped keeps its pair_id: the store must not hand it the values of its
    mirror image. Another max_length, ld_alpha or precision is another entry too; the same pairs again are only
    read."""
    import shutil

    from alfa.data.pairs import load_pairs, write_split_files

    store = tmp_path / "ref.sqlite"
    n_all = sum(pl.read_parquet(f).height for f in (pairs_dir / "data").glob("*.parquet"))
    first = run_recipe(_recipe(tmp_path, "a", tiny_model_dir, pairs_dir, max_steps=1), store)
    assert first["ref_logps"]["computed"] == n_all
    flipped_dir = tmp_path / "flipped"
    shutil.copytree(pairs_dir, flipped_dir)
    pairs = load_pairs(pairs_dir)
    target = pairs["pair_id"][0]
    swap = pl.col("pair_id") == target
    flipped = pairs.with_columns(
        chosen=pl.when(swap).then(pl.col("rejected")).otherwise(pl.col("chosen")),
        rejected=pl.when(swap).then(pl.col("chosen")).otherwise(pl.col("rejected")),
    )
    write_split_files(flipped, flipped_dir)  # same pair_id, chosen and rejected swapped
    again = run_recipe(_recipe(tmp_path, "b", tiny_model_dir, flipped_dir, max_steps=1), store)
    assert again["ref_logps"]["computed"] == 1 and again["ref_logps"]["cached"] == n_all - 1
    shorter = run_recipe(_recipe(tmp_path, "c", tiny_model_dir, pairs_dir, max_steps=1, max_length=64), store)
    assert shorter["ref_logps"]["computed"] == n_all
    # TRL's ld_alpha weighs the longer completion's tail: other values, so other entries
    weighted = run_recipe(_recipe(tmp_path, "e", tiny_model_dir, pairs_dir, max_steps=1, ld_alpha=0.5), store)
    assert weighted["ref_logps"]["computed"] == n_all
    # so does the precision the reference runs in: bfloat16 autocast on the CPU
    autocast = run_recipe(
        _recipe(tmp_path, "f", tiny_model_dir, pairs_dir, max_steps=1, bf16=True, use_cpu=True), store
    )
    assert autocast["ref_logps"]["computed"] == n_all
    same = run_recipe(_recipe(tmp_path, "d", tiny_model_dir, pairs_dir, max_steps=1), store)
    assert same["ref_logps"] == {"cached": n_all, "computed": 0, "used": same["train_rows"] + same["eval_rows"]}


def test_each_scoring_setting_is_part_of_the_ref_store_key():
    from alfa.train.ref_store import input_key

    pair = {"prompt_ids": [1, 2], "chosen_ids": [3], "rejected_ids": [4]}
    base = {"max_length": 256, "truncation_mode": "keep_start", "tokenizer": "t", "ld_alpha": None,
            "dtype": "torch.float32", "mixed_precision": "no"}  # fmt: skip
    other = {"max_length": 64, "truncation_mode": "keep_end", "tokenizer": "u", "ld_alpha": 0.5,
             "dtype": "torch.bfloat16", "mixed_precision": "bf16"}  # fmt: skip
    keys = {input_key(pair, base)} | {input_key(pair, base | {k: v}) for k, v in other.items()}
    assert len(keys) == 1 + len(other)
    assert input_key(pair, dict(reversed(base.items()))) == input_key(pair, base)  # order of the settings: no matter


def test_the_reference_store_hook_still_exists_in_the_installed_trl(monkeypatch):
    """The store overrides TRL's private DPOTrainer._precompute_ref_logps: when a TRL release renames it or
    changes its signature, this fails (and so does a run with --ref-store) instead of the store switching off."""
    import inspect

    from trl import DPOTrainer

    from alfa.train.ref_store import TRL_HOOK, check_trl_hook

    name, params = TRL_HOOK
    assert list(inspect.signature(getattr(DPOTrainer, name)).parameters) == params
    assert f"self.{name}(" in inspect.getsource(DPOTrainer.__init__)  # and TRL still calls it while it sets up
    check_trl_hook(DPOTrainer)

    class Renamed(DPOTrainer):
        pass

    monkeypatch.delattr(DPOTrainer, name)
    with pytest.raises(RuntimeError, match="has no DPOTrainer._precompute_ref_logps"):
        check_trl_hook(Renamed)


def test_set_overrides_are_recorded_in_the_summary_and_the_card(tmp_path, tiny_model_dir, pairs_dir):
    path = _recipe(tmp_path, "over", tiny_model_dir, pairs_dir, max_steps=12)
    assert main(["train", str(path), "--set", "trl.max_steps=2", "--set", "data.attributes=[clarity]"]) == 0
    summary = json.loads((tmp_path / "over" / "alfa_train.json").read_text())
    assert summary["global_steps"] == 2 and summary["overrides"] == ["trl.max_steps=2", "data.attributes=[clarity]"]
    assert summary["processes"] == 1
    card = (tmp_path / "over" / "README.md").read_text()
    assert "with `--set trl.max_steps=2`, `--set data.attributes=[clarity]` on top" in card


def test_two_processes_write_each_summary_file_once(tmp_path, tiny_model_dir, pairs_dir, capfd):
    """Under `accelerate launch` with two CPU processes (gloo), only the main one writes alfa_train.json, the
    model card and the tokenizer; the other waits for it."""
    path = _recipe(tmp_path, "ddp", tiny_model_dir, pairs_dir, max_steps=2, use_cpu=True)
    path.write_text(path.read_text().replace("trl:\n", "launch: {num_processes: 2}\ntrl:\n"))
    assert main(["train", str(path)]) == 0
    err = capfd.readouterr().err
    assert err.count("wrote the tokenizer, README.md and alfa_train.json") == 1
    assert "process 0 wrote" in err
    assert json.loads((tmp_path / "ddp" / "alfa_train.json").read_text())["processes"] == 2


def test_drop_overlong_leaves_out_the_rows_over_max_length_and_counts_them(tmp_path, tiny_model_dir, pairs_dir):
    """data.drop_overlong: a row whose prompt and longest completion pass max_length is left out (TRL would keep
    its start and cut the question off); the counts go into the summary."""
    import datasets
    from transformers import AutoTokenizer

    from alfa.train.overlong import drop_overlong, row_tokens

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    short, long = [{"role": "user", "content": "My knee hurts."}], [{"role": "user", "content": "My knee hurts. " * 40}]
    ask = [{"role": "assistant", "content": "When did it start?"}]
    longer_rejected = [{"role": "assistant", "content": "When did it start? " * 10}]
    ds = datasets.Dataset.from_list(
        [
            {"prompt": short, "chosen": ask, "rejected": ask},
            {"prompt": long, "chosen": ask, "rejected": ask},
            {"prompt": short, "chosen": ask, "rejected": longer_rejected},
        ]
    )
    limit = row_tokens(tokenizer, ds[0])
    kept, dropped = drop_overlong(ds, tokenizer, limit)
    assert (len(kept), dropped) == (1, 2) and kept[0]["rejected"] == ask  # the longer side decides
    assert drop_overlong(ds, tokenizer, None)[1] == 0

    from alfa.train.recipe import load_recipe
    from alfa.train.run import load_split

    def overlong_recipe(stage, **trl):
        path = _recipe(tmp_path, f"{stage}-overlong", tiny_model_dir, pairs_dir, stage=stage, max_steps=1, **trl)
        path.write_text(path.read_text().replace("attributes: null}", "attributes: null, drop_overlong: true}"))
        return path

    rows = load_split(load_recipe(overlong_recipe("sft")), "train")
    lengths = sorted(row_tokens(tokenizer, r) for r in rows)
    limit = lengths[len(lengths) // 2]
    expected = sum(n > limit for n in lengths)
    assert 0 < expected < len(rows)
    summary = run_recipe(overlong_recipe("sft", max_length=limit))
    assert summary["dropped_overlong"]["train"] == expected and summary["train_rows"] == len(rows) - expected
    with pytest.raises(ValueError, match="drop_overlong is for stages sft and dpo"):
        load_recipe(overlong_recipe("reward"))
