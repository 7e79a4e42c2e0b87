"""SML dialogues with Q-priming on real MedQA dev cases: success flags, the priming instruction gone from every
saved training copy, a rerun that makes no call, and the SFT set that `alfa train` reads."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest
from scripted import ScriptedBackend

from alfa.dialogue.consult import Q_PRIMING, STUDENT_SYSTEM
from alfa.llm.backends import Completion
from alfa.methods.sml import run_sml_dialogues
from alfa.methods.tasks import read_cases


class ScriptedStudent(ScriptedBackend):
    """A scripted student (not a model): told to ask first, it asks one question; otherwise, and after a teacher's
    reply, it answers the letter the teacher last named, else A. Records every request it answers."""

    def __init__(self, name="scripted-student"):
        super().__init__(name)

    def reply(self, messages):
        if Q_PRIMING in messages[0]["content"] and len(messages) == 2:
            return "How long has this been going on?"
        named = re.findall(r"option ([A-Z])", messages[-1]["content"]) if len(messages) > 2 else []
        return f"Answer: {named[-1] if named else 'A'}"


class ScriptedTeacher(ScriptedBackend):
    """A scripted teacher (not a model): names the correct option it was shown, whatever the student said."""

    def __init__(self):
        super().__init__("scripted-teacher")

    def reply(self, messages):
        letter = re.search(r"Correct answer: ([A-Z])\.", messages[-1]["content"]).group(1)
        return f"Think again about option {letter}."


@pytest.fixture(scope="module")
def cases(medqa_path):
    return read_cases(medqa_path, 6)


@pytest.mark.parametrize("q_priming", [False, True])
def test_dialogues_flag_successes_and_saved_copies_carry_no_priming(tmp_path, cases, q_priming):
    student, teacher = ScriptedStudent(), ScriptedTeacher()
    summary = run_sml_dialogues(cases, student, teacher, tmp_path, turns=3, q_priming=q_priming)
    # every student request was primed exactly when asked for
    assert all((Q_PRIMING in r[0]["content"]) == q_priming for r in student.requests)
    # primed, it asks, the teacher names the answer, it gives it; unprimed, its first answer (A) decides at once
    answer_a = sum(c.answer == "A" for c in cases)
    assert 0 < answer_a < len(cases)  # both outcomes happen in these cases
    expected = len(cases) if q_priming else answer_a
    assert summary["success_rate"]["value"] == pytest.approx(expected / len(cases))
    assert summary["sft_dialogues"] == expected
    assert summary["answered_first_rate"]["value"] == (0.0 if q_priming else 1.0)
    sft = pl.read_parquet(tmp_path / "sft" / "data" / "train.parquet")
    by_id = {c.case_id: c for c in cases}
    for case_id, messages in zip(sft["case_id"], sft["messages"].to_list()):
        assert all(Q_PRIMING not in m["content"] for m in messages)
        assert messages[0] == {"role": "system", "content": STUDENT_SYSTEM}
        answers = [m["content"] for m in messages if m["role"] == "assistant" and m["content"].startswith("Answer:")]
        assert answers == [f"Answer: {by_id[case_id].answer}"]  # one answer, the right one, last: no wrong guess
        assert messages[-1]["content"] == answers[0]
    assert "Personal health information" in (tmp_path / "sft" / "README.md").read_text()
    # a rerun reads every dialogue back and calls nobody
    again_student, again_teacher = ScriptedStudent(), ScriptedTeacher()
    assert run_sml_dialogues(cases, again_student, again_teacher, tmp_path, turns=3, q_priming=q_priming) == summary
    assert again_student.requests == [] and again_teacher.requests == []


def test_a_wrong_first_answer_ends_the_dialogue_however_many_turns_are_left(tmp_path, cases):
    class Eliminator(ScriptedStudent):
        """Guesses through the options, one per turn, the way a student eliminates after each "no"."""

        def reply(self, messages):
            return f"Answer: {'ABCDE'[sum(m['role'] == 'assistant' for m in messages)]}"

    teacher = ScriptedTeacher()
    summary = run_sml_dialogues(cases, Eliminator(), teacher, tmp_path, turns=5)
    assert summary["success_rate"]["value"] == pytest.approx(sum(c.answer == "A" for c in cases) / len(cases))
    assert teacher.requests == []  # each dialogue ended at its first answer


def test_the_q_primed_sft_set_keeps_only_the_successes_that_asked_first(tmp_path, cases):
    class Impatient(ScriptedStudent):
        """Primed or not, answers A at once."""

        def reply(self, messages):
            return "Answer: A"

    primed = run_sml_dialogues(cases, Impatient(), ScriptedTeacher(), tmp_path / "p", turns=3, q_priming=True)
    assert primed["success_rate"]["value"] > 0 and primed["sft_dialogues"] == 0
    plain = run_sml_dialogues(cases, Impatient(), ScriptedTeacher(), tmp_path / "u", turns=3)
    assert plain["sft_dialogues"] == sum(c.answer == "A" for c in cases)


def test_the_default_view_shows_the_first_fact_only_and_leaves_the_rest_to_ask_for(tmp_path, cases):
    student = ScriptedStudent()
    run_sml_dialogues(cases, student, ScriptedTeacher(), tmp_path, turns=3, q_priming=True)
    first = {r[1]["content"] for r in student.requests if len(r) == 2}
    for case in cases:
        shown = next(text for text in first if case.question in text)
        assert case.initial_info in shown
        assert any(fact not in shown for fact in case.facts)  # a fact the student must ask for


def test_a_student_that_never_gets_it_fails_and_is_kept_out_of_the_sft_set(tmp_path, cases):
    class Stubborn(ScriptedStudent):
        """Always answers a letter no case has."""

        def reply(self, messages):
            return "Answer: Q"

    summary = run_sml_dialogues(cases, Stubborn(), ScriptedTeacher(), tmp_path, turns=2)
    assert summary["success_rate"]["value"] == 0.0 and summary["sft_dialogues"] == 0
    assert summary["dialogues"] == len(cases)  # every failure is counted, none dropped
    assert pl.read_parquet(tmp_path / "sft" / "data" / "train.parquet").height == 0


def test_a_failed_call_is_counted_kept_out_of_the_sft_set_and_asked_again_on_rerun(tmp_path, cases):
    """The engine (alfa.dialogue.engine): a dialogue with a failed call is written and counted, never trained on, and
    played again by a rerun, which pays only for what failed; a line cut short by a kill is dropped, not fatal."""
    flaky = next(c for c in cases if c.answer != "A")  # primed, the student asks first: the teacher speaks

    class FlakyTeacher(ScriptedTeacher):
        """Fails its first call about the flaky case (an HTTP error), then answers as the scripted teacher."""

        failed = False

        def reply(self, messages):
            if flaky.question in messages[-1]["content"] and not self.failed:
                self.failed = True
                return Completion(None, error="HTTP 503: server overloaded")
            return super().reply(messages)

    summary = run_sml_dialogues(cases, ScriptedStudent(), FlakyTeacher(), tmp_path, turns=3, q_priming=True)
    assert summary["dialogues"] == len(cases) and summary["dialogues_with_failed_calls"] == 1
    # without the teacher's reply its first answer (A) was wrong: a failure, counted in the rate
    assert summary["success_rate"]["value"] == pytest.approx((len(cases) - 1) / len(cases))
    sft = pl.read_parquet(tmp_path / "sft" / "data" / "train.parquet")
    assert sft.height == len(cases) - 1 and flaky.case_id not in sft["case_id"].to_list()
    with open(tmp_path / "dialogues.jsonl", "a") as f:
        f.write('{"episode_id": "cut short by a ki')  # a kill mid-write
    student, teacher = ScriptedStudent(), ScriptedTeacher()
    again = run_sml_dialogues(cases, student, teacher, tmp_path, turns=3, q_priming=True)
    assert again["dialogues_with_failed_calls"] == 0 and again["sft_dialogues"] == len(cases)
    assert teacher.requests and all(flaky.question in m[-1]["content"] for m in teacher.requests)
    assert all(flaky.question in m[1]["content"] for m in student.requests)  # only the flaky dialogue played again
    lines = (tmp_path / "dialogues.jsonl").read_text().splitlines()
    assert all(json.loads(x) for x in lines) and len(lines) == len(cases) + 1  # its old line stays; the last one counts


def test_an_empty_reply_is_the_models_answer_not_a_failure_to_replay(tmp_path, cases):
    """An empty reply comes back the same from a seeded model: the dialogue reads it (an empty turn) and ends; a rerun
    does not play it again. Two episodes under one id are refused (the file is keyed by id)."""
    from alfa.dialogue.engine import Episode, run_episodes
    from alfa.llm.cache import CallCache
    from alfa.methods.sml import SMLProtocol

    mute = ScriptedBackend("mute", lambda m, s: "")
    summary = run_sml_dialogues(cases, mute, ScriptedTeacher(), tmp_path, turns=2)
    assert summary["dialogues_with_failed_calls"] == 0 and summary["success_rate"]["value"] == 0.0
    again = ScriptedBackend("mute", lambda m, s: "")
    run_sml_dialogues(cases, again, ScriptedTeacher(), tmp_path, turns=2)
    assert again.requests == []
    protocol = SMLProtocol(mute, ScriptedTeacher(), 2, False, "full")
    twice = [protocol.episode(cases[0], 0), protocol.episode(cases[0], 0)]
    assert isinstance(twice[0], Episode)
    with pytest.raises(ValueError, match="episode ids repeat"):
        run_episodes(twice, protocol, CallCache(tmp_path / "c.sqlite"), tmp_path / "e.jsonl")


def test_sml_sft_set_trains_with_the_dialogue_recipe(tmp_path, cases, tiny_model_dir):
    from alfa.train.run import run_recipe

    run_sml_dialogues(cases, ScriptedStudent(), ScriptedTeacher(), tmp_path / "sml", turns=3, q_priming=True)
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "tiny" / "sft_dialogues.yaml"
    summary = run_recipe(
        recipe,
        overrides=[
            f"model.name_or_path={tiny_model_dir}",
            f"data.dialogues_dir={tmp_path / 'sml' / 'sft'}",
            f"trl.output_dir={tmp_path / 'model'}",
        ],
    )
    assert summary["train_rows"] == len(cases) and summary["global_steps"] == 2


def test_a_word_problem_dialogue_shows_the_teacher_the_number_and_succeeds_on_it(tmp_path, gsm8k_path):
    """On the GSM8K testbed (no options) the teacher is shown the question and the number, and a student that asks,
    hears it and answers it succeeds; the saved copy is a word-problem consultation."""
    from alfa.dialogue.consult import PROBLEM_STUDENT_SYSTEM
    from alfa.eval.gsm8k import write_gsm8k_cases

    head = tmp_path / "head.jsonl"
    head.write_text("".join(gsm8k_path.open().readlines()[:12]))
    write_gsm8k_cases(head, tmp_path / "cases", heldout_share=0.0)
    problems = read_cases(tmp_path / "cases" / "train.jsonl", 3)

    class NumberTeacher(ScriptedBackend):
        def reply(self, messages):
            return "The number you want is " + re.search(r"Correct answer: (\S+)", messages[-1]["content"]).group(1)

    class Student(ScriptedBackend):
        def reply(self, messages):
            if len(messages) == 2:
                return "What number is missing?"
            return "Answer: " + messages[-1]["content"].rsplit(" ", 1)[1]

    teacher = NumberTeacher("teacher")
    summary = run_sml_dialogues(problems, Student("student"), teacher, tmp_path / "sml", turns=2, q_priming=True)
    assert summary["success_rate"]["value"] == 1.0 and summary["sft_dialogues"] == len(problems)
    for request, case in zip(teacher.requests, problems):
        assert f"Question: {case.question}\nCorrect answer: {case.answer}\n" in request[-1]["content"]
    sft = pl.read_parquet(tmp_path / "sml" / "sft" / "data" / "train.parquet")
    assert all(m[0] == {"role": "system", "content": PROBLEM_STUDENT_SYSTEM} for m in sft["messages"].to_list())
