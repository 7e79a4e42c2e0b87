"""Win-rate arithmetic: both orders always, zeros stay in the mean, failures are counted apart."""

import copy
import math

import pytest
from scripted import ScriptedBackend

from alfa.eval.winrate import CONTROL_QUESTION, item_score, summarize
from alfa.llm.backends import Completion
from alfa.stats import bootstrap_mean, wilson


def test_a_judge_that_always_answers_a_gives_exactly_one_half_and_full_position_bias():
    items = [{"group": f"p{i % 7}", "verdict_a_first": "A", "verdict_b_first": "A"} for i in range(40)]
    result = summarize(items)
    assert result["win_rate"]["value"] == 0.5
    assert result["win_rate"]["ci_low"] < 0.5 < result["win_rate"]["ci_high"]  # at least Wilson's, never zero width
    assert result["position_bias"] == 1.0 and result["wins"] == result["losses"] == 40


def test_a_side_that_produced_no_question_loses_the_post_and_is_counted():
    items = [
        {"group": "p1", "verdict_a_first": "A", "verdict_b_first": "B"},  # judged: A wins, 1
        {"group": "p2", "missing": "a"},  # A's generation failed: 0
        {"group": "p3", "missing": "b"},  # B's was empty: 1
        {"group": "p4", "missing": "both"},  # 0.5
    ]
    result = summarize([{"verdict_a_first": None, "verdict_b_first": None} | it for it in items])
    assert result["n"] == 4 and result["judged"] == 1 and result["failures"] == 0
    assert result["missing_a"] == 2 and result["missing_b"] == 2
    assert result["win_rate"]["value"] == pytest.approx((1 + 0 + 1 + 0.5) / 4)


def test_winrate_keeps_posts_whose_generation_failed_as_losses(tmp_path):
    """Before, a post whose A question was empty or failed was silently left out of the rate."""
    import json

    from alfa.eval.winrate import judge_winrate

    q = _questions()
    qids = list(q["qid"])
    a = {qid: "When did the pain start?" for qid in qids} | {qids[0]: None, qids[1]: ""}
    b = dict(zip(q["qid"], q["question"]))
    judge = AlwaysA()
    report = judge_winrate(a, b, q, judge, {}, tmp_path, known_difference=False)
    assert report["n"] == 6 and report["missing_a"] == 2 and report["missing_b"] == 0
    # four posts judged in both orders, always-A: 0.5 each; two losses: (4 * 0.5 + 0) / 6
    assert report["win_rate"]["value"] == pytest.approx(2 / 6)
    assert judge.calls == 4 * 2 + 6 * 2  # overall for four posts, the control for all six (B is there)
    assert report["control"]["n"] == 6 and report["control"]["missing_a"] == 0
    missing = [json.loads(x) for x in (tmp_path / "verdicts.jsonl").read_text().splitlines() if '"missing"' in x]
    assert sorted(m["qid"] for m in missing) == sorted(qids[:2])


def test_losses_stay_in_the_mean_and_failures_are_counted_apart():
    items = [
        {"group": "p1", "verdict_a_first": "A", "verdict_b_first": "B"},  # a wins both orders: 1
        {"group": "p2", "verdict_a_first": "B", "verdict_b_first": "A"},  # a loses both: 0, kept
        {"group": "p3", "verdict_a_first": "tie", "verdict_b_first": "B"},  # 0.75
        {"group": "p4", "verdict_a_first": "unparsed", "verdict_b_first": "B"},  # a failure
    ]
    result = summarize(items)
    assert result["n"] == 4 and result["judged"] == 3 and result["failures"] == 1
    assert result["win_rate"]["value"] == pytest.approx((1 + 0 + 0.75) / 3)
    assert item_score("B", "A") == 0.0


def test_bootstrap_interval_resamples_groups_and_contains_the_mean():
    values = [1.0] * 30 + [0.0] * 30
    ci = bootstrap_mean(values, groups=[i // 2 for i in range(60)], seed=1)
    assert ci["ci_low"] < 0.5 < ci["ci_high"] and ci["value"] == 0.5
    assert bootstrap_mean(values, seed=1) == bootstrap_mean(values, seed=1)  # seeded
    low, high = wilson(8, 10)
    assert 0.44 < low < 0.5 and 0.94 < high < 0.97


class AlwaysA(ScriptedBackend):
    """A scripted judge (not a model) that reports no log-probabilities: answers 'A' to everything."""

    def __init__(self):
        super().__init__("always-a")

    def reply(self, messages):
        return "A"


class LeaningJudge(ScriptedBackend):
    """A scripted judge (not a model) that always writes 'A' but, asked for log-probabilities, reports P(first
    position) = 0.8 (a position preference) plus `lean` when the first question mentions pain (the better one)."""

    def __init__(self, lean: float):
        super().__init__(f"leaning-{lean}")
        self.lean, self.scoring = lean, False

    def with_logprobs(self, top=10):
        out = copy.copy(self)
        out.scoring = True
        return out

    def reply(self, messages):
        if not self.scoring:
            return "A"
        first = messages[-1]["content"].split("Question A: ")[1].split("\n")[0]
        p = 0.8 + (self.lean if "pain" in first else -self.lean)
        return Completion("A", usage={"first_token_logprobs": {"A": math.log(p), "B": math.log(1 - p)}})


def _questions(n=6):
    from conftest import SAMPLE, SAMPLE_MAP

    from alfa.data.ingest import ingest, parse_map

    return ingest(SAMPLE, parse_map(SAMPLE_MAP)).questions.head(n)


def test_judge_winrate_with_an_always_a_judge_is_one_half_on_every_attribute(tmp_path):
    from alfa.data.attributes import load_pack
    from alfa.eval.winrate import judge_winrate

    q = _questions()
    a = {qid: "When did the pain start?" for qid in q["qid"]}
    b = dict(zip(q["qid"], q["question"]))
    report = judge_winrate(a, b, q, AlwaysA(), load_pack("core").attributes, tmp_path)
    for r in [report] + list(report["by_attribute"].values()):
        assert r["win_rate"]["value"] == 0.5 and r["position_bias"] == 1.0 and r["n"] == 6 and r["failures"] == 0
    assert set(report["by_attribute"]) == {"clarity", "relevance", "specificity"}
    # overall, 3 attributes, the control and the known difference (another post's question)
    assert len((tmp_path / "verdicts.jsonl").read_text().splitlines()) == 6 * 6
    assert report["judge_fit"]["fit"] is False  # always 'A' passes neither check


def test_the_probability_reading_finds_a_lean_the_written_verdicts_hide(tmp_path):
    from alfa.data.attributes import load_pack
    from alfa.eval.winrate import judge_winrate

    q = _questions()
    a = {qid: "When did the pain start?" for qid in q["qid"]}
    b = {qid: "Anything else?" for qid in q["qid"]}
    core = load_pack("core").attributes
    text = judge_winrate(a, b, q, LeaningJudge(0.1), core, tmp_path / "t", reading="text")
    assert text["reading"] == "text" and text["win_rate"]["value"] == 0.5  # always 'A': no information
    leaning = judge_winrate(a, b, q, LeaningJudge(0.1), core, tmp_path / "p")
    # A first: P(first) = 0.9; B first: 0.7, so P(A better) = 0.3; averaged: (0.9 + 1 - 0.7) / 2 = 0.6
    assert leaning["reading"] == "probability" and leaning["win_rate"]["value"] == pytest.approx(0.6)
    assert leaning["probability_failures"] == 0 and leaning["position_bias"] == 1.0
    flat = judge_winrate(a, b, q, LeaningJudge(0.0), core, tmp_path / "f")
    assert flat["win_rate"]["value"] == pytest.approx(0.5)  # a position preference alone cancels
    swapped = judge_winrate(b, a, q, LeaningJudge(0.1), core, tmp_path / "s")
    assert swapped["win_rate"]["value"] == pytest.approx(0.4)  # B over A is one minus A over B
    # the known-bad baseline: an irrelevant question against B, which this judge ranks below a question on pain
    assert swapped["control"]["question"] == CONTROL_QUESTION
    assert swapped["control"]["win_rate"]["value"] == pytest.approx(0.4)
    assert leaning["control"]["win_rate"]["value"] == pytest.approx(0.5)  # against "Anything else?": no lean
    # a backend without log-probabilities is read by its written verdicts, and says so
    assert judge_winrate(a, b, q, AlwaysA(), core, tmp_path / "n")["reading"] == "text"


def test_generate_then_winrate_against_the_human_questions_end_to_end(tmp_path, tiny_model_dir):
    """alfa generate with a real (tiny) policy, then alfa eval winrate with SmolLM2 on llama.cpp judging."""
    import json

    import pytest

    pytest.importorskip("xllamacpp")
    from alfa.cli import main
    from alfa.llm.embedded import smollm2_gguf_path

    qfile = tmp_path / "q.parquet"
    _questions(4).write_parquet(qfile)
    gen = tmp_path / "gen.jsonl"
    assert (
        main(["generate", f"transformers:{tiny_model_dir}", str(qfile), "-o", str(gen), "--max-new-tokens", "12"]) == 0
    )
    rows = [json.loads(line) for line in gen.read_text().splitlines()]
    assert len(rows) == 4 and all(set(r) >= {"qid", "question", "model"} for r in rows)
    out = tmp_path / "wr"
    cmd = ["eval", "winrate", "--a", str(gen), "--b", "human", "--questions", str(qfile), "-o", str(out),
           "--judge", f"llamacpp:{smollm2_gguf_path()}"]  # fmt: skip
    assert main(cmd) == 0
    report = json.loads((out / "winrate.json").read_text())
    assert report["n"] == len(rows) and report["missing_a"] == sum(not r["question"] for r in rows)
    assert report["wins"] + report["ties"] + report["losses"] + report["failures"] == 2 * report["n"]
    assert report["win_rate"]["value"] is None or 0 <= report["win_rate"]["value"] <= 1
    assert set(report["by_attribute"]) == {"clarity", "relevance", "specificity"}
    # --attributes none: the overall judgement (and the control) only, 2 of the 5 calls a post's question costs
    out = tmp_path / "wr-overall"
    assert main(cmd[:-4] + ["-o", str(out), "--attributes", "none"] + cmd[-2:]) == 0
    overall = json.loads((out / "winrate.json").read_text())
    verdicts = (out / "verdicts.jsonl").read_text().splitlines()
    every = (tmp_path / "wr" / "verdicts.jsonl").read_text().splitlines()
    # per post: A against B, the control, and the known difference (another post's question), overall
    assert overall["by_attribute"] == {} and len(verdicts) == 3 * len(rows) and len(every) == 6 * len(rows)
    assert {json.loads(v)["comparison"] for v in verdicts} == {"main", "control", "mismatch"}
    assert overall["judge_fit"]["fit"] is not None and "Judge fit" in (out / "report.md").read_text()


def test_eval_report_puts_interactive_and_winrate_runs_on_one_page(tmp_path):
    import json

    from alfa.cli import main

    ci = {"value": 0.4, "ci_low": 0.3, "ci_high": 0.5}
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "results.json").write_text(
        json.dumps({"n": 30, "accuracy": ci, "mean_questions": 1.5, "baselines": {"majority_letter": ci}})
    )
    (tmp_path / "fixed").mkdir()
    warning = "the expert answered D in 73% of cases: a letter preference, not a reading"
    (tmp_path / "fixed" / "results.json").write_text(
        json.dumps(
            {"n": 30, "accuracy": ci, "mean_questions": 5, "baselines": {"majority_letter": ci}, "warnings": [warning]}
        )
    )
    (tmp_path / "dpo-vs-base").mkdir()
    (tmp_path / "dpo-vs-base" / "winrate.json").write_text(
        json.dumps({"n": 20, "win_rate": ci, "wins": 10, "ties": 5, "losses": 25, "failures": 0, "position_bias": 0.7})
    )
    assert (
        main(
            [
                "eval",
                "report",
                *(str(tmp_path / r) for r in ("base", "fixed", "dpo-vs-base")),
                "-o",
                str(tmp_path / "r"),
            ]
        )
        == 0
    )
    text = (tmp_path / "r" / "report.md").read_text()
    # runs made before asked_decisive existed show "-" in its column
    assert "| base | 30 | **40.0% (30.0%-50.0%)** | - | 1.50 | 40.0% (30.0%-50.0%) |" in text
    assert f"- fixed: {warning}" in text and "- base:" not in text  # each run's own warnings, named
    row = "| dpo-vs-base | 20 | text | **40.0% (30.0%-50.0%)** | 10 / 5 / 25 | 0 | 0.70 | not run | not run | not checked |"
    assert row in text
    assert (tmp_path / "r" / "report.png").stat().st_size > 0
    (tmp_path / "empty").mkdir()
    assert main(["eval", "report", str(tmp_path / "empty"), "-o", str(tmp_path / "r2")]) == 2


def test_report_shows_the_testbed_table_with_each_runs_paired_difference_from_the_base(tmp_path):
    """asked_decisive runs get docs/results.md's table; with --base each gets its per-case difference on the cases
    both ran (a case the other run lacks is not compared), and the per-attribute win rates get their own panel."""
    import json

    from alfa.cli import main
    from alfa.stats import rate

    def run(name, hits):  # hits: case id -> asked_decisive
        (tmp_path / name).mkdir()
        values = list(hits.values())
        results = {
            "n": len(hits),
            "accuracy": rate([0] * len(hits)),
            "mean_questions": 1.0,
            "baselines": {},
            "asked_decisive": rate(values),
            "asked_decisive_floor": rate([0] * len(hits)),
            "answered_before_decisive_fact": rate([1 - v for v in values]),
        }
        (tmp_path / name / "results.json").write_text(json.dumps(results))
        episodes = [{"episode_id": c, "result": {"asked_decisive": bool(v)}} for c, v in hits.items()]
        (tmp_path / name / "episodes.jsonl").write_text("".join(json.dumps(e) + "\n" for e in episodes))

    run("base", {f"c{i}": i < 2 for i in range(10)})  # 2 of 10
    run("trained", {f"c{i}": i < 6 for i in range(8)})  # 6 of the first 8: +4 on the shared 8
    (tmp_path / "wr").mkdir()
    ci = {"value": 0.6, "ci_low": 0.5, "ci_high": 0.7}
    (tmp_path / "wr" / "winrate.json").write_text(
        json.dumps(
            {"n": 20, "win_rate": ci, "wins": 12, "ties": 0, "losses": 8, "failures": 0, "position_bias": None,
             "by_attribute": {"clarity": ci, "specificity": {**ci, "value": 0.4}}}
        )
    )  # fmt: skip
    runs = [str(tmp_path / r) for r in ("base", "trained", "wr")]
    assert main(["eval", "report", *runs, "--base", str(tmp_path / "base"), "-o", str(tmp_path / "r")]) == 0
    testbed = (tmp_path / "r" / "report.md").read_text().split("## Missing-premise testbed")[1]
    assert "| base | 10 | **20.0% (5.7%-51.0%)** | 0.0% (0.0%-27.8%) | n/a | - | 0.0% (0.0%-27.8%) | 80.0%" in testbed
    trained = next(line for line in testbed.splitlines() if line.startswith("| trained | 8 |"))
    assert "75.0%" in trained and trained.endswith(" cases |") and "+50.0 points" in trained and ", 8 cases" in trained
    assert (tmp_path / "r" / "report.png").stat().st_size > 0
    assert main(["eval", "report", runs[0], "--base", str(tmp_path / "wr"), "-o", str(tmp_path / "r3")]) == 2


def test_generation_figures_count_every_post_a_failure_as_no_question(tmp_path):
    """The share of one-question replies and their mean words, as `alfa generate` prints them: a ramble is not a
    question, and a failed call counts as no question and 0 words instead of leaving the mean."""
    import polars as pl

    from alfa.eval.generate import generate_questions, generation_figures

    posts = {"knee": "When did the pain start?", "rash": "I am so sorry to hear that, I hope you feel better soon."}
    q = pl.DataFrame(
        {
            "qid": ["q1", "q2", "q3"],
            "group_id": ["g1", "g2", "g2"],
            "context": [[{"role": "user", "content": f"My {w} is bad."}] for w in ("knee", "rash", "cough")],
        }
    )

    def reply(messages, seed):
        word = messages[-1]["content"].split()[1]
        if word not in posts:
            return Completion(None, error="HTTP 500: boom")
        return posts[word]

    out = tmp_path / "gen.jsonl"
    generate_questions(q, ScriptedBackend(reply=reply), out)
    rows = [__import__("json").loads(line) for line in out.read_text().splitlines()]
    assert [r["one_question"] for r in rows] == [True, False, False] and "error" in rows[2]
    figures = generation_figures(out)
    assert figures["n"] == 3 and figures["failed"] == 1
    assert figures["one_question"]["value"] == pytest.approx(1 / 3)
    assert figures["words"]["value"] == pytest.approx((5 + 13 + 0) / 3)
    broken = tmp_path / "broken.jsonl"
    broken.write_text(out.read_text() + "{not json\n")
    with pytest.raises(ValueError, match=r"broken.jsonl, line 4: not JSON"):
        generation_figures(broken)
    # a file written before `one_question` was recorded is read again from its question text
    from alfa.eval.generate import is_one_question

    assert is_one_question({"question": "When did the pain start?"}) and not is_one_question({"question": None})
    assert not is_one_question({"question": posts["rash"]})


def test_generate_held_out_from_leaves_out_the_posts_a_pairs_dir_trains_on(tmp_path, tiny_model_dir, capsys):
    import json

    import polars as pl

    from alfa.cli import main

    q = _questions(6)
    qfile = tmp_path / "q.parquet"
    q.write_parquet(qfile)
    trained = q["group_id"][0]
    (tmp_path / "pairs" / "data").mkdir(parents=True)
    pl.DataFrame({"group_id": [trained]}).write_parquet(tmp_path / "pairs" / "data" / "train.parquet")
    gen = tmp_path / "gen.jsonl"
    cmd = ["generate", f"transformers:{tiny_model_dir}", str(qfile), "-o", str(gen), "--max-new-tokens", "8"]
    assert main([*cmd, "--held-out-from", str(tmp_path / "pairs")]) == 0
    rows = [json.loads(line) for line in gen.read_text().splitlines()]
    left_out = q.filter(pl.col("group_id") == trained).height
    assert left_out >= 1 and len(rows) == q.height - left_out and trained not in {r["group_id"] for r in rows}
    printed = capsys.readouterr().out
    assert f"left out {left_out} questions" in printed and "one question: " in printed
    every_post = tmp_path / "every"
    (every_post / "data").mkdir(parents=True)
    pl.DataFrame({"group_id": q["group_id"].to_list()}).write_parquet(every_post / "data" / "train.parquet")
    assert main([*cmd, "--held-out-from", str(every_post)]) != 0  # nothing left: stops before the model loads
    assert "no questions to generate for" in capsys.readouterr().err
    assert main([*cmd, "--held-out-from", str(tmp_path / "nowhere")]) != 0
    assert "nowhere/data/train.parquet (give a pairs dir" in capsys.readouterr().err
