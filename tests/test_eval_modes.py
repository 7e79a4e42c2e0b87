"""The interactive evaluation's abstention modules end to end (implicit, binary, numeric), the baselines' sources
and intervals, and UoT's pruned options at the final answer. Experts and questioners are scripts (not models), so
each test knows the whole transcript; the patient is the real fact-select patient (MiniLM) or a scripted LLM
patient that records what it was asked."""

import pytest
from scripted import ScriptedBackend

from alfa.dialogue.patients import FactSelectPatient
from alfa.eval.cases import load_cases
from alfa.eval.interactive import InteractiveProtocol, evaluate_interactive

QUESTIONER_WORDS = "How long have you had these symptoms?"
EXPERT_WORDS = "Do you keep parrots at home?"


@pytest.fixture(scope="module")
def cases(medqa_path):
    return load_cases(medqa_path, limit=3)[0]


def speaker(name: str, **replies):
    """A scripted role (not a model): the reply whose key's words are in the last message, in the order given."""

    def reply(messages, seed=None):
        text = messages[-1]["content"]
        for key, value in replies.items():
            if key.replace("_", " ") in text:
                return value(text) if callable(value) else value
        raise AssertionError(f"{name} was asked something it has no script for: {text[-200:]}")

    return ScriptedBackend(name, reply)


def implicit_expert() -> ScriptedBackend:
    """Asks its own question until the patient answered once, then answers C."""
    return speaker(
        "expert",
        Reply_with_the_letter="Answer: C",
        otherwise_reply=lambda text: "Answer: C" if "The patient said" in text else f"Question: {EXPERT_WORDS}",
    )


def test_implicit_expert_only_decides_and_the_questioner_under_test_asks(tmp_path, cases, embedder):
    """Before the fix the implicit expert's own question reached the patient and the questioner was never called."""
    expert, questioner = implicit_expert(), speaker("questioner", Your_one_question=QUESTIONER_WORDS)
    patient = ScriptedBackend("patient", lambda messages, seed: "About two weeks.")
    protocol = InteractiveProtocol(expert, questioner, patient, abstain="implicit", max_questions=3)
    report = evaluate_interactive(cases, protocol, tmp_path / "e")
    assert questioner.calls == len(cases)  # one question a case, from the questioner
    asked = [m[-1]["content"] for m in patient.requests]
    assert len(asked) == len(cases) and all(QUESTIONER_WORDS in a and EXPERT_WORDS not in a for a in asked)
    assert report["mean_questions"] == 1 and report["expert_answer_share"] == {"C": 1.0}
    assert report["parse_failures"] == 0 and report["premature_answer_rate"]["value"] == 0


def test_implicit_with_the_fact_select_patient_reads_the_questioners_words(tmp_path, cases, embedder):
    expert, questioner = implicit_expert(), speaker("questioner", Your_one_question=QUESTIONER_WORDS)
    patient = FactSelectPatient(embedder)
    report = evaluate_interactive(cases, InteractiveProtocol(expert, questioner, patient, "implicit"), tmp_path / "e")
    import json

    episodes = [json.loads(x) for x in (tmp_path / "e" / "episodes.jsonl").read_text().splitlines()]
    for e, case in zip(episodes, cases):
        assert e["data"]["conversation"][0] == [QUESTIONER_WORDS, patient.answer(case.facts, QUESTIONER_WORDS)[0]]
        assert [t["parsed"] for t in e["turns"] if t["kind"] == "decide"] == [False, True]
    assert report["n"] == 3


def test_binary_expert_end_to_end(tmp_path, cases, embedder):
    expert = speaker(
        "expert",
        Reply_with_the_letter="The answer is: B",
        Reply_Yes_or_No=lambda text: "Yes." if text.count("You asked:") >= 2 else "No, I need more.",
    )
    questioner = speaker("questioner", Your_one_question=QUESTIONER_WORDS)
    report = evaluate_interactive(
        cases, InteractiveProtocol(expert, questioner, FactSelectPatient(embedder), "binary"), tmp_path / "e"
    )
    assert report["mean_questions"] == 2 and report["expert_answer_share"] == {"B": 1.0}
    assert report["accuracy"]["value"] == pytest.approx(sum(c.answer == "B" for c in cases) / 3)
    assert report["decisions"]["n"] == 9 and report["parse_failures"] == 0


def test_numeric_expert_end_to_end_reads_the_confidence_not_the_range(tmp_path, cases, embedder):
    """'Between 0 and 1, 0.3' read as 0 (or a bound) before; here it is 0.3, below the 0.8 threshold."""
    expert = speaker(
        "expert",
        Reply_with_the_letter="**Answer:** D",
        number_between=lambda text: "Between 0 and 1, 0.9" if "You asked:" in text else "Between 0 and 1, 0.3",
    )
    questioner = speaker("questioner", Your_one_question=QUESTIONER_WORDS)
    report = evaluate_interactive(
        cases, InteractiveProtocol(expert, questioner, FactSelectPatient(embedder), "numeric"), tmp_path / "e"
    )
    assert report["threshold"] == 0.8 and report["mean_questions"] == 1
    assert report["expert_answer_share"] == {"D": 1.0} and report["parse_failures"] == 0


def test_the_majority_baseline_comes_from_cases_the_run_does_not_score(tmp_path, cases, embedder, medqa_path):
    roles = speaker("roles", Reply_with_the_letter="Answer: C", from_1=lambda t: "5", Your_one_question="Why?")
    protocol = InteractiveProtocol(roles, roles, FactSelectPatient(embedder), "scale")
    rest, _ = load_cases(medqa_path, limit=40, skip=3)
    report = evaluate_interactive(cases, protocol, tmp_path / "ref", reference_cases=rest, reference_name="the rest")
    majority = report["baselines"]["majority_letter"]
    from collections import Counter

    expected = Counter(c.answer for c in rest).most_common(1)[0][0]
    assert majority["answer"] == expected and majority["from"] == "the rest"
    assert majority["value"] == pytest.approx(sum(c.answer == expected for c in cases) / 3)
    alone = evaluate_interactive(cases, protocol, tmp_path / "alone")["baselines"]["majority_letter"]
    assert alone["from"] == "the scored cases (post hoc)"
    # every rate keeps a width at 0% and 100% (a percentile bootstrap gave "100% (100%-100%)")
    premature = report["premature_answer_rate"]
    assert premature["value"] == 1.0 and premature["ci_low"] < 0.6 and premature["interval"] == "wilson"


def test_uot_final_answer_is_asked_over_the_options_still_open(cases):
    from alfa.dialogue.uot import UoTPlanner

    planner = UoTPlanner(3, 2, 0.4)
    protocol = InteractiveProtocol(
        ScriptedBackend("expert"), ScriptedBackend(), None, "fixed", max_questions=0, planner=planner
    )
    case = cases[0]
    e = protocol.episode(case, case.initial_info)
    e.data["uot"]["open"] = [case.answer, next(k for k in case.options if k != case.answer)]
    role, kind, messages = protocol.next_request(e)
    shown = messages[-1]["content"]
    assert (role, kind) == ("expert", "final")
    assert all((f"{k}. {case.options[k]}" in shown) == (k in e.data["uot"]["open"]) for k in case.options)


def test_uot_pairs_skip_a_plan_with_no_readable_candidate():
    """A plan whose proposals had no readable candidate ended `alfa uot pairs` in an IndexError."""
    from alfa.methods.uot_pairs import complete_plans, plans_to_pairs

    case = {"case_id": "c1", "question": "Q?", "options": {"A": "x", "B": "y"}, "answer": "A", "context": ["f"],
            "facts": ["f"], "initial_info": "f"}  # fmt: skip
    good = {"question": "Is it x?", "expected": 1.0, "candidates": [
        {"question": "Is it x?", "yes": ["A"], "expected": 1.0}, {"question": "Is it z?", "yes": [], "expected": 0.2}]}  # fmt: skip
    turns = [
        {"role": "questioner", "kind": "propose", "parsed": {"question": None, "expected": None, "candidates": []}},
        {"role": "patient", "kind": "answer", "parsed": []},
        {"role": "questioner", "kind": "propose", "parsed": good},
        {"role": "patient", "kind": "answer", "parsed": []},
    ]
    episode = {"episode_id": "c1", "data": {"case": case, "initial_info": "f", "conversation": [["q0", "a0"], ["Is it x?", "a1"]]},
               "turns": turns}  # fmt: skip
    assert [k for k, _ in complete_plans(turns)] == [0, 1]
    pairs = plans_to_pairs([episode], "m")
    assert len(pairs) == 1 and pairs[0]["chosen"][0]["content"] == "Is it x?"
    # the second plan was made after one answered question: its prompt holds that turn and no later one
    assert "q0" in pairs[0]["prompt"][-1]["content"] and "Is it x?" not in pairs[0]["prompt"][-1]["content"]
