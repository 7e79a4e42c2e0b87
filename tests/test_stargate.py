"""STaR-GATE and dialogue SFT: the training template masks exactly the partner's tokens, one iteration keeps each
task's best-scored conversation and trains one step from m0, a kill -9 mid-iteration repeats no finished call.

The questioner is always a real model (the tiny Llama); the roleplayer and oracle of the in-process test are a
`ScriptedPartner` (a script, not a model), so what the loop does with their replies is known exactly."""

import dataclasses
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from conftest import kill_9_when_cached
from scripted import ScriptedBackend

from alfa.dialogue.engine import Episode, run_episodes
from alfa.llm.backends import Completion
from alfa.llm.cache import CallCache
from alfa.llm.scorer import LogProbScorer
from alfa.methods.stargate import (
    ROLEPLAYER_SYSTEM,
    StarGateConfig,
    final_context,
    iteration_tasks,
    load_config,
    sample_conversations,
)
from alfa.methods.stargate_run import check_same_config, run_stargate
from alfa.methods.tasks import Task, tasks_from_profiles
from alfa.train.chat_templates import assistant_token_mask, training_chat_template
from alfa.yamlconfig import ConfigError

ROOT = Path(__file__).resolve().parents[1]
TASKS, PROFILES = ROOT / "examples" / "stargate_tasks.jsonl", ROOT / "examples" / "stargate_profiles.jsonl"
DIALOGUE = [
    {"role": "system", "content": "Ask first."},
    {"role": "user", "content": "Suggest a dinner."},
    {"role": "assistant", "content": "Any allergies?"},
    {"role": "user", "content": "Peanuts."},
    {"role": "assistant", "content": "Try a lentil curry."},
]


class ScriptedPartner(ScriptedBackend):
    """A scripted roleplayer and oracle (not a model): the roleplayer answers with the first hidden fact, the
    oracle with every hidden fact joined. Counts the requests it answers."""

    def reply(self, messages):
        facts = [line[2:] for line in messages[-1]["content"].splitlines() if line.startswith("- ")]
        return " ".join(facts) if "Their task:" in messages[-1]["content"] else facts[0]


def _tokenizers(tiny_model_dir):
    from transformers import AutoTokenizer

    from alfa.llm.embedded import smollm2_path

    return [AutoTokenizer.from_pretrained(p) for p in (tiny_model_dir, smollm2_path())]


def test_training_template_renders_as_the_models_own_and_masks_exactly_the_partners_tokens(tiny_model_dir):
    for tok in _tokenizers(tiny_model_dir):
        template = training_chat_template(tok, "model")
        assert template is not None
        assert tok.apply_chat_template(DIALOGUE, chat_template=template, tokenize=False) == tok.apply_chat_template(
            DIALOGUE, tokenize=False
        )
        ids, mask = assistant_token_mask(tok, DIALOGUE, template)
        trained = tok.decode([i for i, m in zip(ids, mask) if m])
        assert trained == "Any allergies?<|im_end|>Try a lentil curry.<|im_end|>"  # the stop token is learned too
        untrained = tok.decode([i for i, m in zip(ids, mask) if not m])
        for partner in ("Ask first.", "Suggest a dinner.", "Peanuts."):
            assert partner in untrained and partner not in trained


def test_dialogue_sft_gives_no_loss_to_user_tokens(tmp_path, tiny_model_dir):
    """What TRL's SFTTrainer will train on, read from its own processed dataset."""
    from alfa.train.model_options import load_tokenizer
    from alfa.train.recipe import load_recipe, trl_config_class
    from alfa.train.run import build_trainer, load_split

    (tmp_path / "dialogues" / "data").mkdir(parents=True)
    pl.DataFrame({"messages": [DIALOGUE, DIALOGUE[:3]]}).write_parquet(
        tmp_path / "dialogues" / "data" / "train.parquet"
    )
    recipe = load_recipe(
        ROOT / "recipes" / "tiny" / "sft_dialogues.yaml",
        [f"model.name_or_path={tiny_model_dir}", f"data.dialogues_dir={tmp_path / 'dialogues'}",
         f"trl.output_dir={tmp_path / 'out'}"],
    )  # fmt: skip
    assert recipe.trl["assistant_only_loss"] is True  # the default for a dialogues dir
    config = trl_config_class("sft")(**recipe.trl)
    tokenizer = load_tokenizer(recipe.model)
    trainer = build_trainer(recipe, config, tokenizer, load_split(recipe, "train"), None, None, {})
    row = trainer.train_dataset[0]
    trained = tokenizer.decode([i for i, label in zip(row["input_ids"], row["labels"]) if label != -100])
    assert trained == "Any allergies?<|im_end|>Try a lentil curry.<|im_end|>"


def test_recipe_refuses_dialogues_outside_sft_and_two_data_sources(tmp_path):
    base = (ROOT / "recipes" / "tiny" / "sft_dialogues.yaml").read_text()
    for text, message in (
        (base.replace("stage: sft", "stage: dpo"), r"dialogues_dir \(conversations\) is for stage sft"),
        (
            base.replace("eval_split: null", "eval_split: null, pairs_dir: x"),
            "exactly one of pairs_dir, dialogues_dir and tasks_dir",
        ),
    ):
        path = tmp_path / "r.yaml"
        path.write_text(text)
        from alfa.train.recipe import load_recipe

        with pytest.raises(ConfigError, match=message):
            load_recipe(path)


def test_config_refuses_unknown_keys_and_impossible_values(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("output_dir: o\nrecipe: r.yaml\ntasks: t\nprofiles: p\nsampels: 3\n")
    with pytest.raises(ConfigError, match="unknown key 'sampels'"):
        load_config(path)
    with pytest.raises(ValueError, match="top_k"):
        StarGateConfig(output_dir="o", recipe="r", tasks="t", profiles="p", samples=2, top_k=3)
    with pytest.raises(ValueError, match="oracle 'case'"):
        StarGateConfig(output_dir="o", recipe="r", tasks="t", profiles="p", oracle="case")
    with pytest.raises(ValueError, match="roleplayer_instruction is empty"):
        StarGateConfig(output_dir="o", recipe="r", tasks="t", profiles="p", roleplayer_instruction=" ")


def test_the_roleplayer_reads_the_configs_instruction_and_a_run_made_with_another_is_refused(tmp_path):
    """The questioner is a script here (the instruction only reaches the roleplayer's requests)."""
    instruction = "Answer as the person, from the facts only; never answer the task."
    cfg = StarGateConfig(
        output_dir=str(tmp_path / "sg"),
        recipe="r.yaml",
        tasks=str(TASKS),
        profiles=str(PROFILES),
        limit=2,
        samples=2,
        turns=2,
        regularizer="none",
        roleplayer_instruction=instruction,
    )
    questioner = ScriptedBackend("questioner", reply=lambda messages, seed: f"Question {seed}?")
    partner = ScriptedPartner()
    tasks = tasks_from_profiles(TASKS, PROFILES, cfg.limit)
    cache = CallCache(tmp_path / "cache.sqlite")
    try:
        episodes, _ = sample_conversations(tasks, questioner, partner, cfg, 0, cache, tmp_path / "c.jsonl")
    finally:
        cache.close()
    assert len(episodes) == 4 and all(len(e["data"]["conversation"]) == 2 for e in episodes)
    assert partner.calls == 4  # one answer per distinct (task, question): 2 tasks x 2 seeds, both turns cached
    assert {m[0]["content"] for m in partner.requests} == {instruction}

    saved = tmp_path / "sg" / "config.json"
    saved.parent.mkdir()
    check_same_config(cfg, saved)
    shortened = r"other settings \(roleplayer_instruction: 'Answer as the .*\.\.\.' -> \"You are the .*\.\.\.\"\)"
    with pytest.raises(ValueError, match=shortened):  # long values cut, each keeping its closing quote
        check_same_config(dataclasses.replace(cfg, roleplayer_instruction=ROLEPLAYER_SYSTEM), saved)
    # a run dir from before the key existed used the default instruction: resumed with it, refused with another
    saved.write_text(json.dumps({k: v for k, v in dataclasses.asdict(cfg).items() if k != "roleplayer_instruction"}))
    check_same_config(dataclasses.replace(cfg, roleplayer_instruction=ROLEPLAYER_SYSTEM), saved)
    saved.write_text(json.dumps({k: v for k, v in dataclasses.asdict(cfg).items() if k != "roleplayer_instruction"}))
    with pytest.raises(ValueError, match=r"roleplayer_instruction: \"You are the person.* -> 'Answer as the"):
        check_same_config(cfg, saved)


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "stargate").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads_and_names_a_shipped_recipe(path):
    cfg = load_config(path)
    assert (ROOT / cfg.recipe).is_file(), f"{path.name}: recipe {cfg.recipe} is not in the repository"
    assert cfg.top_k <= cfg.samples


def test_halves_alternate_and_cover_every_task():
    tasks = [Task(str(i), "t", ["h"]) for i in range(7)]
    first, second = (iteration_tasks(tasks, k, alternate=True) for k in (0, 1))
    assert sorted(t.task_id for t in first + second) == sorted(t.task_id for t in tasks)
    assert not {t.task_id for t in first} & {t.task_id for t in second}
    assert [t.task_id for t in iteration_tasks(tasks, 2, True)] == [t.task_id for t in first]


def tiny_config(tmp_path, tiny_model_dir, **settings) -> StarGateConfig:
    """One iteration of the tiny model over the hand-written tasks x profiles, both halves at once."""
    return StarGateConfig(
        output_dir=str(tmp_path / "sg"),
        recipe=str(ROOT / "recipes" / "tiny" / "sft_dialogues.yaml"),
        questioner=str(tiny_model_dir),
        tasks=str(TASKS),
        profiles=str(PROFILES),
        iterations=1,
        alternate_halves=False,
        max_new_tokens=12,
        **settings,
    )


def test_one_iteration_keeps_the_argmax_under_m0_and_trains_one_step_from_m0(tmp_path, tiny_model_dir):
    """2 tasks x 2 hidden profiles x 3 samples, the tiny model as questioner, the scripted partner."""
    cfg = tiny_config(tmp_path, tiny_model_dir, samples=3, turns=2)
    partner = ScriptedPartner()
    [summary] = run_stargate(cfg, roleplayer=partner, oracle=partner)
    it = tmp_path / "sg" / "iter_0"
    scores = pl.read_parquet(it / "scores.parquet")
    assert scores.height == 12 and summary["tasks"] == 4 and summary["kept"] == 4
    best = scores.group_by("task_id").agg(pl.col("score").max().alias("best"))
    kept = scores.filter("kept").join(best, on="task_id")
    assert kept.height == 4 and (kept["score"] == kept["best"]).all()

    # the score is log p(gold | task, conversation) under m0, recomputed here without the cache
    episodes = {e["episode_id"]: e for e in map(json.loads, (it / "conversations.jsonl").read_text().splitlines())}
    tasks = {t.task_id: t for t in tasks_from_profiles(TASKS, PROFILES)}
    row = kept.row(0, named=True)
    episode = episodes[row["episode_id"]]
    gold = " ".join(tasks[row["task_id"]].hidden)
    fresh = LogProbScorer(tiny_model_dir).score(
        [(final_context(tasks[row["task_id"]], episode["data"]["conversation"]), gold)]
    )
    assert fresh[0] == pytest.approx(row["score"], abs=1e-3)
    answers = [a for _, a in episode["data"]["conversation"]]
    assert all(a == tasks[row["task_id"]].hidden[0] for a in answers if a)  # the roleplayer's replies, verbatim

    train = pl.read_parquet(it / "kept" / "data" / "train.parquet")
    messages = train.filter(pl.col("episode_id") == row["episode_id"])["messages"].to_list()[0]
    assert messages[-1] == {"role": "assistant", "content": episode["result"]["final"]}  # the `self` regulariser
    assert "personal health information" in (it / "kept" / "README.md").read_text().lower()

    trained = json.loads((it / "model" / "alfa_train.json").read_text())
    assert trained["global_steps"] >= 1 and f"model.name_or_path={tiny_model_dir}" in trained["overrides"]
    # the roleplayer sees the profile, not the task: one answer per distinct (profile, question), shared by tasks
    asked = {
        (e["result"]["task_id"].split("/")[1], q) for e in episodes.values() for q, _ in e["data"]["conversation"] if q
    }
    assert partner.calls == 4 + len(asked)  # one oracle call per task
    # the roleplayer's requests come task by task within each turn (its hidden information in a row:
    # llama.cpp's prompt cache then processes that prefix once per task, not once per sample)
    prefixes = [
        m[-1]["content"].split("The assistant asks:")[0] for m in partner.requests if "asks:" in m[-1]["content"]
    ]
    runs = 1 + sum(a != b for a, b in zip(prefixes, prefixes[1:]))
    assert len(set(prefixes)) == 2 and runs <= 4 * cfg.turns < len(prefixes)  # the two profiles, never the tasks

    again = ScriptedPartner()
    run_stargate(cfg, roleplayer=again, oracle=again)  # done: read back, nothing called, nothing trained
    assert again.calls == 0
    with pytest.raises(ValueError, match=r"other settings \(samples: 3 -> 2\)"):  # not the run that dir holds
        run_stargate(dataclasses.replace(cfg, samples=2), roleplayer=again, oracle=again)


def test_a_failed_roleplayer_call_stops_the_iteration_before_training_and_a_rerun_asks_only_it(
    tmp_path, tiny_model_dir
):
    class FlakyPartner(ScriptedPartner):
        """Fails its first roleplayer call (an HTTP error), then answers as the scripted partner."""

        failed = False

        def reply(self, messages):
            if "Their task:" not in messages[-1]["content"] and not self.failed:
                self.failed = True
                return Completion(None, error="HTTP 503: server overloaded")
            return super().reply(messages)

    cfg = tiny_config(tmp_path, tiny_model_dir, limit=2, samples=2, turns=1, regularizer="none")
    flaky = FlakyPartner()
    with pytest.raises(RuntimeError, match=r"1 conversation\(s\) had a failed call .*HTTP 503.*rerun"):
        run_stargate(cfg, roleplayer=flaky, oracle=flaky)
    assert not (tmp_path / "sg" / "iter_0" / "model").exists()  # nothing trained on a conversation with a gap
    healthy = ScriptedPartner()
    [summary] = run_stargate(cfg, roleplayer=healthy, oracle=healthy)
    assert healthy.calls == 1 and summary["conversations"] == 4 and summary["conversations_with_failed_calls"] == 0


def test_kill_9_mid_iteration_then_rerun_repeats_no_finished_call(tmp_path, tiny_model_dir):
    """A real `alfa stargate` (the tiny model in every role) killed while it writes its call cache."""
    config = tmp_path / "sg.yaml"
    out = tmp_path / "sg"
    config.write_text(
        f"output_dir: {out}\nrecipe: {ROOT / 'recipes' / 'tiny' / 'sft_dialogues.yaml'}\nquestioner: {tiny_model_dir}\n"
        f"tasks: {TASKS}\nprofiles: {PROFILES}\nroleplayer: transformers:{tiny_model_dir}\n"
        f"oracle: transformers:{tiny_model_dir}\nsamples: 3\nturns: 2\niterations: 1\nalternate_halves: false\n"
        "max_new_tokens: 8\n"
    )
    cmd = [sys.executable, "-m", "alfa.cli", "-q", "stargate", str(config)]
    cached = kill_9_when_cached(cmd, out / "cache.sqlite", at_least=8)
    assert not (out / "iter_0" / "summary.json").exists()
    subprocess.run(cmd, check=True, capture_output=True)
    summary = json.loads((out / "iter_0" / "summary.json").read_text())
    rows = sqlite3.connect(out / "cache.sqlite").execute("SELECT key, model FROM calls").fetchall()
    model_calls = {k for k, model in rows if not model.startswith("logprob-scorer")}  # not the m0 scores
    made = sum(summary[part]["calls_made"] - summary[part]["failed"] for part in ("calls", "oracle_calls"))
    # every answer the rerun got from a model is one that was not cached at the kill: none was paid twice
    assert made == len(model_calls - cached) and len(model_calls & cached) >= 8
    episodes = (out / "iter_0" / "conversations.jsonl").read_text().splitlines()
    assert len(episodes) == 12 and len({json.loads(e)["episode_id"] for e in episodes}) == 12


def test_the_roleplayer_is_shown_the_hidden_information_only_never_the_task_or_its_options():
    from alfa.methods.stargate import roleplayer_messages

    task = Task("c1", "Answer this question about the patient: which drug?\nA. Ceftriaxone\nB. Aspirin", ["I am 40."])
    shown = roleplayer_messages(task, "How old are you?", ROLEPLAYER_SYSTEM)[-1]["content"]
    assert "I am 40." in shown and "How old are you?" in shown
    assert "Ceftriaxone" not in shown and "which drug" not in shown


def test_case_tasks_take_the_oracles_gold_unless_the_config_says_case(medqa_path):
    from alfa.methods.tasks import tasks_from_cases

    [task] = tasks_from_cases(medqa_path, limit=1)
    assert task.gold is None and task.options  # the oracle writes it from the facts
    [labelled] = tasks_from_cases(medqa_path, limit=1, answer_as_gold=True)
    assert labelled.gold.startswith("The answer is ")


class ScriptedScorer:
    """Not a model: returns the score written for each conversation's first question, to test the ranking alone."""

    def __init__(self, by_question: dict[str, float]):
        self.by_question = by_question

    def score(self, items):
        return [self.by_question[next(m["content"] for m in ctx if m["role"] == "assistant")] for ctx, _ in items]


def test_a_conversation_that_answers_where_it_should_ask_is_never_kept_however_well_it_scores():
    from alfa.methods.stargate import StarGateProtocol, score_table

    task = Task(
        "c1", "Which drug?\nA. Ceftriaxone\nB. Aspirin", ["I am 40."], options={"A": "Ceftriaxone", "B": "Aspirin"}
    )
    protocol = StarGateProtocol([None], [None], None, turns=1, final_answer=False, roleplayer_instruction="x")
    episodes = []
    for sample, reply in enumerate(["A. Ceftriaxone", "How old are you?", "Answer: B"]):
        e = Episode(f"c1#{sample}", {"task": task, "conversation": [], "sample": sample}, state="question")
        protocol.apply(e, "questioner#0", "question", Completion(reply), "k")
        protocol.apply(e, "roleplayer", "answer", Completion("I am 40."), "k")
        episodes.append({"episode_id": e.episode_id, "data": e.data, "result": e.result})
    scores = score_table(
        episodes,
        {"c1": task},
        {"c1": "gold"},
        ScriptedScorer({"A. Ceftriaxone": -1.0, "How old are you?": -5.0, "Answer: B": -0.5}),
        top_k=1,
    )
    assert scores["answer_turns"].to_list() == [1, 0, 1]
    assert scores.filter("kept")["episode_id"].to_list() == ["c1#1"]  # the one that asked, though it scored lowest


def test_training_and_evaluation_show_a_case_in_the_same_words(medqa_path):
    """One renderer and one consultation format per task type: what STaR-GATE, SML, CollabLLM and GRPO tasks train on
    is what `alfa eval interactive` shows (the case) and `--abstain consult` asks in (the chat)."""
    from alfa.dialogue.consult import case_prompt_text
    from alfa.eval.case_prompts import case_text
    from alfa.eval.interactive import consult_messages
    from alfa.methods.stargate import final_context, task_messages
    from alfa.methods.tasks import read_cases, tasks_from_cases

    [case] = read_cases(medqa_path, 1)
    [task] = tasks_from_cases(medqa_path, 1)
    shown = case_text(case, case.initial_info, [])
    assert task.task == shown == case_prompt_text(case.initial_info, case.question, case.options)
    conversation = [("Do you have a fever?", "No.")]
    # a STaR-GATE case task trains on exactly what `alfa eval interactive --abstain consult` shows the model
    assert task_messages(task, conversation) == consult_messages(case, case.initial_info, conversation)
    assert final_context(task, conversation)[-1]["content"].startswith("Now give your answer")


def test_a_word_problem_trains_in_the_consultation_format_with_the_evaluations_patient(tmp_path, gsm8k_path, embedder):
    """A GSM8K testbed case is a consultation like a diagnosis (the word-problem system turn, "Now give your
    answer"), its label gold is the answer turn "Answer: N", and `roleplayer: fact` is the evaluation's fact-select
    patient: one fact quoted verbatim, no call."""
    from alfa.dialogue.consult import PROBLEM_STUDENT_SYSTEM, answer_now
    from alfa.dialogue.patients import FactSelectPatient
    from alfa.eval.gsm8k import premise_question, write_gsm8k_cases
    from alfa.eval.interactive import consult_messages
    from alfa.methods.stargate import StarGateProtocol, final_context, task_messages
    from alfa.methods.tasks import read_cases, tasks_from_cases

    head = tmp_path / "head.jsonl"
    head.write_text("".join(gsm8k_path.open().readlines()[:20]))
    write_gsm8k_cases(head, tmp_path / "cases", heldout_share=0.0)
    cases_path = tmp_path / "cases" / "train.jsonl"
    case, task = read_cases(cases_path, 1)[0], tasks_from_cases(cases_path, 1, answer_as_gold=True)[0]
    assert task.consultation and task.options == {} and task.gold == f"Answer: {case.answer}"
    conversation = [("How many?", "Three.")]
    assert task_messages(task, conversation) == consult_messages(case, case.initial_info, conversation)
    assert task_messages(task, [])[0]["content"] == PROBLEM_STUDENT_SYSTEM
    assert final_context(task, conversation)[-1]["content"] == answer_now({})

    asker = ScriptedBackend("asks", lambda messages, seed: premise_question(case.facts[case.decisive_fact]))
    protocol = StarGateProtocol([asker], [asker], FactSelectPatient(embedder), 1, False, "unused")
    assert "roleplayer" not in protocol.roles
    start = Episode("e", {"task": task, "conversation": [], "sample": 0}, state="question")
    [episode] = run_episodes([start], protocol, CallCache(tmp_path / "c.sqlite"), tmp_path / "conv.jsonl")[0]
    [(question, answer)] = episode["data"]["conversation"]
    assert answer == case.facts[case.decisive_fact].rstrip(".") + "." and asker.calls == 1  # the asker's one call
    told = [t for t in episode["turns"] if t["role"] == "roleplayer"]
    assert [t["parsed"] for t in told] == [[case.decisive_fact]] and told[0]["call_key"] is None
