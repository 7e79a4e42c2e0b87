"""Agreement figures against a case worked out by hand, and the review's sampling and verdict rules
(no server needed: tests/test_review.py runs the same code against a real Argilla)."""

import polars as pl
import pytest

from alfa.review.agreement import annotator_agreement, cohen_kappa, krippendorff_alpha, majority, relative_label
from alfa.review.connection import ReviewError
from alfa.review.pull import ReviewPolicy, verdicts
from alfa.review.records import chosen_side, sample_pairs

X = ["A", "A", "B", "B", "A", "tie", "B", "A"]
Y = ["A", "B", "B", "B", "A", "tie", "A", "A"]


def test_kappa_and_alpha_match_the_hand_computed_case():
    # Observed agreement: items 1,3,4,5,6,8 -> p_o = 6/8. Both annotators: A 4, B 3, tie 1 of 8, so
    # p_e = (4*4 + 3*3 + 1*1) / 64 = 26/64, kappa = (6/8 - 26/64) / (1 - 26/64) = (22/64) / (38/64) = 11/19.
    assert cohen_kappa(X, Y) == pytest.approx(11 / 19)
    # Krippendorff (nominal): 16 pairable values, A 8, B 6, tie 2. Two units disagree (A/B), each adding 2
    # off-diagonal coincidences: D_o = 4/16. D_e = (16^2 - (64 + 36 + 4)) / (16 * 15) = 152/240.
    # alpha = 1 - D_o / D_e = 1 - 15/38 = 23/38.
    units = [{"x": a, "y": b} for a, b in zip(X, Y)]
    assert krippendorff_alpha(units) == pytest.approx(23 / 38)
    report = annotator_agreement({f"r{i}": u for i, u in enumerate(units)} | {"single": {"x": "A"}})
    assert report["records_with_2plus"] == 8 and report["answers"] == 16 and report["annotators"] == 2
    assert report["raw_agreement"] == pytest.approx(6 / 8)
    assert report["krippendorff_alpha"] == pytest.approx(23 / 38)
    assert report["cohen_kappa"] == [{"annotators": ["x", "y"], "records": 8, "kappa": pytest.approx(11 / 19)}]


def test_undefined_agreement_is_none_not_a_number():
    assert cohen_kappa(["A", "A"], ["A", "A"]) is None
    assert krippendorff_alpha([{"x": "A", "y": "A"}]) is None
    assert annotator_agreement({"r": {"x": "A"}})["krippendorff_alpha"] is None


def test_majority_and_relative_labels():
    assert majority(["agree", "agree", "reversed"]) == "agree"
    assert majority(["agree", "reversed"]) == "split"
    assert majority(["tie"]) == "tie"
    assert relative_label("A", "A") == "agree" and relative_label("B", "A") == "reversed"
    assert relative_label("tie", "B") == "tie"


def _pairs(n_per_cell: dict) -> pl.DataFrame:
    rows = [
        {"pair_id": f"{a}-{t}-{i}", "attribute": a, "pair_type": t}
        for (a, t), n in n_per_cell.items()
        for i in range(n)
    ]
    return pl.DataFrame(rows)


def test_stratified_sample_shares_evenly_and_is_deterministic():
    pairs = _pairs({("clarity", "e"): 2, ("clarity", "o"): 30, ("focus", "e"): 30, ("focus", "o"): 30})
    sample = sample_pairs(pairs, 20, ["attribute", "pair_type"], seed=1)
    counts = {(a, t): n for a, t, n in sample.group_by("attribute", "pair_type").len().iter_rows()}
    assert sample.height == 20
    assert counts[("clarity", "e")] == 2  # a small stratum gives everything it has...
    assert sorted(counts[k] for k in counts if k != ("clarity", "e")) == [6, 6, 6]  # ...and the rest share the rest
    assert (
        sample_pairs(pairs.reverse(), 20, ["attribute", "pair_type"], seed=1)["pair_id"].sort().to_list()
        == sample["pair_id"].sort().to_list()
    )
    assert (
        sample_pairs(pairs, 20, ["attribute", "pair_type"], seed=2)["pair_id"].to_list() != sample["pair_id"].to_list()
    )
    with pytest.raises(ReviewError, match="not a column"):
        sample_pairs(pairs, 5, ["nope"])


def test_chosen_side_is_random_per_pair_but_stable():
    sides = [chosen_side(f"pair{i}") for i in range(400)]
    assert 150 < sides.count("A") < 250
    assert sides == [chosen_side(f"pair{i}") for i in range(400)]


def test_verdict_policy():
    records = pl.DataFrame({"pair_id": ["p1", "p2", "p3", "p4"], "chosen_side": ["A", "B", "A", "A"]})
    answers = pl.DataFrame(
        [
            {"pair_id": p, "annotator": u, "status": s, "better": b, "differ_only_in_attribute": "yes", "problems": pr}
            for p, u, s, b, pr in [
                ("p1", "x", "submitted", "A", []),
                ("p1", "y", "submitted", "A", []),
                ("p2", "x", "submitted", "B", []),
                ("p2", "y", "draft", "A", []),
                ("p3", "x", "submitted", "B", []),
                ("p3", "y", "submitted", "B", ["unsafe"]),
                ("p4", "x", "submitted", "tie", []),
            ]
        ],
        schema={
            "pair_id": pl.String,
            "annotator": pl.String,
            "status": pl.String,
            "better": pl.String,
            "differ_only_in_attribute": pl.String,
            "problems": pl.List(pl.String),
        },
    )
    v = {r["pair_id"]: r for r in verdicts(records, answers, ReviewPolicy(on_reversed="flip")).to_dicts()}
    assert v["p1"]["review_verdict"] == "agree" and v["p1"]["review_action"] == "keep"
    assert v["p2"]["review_answers"] == 1  # a draft is not an answer
    assert v["p3"]["review_verdict"] == "reversed" and v["p3"]["review_action"] == "drop"  # the flag wins
    assert v["p4"]["review_action"] == "drop"
    v = {r["pair_id"]: r for r in verdicts(records, answers, ReviewPolicy(on_tie="keep", flag_quorum=2)).to_dicts()}
    assert v["p3"]["review_action"] == "drop" and v["p3"]["review_reason"].startswith("humans preferred")
    assert v["p4"]["review_action"] == "keep"
    with pytest.raises(ReviewError, match="on_reversed"):
        ReviewPolicy(on_reversed="swap")
