"""The judges' own controls (`judge_fit`: an irrelevant question must lose, a post's own question must beat a
known-worse one) and the pointwise judge. The judges here are scripts (not models) with a known skill, so the
verdict each must get is known; the reward-model judge is tested on real trained models in tests/test_train.py."""

import copy
import math

import pytest
from scripted import ScriptedBackend

from alfa.eval.judges import PointwiseJudge, expected_rating
from alfa.eval.winrate import CONTROL_FIT, KNOWN_DIFFERENCE_FIT, judge_fit, judge_winrate
from alfa.llm.backends import Completion


def _questions():
    from conftest import SAMPLE, SAMPLE_MAP

    from alfa.data.ingest import ingest, parse_map

    return ingest(SAMPLE, parse_map(SAMPLE_MAP)).questions  # 40 hand-written questions


def own_questions(q):
    """written_for(prompt, question): was `question` written for the post in `prompt` (what a skilled judge
    recognises as fitting)?"""
    from alfa.data.prompts import post_text

    posts = {r["question"]: post_text(r["context"])[:200] for r in q.to_dicts()}
    return lambda prompt, question: question in posts and posts[question] in prompt


class Discerning(ScriptedBackend):
    """A scripted pairwise judge (not a model): P(first position) 0.99 when only the first question was written for
    the post, 0.01 when only the second was, else 0.5; written verdict 'A' always (as the 1.5B does)."""

    def __init__(self, q, skilled: bool = True):
        super().__init__(f"discerning-{skilled}")
        self.own, self.skilled = own_questions(q), skilled

    def with_logprobs(self, top=10):  # a copy, as a backend that reports log-probabilities returns
        return copy.copy(self)

    def reply(self, messages):
        text = messages[-1]["content"]
        first = self.own(text, text.split("Question A: ")[1].split("\n")[0])
        second = self.own(text, text.split("Question B: ")[1].split("\n")[0])
        p = 0.5 if not self.skilled or first == second else 0.99 if first else 0.01
        return Completion("A", usage={"first_token_logprobs": {"A": math.log(p), "B": math.log(1 - p)}})


def test_judge_fit_needs_both_controls_inside_their_bounds():
    def rate(low, high):
        return {"win_rate": {"value": (low + high) / 2, "ci_low": low, "ci_high": high}}

    assert judge_fit({"control": rate(0.0, 0.1), "known_difference": rate(0.8, 0.95)})["fit"] is True
    failed = judge_fit({"control": rate(0.1, 0.3), "known_difference": rate(0.6, 0.9)})
    assert failed["fit"] is False and "0.30" in failed["why"] and "0.60" in failed["why"]
    assert judge_fit({"control": rate(0.0, 0.1)})["fit"] is None  # not checked without the known difference
    assert (CONTROL_FIT, KNOWN_DIFFERENCE_FIT) == (0.15, 0.75)


def test_a_judge_that_tells_a_posts_own_question_passes_and_a_blind_one_fails(tmp_path):
    q = _questions()
    human = dict(zip(q["qid"], q["question"]))
    good = judge_winrate(human, human, q, Discerning(q), {}, tmp_path / "good")
    assert good["control"]["win_rate"]["ci_high"] <= CONTROL_FIT
    assert good["known_difference"]["mismatch"]["n"] == 40 and good["known_difference"]["win_rate"]["value"] > 0.9
    assert good["judge_fit"]["fit"] is True and "Judge fit: yes" in (tmp_path / "good" / "report.md").read_text()
    assert good["win_rate"]["value"] == pytest.approx(0.5)  # the same questions on both sides
    blind = judge_winrate(human, human, q, Discerning(q, skilled=False), {}, tmp_path / "blind")
    assert blind["judge_fit"]["fit"] is False and "Read no win rate" in (tmp_path / "blind" / "report.md").read_text()
    # with the corrupted variants of a pairs dir, the known difference also holds them
    corrupted = {qid: "Anything else?" for qid in list(q["qid"])[:10]}
    both = judge_winrate(human, human, q, Discerning(q), {}, tmp_path / "both", corrupted=corrupted)
    assert both["known_difference"]["corrupted"]["n"] == 10 and both["known_difference"]["n"] == 50


def test_expected_rating_reads_the_digits_probabilities():
    assert expected_rating({"4": math.log(0.5), " 5": math.log(0.25), "2": math.log(0.25), "The": -0.1}) == 3.75
    assert expected_rating({"The": -0.1}) is None and expected_rating(None) is None


class Rater(ScriptedBackend):
    """A scripted pointwise judge (not a model): rates a question 5 when it was written for the post, 1 otherwise,
    as first-token log-probabilities (0.8 on the rating, the rest on 3)."""

    def __init__(self, q):
        super().__init__("rater")
        self.own = own_questions(q)

    def with_logprobs(self, top=10):  # a copy, as a backend that reports log-probabilities returns
        return copy.copy(self)

    def reply(self, messages):
        text = messages[-1]["content"]
        rating = "5" if self.own(text, text.split("Question: ", 1)[1].split("\n")[0]) else "1"
        return Completion(rating, usage={"first_token_logprobs": {rating: math.log(0.8), "3": math.log(0.2)}})


def test_pointwise_judge_rates_each_question_once_and_passes_its_controls(tmp_path):
    q = _questions()
    human = dict(zip(q["qid"], q["question"]))
    vague = {qid: "Anything else?" for qid in q["qid"]}
    backend = Rater(q)
    report = judge_winrate(vague, human, q, PointwiseJudge(backend), {}, tmp_path)
    assert report["reading"] == "pointwise" and report["position_bias"] is None
    assert report["win_rate"]["value"] == 0.0 and report["losses"] == 40 and report["failures"] == 0
    assert report["judge_fit"]["fit"] is True
    # each distinct (post, question, quality) is rated once, at most 4 a row (A's, B's, the control, another
    # post's question); a rerun answers from the cache
    assert backend.calls <= 40 * 4
    again = Rater(q)
    assert judge_winrate(vague, human, q, PointwiseJudge(again), {}, tmp_path)["win_rate"] == report["win_rate"]
    assert again.calls == 0
