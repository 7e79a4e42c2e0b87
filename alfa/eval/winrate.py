"""Win rates from a judge that compares two questions in both orders (issue: interactive and win-rate
evaluation). A win counts 1, a tie 0.5, a loss 0; an item's score is the mean over its two orders, so a judge
that always picks the first position scores every item 0.5. Failed or unparsed judgements are counted apart
and never dropped silently: the report gives the rate over judged items and how many failed.

Two readings of a verdict. `text`: the word the judge writes (A, B or tie). `probability` (the default where
the backend reports log-probabilities, as llama.cpp does): P(A) against P(B) from the first token, and an
item's score is P(A's question is better) with the two orders averaged, (P(first | A first) + 1 - P(first |
B first)) / 2. A small judge that always writes the letter of the first position makes the text reading
exactly 0.5 whatever the questions; its probabilities still lean towards the better question, and a
preference for one position cancels in the average as it does in the text reading."""

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


def summarize(items: list[dict], seed: int = 0, reading: str = "text") -> dict:
    """`items`: {"group", "verdict_a_first", "verdict_b_first"} per item, and "p_a" (P(A better), both orders
    averaged; None when a reply had neither letter among its first token's candidates) for `reading="probability"`.
    Returns win_rate (bootstrap over groups, from the chosen reading), wins / ties / losses / failures (per written
    verdict), position_bias (share of written verdicts that picked the first position: 0.5 is none), n, judged,
    and for the probability reading `probability_failures` (items left out of its rate)."""
    outcomes = {"win": 0, "tie": 0, "loss": 0, "failure": 0}
    first = parsed = 0
    scores, groups = [], []
    for it in items:
        for verdict, a_first in ((it["verdict_a_first"], True), (it["verdict_b_first"], False)):
            outcomes[outcome(verdict, a_first)] += 1
            if verdict in ("A", "B"):
                parsed += 1
                first += verdict == "A"
        score = item_score(it["verdict_a_first"], it["verdict_b_first"]) if reading == "text" else it["p_a"]
        if score is not None:
            scores.append(score)
            groups.append(it["group"])
    return {
        "n": len(items),
        "reading": reading,
        "judged": len(scores),
        "win_rate": bootstrap_mean(scores, groups, seed=seed),
        "wins": outcomes["win"],
        "ties": outcomes["tie"],
        "losses": outcomes["loss"],
        "failures": outcomes["failure"],
        "position_bias": first / parsed if parsed else None,
    } | ({"probability_failures": len(items) - len(scores)} if reading == "probability" else {})


JUDGE_SYSTEM = (
    "You compare two follow-up questions a doctor could ask a patient about their post. Reply with one word: "
    "A if question A is better, B if question B is better, tie if they are equally good."
)


# The known-bad baseline: irrelevant to any post. A judge that does not rank it well below B's questions cannot
# tell a better question from a worse one, and its win rates between models mean nothing.
CONTROL_QUESTION = "What is your favourite colour?"
CONTROL_FIT = 0.25  # `alfa eval winrate` warns when the control's interval reaches above this


def winrate_messages(post: str, a: str, b: str, quality: str) -> list[dict]:
    return [
        {"role": "system", "content": JUDGE_SYSTEM},
        {
            "role": "user",
            "content": f"Patient's post: {post[:1200]}\n\n{quality}\n\nQuestion A: {a}\nQuestion B: {b}\n\nBetter (A, B or tie):",
        },
    ]


def read_verdict(reply: str | None) -> str | None:
    """'A', 'B', 'tie' or None (a failure, counted apart)."""
    words = (reply or "").strip().strip(".*'\"").split()
    first = words[0].strip(".,:*").lower() if words else ""
    return {"a": "A", "b": "B", "tie": "tie"}.get(first)


def judge_winrate(
    a: dict[str, str],
    b: dict[str, str],
    questions,
    judge,
    attributes: dict,
    out_dir,
    seed: int = 0,
    reading: str = "probability",
    control: bool = True,
) -> dict:
    """Win rate of A's questions over B's, by `judge`, overall and per attribute (`attributes`: name -> Attribute),
    each in both orders. `a`, `b`: qid -> question. `reading`: "probability" (falls back to "text" when the
    backend reports no log-probabilities) or "text". `control`: also judge CONTROL_QUESTION against B, overall,
    as the known-bad baseline (a judge fit to rank models puts it well below 0.5). Writes out_dir/verdicts.jsonl
    and out_dir/winrate.json."""
    import json
    from pathlib import Path

    from alfa.data.judge import chosen_probability
    from alfa.data.prompts import post_text
    from alfa.llm.cache import CallCache
    from alfa.llm.calls import CallStats, run_calls

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [r for r in questions.to_dicts() if r["qid"] in a and r["qid"] in b]
    qualities = {"overall": "Which question is the better next question to ask?"}
    qualities |= {n: f"Judge only {n.replace('_', ' ')}: {att.definition}" for n, att in attributes.items()}
    qualities |= {"control": qualities["overall"]} if control else {}
    plan, requests = [], []
    for r in rows:
        post = post_text(r["context"])
        for name, quality in qualities.items():
            plan.append((r, name))
            mine = CONTROL_QUESTION if name == "control" else a[r["qid"]] or ""
            requests.append(winrate_messages(post, mine, b[r["qid"]] or "", quality))
            requests.append(winrate_messages(post, b[r["qid"]] or "", mine, quality))
    cache = CallCache(out_dir / "cache.sqlite")
    stats = CallStats()
    scoring = judge.with_logprobs() if reading == "probability" else judge
    if scoring is judge:  # a backend without log-probabilities returns itself: read the written verdicts
        reading = "text"
    replies, _ = run_calls(scoring, cache, requests, "winrate", stats)
    cache.close()
    items: dict[str, list[dict]] = {name: [] for name in qualities}
    with open(out_dir / "verdicts.jsonl", "w", encoding="utf-8") as f:
        for k, (r, name) in enumerate(plan):
            first, second = replies[2 * k], replies[2 * k + 1]
            logprobs = [(c.usage or {}).get("first_token_logprobs") for c in (first, second)]
            item = {"qid": r["qid"], "group": r["group_id"], "quality": name,
                    "verdict_a_first": read_verdict(first.text), "verdict_b_first": read_verdict(second.text),
                    "p_a": chosen_probability(*logprobs),  # A is "chosen": first in the first order
                    "reply_a_first": first.text or first.error, "reply_b_first": second.text or second.error}  # fmt: skip
            items[name].append(item)
            f.write(json.dumps(item, ensure_ascii=False) + "\n")
    result = {name: summarize(its, seed, reading) for name, its in items.items()}
    report = {**result["overall"], "by_attribute": {n: result[n] for n in attributes}, "judge": judge.model_id}
    if control:
        report["control"] = {"question": CONTROL_QUESTION, **result["control"]}
    (out_dir / "winrate.json").write_text(json.dumps(report, indent=2))
    return report
