"""Flawed problems: the variants `alfa flaws make` writes from the hand-written sample, and `alfa eval flaws`
scoring a model that asks about everything (no better than the always-flag baseline) against one that asks only
when a premise is missing (scripted models and judge, not models)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scripted import ScriptedBackend

from alfa.dialogue.parsing import final_number
from alfa.eval.flaws import FLAWED, evaluate_flaws, read_items
from alfa.methods.flaws import ask_for, ask_which, make_items, read_problems, split_problem, write_items

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "flaws_problems.jsonl"


def test_items_remove_one_numbered_premise_contradict_one_and_add_another_problems_sentence(tmp_path):
    problems = read_problems(SAMPLE)
    items, rejects = make_items(problems)
    assert rejects == [] and len(items) == 4 * len(problems)
    assert make_items(problems) == (items, rejects)  # deterministic
    by_source = {p["id"]: p for p in problems}
    for item in items:
        premises, question = split_problem(by_source[item["source_id"]]["problem"])
        got, got_question = split_problem(item["problem"])
        assert got_question == question
        if item["kind"] == "intact":
            assert got == premises and item["removed"] is None
        elif item["kind"] == "missing_premise":
            assert item["removed"] in premises and any(c.isdigit() for c in item["removed"])
            assert got == [s for s in premises if s != item["removed"]]
        elif item["kind"] == "contradiction":  # the altered copy right after its original, a different number
            original, altered = item["conflict"]
            assert original in premises and altered not in premises and original != altered
            assert (
                got == premises[: premises.index(original) + 1] + [altered] + premises[premises.index(original) + 1 :]
            )
            assert [w for w in original.split() if not w[0].isdigit()] == [
                w for w in altered.split() if not w[0].isdigit()
            ]
        else:  # a distractor: every premise kept, one sentence of another problem added before the question
            assert got[:-1] == premises and got[-1] not in premises
            assert any(got[-1] in p["problem"] for p in problems if p["id"] != item["source_id"])
    assert write_items(SAMPLE, tmp_path / "a") == write_items(SAMPLE, tmp_path / "b") == {
        "intact": 12, "missing_premise": 12, "contradiction": 12, "distractor": 12, "rejected": 0
    }  # fmt: skip


def test_bad_problem_files_name_the_line(tmp_path):
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"id": "a", "problem": "x. y?", "answer": "1"}\n{"id": "b", "problem": "", "answer": "2"}\n')
    with pytest.raises(ValueError, match=r"p.jsonl:2: field 'problem' is empty"):
        read_problems(bad)
    bad.write_text('{"id": "a", "problem": "How many?", "answer": "1"}\n')
    items, rejects = make_items(read_problems(bad))
    assert items == [] and rejects == [{"id": "a", "line": 1, "reason": "no premise sentence before the question"}]


def judge_reply(messages, seed=None):
    reply = messages[-1]["content"].split("Reply: ", 1)[1].split("\n\nDoes the reply", 1)[0]
    if "maybe" in reply:
        return "Hmm."  # unreadable
    return "Yes" if reply.rstrip().endswith("?") else "No"


def test_asking_about_everything_scores_no_better_than_the_always_flag_baseline(tmp_path):
    write_items(SAMPLE, tmp_path / "items")
    items = read_items(tmp_path / "items" / "items.jsonl")
    asker = ScriptedBackend("asks-always", lambda m, s: "What information is missing?")
    r = evaluate_flaws(items, asker, ScriptedBackend("judge", judge_reply), tmp_path / "asker")
    # it asks everywhere, but never about the flaw: asked anything 100%, asked for the flaw 0%
    assert r["asked_rate"]["value"] == 1.0 and r["flag_rate"]["value"] == 0.0 and r["false_flag_rate"]["value"] == 1.0
    assert r["accuracy"]["value"] == 0.0 and r["flag_minus_false_flag"] == -1.0
    assert r["baselines"]["always_flag"] == {"flag_rate": 1.0, "false_flag_rate": 1.0, "accuracy": 0.0}

    kind_of = {i["problem"]: i for i in items}

    def discerning(messages, seed=None):
        item = kind_of[messages[-1]["content"]]
        if item["kind"] == "missing_premise":
            return ask_for(item["removed"])
        if item["kind"] == "contradiction":
            return ask_which(item["conflict"])
        return f"So it is... Answer: {item['answer']}"

    judge = ScriptedBackend("judge", judge_reply)
    r = evaluate_flaws(items, ScriptedBackend("discerning", discerning), judge, tmp_path / "good")
    assert r["flag_rate"]["value"] == 1.0 and r["false_flag_rate"]["value"] == 0.0 and r["accuracy"]["value"] == 1.0
    assert r["n"] == {"flawed": 24, "sound": 24}
    assert {k: (v["n"], v["flag_rate"]["value"]) for k, v in r["by_kind"].items()} == {
        "intact": (12, 0.0), "missing_premise": (12, 1.0), "contradiction": (12, 1.0), "distractor": (12, 0.0)
    }  # fmt: skip
    rows = [json.loads(x) for x in (tmp_path / "good" / "replies.jsonl").read_text().splitlines()]
    assert len(rows) == len(items)
    again_judge = ScriptedBackend("judge", judge_reply)
    again = evaluate_flaws(items, ScriptedBackend("discerning", discerning), again_judge, tmp_path / "good")
    assert again_judge.calls == 0 and again["calls_made"] == 0  # a rerun answers everything from the cache
    assert {k: v for k, v in again.items() if k != "calls_made"} == {k: v for k, v in r.items() if k != "calls_made"}


def test_an_unreadable_judgement_is_counted_and_not_dropped(tmp_path):
    write_items(SAMPLE, tmp_path / "items")
    items = read_items(tmp_path / "items" / "items.jsonl")
    hedger = ScriptedBackend("hedger", lambda m, s: "maybe 5")
    r = evaluate_flaws(items, hedger, ScriptedBackend("judge", judge_reply), tmp_path / "e")
    assert r["judge_failures"] == len(items) and r["n"] == {"flawed": 24, "sound": 24}
    assert r["flag_rate"]["value"] == 0.0  # scored as not flagged, every item still in the mean


def test_a_failed_model_call_is_counted_and_scored_as_a_loss(tmp_path):
    """Before, a failed call counted as 'not flagged' and lowered the false-flag rate unseen."""
    from alfa.llm.backends import Completion

    write_items(SAMPLE, tmp_path / "items")
    items = read_items(tmp_path / "items" / "items.jsonl")
    broken = ScriptedBackend("broken", lambda m, s: Completion(None, error="HTTP 500"))
    r = evaluate_flaws(items, broken, None, tmp_path / "e")
    assert r["failed_calls"] == len(items) and r["n"] == {"flawed": 24, "sound": 24}
    assert r["flag_rate"]["value"] == 0.0 and r["false_flag_rate"]["value"] == 1.0 and r["accuracy"]["value"] == 0.0
    assert "failed model calls: 48" in (tmp_path / "e" / "report.md").read_text()


def test_a_question_about_a_given_quantity_is_no_flag(tmp_path):
    """A question counts as a flag only when the removed premise is what answers it."""
    write_items(SAMPLE, tmp_path / "items")
    items = [i for i in read_items(tmp_path / "items" / "items.jsonl") if i["kind"] == "missing_premise"]

    def off_target(messages, seed=None):  # asks about the first sentence it was given
        return split_problem(messages[-1]["content"])[0][0].rstrip(".") + "?"

    r = evaluate_flaws(items, ScriptedBackend("off", off_target), None, tmp_path / "off")
    assert r["asked_rate"]["value"] == 1.0 and r["flag_rate"]["value"] <= 1 / 12
    r = evaluate_flaws(items, ScriptedBackend("on", lambda m, s: ask_for(next(
        i["removed"] for i in items if i["problem"] == m[-1]["content"]))), None, tmp_path / "on")  # fmt: skip
    assert r["flag_rate"]["value"] == 1.0


def test_the_rule_judge_flags_questions_that_commit_to_no_answer(tmp_path):
    from alfa.eval.flaws import rule_flag

    assert rule_flag("How many days does the treatment last?")
    assert not rule_flag("The clinic sees 18 * 7 = 136 patients. The answer is 5188.")  # the 1.5B judge said Yes
    assert not rule_flag("Why? Because 18 + 11 = 29. Answer: 29")  # a question, but it commits to an answer
    assert not rule_flag("I think it is 29.") and not rule_flag(None)
    write_items(SAMPLE, tmp_path / "items")
    items = read_items(tmp_path / "items" / "items.jsonl")
    kind_of = {i["problem"]: i for i in items}

    def discerning(messages, seed=None):
        item = kind_of[messages[-1]["content"]]
        if item["kind"] in FLAWED:
            return ask_for(item["removed"]) if item["removed"] else ask_which(item["conflict"])
        return f"So it is... Answer: {item['answer']}"

    r = evaluate_flaws(items, ScriptedBackend("discerning", discerning), None, tmp_path / "rule")
    assert r["flag_rate"]["value"] == 1.0 and r["false_flag_rate"]["value"] == 0.0 and r["accuracy"]["value"] == 1.0
    assert r["judge"].startswith("rule") and r["judge_failures"] == 0


def test_final_number_reads_the_answer_line():
    assert final_number("4 boxes at 6 is 24, so 50 - 24 = 26. Answer: 26") == 26
    assert final_number("Answer: 4,250 gloves") == 4250
    assert final_number("I need to know how many days.") is None


def test_pairs_teach_asking_on_flawed_problems_and_answering_sound_problems(tmp_path):
    from alfa.data.card import write_card
    from alfa.data.lint import lint, write_report
    from alfa.methods.flaws import ask_for, ask_which, write_flaw_pairs

    assert ask_for("The treatment lasts 2 days.") == "I cannot solve this as stated. The treatment lasts how many days?"
    assert ask_which(["It lasts 2 days.", "It lasts 5 days."]) == (
        'The problem says both "It lasts 2 days" and "It lasts 5 days". Which one is right?'
    )
    write_items(SAMPLE, tmp_path / "items")
    items = read_items(tmp_path / "items" / "items.jsonl")
    evaluate_flaws(
        items,
        ScriptedBackend("asks-always", lambda m, s: "What is missing?"),
        ScriptedBackend("j", judge_reply),
        tmp_path / "a",
    )
    evaluate_flaws(
        items, ScriptedBackend("answers-1", lambda m, s: "Answer: 1"), ScriptedBackend("j", judge_reply), tmp_path / "b"
    )
    import polars as pl

    asked = write_flaw_pairs(tmp_path / "a", tmp_path / "pa")
    answered = write_flaw_pairs(tmp_path / "b", tmp_path / "pb")
    # needless questions on 24 sound items, and 24 questions that missed the flaw ("What is missing?" retrieves no
    # premise); 24 missed flaws when it always answers
    assert asked["pairs"] == 48 and answered["pairs"] == 24
    pa = pl.concat([pl.read_parquet(f) for f in (tmp_path / "pa" / "data").glob("*.parquet")])
    pb = pl.concat([pl.read_parquet(f) for f in (tmp_path / "pb" / "data").glob("*.parquet")])
    assert set(pa["pair_type"]) == {"solve_sound_problem", "ask_for_missing_premise", "ask_about_contradiction"}
    assert set(pb["pair_type"]) == {"ask_for_missing_premise", "ask_about_contradiction"}
    by_item = {i["item_id"]: i for i in items}
    for row in pb.iter_rows(named=True):
        item = by_item[row["qid"]]
        want = ask_for(item["removed"]) if item["kind"] == "missing_premise" else ask_which(item["conflict"])
        assert row["chosen"][0]["content"] == want
        assert row["rejected"][0]["content"] == "Answer: 1"
    for row in pa.filter(pl.col("pair_type") == "solve_sound_problem").iter_rows(named=True):
        assert row["chosen"][0]["content"] == f"Answer: {by_item[row['qid']]['answer']}"
    assert pa.group_by("group_id").agg(pl.col("split").n_unique())["split"].max() == 1  # a problem in one split
    findings = lint(tmp_path / "pa")
    assert not [f for f in findings if f.severity == "error"]
    # the method's card: written with the pairs, rewritten by `alfa card` with the lint report in it
    card = (tmp_path / "pb" / "README.md").read_text()
    assert "alfa flaws pairs" in card and "Personal health information" in card and "Not linted yet" in card
    write_report(lint(tmp_path / "pb"), tmp_path / "pb")
    card = write_card(tmp_path / "pb", license="mit").read_text()
    assert "license: mit" in card and "Not linted yet" not in card
    assert "| ask_about_contradiction | 12 |" in card and "Which reply handles the problem as it is" in card


def test_grpo_on_flawed_problems_with_the_handles_flaws_reward(tmp_path, tiny_model_dir):
    from alfa.dialogue.consult import read_student_turn
    from alfa.methods.flaws import write_flaw_tasks
    from alfa.train.rewards import handles_flaws
    from alfa.train.run import run_recipe

    assert read_student_turn("So 4 x 6 = 24. Answer: 4,250", {}) == ("answer", "4250")
    facts = ["A clinic sees 18 patients each morning.", "It is open 5 days.", "How many patients in a week?"]
    turns = [json.dumps([{"role": "policy", "kind": k, "text": t}]) for k, t in [
        ("question", "How many patients does it see each morning?"), ("answer", "Answer: 29"), ("answer", "Answer: 28"),
        ("question", "How many days is it open?"), ("question", "So it is 5 days or 6 days?")]]  # fmt: skip
    rewards = handles_flaws(None, [None, "29", "28", None, None], ["29"] * 5,
                            ["missing_premise", "intact", "distractor", "missing_premise", "contradiction"],
                            [facts] * 5, [[0], [], [], [0], [1]], turns)  # fmt: skip
    # asked for the removed premise; right; wrong; asked about a premise the problem gives; asked about the conflict
    assert rewards == [1.0, 1.0, 0.0, 0.0, 1.0]
    write_items(SAMPLE, tmp_path / "items")
    write_flaw_tasks(read_items(tmp_path / "items" / "items.jsonl")[:8], tmp_path / "tasks")
    overrides = [
        f"model.name_or_path={tiny_model_dir}",
        f"data.tasks_dir={tmp_path / 'tasks'}",
        f"trl.output_dir={tmp_path / 'run'}",
        "rollout.turns=1",
        "rollout.rewards=[handles_flaws]",
    ]
    summary = run_recipe(Path(__file__).resolve().parents[1] / "recipes" / "tiny" / "grpo.yaml", overrides=overrides)
    assert summary["global_steps"] == 2
    assert all("rewards/handles_flaws/mean" in h for h in summary["log_history"] if "loss" in h)
