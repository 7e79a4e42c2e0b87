"""Interactive diagnosis: the engine, the protocol and the figures, on five shared MedQA dev cases.

The expert and questioner here are `ScriptedRoles`: a script, not a model, so the whole transcript is known
in advance (the issue asks for an exact expected transcript). The patient is the real fact-select patient."""

import json
import sys

import pytest
from conftest import run_until_cached
from scripted import ScriptedBackend

from alfa.dialogue.patients import CANNOT_ANSWER, FactSelectPatient
from alfa.eval.cases import load_cases
from alfa.eval.interactive import InteractiveProtocol, evaluate_interactive

QUESTIONS = ["How long have you had these symptoms?", "Do you have a fever?"]


class ScriptedRoles(ScriptedBackend):
    """A scripted expert and questioner (not a model): confidence 2 until two questions were answered, then 5;
    the questioner asks QUESTIONS in turn; the final answer is always 'C'. Counts the requests it answers."""

    def reply(self, messages):
        text = messages[-1]["content"]
        asked = text.count("You asked:")
        if "Your one question to the patient" in text:
            return QUESTIONS[asked]
        if "Reply with the letter of the answer" in text:
            return "Answer: C"
        return "5" if asked >= 2 else "2"


@pytest.fixture(scope="module")
def cases(medqa_path):
    return load_cases(medqa_path, limit=5)[0]


def test_scripted_expert_with_the_fact_select_patient_gives_the_expected_transcript(tmp_path, cases, embedder):
    roles = ScriptedRoles()
    patient = FactSelectPatient(embedder)
    protocol = InteractiveProtocol(roles, roles, patient, abstain="scale", max_questions=5)
    report = evaluate_interactive(cases, protocol, tmp_path / "eval")
    episodes = [json.loads(line) for line in (tmp_path / "eval" / "episodes.jsonl").read_text().splitlines()]
    assert [e["episode_id"] for e in episodes] == [c.case_id for c in cases]
    for e, case in zip(episodes, cases):
        kinds = [(t["role"], t["kind"]) for t in e["turns"]]
        assert kinds == [
            ("expert", "decide"), ("questioner", "question"), ("patient", "answer"),
            ("expert", "decide"), ("questioner", "question"), ("patient", "answer"),
            ("expert", "decide"), ("expert", "final"),
        ]  # fmt: skip
        assert [t["parsed"] for t in e["turns"] if t["kind"] == "decide"] == [False, False, True]
        for turn, question in zip([t for t in e["turns"] if t["kind"] == "answer"], QUESTIONS):
            assert turn["text"] == patient.answer(case.facts, question)[0]  # the patient's words, verbatim
            assert turn["text"] == CANNOT_ANSWER or all(
                case.facts[i].rstrip(".") in turn["text"] for i in turn["parsed"]
            )
        assert e["result"] == {
            "answer": "C",
            "correct": case.answer == "C",
            "questions": 2,
            "timed_out": False,
            "parse_failures": 0,
            "before_decisive_fact": None,  # the published cases mark no decisive fact
            "asked_decisive": None,
        }
    share_c = sum(c.answer == "C" for c in cases) / 5
    assert report["n"] == 5 and report["accuracy"]["value"] == pytest.approx(share_c)
    assert report["accuracy"]["ci_low"] <= share_c <= report["accuracy"]["ci_high"]
    assert report["mean_questions"] == 2 and report["timeout_rate"] == 0 and report["parse_failures"] == 0
    assert report["premature_answer_rate"]["value"] == 0  # it asked twice before every answer
    unanswered = sum(t["text"] == CANNOT_ANSWER for e in episodes for t in e["turns"] if t["kind"] == "answer")
    marked = 5 * sum("?" in q for q in QUESTIONS)  # every case asks both questions
    assert report["questions"] == {
        "asked": 10,
        "repeated": 0,
        "patient_could_not_answer": unanswered,
        "with_question_mark": marked,
    }
    assert set(report["baselines"]) == {"majority_letter", "longest_option", "no_questions", "full_information"}
    assert report["baselines"]["no_questions"]["value"] == pytest.approx(share_c)  # the script always says C
    assert (tmp_path / "eval" / "accuracy_vs_questions.png").stat().st_size > 0
    assert "baseline: full_information" in (tmp_path / "eval" / "report.md").read_text()
    # a rerun reads the finished episodes back and makes no call
    again = ScriptedRoles()
    rerun = evaluate_interactive(cases, InteractiveProtocol(again, again, patient, "scale"), tmp_path / "eval")
    assert again.calls == 0 and rerun["accuracy"] == report["accuracy"]


def test_unreadable_confidence_is_a_counted_failure_and_the_budget_ends_the_episode(tmp_path, cases, embedder):
    class Unreadable(ScriptedRoles):
        """Says 'not very confident' to every confidence question: never a number."""

        def reply(self, messages):
            if "from 1 (not at all)" in messages[-1]["content"]:
                return "I am not very confident"
            return super().reply(messages)

    roles = Unreadable()
    report = evaluate_interactive(
        cases[:2],
        InteractiveProtocol(roles, roles, FactSelectPatient(embedder), "scale", max_questions=2),
        tmp_path / "e",
    )
    assert report["timeout_rate"] == 1 and report["mean_questions"] == 2
    assert report["parse_failures"] == 2 * 2  # two unreadable decisions per episode, each counted
    assert report["n"] == 2  # no episode dropped
    assert report["decisions"] == {"n": 4, "distinct": 1, "most_common": ["i am not very confident", 4]}
    assert any("never ready to answer before the budget" in w for w in report["warnings"])


def test_a_questioner_asking_the_same_words_again_is_counted_and_warned_about(tmp_path, cases, embedder):
    class Repeating(ScriptedRoles):
        """Asks its first question at every turn."""

        def reply(self, messages):
            if "Your one question to the patient" in messages[-1]["content"]:
                return QUESTIONS[0] + (" " if "You asked:" in messages[-1]["content"] else "")
            return super().reply(messages)

    roles = Repeating()
    report = evaluate_interactive(
        cases[:2], InteractiveProtocol(roles, roles, FactSelectPatient(embedder), "fixed", max_questions=3), tmp_path
    )
    assert report["questions"]["asked"] == 6 and report["questions"]["repeated"] == 4  # trailing space: same words
    assert any("4 of 6 questions repeat an earlier one" in w for w in report["warnings"])
    assert not any("the questioner was never used" in w for w in report["warnings"])


def test_an_expert_sure_from_the_start_answers_prematurely_every_time(tmp_path, cases, embedder):
    class Confident(ScriptedRoles):
        """Rates its confidence 5 before anything was asked."""

        def reply(self, messages):
            return "5" if "from 1 (not at all)" in messages[-1]["content"] else super().reply(messages)

    roles = Confident()
    report = evaluate_interactive(
        cases[:3], InteractiveProtocol(roles, roles, FactSelectPatient(embedder), "scale"), tmp_path / "e"
    )
    assert report["mean_questions"] == 0 and report["premature_answer_rate"]["value"] == 1.0
    assert "premature answers): 100.0%" in (tmp_path / "e" / "report.md").read_text()
    # the run says why its accuracy tells nothing about the questioner
    assert report["expert_answer_share"] == {"C": 1.0}
    assert report["decisions"] == {"n": 3, "distinct": 1, "most_common": ["5", 3]}  # too few to warn about
    assert not any("readiness questions" in w for w in report["warnings"])
    warned = report["warnings"]
    assert any("the questioner was never used" in w for w in warned)
    assert any("answered C in 100% of cases" in w for w in warned)
    full, majority = report["baselines"]["full_information"]["value"], report["baselines"]["majority_letter"]["value"]
    assert any("no better than always answering" in w for w in warned) == (full <= majority)
    assert "**Warning:** the expert was ready" in (tmp_path / "e" / "report.md").read_text()


def test_answers_before_the_decisive_fact_count_only_for_cases_that_mark_one(tmp_path, cases, embedder, medqa_path):
    roles, patient = ScriptedRoles(), FactSelectPatient(embedder)
    first = evaluate_interactive(cases, InteractiveProtocol(roles, roles, patient), tmp_path / "plain")
    assert first["answered_before_decisive_fact"]["value"] is None and first["answered_before_decisive_fact"]["n"] == 0
    episodes = [json.loads(x) for x in (tmp_path / "plain" / "episodes.jsonl").read_text().splitlines()]
    told = [{i for t in e["turns"] if t["role"] == "patient" for i in t["parsed"]} for e in episodes]
    lines = medqa_path.read_text().splitlines()[: len(cases)]
    marked = []
    for n, (line, case, seen) in enumerate(zip(lines, cases, told)):
        obj = json.loads(line)
        if n == 0 and seen:  # a fact the patient told: the answer came after it
            obj["decisive_fact"] = min(seen)
        elif n == 1:  # a fact never told, given by its text
            obj["decisive_fact"] = next(f for i, f in enumerate(case.facts) if i not in seen)
        marked.append(json.dumps(obj))
    path = tmp_path / "marked.jsonl"
    path.write_text("\n".join(marked) + "\n")
    marked_cases, rejects = load_cases(path)
    assert rejects == [] and marked_cases[1].decisive_fact is not None
    report = evaluate_interactive(marked_cases, InteractiveProtocol(roles, roles, patient), tmp_path / "marked")
    expected = [False, True] if told[0] else [True]
    assert report["answered_before_decisive_fact"]["n"] == len(expected)
    assert report["answered_before_decisive_fact"]["value"] == sum(expected) / len(expected)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({**json.loads(lines[0]), "decisive_fact": 99}) + "\n")
    assert "field 'decisive_fact' must be an index" in load_cases(bad)[1][0]["reason"]


def test_kill_9_mid_evaluation_then_rerun_gives_the_same_results_and_repeats_no_call(tmp_path, medqa_path):
    """A real `alfa eval interactive` with SmolLM2 on llama.cpp in every role, killed while it writes its cache."""
    pytest.importorskip("xllamacpp")
    from alfa.llm.embedded import smollm2_gguf_path

    gguf = smollm2_gguf_path()
    out = tmp_path / "eval"
    cmd = [sys.executable, "-m", "alfa.cli", "-q", "eval", "interactive", str(medqa_path), "--limit", "4",
           "--expert", f"llamacpp:{gguf}", "--questioner", f"llamacpp:{gguf}", "--abstain", "fixed",
           "--max-questions", "2", "-o", str(out)]  # fmt: skip
    proc = run_until_cached(cmd, out / "cache.sqlite", at_least=3, timeout_s=180)
    proc.kill()
    proc.wait()
    import sqlite3

    cached = sqlite3.connect(out / "cache.sqlite").execute("SELECT COUNT(*) FROM calls").fetchone()[0]
    import subprocess

    subprocess.run(cmd, check=True, capture_output=True)
    first = json.loads((out / "results.json").read_text())
    assert first["calls"]["from_cache"] >= cached and first["n"] == 4
    subprocess.run(cmd, check=True, capture_output=True)
    second = json.loads((out / "results.json").read_text())
    assert second["calls"]["made"] == 0 and second["accuracy"] == first["accuracy"]


def test_an_llm_patient_is_a_role_of_its_own_and_sees_only_the_facts(tmp_path, cases):
    class ScriptedPatient(ScriptedRoles):
        """A scripted patient (not a model): repeats the first fact it was shown; records what it saw."""

        def reply(self, messages):
            return messages[-1]["content"].split("\n")[1][2:]

    roles, patient = ScriptedRoles(), ScriptedPatient()
    protocol = InteractiveProtocol(roles, roles, patient, abstain="scale", max_questions=5)
    report = evaluate_interactive(cases[:2], protocol, tmp_path / "eval")
    episodes = [json.loads(line) for line in (tmp_path / "eval" / "episodes.jsonl").read_text().splitlines()]
    for e, case in zip(episodes, cases):
        answers = [t for t in e["turns"] if t["kind"] == "answer"]
        assert [t["role"] for t in answers] == ["patient", "patient"] and all(t["call_key"] for t in answers)
        assert all(t["text"] == case.facts[0] for t in answers)
    shown = patient.requests[0][-1]["content"]
    first = cases[0]
    assert first.question not in shown and all(o not in shown for o in first.options.values())  # facts only
    assert all(f in shown for f in first.facts)
    assert report["roles"]["patient"] == "scripted" and report["mean_questions"] == 2


def test_a_constant_readiness_reply_is_warned_about():
    """The embedded 1.5B expert rated itself '4' at every decision of 100 cases: the module decided nothing."""
    from alfa.eval.interactive_report import decision_counts, run_warnings

    turns = [[{"kind": "decide", "text": "4"}, {"kind": "final", "text": "D"}] for _ in range(9)]
    turns.append([{"kind": "decide", "text": " 4."}])
    decisions = decision_counts(turns)
    assert decisions == {"n": 10, "distinct": 1, "most_common": ["4", 10]}
    ci = {"value": 0.3, "ci_low": 0.2, "ci_high": 0.4}
    r = {
        "n": 10,
        "abstain": "scale",
        "mean_questions": 1.0,
        "timeout_rate": 0.5,
        "decisions": decisions,
        "questions": {"asked": 10, "repeated": 0, "patient_could_not_answer": 0},
        "expert_answer_share": {"A": 0.5, "B": 0.5},
        "baselines": {"full_information": {**ci, "value": 0.6}, "majority_letter": ci},
        "asked_decisive": {"value": None, "ci_low": None, "ci_high": None},
        "asked_decisive_floor": {"value": None, "ci_low": None, "ci_high": None},
        "roles": {"expert": "e", "questioner": "q"},
    }
    assert run_warnings(r) == [
        "the expert gave the same reply, '4', to all 10 readiness questions: its decision to ask or answer does not "
        "depend on the case"
    ]
    assert run_warnings(r | {"abstain": "implicit"}) == []  # implicit replies are questions or answers


def test_consult_mode_shows_the_model_the_training_format_and_sends_its_own_question(tmp_path, cases, embedder):
    """--abstain consult: the model under test sees the student prompt and chat turns SML, CollabLLM and GRPO train
    on; its question goes to the patient verbatim; one that never answers is asked for it at the budget."""
    from alfa.dialogue.consult import STUDENT_SYSTEM, case_prompt_text

    asker = ScriptedBackend(
        "asker", lambda m, s: "Do you have a fever?" if len(m) == 2 else f"Answer: {'C' if len(m) == 4 else 'B'}"
    )
    patient = FactSelectPatient(embedder)
    report = evaluate_interactive(
        cases, InteractiveProtocol(asker, None, patient, "consult", max_questions=3), tmp_path / "c"
    )
    first, second = asker.requests[0], next(r for r in asker.requests if len(r) == 4)  # turns are batched by case
    case = next(c for c in cases if case_prompt_text(c.initial_info, c.question, c.options) == second[1]["content"])
    assert first[0] == {"role": "system", "content": STUDENT_SYSTEM} == second[0]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]
    assert second[2]["content"] == "Do you have a fever?"
    assert second[3]["content"] == patient.answer(case.facts, "Do you have a fever?")[0]
    assert report["questions"]["asked"] == len(cases) and report["roles"] == {"expert": "asker"}
    assert report["accuracy"]["value"] == sum(c.answer == "C" for c in cases) / len(cases)

    never = ScriptedBackend("never", lambda m, s: "Answer: A" if "Now give your answer" in m[-1]["content"] else "Why?")
    ran = evaluate_interactive(
        cases[:1], InteractiveProtocol(never, None, patient, "consult", max_questions=2), tmp_path / "n"
    )
    assert ran["timeout_rate"] == 1.0 and ran["questions"]["asked"] == 2
    with pytest.raises(ValueError, match="give no questioner"):
        InteractiveProtocol(asker, asker, patient, "consult")


def test_questions_only_reads_the_question_and_pays_for_no_answer(tmp_path, cases, embedder):
    """--questions-only: each consultation ends once the model's question is answered (one call a case, or its
    premature answer): no final answer, no accuracy, no expert baselines; a premature answer still counts."""
    asker = ScriptedBackend("asker", lambda m, s: "Do you have a fever?" if len(m) == 2 else "Answer: C")
    guesser = ScriptedBackend("guesser", lambda m, s: "Answer: A")
    patient = FactSelectPatient(embedder)
    full = evaluate_interactive(
        cases, InteractiveProtocol(asker, None, patient, "consult", max_questions=1), tmp_path / "full"
    )
    calls = asker.calls
    asks = evaluate_interactive(
        cases,
        InteractiveProtocol(asker, None, patient, "consult", max_questions=1, final_answer=False),
        tmp_path / "asks",
    )
    assert asker.calls - calls == len(cases) < calls  # the question only: no final answer, no baseline calls
    assert asks["accuracy"]["value"] is None and "no_questions" not in asks["baselines"] and not asks["final_answer"]
    assert full["accuracy"]["value"] is not None and "no_questions" in full["baselines"]
    assert asks["questions"] == full["questions"] and asks["premature_answer_rate"]["value"] == 0.0
    guessed = evaluate_interactive(
        cases,
        InteractiveProtocol(guesser, None, patient, "consult", max_questions=1, final_answer=False),
        tmp_path / "g",
    )
    assert guessed["premature_answer_rate"]["value"] == 1.0 and guessed["questions"]["asked"] == 0
    assert not [w for w in asks["warnings"] if "budget" in w or "preference" in w]  # asking once is the design
    assert asks["questions"]["with_question_mark"] == len(cases) and not [
        w for w in asks["warnings"] if "question mark" in w
    ]
    # a model that starts a worked solution instead of asking: its turn goes to the patient, and the run says so
    solver = ScriptedBackend("solver", lambda m, s: "To solve this problem, we first add the two amounts")
    solved = evaluate_interactive(
        cases,
        InteractiveProtocol(solver, None, patient, "consult", max_questions=1, final_answer=False),
        tmp_path / "s",
    )
    assert solved["questions"] == {**solved["questions"], "asked": len(cases), "with_question_mark": 0}
    assert any("hold a question mark" in w for w in solved["warnings"])
    with pytest.raises(ValueError, match="use it with --abstain consult"):
        InteractiveProtocol(asker, asker, patient, "fixed", final_answer=False)
