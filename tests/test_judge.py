import json
import shutil

import polars as pl
import pytest

from alfa.data.attributes import PACKS_DIR
from alfa.data.judge import decide, parse_verdict
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


def test_embedded_judge_keeps_only_pairs_it_agrees_with_in_both_orders(tmp_path, embedder, counting):
    from alfa.data.card import write_card
    from alfa.llm.rewriters import local_rewriter

    run = _run_dir(tmp_path)
    judge = counting(local_rewriter(max_new_tokens=32, stop=()))
    unjudged = make_pairs(run, tmp_path / "plain", embedder=embedder)
    judged = make_pairs(run, tmp_path / "pairs", embedder=embedder, judge=judge)
    n = unjudged.height
    assert n >= 3 and judge.calls == 2 * n
    verdicts = pl.read_parquet(tmp_path / "pairs" / "judge_verdicts.parquet")
    assert sorted(verdicts["pair_id"]) == sorted(unjudged["pair_id"])
    for v in verdicts.to_dicts():  # every decision follows from its two stored verdicts
        assert v["decision"] == decide(v["verdict_chosen_first"], v["verdict_rejected_first"])
        assert v["reply_chosen_first"] is not None
    assert sorted(judged["pair_id"]) == sorted(verdicts.filter(pl.col("decision") == "agree")["pair_id"])
    report = json.loads((tmp_path / "pairs" / "judge_report.json").read_text())
    assert sum(r["pairs"] for d in report.values() for r in d.values()) == n
    info = json.loads((tmp_path / "pairs" / "pairs.json").read_text())
    assert info["judge"]["pairs_before"] == n and info["judge"]["pairs_kept"] == judged.height
    # a rerun asks the judge nothing
    again = counting(judge.inner)
    make_pairs(run, tmp_path / "pairs", embedder=embedder, judge=again)
    assert again.calls == 0
    text = write_card(tmp_path / "pairs").read_text()
    assert "## LLM verifier" in text and "SmolLM2" in text.split("## LLM verifier")[1]
