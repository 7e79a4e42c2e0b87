"""CollabLLM pairs on real MedQA dev cases with scripted roles (not models): a candidate that asks first leads to the
right answer in its futures and beats a premature 'Answer: A'; equal candidates make no pair; a rerun pays nothing;
the pairs dir is split by case and passes lint."""

from __future__ import annotations

import json

import polars as pl
import pytest
from scripted import ScriptedBackend

from alfa.dialogue.consult import answer_now
from alfa.llm.backends import Completion
from alfa.methods.collab import PAIR_TYPE, CollabConfig, build_collab
from alfa.methods.tasks import read_cases

FINAL_PROMPT = answer_now({"A": "a case with options"})


@pytest.fixture(scope="module")
def cases(medqa_path):
    return read_cases(medqa_path, 6)


def roles(cases):
    answer_of = {c.question: c.answer for c in cases}

    def policy(messages, seed):
        correct = next(a for q, a in answer_of.items() if q in messages[1]["content"])
        if len(messages) == 2:  # the first turn: even seeds answer at once, odd seeds ask
            return "Answer: A" if seed % 2 == 0 else "Do you have a fever?"
        return f"Answer: {correct}"  # after the patient spoke (or when asked for the answer)

    calls = {}
    calls["policy"] = ScriptedBackend("policy", policy)
    calls["user"] = ScriptedBackend("patient", lambda m, s: "I have had a fever for two days.")
    calls["judge"] = ScriptedBackend("judge", lambda m, s: "4")
    return calls


def test_asking_first_beats_a_premature_answer_and_equal_candidates_make_no_pair(tmp_path, cases):
    r = roles(cases)
    cfg = CollabConfig(candidates=2, futures=2, window=2, turns=3)
    summary = build_collab(cases, r["policy"], r["user"], r["judge"], cfg, tmp_path)
    wrong_a = [c for c in cases if c.answer != "A"]
    assert summary["pairs"] == len(wrong_a) > 0  # a case whose answer is A: both candidates end right, no pair
    pairs = pl.concat([pl.read_parquet(f) for f in sorted((tmp_path / "data").glob("*.parquet"))])
    assert set(pairs["pair_type"]) == {PAIR_TYPE}
    assert set(pairs["group_id"]) == {c.case_id for c in wrong_a}
    for row in pairs.iter_rows(named=True):
        assert row["chosen"][0]["content"] == "Do you have a fever?" and row["rejected"][0]["content"] == "Answer: A"
        assert row["chosen_score"] - row["rejected_score"] >= cfg.min_gap
        assert [m["role"] for m in row["prompt"]] == ["system", "user"]
    assert pairs.group_by("group_id").agg(pl.col("split").n_unique())["split"].max() == 1
    # the conversations continued with the better reply and ended with the right answer
    for line in (tmp_path / "conversations.jsonl").read_text().splitlines():
        conv = json.loads(line)
        case = next(c for c in cases if c.case_id == conv["case_id"])
        assert conv["messages"][-1] == {"role": "assistant", "content": f"Answer: {case.answer}"}
        first = conv["turns"][0]
        best = first["candidates"][first["best"]]
        assert best["task"] == 1.0 and 0 < best["cost"] < 0.02 and best["interactivity"] == 0.75
    # every future asked the patient about a candidate's question, never about a premature answer
    assert all("Answer:" not in m[-1]["content"].split("The doctor asks:")[1] for m in r["user"].requests)
    assert any(m[-1]["content"] == FINAL_PROMPT for m in r["policy"].requests) is False  # every future answered itself
    from alfa.data.lint import lint

    assert not [f for f in lint(tmp_path) if f.severity == "error"]
    again = roles(cases)
    rerun = build_collab(cases, again["policy"], again["user"], again["judge"], cfg, tmp_path)
    assert rerun["pairs"] == summary["pairs"] and rerun["calls"]["made"] == 0
    assert not again["policy"].requests and not again["user"].requests and not again["judge"].requests


def test_a_future_left_open_is_asked_for_its_answer(tmp_path, cases):
    r = roles(cases)
    r["policy"] = ScriptedBackend(
        "policy", lambda m, s: "Answer: B" if m[-1]["content"] == FINAL_PROMPT else "Anything else?"
    )
    summary = build_collab(
        cases[:2], r["policy"], r["user"], r["judge"], CollabConfig(window=1, turns=1, interactivity_weight=0), tmp_path
    )
    assert summary["pairs"] == 0  # identical candidates
    finals = [m for m in r["policy"].requests if m[-1]["content"] == FINAL_PROMPT]
    # every future of a case is the same conversation here, and identical requests are called once: one per case
    assert len(finals) == 2
    assert not r["judge"].requests  # interactivity weight 0: no judge call
    for line, case in zip((tmp_path / "conversations.jsonl").read_text().splitlines(), cases):
        turn = json.loads(line)["turns"][0]
        assert [c["task"] for c in turn["candidates"]] == [float(case.answer == "B")] * 2


def test_failed_calls_are_kept_with_their_reason_never_paired_and_asked_again_on_rerun(tmp_path, cases):
    r = roles(cases)
    flaky = next(c for c in cases if c.answer != "A")  # a case whose asking candidate would make a pair

    def patient(messages, seed):
        if flaky.facts[0] in messages[-1]["content"]:
            return Completion(None, error="HTTP 503: server overloaded")
        return "I have had a fever for two days."

    r["user"] = ScriptedBackend("patient", patient)
    cfg = CollabConfig(candidates=2, futures=2, window=2, turns=3)
    summary = build_collab(cases, r["policy"], r["user"], r["judge"], cfg, tmp_path)
    wrong_a = [c for c in cases if c.answer != "A"]
    assert summary["pairs"] == len(wrong_a) - 1  # the asking candidate's futures failed: no pair for the flaky case
    failures = [json.loads(x) for x in (tmp_path / "failures.jsonl").read_text().splitlines()]
    assert failures and {(f["role"], f["case_id"]) for f in failures} == {("user", flaky.case_id)}
    assert all(f["error"] == "HTTP 503: server overloaded" for f in failures)
    said = summary["failures"]
    assert said["failed_requests_by_role"] == {"user": len(failures)} and said["consultations_stopped"] == 0
    assert 0 < summary["calls"]["failed"] <= len(failures)  # identical failed requests are one call
    assert said["candidates_with_failed_futures"] == 1 and said["first_reasons"][0].startswith("HTTP 503")
    conv = next(
        json.loads(x) for x in (tmp_path / "conversations.jsonl").read_text().splitlines() if flaky.case_id in x
    )
    # the clean candidate continues (its estimate holds), not the one whose futures failed: it answered, so it ended
    assert conv["turns"][0]["best"] == 0 and conv["messages"][-1] == {"role": "assistant", "content": "Answer: A"}
    # the server is back: a rerun asks only the failed calls again (they were never cached) and makes the pair
    healthy = roles(cases)
    rerun = build_collab(cases, healthy["policy"], healthy["user"], healthy["judge"], cfg, tmp_path)
    assert rerun["pairs"] == len(wrong_a) and rerun["failures"]["failed_requests_by_role"] == {}
    assert healthy["user"].requests and all(flaky.facts[0] in m[-1]["content"] for m in healthy["user"].requests)


def test_a_consultation_whose_patient_fails_stops_there_until_a_rerun(tmp_path, cases):
    r = roles(cases)
    flaky = next(c for c in cases if c.answer != "A")

    def patient(messages, seed):  # the futures' calls are sampled (seeded); the conversation's own is greedy
        if seed is None and flaky.facts[0] in messages[-1]["content"]:
            return Completion(None, error="timeout")
        return "I have had a fever for two days."

    r["user"] = ScriptedBackend("patient", patient)
    cfg = CollabConfig(candidates=2, futures=1, window=1, turns=2)
    summary = build_collab(cases, r["policy"], r["user"], r["judge"], cfg, tmp_path)
    assert summary["failures"]["consultations_stopped"] == 1
    conv = next(
        json.loads(x) for x in (tmp_path / "conversations.jsonl").read_text().splitlines() if flaky.case_id in x
    )
    assert "patient's call failed" in conv["turns"][0]["stopped"] and len(conv["turns"]) == 1
    assert conv["messages"][-1] == {"role": "assistant", "content": "Do you have a fever?"}
    healthy = roles(cases)
    rerun = build_collab(cases, healthy["policy"], healthy["user"], healthy["judge"], cfg, tmp_path)
    assert rerun["failures"]["consultations_stopped"] == 0


def test_a_candidate_whose_call_failed_is_not_scored_and_makes_no_pair(tmp_path, cases):
    r = roles(cases)
    ask = r["policy"]._reply
    r["policy"] = ScriptedBackend(
        "policy", lambda m, s: Completion(None, error="timeout") if len(m) == 2 and s == 1 else ask(m, s)
    )
    summary = build_collab(cases, r["policy"], r["user"], r["judge"], CollabConfig(futures=1, turns=1), tmp_path)
    assert summary["pairs"] == 0 and summary["failures"]["candidates_failed"] == len(cases)
    for line in (tmp_path / "conversations.jsonl").read_text().splitlines():
        turn = json.loads(line)["turns"][0]
        assert turn["candidates"][1] == {"reply": None, "failed": True} and turn["best"] == 0


def test_config_refuses_a_single_candidate():
    with pytest.raises(ValueError, match="candidates must be at least 2"):
        CollabConfig(candidates=1)


def test_an_unreadable_rating_is_left_out_of_the_mean_and_the_judge_sees_the_case(tmp_path, cases):
    r = roles(cases)
    # a rating for the futures that asked, none readable for those that answered at once: with unreadable scored 0
    # the premature answer would lose on interactivity alone; left out, it has no MR estimate and makes no pair
    r["judge"] = ScriptedBackend("judge", lambda m, s: "4" if "fever?" in m[0]["content"] else "It was fine.")
    cfg = CollabConfig(candidates=2, futures=2, window=2, turns=1, task_weight=0.0)
    summary = build_collab(cases, r["policy"], r["user"], r["judge"], cfg, tmp_path)
    assert summary["pairs"] == 0
    for line in (tmp_path / "conversations.jsonl").read_text().splitlines():
        conv = json.loads(line)
        case = next(c for c in cases if c.case_id == conv["case_id"])
        asked, blurted = sorted(conv["turns"][0]["candidates"], key=lambda c: c["reply"] != "Do you have a fever?")
        assert asked["interactivity"] == 0.75 and not asked["unrated"]
        assert blurted["interactivity"] is None and blurted["unrated"] and blurted["judge_unreadable"] == 2
        assert all(
            case.initial_info in m[0]["content"] for m in r["judge"].requests if case.question in m[0]["content"]
        )
    assert all("What the doctor was shown:" in m[0]["content"] for m in r["judge"].requests)


def test_the_token_cost_counts_tokens_not_words():
    from transformers import AutoTokenizer

    from alfa.llm.embedded import smollm2_path
    from alfa.methods.collab import tokens

    text = "Have you taken acetaminophen or ibuprofen since Tuesday?"
    expected = len(AutoTokenizer.from_pretrained(smollm2_path())(text, add_special_tokens=False)["input_ids"])
    assert tokens(text) == expected != len(text.split()) and tokens("") == tokens(None) == 0


def test_the_fact_user_is_the_evaluations_patient_on_a_word_problem(tmp_path, gsm8k_path, embedder):
    """`--user fact` on the GSM8K testbed: the patient quotes the one premise the question asks for (the removed
    one, for the echo question) without a call; asking for it leads to the right number and beats answering blind."""
    from alfa.dialogue.patients import FactSelectPatient
    from alfa.eval.gsm8k import premise_question, write_gsm8k_cases

    head = tmp_path / "head.jsonl"
    head.write_text("".join(gsm8k_path.open().readlines()[:12]))
    write_gsm8k_cases(head, tmp_path / "cases", heldout_share=0.0)
    cases = read_cases(tmp_path / "cases" / "train.jsonl", 3)
    by_case = {c.initial_info: c for c in cases}

    def policy(messages, seed):
        case = next(c for info, c in by_case.items() if info in messages[1]["content"])
        premise = case.facts[case.decisive_fact].rstrip(".") + "."
        if len(messages) == 2:  # the first turn: even seeds guess, odd seeds ask for the removed premise
            return "Answer: 0" if seed % 2 == 0 else premise_question(case.facts[case.decisive_fact])
        told = any(premise in m["content"] for m in messages if m["role"] == "user")
        return f"Answer: {case.answer if told else 0}"

    judge = ScriptedBackend("judge", lambda m, s: "3")
    out = tmp_path / "pairs"
    summary = build_collab(
        cases,
        ScriptedBackend("policy", policy),
        FactSelectPatient(embedder),
        judge,
        CollabConfig(futures=1, turns=1),
        out,
    )
    assert summary["roles"]["user"] == "fact" and summary["pairs"] == len(cases)
    pairs = pl.concat([pl.read_parquet(f) for f in sorted((out / "data").glob("*.parquet"))])
    assert all(r[0]["content"] == "Answer: 0" for r in pairs["rejected"].to_list())
    assert all(r[0]["content"].endswith("?") for r in pairs["chosen"].to_list())
