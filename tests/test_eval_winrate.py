"""Win-rate arithmetic: both orders always, zeros stay in the mean, failures are counted apart."""

import pytest

from alfa.eval.winrate import item_score, summarize
from alfa.stats import bootstrap_mean, wilson


def test_a_judge_that_always_answers_a_gives_exactly_one_half_and_full_position_bias():
    items = [{"group": f"p{i % 7}", "verdict_a_first": "A", "verdict_b_first": "A"} for i in range(40)]
    result = summarize(items)
    assert result["win_rate"]["value"] == 0.5 and result["win_rate"]["ci_low"] == result["win_rate"]["ci_high"] == 0.5
    assert result["position_bias"] == 1.0 and result["wins"] == result["losses"] == 40


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
