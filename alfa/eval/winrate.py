"""Win rates from a judge that compares two questions in both orders (issue: interactive and win-rate
evaluation). A win counts 1, a tie 0.5, a loss 0; an item's score is the mean over its two orders, so a judge
that always picks the first position scores every item 0.5. Failed or unparsed judgements are counted apart
and never dropped silently: the report gives the rate over judged items and how many failed."""

from __future__ import annotations

from alfa.stats import bootstrap_mean

SCORE = {"win": 1.0, "tie": 0.5, "loss": 0.0}


def outcome(verdict: str | None, a_first: bool) -> str:
    """A's outcome from one verdict ('A', 'B', 'tie', anything else = failure), given which side A was shown on."""
    if verdict == "tie":
        return "tie"
    if verdict not in ("A", "B"):
        return "failure"
    return "win" if (verdict == "A") == a_first else "loss"


def item_score(verdict_a_first: str | None, verdict_b_first: str | None) -> float | None:
    """A's score on one item over both orders; None when either order failed."""
    outcomes = [outcome(verdict_a_first, True), outcome(verdict_b_first, False)]
    if "failure" in outcomes:
        return None
    return sum(SCORE[o] for o in outcomes) / 2


def summarize(items: list[dict], seed: int = 0) -> dict:
    """`items`: {"group", "verdict_a_first", "verdict_b_first"} per item. Returns win_rate (bootstrap over groups),
    wins / ties / losses / failures (per verdict), position_bias (share of parsed verdicts that picked the first
    position: 0.5 is none) and n."""
    outcomes = {"win": 0, "tie": 0, "loss": 0, "failure": 0}
    first = parsed = 0
    scores, groups = [], []
    for it in items:
        for verdict, a_first in ((it["verdict_a_first"], True), (it["verdict_b_first"], False)):
            outcomes[outcome(verdict, a_first)] += 1
            if verdict in ("A", "B"):
                parsed += 1
                first += verdict == "A"
        score = item_score(it["verdict_a_first"], it["verdict_b_first"])
        if score is not None:
            scores.append(score)
            groups.append(it["group"])
    return {
        "n": len(items),
        "judged": len(scores),
        "win_rate": bootstrap_mean(scores, groups, seed=seed),
        "wins": outcomes["win"],
        "ties": outcomes["tie"],
        "losses": outcomes["loss"],
        "failures": outcomes["failure"],
        "position_bias": first / parsed if parsed else None,
    }
