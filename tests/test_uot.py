"""UoT: the paper's reward values, expected rewards on a hand-built tree, and the planner inside MediQ's protocol on
real MedQA dev cases (a scripted model plays every role)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from scripted import ScriptedBackend

from alfa.dialogue.uot import Node, UoTPlanner, expected, parse_candidates, reward


@pytest.mark.parametrize(
    "p, value", [(0.5, 1.0), (0.4, 0.647), (1 / 3, 0.501), (0.25, 0.361), (0.1, 0.156), (0.0, 0.0), (1.0, 0.0)]
)
def test_reward_matches_the_papers_values(p, value):
    assert reward(p) == pytest.approx(value, abs=1e-3)
    assert reward(1 - p) == pytest.approx(value, abs=1e-3)  # a yes-share and its no-share are worth the same


def test_expected_reward_of_a_hand_built_tree():
    # 4 hypotheses. Halving twice earns 1 + 1; one-against-three then one-against-two earns less.
    halves = Node("A or B?", ["A", "B"], ["C", "D"], acc=1.0)
    halves.children["yes"] = [Node("A?", ["A"], ["B"], acc=2.0)]
    halves.children["no"] = [Node("C?", ["C"], ["D"], acc=2.0)]
    lopsided = Node("A?", ["A"], ["B", "C", "D"], acc=reward(0.25))
    lopsided.children["no"] = [Node("B?", ["B"], ["C", "D"], acc=reward(0.25) + reward(1 / 3))]
    assert expected(halves) == pytest.approx(2.0)
    # the yes side (one hypothesis) is a leaf at its accumulated reward; the no side averages its child question
    assert expected(lopsided) == pytest.approx(0.25 * reward(0.25) + 0.75 * (reward(0.25) + reward(1 / 3)))


def test_candidate_lines_are_read_strictly():
    reply = "Here you go:\nQuestion 1: Any fever? | Yes: A, C\nQuestion: Pain at night? | Yes: Z\nnot a candidate"
    assert parse_candidates(reply, ["A", "B", "C"], 3) == [("Any fever?", ["A", "C"]), ("Pain at night?", [])]
    assert parse_candidates("I think it is A.", ["A", "B"], 3) == []


def test_a_question_already_asked_is_not_chosen_again_while_a_new_one_is_left():
    """The patient cannot answer -> nothing pruned -> the same proposals come back: the planner takes the best
    candidate not yet asked, and only when every candidate was asked, the best one again."""
    planner = UoTPlanner(n=2, depth=1)
    options = {"A": "a", "B": "b", "C": "c", "D": "d"}
    state = planner.start(options)
    proposals = "Question: Is it A or B? | Yes: A, B\nQuestion: Is it A? | Yes: A"
    chosen = []
    for _ in range(3):
        planner.next_request(state, "context", options)
        plan = planner.apply_proposal(state, proposals)
        chosen.append(plan["question"])
        planner.after_answer(state, plan["question"], "I can't answer that.")
        planner.apply_classification(state, "Unknown")
    assert chosen == ["Is it A or B?", "Is it A?", "Is it A or B?"]
    assert state["open"] == ["A", "B", "C", "D"]


class ScriptedUoT(ScriptedBackend):
    """A scripted model (not a model) for every role: proposes a halving and a one-against-rest question over the
    open letters, answers as the patient 'Yes, that is right.', reads every answer as Yes, rates its confidence 2 until two questions were answered, then 5,
    and answers the first letter still listed. Counts its calls."""

    def __init__(self):
        super().__init__("scripted-uot")

    def reply(self, messages):
        text = messages[-1]["content"]
        if "Possible answers still open:" in text:
            letters = re.findall(r"^([A-Z])\. ", text.split("Possible answers still open:")[1], re.MULTILINE)
            half = letters[: len(letters) // 2]
            return f"Question: Is it one of {half}? | Yes: {', '.join(half)}\nQuestion: Is it {letters[0]}? | Yes: {letters[0]}"
        if "The doctor asks:" in text:
            return "Yes, that is right."
        if "mean yes or no" in text:
            return "Yes"
        if "Reply with the letter of the answer" in text:
            return "Answer: A"
        return "5" if text.count("You asked:") >= 2 else "2"


def test_the_planner_asks_the_halving_question_and_prunes_by_the_answer(tmp_path, medqa_path):
    from alfa.eval.cases import load_cases
    from alfa.eval.interactive import InteractiveProtocol, evaluate_interactive

    cases = load_cases(medqa_path, 3)[0]
    model = ScriptedUoT()
    protocol = InteractiveProtocol(model, model, model, "scale", max_questions=4, planner=UoTPlanner(3, 2, 0.4))
    report = evaluate_interactive(cases, protocol, tmp_path / "e")
    assert report["n"] == 3 and report["mean_questions"] == 2
    pruned = 0
    for line in (tmp_path / "e" / "episodes.jsonl").read_text().splitlines():
        e = json.loads(line)
        plans = [t["parsed"] for t in e["turns"] if t["kind"] == "propose" and t["parsed"]]
        first = plans[0]
        letters = sorted(e["data"]["case"]["options"])
        # the halving question beats the one-against-rest one, and its expected reward is what the tree gives
        assert first["question"] == f"Is it one of {letters[: len(letters) // 2]}?"
        assert first["expected"] > first["candidates"][1]["expected"]
        # the patient's answer was read as yes (when it was an answer), and the open letters pruned to that side
        classified = [t for t in e["turns"] if t["kind"] == "classify"]
        asked = [q for q, a in e["data"]["conversation"]]
        assert asked[0] == first["question"]
        if classified:  # the second plan only splits what the first answer left open
            assert classified[0]["parsed"] == first["yes"]
            assert {x for c in plans[1]["candidates"] for x in c["yes"]} <= set(first["yes"])
            pruned += 1
        assert e["result"]["uot_parse_failures"] == 0
    assert pruned == 3
    calls = model.calls
    again = ScriptedUoT()
    protocol.roles = {"expert": again, "questioner": again, "patient": again}
    assert evaluate_interactive(cases, protocol, tmp_path / "e")["accuracy"] == report["accuracy"]
    assert again.calls == 0 and calls > 0  # a rerun reads every episode and baseline from the cache


def test_uot_pairs_from_an_evaluation_pass_lint_and_train_dpo(tmp_path, tiny_model_dir, medqa_path):
    from alfa.data.lint import lint
    from alfa.eval.cases import load_cases
    from alfa.eval.interactive import InteractiveProtocol, evaluate_interactive
    from alfa.methods.uot_pairs import PAIR_TYPE, write_uot_pairs

    model = ScriptedUoT()
    protocol = InteractiveProtocol(model, model, model, "scale", max_questions=4, planner=UoTPlanner(3, 2, 0.4))
    evaluate_interactive(load_cases(medqa_path, 6)[0], protocol, tmp_path / "e")
    summary = write_uot_pairs(tmp_path / "e", tmp_path / "pairs")
    # the first planned question of each case had a better and a worse candidate; the second (two options open)
    # two equally good ones: no preference, no pair
    assert summary["pairs"] == 6
    import polars as pl

    pairs = pl.concat([pl.read_parquet(f) for f in sorted((tmp_path / "pairs" / "data").glob("*.parquet"))])
    assert set(pairs["pair_type"]) == {PAIR_TYPE} and (pairs["chosen_score"] > pairs["rejected_score"]).all()
    assert pairs.group_by("group_id").agg(pl.col("split").n_unique())["split"].max() == 1  # a case in one split
    first = pairs.filter(pl.col("qid").str.ends_with("#q0")).row(0, named=True)
    assert first["prompt"][-1]["content"].endswith("Your one question to the patient:")
    assert "You asked:" not in first["prompt"][-1]["content"]  # the first question's prompt has no history yet
    assert not [f for f in lint(tmp_path / "pairs") if f.severity == "error"]
    from alfa.train.run import run_recipe

    overrides = [
        f"model.name_or_path={tiny_model_dir}",
        f"data.pairs_dir={tmp_path / 'pairs'}",
        "data.attributes=[information_gain]",
        "data.eval_split=null",
        f"trl.output_dir={tmp_path / 'dpo'}",
        "trl.max_steps=2",
    ]
    summary = run_recipe(
        Path(__file__).resolve().parents[1] / "recipes" / "tiny" / "dpo_clarity.yaml", overrides=overrides
    )
    assert summary["global_steps"] == 2 and summary["train_rows"] == pairs.filter(pl.col("split") == "train").height


def test_uot_on_word_problems_is_refused_with_the_reason_before_any_model_loads(tmp_path, gsm8k_path, capsys):
    """UoT splits a finite set of answer hypotheses; a GSM8K testbed case has an open number, so the CLI says UoT
    does not apply instead of planning over nothing."""
    from alfa.cli import main
    from alfa.eval.gsm8k import write_gsm8k_cases

    head = tmp_path / "head.jsonl"
    head.write_text("".join(gsm8k_path.open().readlines()[:10]))
    write_gsm8k_cases(head, tmp_path / "cases", heldout_share=0.0)
    argv = ["eval", "interactive", str(tmp_path / "cases" / "train.jsonl"), "--questioner", "uot", "--expert"]
    assert main([*argv, "transformers:nowhere", "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "UoT does not apply" in err and "have none (word problems" in err and not (tmp_path / "out").exists()
