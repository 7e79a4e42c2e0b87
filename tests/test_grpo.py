"""`stage: grpo` with alfa's multi-turn rollout: the tiny model consults the fact-select patient (MiniLM) on real
MedQA dev cases; the env mask covers exactly the patient's tokens; two GRPO steps change the weights."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from alfa.dialogue.consult import read_student_turn
from alfa.train.rewards import asked_before_answer, correct, reward_function

ROOT = Path(__file__).resolve().parents[1]
LENGTH_REWARD = "def length(completions, **kwargs):\n    return [float(len(c[0]['content'])) for c in completions]\n"


@pytest.fixture(scope="module")
def tasks_dir(tmp_path_factory, medqa_path) -> Path:
    from alfa.methods.sml import write_tasks_dir
    from alfa.methods.tasks import read_cases

    out = tmp_path_factory.mktemp("tasks")
    write_tasks_dir(read_cases(medqa_path, 4), out, view="initial")
    return out


def write_recipe(
    tmp_path: Path, model: Path, tasks: Path, steps: int = 2, rewards: str = "[correct]", max_length: int = 256
) -> Path:
    recipe = tmp_path / "grpo.yaml"
    recipe.write_text(
        f"stage: grpo\nmodel: {{name_or_path: {model}}}\ndata: {{tasks_dir: {tasks}, eval_split: null}}\n"
        f"rollout: {{partner: fact, turns: 3, max_turn_tokens: 10, rewards: {rewards}}}\n"
        f"trl:\n  output_dir: {tmp_path / 'run'}\n  per_device_train_batch_size: 4\n  num_generations: 4\n"
        f"  max_completion_length: {max_length}\n  learning_rate: 1.0e-2\n  max_steps: {steps}\n  logging_steps: 1\n"
        "  save_strategy: 'no'\n  bf16: false\n  report_to: []\n  seed: 0\n"
    )
    return recipe


def runs(mask: list[int]) -> list[tuple[int, int, int]]:
    """(value, start, end) of each maximal run of equal mask values."""
    out, start = [], 0
    for i in range(1, len(mask) + 1):
        if i == len(mask) or mask[i] != mask[start]:
            out.append((mask[start], start, i))
            start = i
    return out


def test_env_mask_is_zero_exactly_on_the_partners_tokens(tmp_path, tiny_model_dir, tasks_dir):
    from alfa.train.model_options import load_tokenizer, loading_kwargs
    from alfa.train.recipe import load_recipe, trl_config_class
    from alfa.train.rollout import make_partner, partner_segment
    from alfa.train.run import grpo_trainer, load_split

    recipe = load_recipe(write_recipe(tmp_path, tiny_model_dir, tasks_dir))
    tok = load_tokenizer(recipe.model)
    train = load_split(recipe, "train")
    partner = make_partner("fact", str(tmp_path))
    config = trl_config_class("grpo")(**recipe.trl)
    trainer = grpo_trainer(recipe, config, tok, train, None, loading_kwargs(recipe.model), partner)
    prompts = [p for p in train["prompt"] for _ in range(2)]
    out = trainer.rollout_func(prompts, trainer)
    assert len(out["completion_ids"]) == len(out["env_mask"]) == len(prompts)
    partner_turns = 0
    for ids, mask, transcript in zip(out["completion_ids"], out["env_mask"], out["transcript"]):
        turns = json.loads(transcript)
        policy = [t["text"] for t in turns if t["role"] == "policy"]
        partner = [t["text"] for t in turns if t["role"] == "partner"]
        spans = runs(mask)
        assert spans[0][0] == 1, "a completion starts with the policy's own turn"
        # every run of 1s is one policy turn, as the policy wrote it
        assert [tok.decode(ids[a:b], skip_special_tokens=True) for v, a, b in spans if v == 1] == policy
        # every run of 0s is one partner reply in the chat template's format (after the end-of-turn token the
        # policy did not write, when its turn was cut at max_turn_tokens), and nothing else
        zero_runs = [(a, b) for v, a, b in spans if v == 0]
        assert len(zero_runs) == len(partner)
        for (a, b), reply in zip(zero_runs, partner):
            segment = tok(partner_segment(tok, reply), add_special_tokens=False)["input_ids"]
            assert ids[b - len(segment) : b] == segment
            assert ids[a : b - len(segment)] in ([], [tok.eos_token_id])
            assert reply in tok.decode(ids[a:b])
        partner_turns += len(partner)
    assert partner_turns > 0, "the untrained policy never answers, so the patient must have spoken"
    assert out["questions_asked"] == [sum(t["kind"] == "question" for t in json.loads(x)) for x in out["transcript"]]


def test_two_grpo_steps_change_the_weights(tmp_path, tiny_model_dir, tasks_dir):
    import torch
    from safetensors.torch import load_file

    from alfa.train.run import run_recipe

    (tmp_path / "len_reward.py").write_text(LENGTH_REWARD)  # a reward that varies within a group even untrained
    recipe = write_recipe(
        tmp_path, tiny_model_dir, tasks_dir, rewards=f"[correct, {tmp_path / 'len_reward.py'}:length]"
    )
    summary = run_recipe(recipe)
    assert summary["stage"] == "grpo" and summary["global_steps"] == 2
    logged = [h for h in summary["log_history"] if "rewards/length/mean" in h]
    assert len(logged) == 2 and all("rewards/correct/mean" in h for h in logged)
    before = load_file(str(tiny_model_dir / "model.safetensors"))
    after = load_file(str(tmp_path / "run" / "model.safetensors"))
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed, "two GRPO steps left every weight as it was"


def test_recipe_and_dry_run_refuse_what_grpo_cannot_train(tmp_path, tiny_model_dir, tasks_dir):
    from alfa.train.recipe import load_recipe

    recipe = write_recipe(tmp_path, tiny_model_dir, tasks_dir, rewards="[correct, no_such_reward]")
    r = subprocess.run(
        [sys.executable, "-m", "alfa.cli", "train", str(recipe), "--dry-run"], capture_output=True, text=True
    )
    assert r.returncode == 1 and "[FAIL] rollout.rewards: reward 'no_such_reward'" in r.stdout
    premise = write_recipe(tmp_path, tiny_model_dir, tasks_dir, rewards="[retrieved_premise]")  # MedQA: none removed
    r = subprocess.run(
        [sys.executable, "-m", "alfa.cli", "train", str(premise), "--dry-run"], capture_output=True, text=True
    )
    assert r.returncode == 1 and "no task names its removed premise" in r.stdout
    bad = tmp_path / "dpo_tasks.yaml"
    bad.write_text(recipe.read_text().replace("stage: grpo", "stage: dpo"))
    with pytest.raises(Exception, match="stage grpo trains on data.tasks_dir"):
        load_recipe(bad)
    groups = (
        recipe.read_text().replace("num_generations: 4", "num_generations: 3").replace("no_such_reward", "answered")
    )
    recipe.write_text(groups)
    r = subprocess.run(
        [sys.executable, "-m", "alfa.cli", "train", str(recipe), "--dry-run"], capture_output=True, text=True
    )
    assert r.returncode == 1 and "[FAIL] num_generations" in r.stdout
    recipe.write_text(groups.replace("partner: fact", "partner: openai:no-url"))
    r = subprocess.run(
        [sys.executable, "-m", "alfa.cli", "train", str(recipe), "--dry-run"], capture_output=True, text=True
    )
    assert "[FAIL] rollout.partner: backend 'openai:no-url'" in r.stdout


def test_rewards_and_turn_reading():
    assert correct(None, ["C", None, "B"], ["C", "C", "C"]) == [1.0, 0.0, 0.0]
    assert asked_before_answer(None, ["C", "C", None], [2, 0, 3]) == [1.0, 0.0, 0.0]
    turns = [{"role": "policy", "text": "one two three"}, {"role": "partner", "text": "not counted at all"}]
    assert reward_function("token_cost")(None, [json.dumps(turns), json.dumps(turns * 500)]) == [-0.003, -1.0]
    options = {"A": "Gentamicin", "B": "Ciprofloxacin", "C": "Ceftriaxone"}
    assert read_student_turn("Answer: C", options) == ("answer", "C")
    assert read_student_turn("Final answer: (B)", options) == ("answer", "B")
    assert read_student_turn("A 21-year-old with fever: how long has the knee hurt?", options)[0] == "question"
    assert read_student_turn("Answer: Z", options) == ("answer", None)
    # what SmolLM2 writes: an option marked as an answer, with no question in it
    assert read_student_turn("C. Ceftriaxone\n\nThe answer is: C. Ceftriaxone", options) == ("answer", "C")
    assert read_student_turn("Is it B) Ciprofloxacin you were given?", options)[0] == "question"
    assert read_student_turn("  ", options) == ("empty", None)
    with pytest.raises(ValueError, match="not a built-in"):
        reward_function("no_such_reward")


def test_interactivity_reward_rates_each_conversation_once_through_the_cache(tmp_path):
    """The judged term of CollabLLM's reward: the judge reads the policy's turns as the doctor's and the partner's as
    the patient's (collab build's question), an unreadable rating scores 0 and is counted, a rerun pays nothing."""
    from alfa.dialogue.interactivity import JUDGE_PROMPT
    from alfa.train.rewards import JudgedInteractivity
    from tests.scripted import ScriptedBackend

    def judge(messages, seed):
        return "5" if "How long has the knee hurt?" in messages[0]["content"] else "It was fine."

    asked = [
        {"role": "policy", "kind": "question", "text": "How long has the knee hurt?"},
        {"role": "partner", "kind": "answer", "text": "Three days."},
        {"role": "policy", "kind": "answer", "text": "Answer: C"},
    ]
    blurted = [{"role": "policy", "kind": "answer", "text": "Answer: A"}]
    transcripts = [json.dumps(asked), json.dumps(blurted)]
    first = ScriptedBackend("judge", judge)
    reward = JudgedInteractivity("local", tmp_path / "judge_cache.sqlite", first)
    assert reward.__name__ == "interactivity"
    prompts = [
        [{"role": "system", "content": "s"}, {"role": "user", "content": f"Knee pain, case {n}."}] for n in (1, 2)
    ]
    assert reward(prompts, None, transcripts) == [1.0, 0.0] and reward.failures == 1
    assert first.requests[0][0]["content"] == (
        f"{JUDGE_PROMPT}\n\nWhat the doctor was shown:\nKnee pain, case 1.\n\nThe conversation:\n"
        "assistant: How long has the knee hurt?\nuser: Three days.\nassistant: Answer: C"
    )  # the judge sees the case it rates
    again = ScriptedBackend("judge", judge)
    assert JudgedInteractivity("local", tmp_path / "judge_cache.sqlite", again)(prompts, None, transcripts) == [
        1.0,
        0.0,
    ]
    assert again.calls == 0
    from alfa.train.rewards import correct, judge_figures

    assert judge_figures([correct, reward]) == {
        "judge": "local",
        "calls_made": 2,
        "from_cache": 0,
        "unreadable_or_failed": 1,
    }  # what alfa_train.json says of the judge
    assert judge_figures([correct]) is None
    with pytest.raises(ValueError, match="set rollout.judge"):
        reward_function("interactivity")
    with pytest.raises(ValueError, match="backend 'openai:no-url'"):
        reward_function("interactivity", "openai:no-url")


def test_grpo_under_deepspeed_zero3_generates_from_gathered_weights(tmp_path, tiny_model_dir, tasks_dir):
    """The launcher users use (`accelerate launch --use_deepspeed`, one CPU process, gloo) with the shipped ZeRO-3
    config: the rollout generates from weights gathered by TRL's unwrap_model_for_generation."""
    import os

    ds = ROOT / "configs" / "deepspeed" / "zero3.json"
    recipe = write_recipe(tmp_path, tiny_model_dir, tasks_dir)
    recipe.write_text(recipe.read_text().replace("trl:\n", f"launch: {{num_processes: 1, deepspeed: {ds}}}\ntrl:\n", 1))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    out = subprocess.run(
        [sys.executable, "-m", "alfa.cli", "train", str(recipe)], capture_output=True, text=True, timeout=600, env=env
    )
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "alfa_train.json").read_text())
    assert summary["deepspeed"] == {"enabled": True, "zero_stage": 3} and summary["global_steps"] == 2
    assert all("rewards/correct/mean" in h for h in summary["log_history"] if "loss" in h)


class FirstFactPartner:
    """Not a model: answers every question with its task's first fact, so a reply shows which facts it was handed."""

    def replies(self, asks):
        return [facts[0] for facts, _, _ in asks]


def _rollout(tmp_path, tiny_model_dir, tasks, max_length=256, partner=None):
    from alfa.train.model_options import load_tokenizer, loading_kwargs
    from alfa.train.recipe import load_recipe, trl_config_class
    from alfa.train.rollout import make_partner
    from alfa.train.run import grpo_trainer, load_split

    recipe = load_recipe(write_recipe(tmp_path, tiny_model_dir, tasks, max_length=max_length))
    tok = load_tokenizer(recipe.model)
    train = load_split(recipe, "train")
    config = trl_config_class("grpo")(**recipe.trl)
    partner = partner or make_partner("fact", ".")
    trainer = grpo_trainer(recipe, config, tok, train, None, loading_kwargs(recipe.model), partner)
    prompts = [p for p in train["prompt"] for _ in range(2)]
    return tok, train, trainer.rollout_func(prompts, trainer)


def test_tasks_that_share_a_prompt_are_told_apart_by_their_id(tmp_path, tiny_model_dir, tasks_dir):
    """Two tasks, one prompt text, other facts: each conversation's patient answers from its own task's facts."""
    import polars as pl

    one = pl.read_parquet(tasks_dir / "data" / "train.parquet").head(1)
    twins = pl.concat(
        [
            one.with_columns(task_id=pl.lit("twin-a"), facts=pl.lit(pl.Series([["I have had a fever for two days."]]))),
            one.with_columns(task_id=pl.lit("twin-b"), facts=pl.lit(pl.Series([["My left knee is swollen."]]))),
        ]
    )
    (tmp_path / "twins" / "data").mkdir(parents=True)
    twins.write_parquet(tmp_path / "twins" / "data" / "train.parquet")
    tok, train, out = _rollout(tmp_path, tiny_model_dir, tmp_path / "twins", partner=FirstFactPartner())
    own = {"twin-a": "fever", "twin-b": "knee"}
    heard = 0
    for prompt, transcript in zip([p for p in train["prompt"] for _ in range(2)], out["transcript"]):
        for turn in json.loads(transcript):
            if turn["role"] == "partner":
                assert own[prompt[0]["task_id"]] in turn["text"]
                heard += 1
    assert heard > 0


def test_the_rewards_read_the_conversation_the_loss_sees(tmp_path, tiny_model_dir, tasks_dir):
    """A short max_completion_length: every completion fits it, and the transcript the rewards read is exactly the
    policy's visible turns (before, the transcript held turns cut from the loss)."""
    tok, _, out = _rollout(tmp_path, tiny_model_dir, tasks_dir, max_length=14)
    for ids, mask, transcript in zip(out["completion_ids"], out["env_mask"], out["transcript"]):
        assert len(ids) == len(mask) <= 14
        policy = [t["text"] for t in json.loads(transcript) if t["role"] == "policy"]
        assert [tok.decode(ids[a:b], skip_special_tokens=True) for v, a, b in runs(mask) if v == 1] == policy


def test_retrieved_premise_rewards_a_conversation_whose_partner_told_the_removed_premise(tmp_path, gsm8k_path):
    """On the GSM8K missing-premise testbed: the tasks dir carries the removed premise and a word-problem prompt;
    the reward is 1 exactly when a partner turn quoted it, None for a task without one."""
    import polars as pl

    from alfa.dialogue.consult import PROBLEM_STUDENT_SYSTEM
    from alfa.eval.gsm8k import write_gsm8k_cases
    from alfa.methods.sml import write_tasks_dir
    from alfa.methods.tasks import read_cases
    from alfa.train.rewards import retrieved_premise

    write_gsm8k_cases(gsm8k_path, tmp_path / "gsm")
    write_tasks_dir(read_cases(tmp_path / "gsm" / "train.jsonl", 3), tmp_path / "tasks")
    tasks = pl.read_parquet(tmp_path / "tasks" / "data" / "train.parquet").to_dicts()
    assert all(t["decisive_fact"] is not None and t["prompt"][0]["content"] == PROBLEM_STUDENT_SYSTEM for t in tasks)
    t = tasks[0]
    premise = t["facts"][t["decisive_fact"]]
    other = next(f for i, f in enumerate(t["facts"]) if i != t["decisive_fact"])
    told = [{"role": "policy", "text": "How many?"}, {"role": "partner", "text": premise}]
    not_told = [{"role": "policy", "text": "How many?"}, {"role": "partner", "text": other}]
    said_by_policy = [{"role": "policy", "text": premise}]  # the policy's own words are not the partner's
    transcripts = [json.dumps(x) for x in (told, not_told, said_by_policy, told)]
    facts = [t["facts"]] * 4
    assert retrieved_premise(None, facts, [t["decisive_fact"]] * 3 + [None], transcripts) == [1.0, 0.0, 0.0, None]
