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

from alfa.stats import rate

SCORE = {"win": 1.0, "tie": 0.5, "loss": 0.0}
# A's score on a post where a side produced no question (an empty or failed generation): no judge is asked, and the
# side that produced nothing loses (a model that fails to ask has not asked better); both empty is a tie.
MISSING_SCORE = {"a": 0.0, "b": 1.0, "both": 0.5}
SCORE_READINGS = ("pointwise", "reward model")  # readings of judges that score each question alone (alfa.eval.judges)


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
    averaged; None when a reply had neither letter among its first token's candidates) for `reading="probability"`,
    and "missing" ("a", "b", "both") on a post where a side has no question (scored by MISSING_SCORE, not judged).
    Returns win_rate (an interval over groups, from the chosen reading), missing_a / missing_b, wins / ties / losses /
    failures (per written
    verdict), position_bias (share of written verdicts that picked the first position: 0.5 is none), n, judged,
    and for the probability reading `probability_failures` (items left out of its rate)."""
    outcomes = {"win": 0, "tie": 0, "loss": 0, "failure": 0}
    first = parsed = 0
    scores, groups = [], []
    missing = {"a": 0, "b": 0, "both": 0}
    for it in items:
        if it.get("missing"):  # not judged: the side without a question loses
            missing[it["missing"]] += 1
            scores.append(MISSING_SCORE[it["missing"]])
            groups.append(it["group"])
            continue
        if reading in SCORE_READINGS:  # a judge that scores each question alone: compare the two scores
            sa, sb = it["score_a"], it["score_b"]
            verdict = "failure" if sa is None or sb is None else "win" if sa > sb else "loss" if sa < sb else "tie"
            outcomes[verdict] += 1
            if verdict != "failure":
                scores.append(SCORE[verdict])
                groups.append(it["group"])
            continue
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
        "judged": len(scores) - sum(missing.values()),
        "win_rate": rate(scores, groups, seed=seed),
        # posts where A's (B's) generation was empty or failed, each scored a loss for that side ("both": a tie)
        "missing_a": missing["a"] + missing["both"],
        "missing_b": missing["b"] + missing["both"],
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
# A judge is fit to read win rates from when the control's interval stays at or below CONTROL_FIT and the known
# difference's (each post's human question against a known-worse one) at or above KNOWN_DIFFERENCE_FIT.
CONTROL_FIT = 0.15
KNOWN_DIFFERENCE_FIT = 0.75


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


def comparisons(rows: list[dict], a: dict, b: dict, qualities: list[str], control: bool, known: bool, corrupted: dict):
    """Every comparison a run judges, as (row, quality, comparison, A's question, B's question):
    `main` A against B on every quality; `control` CONTROL_QUESTION against B; `mismatch` each post's human question
    against the human question written for the next post of another group; `corrupted` the human question against
    its corrupted variant (`corrupted`: qid -> question, from a pairs dir). The last three overall only."""
    out = []
    for r in rows:
        for q in qualities:
            out.append((r, q, "main", a.get(r["qid"]), b.get(r["qid"])))
        if control and (b.get(r["qid"]) or "").strip():
            out.append((r, "overall", "control", CONTROL_QUESTION, b[r["qid"]]))
        if known and r["qid"] in corrupted:
            out.append((r, "overall", "corrupted", r["question"], corrupted[r["qid"]]))
    if known:
        ordered = sorted(rows, key=lambda r: r["qid"])
        for i, r in enumerate(ordered):
            other = next((o for o in ordered[i + 1 :] + ordered[:i] if o["group_id"] != r["group_id"]), None)
            if other is not None:
                out.append((r, "overall", "mismatch", r["question"], other["question"]))
    return out


def judge_fit(report: dict) -> dict:
    """The plain verdict: fit when the control's upper bound is at most CONTROL_FIT and the known difference's lower
    bound at least KNOWN_DIFFERENCE_FIT; None (not checked) when either check did not run."""
    control, known = report.get("control", {}).get("win_rate"), report.get("known_difference", {}).get("win_rate")
    verdict = {"control_max": CONTROL_FIT, "known_difference_min": KNOWN_DIFFERENCE_FIT}
    if not control or not known or control["ci_high"] is None or known["ci_low"] is None:
        return verdict | {"fit": None, "why": "not checked: run with the control and the known difference"}
    reasons = []
    if control["ci_high"] > CONTROL_FIT:
        reasons.append(f"the irrelevant question's win rate reaches {control['ci_high']:.2f} (at most {CONTROL_FIT})")
    if known["ci_low"] < KNOWN_DIFFERENCE_FIT:
        reasons.append(
            f"the human question beats a known-worse one at a rate down to {known['ci_low']:.2f} "
            f"(at least {KNOWN_DIFFERENCE_FIT})"
        )
    return verdict | {"fit": not reasons, "why": "; ".join(reasons) or "both controls passed"}


def judge_winrate(
    a: dict[str, str | None],
    b: dict[str, str | None],
    questions,
    judge,
    attributes: dict,
    out_dir,
    seed: int = 0,
    reading: str = "probability",
    control: bool = True,
    known_difference: bool = True,
    corrupted: dict[str, str] | None = None,
) -> dict:
    """Win rate of A's questions over B's, by `judge`, overall and per attribute (`attributes`: name -> Attribute).
    `a`, `b`: qid -> question (None or empty where that side's generation failed or was empty: the post is scored a
    loss for that side, not judged, and counted in missing_a / missing_b). `judge`: a backend, judged pairwise in
    both orders (`reading` "probability", falling back to "text" without log-probabilities, or "text"), or a
    PointwiseJudge / RewardModelJudge (alfa.eval.judges), whose scores of each question alone are compared.
    `control`: CONTROL_QUESTION against B, the known-bad case; `known_difference`: the human question against a
    known-worse one (another post's, and with `corrupted` its corrupted variant), the known-better case; with both,
    `judge_fit` says whether the judge passed them. Writes out_dir/verdicts.jsonl, winrate.json and report.md."""
    import json
    from pathlib import Path

    from alfa.eval.judges import PointwiseJudge, RewardModelJudge

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [r for r in questions.to_dicts() if r["qid"] in a or r["qid"] in b]
    if isinstance(judge, RewardModelJudge):
        judge.refuse_seen({r["group_id"] for r in rows})
        attributes = {n: att for n, att in attributes.items() if n in judge.by_attribute}
    plan = comparisons(rows, a, b, ["overall", *attributes], control, known_difference, corrupted or {})
    if isinstance(judge, (PointwiseJudge, RewardModelJudge)):
        reading = "pointwise" if isinstance(judge, PointwiseJudge) else "reward model"
        items = score_items(plan, judge, attributes, out_dir)
    else:
        items, reading = pairwise_items(plan, judge, attributes, out_dir, reading)
    with open(out_dir / "verdicts.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(it, ensure_ascii=False) + "\n" for it in items)
    groups: dict[tuple[str, str], list[dict]] = {}
    for it in items:
        groups.setdefault((it["comparison"], it["quality"]), []).append(it)
    report = {**summarize(groups.get(("main", "overall"), []), seed, reading), "judge": judge.model_id}
    report["by_attribute"] = {n: summarize(groups.get(("main", n), []), seed, reading) for n in attributes}
    if control:
        report["control"] = {
            "question": CONTROL_QUESTION,
            **summarize(groups.get(("control", "overall"), []), seed, reading),
        }
    if known_difference:
        known = groups.get(("mismatch", "overall"), []) + groups.get(("corrupted", "overall"), [])
        report["known_difference"] = summarize(known, seed, reading) | {
            name: summarize(groups.get((name, "overall"), []), seed, reading) for name in ("mismatch", "corrupted")
        }
    report["judge_fit"] = judge_fit(report)
    (out_dir / "winrate.json").write_text(json.dumps(report, indent=2))
    (out_dir / "report.md").write_text(winrate_markdown(report))
    return report


def missing_side(mine: str, theirs: str) -> str:
    """Which side of a comparison produced no question: "a", "b" or "both" (scored by MISSING_SCORE)."""
    return "both" if not mine and not theirs else "a" if not mine else "b"


def quality_texts(attributes: dict, pointwise: bool = False) -> dict[str, str]:
    overall = (
        "Judge how good it is as the next question to ask."
        if pointwise
        else "Which question is the better next question to ask?"
    )
    return {"overall": overall} | {
        n: f"Judge only {n.replace('_', ' ')}: {att.definition}" for n, att in attributes.items()
    }


def pairwise_items(plan, judge, attributes: dict, out_dir, reading: str) -> tuple[list[dict], str]:
    """Each comparison judged in both orders by a backend (one call each, cached in out_dir/cache.sqlite)."""
    from alfa.data.judge import chosen_probability
    from alfa.data.prompts import post_text
    from alfa.llm.cache import CallCache
    from alfa.llm.calls import CallStats, run_calls

    texts = quality_texts(attributes)
    judged, requests, items = [], [], []
    for r, quality, comparison, mine, theirs in plan:
        item = {"qid": r["qid"], "group": r["group_id"], "quality": quality, "comparison": comparison}
        mine, theirs = (mine or "").strip(), (theirs or "").strip()
        if not mine or not theirs:  # a side produced nothing: scored, not judged
            items.append(item | {"missing": missing_side(mine, theirs)})
            continue
        post = post_text(r["context"])
        judged.append(item)
        requests += [
            winrate_messages(post, mine, theirs, texts[quality]),
            winrate_messages(post, theirs, mine, texts[quality]),
        ]
    cache = CallCache(out_dir / "cache.sqlite")
    scoring = judge.with_logprobs() if reading == "probability" else judge
    if scoring is judge:  # a backend without log-probabilities returns itself: read the written verdicts
        reading = "text"
    replies, _ = run_calls(scoring, cache, requests, "winrate", CallStats())
    cache.close()
    for k, item in enumerate(judged):
        first, second = replies[2 * k], replies[2 * k + 1]
        logprobs = [(c.usage or {}).get("first_token_logprobs") for c in (first, second)]
        item |= {"verdict_a_first": read_verdict(first.text), "verdict_b_first": read_verdict(second.text),
                 "p_a": chosen_probability(*logprobs),  # A is "chosen": first in the first order
                 "reply_a_first": first.text or first.error, "reply_b_first": second.text or second.error}  # fmt: skip
    return judged + items, reading


def score_items(plan, judge, attributes: dict, out_dir) -> list[dict]:
    """Each question of each comparison scored alone by a pointwise or reward-model judge (each distinct one once)."""
    from alfa.data.prompts import post_text
    from alfa.eval.judges import PointwiseJudge
    from alfa.llm.cache import CallCache
    from alfa.llm.calls import CallStats

    pointwise = isinstance(judge, PointwiseJudge)
    texts = quality_texts(attributes, pointwise=True)
    keys: dict[tuple, int] = {}
    for r, quality, _, mine, theirs in plan:
        for q in (mine, theirs):
            if (q or "").strip():
                keys.setdefault((r["qid"], q.strip(), quality), len(keys))
    context = {r["qid"]: r["context"] for r, *_ in plan}
    if pointwise:
        requests = [(post_text(context[qid]), q, texts[quality]) for qid, q, quality in keys]
        cache = CallCache(out_dir / "cache.sqlite")
        scores = judge.scores(requests, cache, CallStats())
        cache.close()
    else:
        scores = judge.scores([(list(context[qid]), q, quality) for qid, q, quality in keys])
    items = []
    for r, quality, comparison, mine, theirs in plan:
        item = {"qid": r["qid"], "group": r["group_id"], "quality": quality, "comparison": comparison}
        mine, theirs = (mine or "").strip(), (theirs or "").strip()
        if not mine or not theirs:
            items.append(item | {"missing": missing_side(mine, theirs)})
            continue
        item |= {
            "score_a": scores[keys[(r["qid"], mine, quality)]],
            "score_b": scores[keys[(r["qid"], theirs, quality)]],
        }
        items.append(item)
    return items


def winrate_markdown(r: dict) -> str:
    def fmt(x: dict) -> str:
        w = x["win_rate"]
        return "n/a" if w["value"] is None else f"{w['value']:.1%} ({w['ci_low']:.1%}-{w['ci_high']:.1%})"

    fit = r["judge_fit"]
    lines = [
        f"# Win rate, judge `{r['judge']}` ({r['reading']} reading)",
        "",
        f"**Judge fit: {'yes' if fit['fit'] else 'no' if fit['fit'] is False else 'not checked'}** ({fit['why']}). "
        + ("" if fit["fit"] else "Read no win rate below as a difference between the models."),
        "",
        "| comparison | posts | win rate (95% interval) |",
        "|---|---|---|",
        f"| A over B, overall | {r['n']} | {fmt(r)} |",
        *[f"| A over B, {n} | {x['n']} | {fmt(x)} |" for n, x in r["by_attribute"].items()],
    ]
    if "control" in r:
        lines.append(
            f"| control: {r['control']['question']!r} over B (fit: at most {CONTROL_FIT}) | {r['control']['n']} | {fmt(r['control'])} |"
        )
    if "known_difference" in r:
        k = r["known_difference"]
        lines.append(
            f"| known difference: human over known-worse (fit: at least {KNOWN_DIFFERENCE_FIT}) | {k['n']} | {fmt(k)} |"
        )
        lines += [
            f"| ... {name} | {k[name]['n']} | {fmt(k[name])} |" for name in ("mismatch", "corrupted") if k[name]["n"]
        ]
    lines += ["", f"A's generation missing: {r['missing_a']}; B's: {r['missing_b']} (each a loss for that side). "
              f"Unreadable judgements: {r['failures']}.", ""]  # fmt: skip
    return "\n".join(lines)
