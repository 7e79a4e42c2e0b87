import json
import math
import shutil

import polars as pl
import pytest

from alfa.data.attributes import PACKS_DIR
from alfa.data.judge import chosen_probability, decide, judge_pairs, parse_verdict
from alfa.data.pairs import make_pairs


@pytest.mark.parametrize(
    "reply, verdict",
    [
        ("B is clearer.\nAnswer: B", "B"),
        ("Reasoning... Answer: **A**", "A"),
        ("answer - tie", "tie"),
        ("Answer: A\nOn reflection, Answer: B", "B"),
        ("A", "A"),
        ("I cannot tell.", "unparsed"),
        ("", "unparsed"),
    ],
)
def test_parse_verdict(reply, verdict):
    assert parse_verdict(reply) == verdict


@pytest.mark.parametrize(
    "first, second, decision",
    [
        ("A", "B", "agree"),
        ("B", "A", "disagree"),
        ("A", "A", "position_bias"),
        ("B", "B", "position_bias"),
        ("tie", "tie", "tie"),
        ("A", "tie", "position_bias"),
        ("unparsed", "B", "unparsed"),
    ],
)
def test_both_orders_decide(first, second, decision):
    assert decide(first, second) == decision


def _run_dir(tmp_path):
    """A synthesis run dir written by hand (the replies are test data, not a model)."""
    run = tmp_path / "run"
    run.mkdir()
    post = "I'm 30F and I have had a dry cough for three weeks, worse at night. No fever."
    questions = pl.DataFrame(
        [
            {
                "qid": f"q{i}",
                "group_id": f"g{i}",
                "question": q,
                "context": [{"role": "user", "content": post}],
                "hindsight": "{}",
                "meta": "{}",
            }
            for i, q in enumerate(["Do you smoke?", "Any wheezing with the cough?"])
        ]
    )
    questions.write_parquet(run / "questions.parquet")
    replies = {
        ("q0", "enhance"): "Do you smoke cigarettes or vape, and if so, how much each day?",
        ("q0", "corrupt"): "Do you have any habits at all?",
        ("q1", "enhance"): "Do you hear a whistling sound when you breathe out, especially at night?",
        ("q1", "corrupt"): "Any other noises or things going on with the cough?",
    }
    variants = [
        {
            "qid": qid,
            "group_id": f"g{qid[1]}",
            "attribute": "specificity",
            "direction": d,
            "original": questions["question"][int(qid[1])],
            "source_question": questions["question"][int(qid[1])],
            "standalone": None,
            "reply": text,
            "error": None,
            "call_key": f"{qid}{d}",
        }
        for (qid, d), text in replies.items()
    ]
    pl.DataFrame(variants).write_parquet(run / "variants.parquet")
    shutil.copyfile(PACKS_DIR / "core.yaml", run / "attribute_pack.yaml")
    (run / "run.json").write_text(
        json.dumps(
            {
                "questions": 2,
                "attribute_pack": {"name": "core", "digest": "d", "attributes": ["specificity"]},
                "rewriter": {"backend": "hand", "model": "hand-written", "sampling": {}},
                "prompt_template_hash": "t",
                "standalone": False,
                "hindsight_for_enhance": False,
                "directions": ["enhance", "corrupt"],
                "stats": {
                    "requests": 4,
                    "cache_hits": 0,
                    "calls_made": 0,
                    "failed": 0,
                    "prompt_tokens": 0,
                    "completion_tokens": 0,
                    "seconds": 0,
                },
            }
        )
    )
    return run


def test_judge_read_by_answers_keeps_only_pairs_it_agrees_with_in_both_orders(tmp_path, embedder, counting, smollm2):
    """SmolLM2 through transformers reports no log-probs: the judge is read by its answers in both orders."""
    from alfa.data.card import write_card

    run = _run_dir(tmp_path)
    judge = counting(smollm2)
    unjudged = make_pairs(run, tmp_path / "plain", embedder=embedder)
    judged = make_pairs(run, tmp_path / "pairs", embedder=embedder, judge=judge)
    n = unjudged.height
    assert n >= 3 and judge.calls == 2 * n
    verdicts = pl.read_parquet(tmp_path / "pairs" / "judge_verdicts.parquet")
    assert sorted(verdicts["pair_id"]) == sorted(unjudged["pair_id"])
    assert set(verdicts["reading"]) == {"answers"} and verdicts["p_chosen"].null_count() == n
    # every decision follows from its two stored verdicts, by the rule written out here by hand
    by_hand = {("A", "B"): "agree", ("B", "A"): "disagree", ("tie", "tie"): "tie"}
    for v in verdicts.to_dicts():
        both = (v["verdict_chosen_first"], v["verdict_rejected_first"])
        expected = "unparsed" if "unparsed" in both else by_hand.get(both, "position_bias")
        assert v["decision"] == expected and v["reply_chosen_first"] is not None
    assert sorted(judged["pair_id"]) == sorted(verdicts.filter(pl.col("decision") == "agree")["pair_id"])
    report = json.loads((tmp_path / "pairs" / "judge_report.json").read_text())
    assert sum(r["pairs"] for d in report["by_type"].values() for r in d.values()) == n
    assert report["no_information_baseline"] == 0.25
    info = json.loads((tmp_path / "pairs" / "pairs.json").read_text())
    assert info["judge"]["pairs_before"] == n and info["judge"]["pairs_kept"] == judged.height
    # a rerun asks the judge nothing
    again = counting(judge.inner)
    make_pairs(run, tmp_path / "pairs", embedder=embedder, judge=again)
    assert again.calls == 0
    text = write_card(tmp_path / "pairs").read_text()
    assert "## LLM verifier" in text and "SmolLM2" in text.split("## LLM verifier")[1]


@pytest.mark.parametrize(
    "chosen_first, rejected_first, p",
    [
        ({"A": -0.1, "B": -2.4}, {"A": -0.1, "B": -2.4}, 0.5),  # always "A": position bias alone says nothing
        ({" A": math.log(0.8), "B": math.log(0.2)}, {"A": math.log(0.2), "B": math.log(0.8)}, 0.8),
        ({"B": -0.01}, {"A": -0.01}, 0.0),  # the letter missing from the top log-probs has probability 0
        ({"Yes": -0.1}, {"A": -0.1}, None),  # neither letter: no probability, read by answers instead
    ],
)
def test_chosen_probability_averages_both_orders(chosen_first, rejected_first, p):
    got = chosen_probability(chosen_first, rejected_first)
    assert got == pytest.approx(p) if p is not None else got is None


def test_judge_on_llamacpp_is_read_by_probability_on_a_seeded_sample(tmp_path, embedder):
    """llama.cpp's own server (SmolLM2's GGUF: fast) reports log-probs: each verdict carries P(chosen), from which
    its decision follows; a sample of 2 judges 2 pairs, the same 2 on a rerun, and keep="all" keeps every pair."""
    pytest.importorskip("xllamacpp")
    from alfa.data.card import write_card
    from alfa.llm.embedded import smollm2_gguf_path
    from alfa.llm.make import llamacpp_backend

    run = _run_dir(tmp_path)
    judge = llamacpp_backend(smollm2_gguf_path(), concurrency=1, max_new_tokens=4)
    try:
        everything = make_pairs(run, tmp_path / "plain", embedder=embedder)
        kept = make_pairs(run, tmp_path / "pairs", embedder=embedder, judge=judge, judge_sample=2, judge_keep="all")
        first = pl.read_parquet(tmp_path / "pairs" / "judge_verdicts.parquet")
        make_pairs(run, tmp_path / "again", embedder=embedder, judge=judge, judge_sample=2, judge_keep="all")
        second = pl.read_parquet(tmp_path / "again" / "judge_verdicts.parquet")
    finally:
        judge.close()
    assert kept.height == everything.height and first.height == 2
    assert sorted(first["pair_id"]) == sorted(second["pair_id"])
    assert set(first["reading"]) == {"probability"}
    for v in first.to_dicts():
        assert 0 <= v["p_chosen"] <= 1
        assert v["p_chosen"] == pytest.approx((v["p_a_chosen_first"] + 1 - v["p_a_rejected_first"]) / 2)
        assert v["decision"] == ("agree" if v["p_chosen"] > 0.5 else "disagree" if v["p_chosen"] < 0.5 else "tie")
    report = json.loads((tmp_path / "pairs" / "judge_report.json").read_text())
    assert report["reading"] == "probability" and report["no_information_baseline"] == 0.5
    low, high = report["overall"]["ci95"]
    assert 0 <= low <= report["overall"]["rate"] <= high <= 1
    text = write_card(tmp_path / "pairs").read_text().split("## LLM verifier")[1]
    assert f"a seeded sample of 2 of the {everything.height} pairs" in text and "95% interval" in text


def test_keep_agreed_refuses_a_sample():
    with pytest.raises(ValueError, match="judge every pair"):
        judge_pairs(pl.DataFrame({"pair_id": ["a", "b"]}), {}, None, None, sample=1, keep="agreed")


def test_a_set_read_both_ways_reports_each_reading_beside_its_own_baseline_and_counts_failures():
    """Hand-built verdicts: 2 read by probability (1 agrees), 2 by answers (1 agrees), 1 whose call failed."""
    from alfa.data.judge import VERDICT_SCHEMA, judge_report

    def row(i, reading, decision):
        return {"pair_id": f"p{i}", "attribute": "clarity", "pair_type": "enhanced_vs_original", "judge": "j",
                "reading": reading, "decision": decision}  # fmt: skip

    rows = [row(0, "probability", "agree"), row(1, "probability", "disagree"), row(2, "answers", "agree"),
            row(3, "answers", "position_bias"), row(4, "failed", "call_failed")]  # fmt: skip
    report = judge_report(pl.DataFrame(rows, schema=VERDICT_SCHEMA))
    assert report["overall"]["pairs"] == 5 and report["overall"]["agree"] == 2  # the failure counts, as a loss
    assert report["reading"] == "mixed" and report["no_information_baseline"] is None
    assert report["failed_calls"] == 1
    assert {r: (a["agree"], a["pairs"], a["no_information_baseline"]) for r, a in report["by_reading"].items()} == {
        "probability": (1, 2, 0.5),
        "answers": (1, 2, 0.25),
    }


def test_failed_judge_calls_on_a_real_server_are_counted_logged_and_carded(tmp_path, embedder, caplog):
    """llama.cpp's real server behind a base URL with a wrong path (a user's typo) answers every judge call 404:
    with keep agreed the pairs are dropped, and the log, pairs.json and the card say how many and why."""
    pytest.importorskip("xllamacpp")
    from alfa.data.card import write_card
    from alfa.llm.embedded import smollm2_gguf_path
    from alfa.llm.endpoint import ChatEndpoint
    from alfa.llm.llamacpp import LlamaCppServer

    run = _run_dir(tmp_path)
    server = LlamaCppServer(smollm2_gguf_path(), parallel=1, ctx=2048).start()
    try:
        judge = ChatEndpoint("smollm2", f"{server.base_url}/wrong", concurrency=1, max_tokens=4)
        with caplog.at_level("WARNING"):
            kept = make_pairs(run, tmp_path / "pairs", embedder=embedder, judge=judge, judge_keep="agreed")
    finally:
        server.stop()
    info = json.loads((tmp_path / "pairs" / "pairs.json").read_text())["judge"]
    n = info["pairs_before"]
    assert n >= 3 and kept.height == 0 and info["failed_calls"] == n and info["reading"] == "none"
    verdicts = pl.read_parquet(tmp_path / "pairs" / "judge_verdicts.parquet")
    assert set(verdicts["decision"]) == {"call_failed"} and verdicts["reply_chosen_first"][0].startswith("HTTP 404")
    assert f"{n} of {n} pairs could not be judged" in caplog.text and "--judge-keep agreed dropped them" in caplog.text
    card = write_card(tmp_path / "pairs").read_text()
    assert f"{n} pair(s) could not be judged because a call failed** and were dropped" in card
