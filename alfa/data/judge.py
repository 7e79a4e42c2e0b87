"""The LLM verifier (the ALFA paper used one but never released it): a judge model compares the two
questions of a pair on the pair's attribute, in both orders to cancel position bias.

Where the backend reports log-probabilities (llama.cpp, vLLM, OpenAI), the judge is read by probability: in
each order, P(A) against P(B) for its one-letter answer, and the two orders averaged into P(chosen is better),
so a judge that favours a position contributes nothing either way. The pair agrees when that is above 0.5;
a judge with no information agrees half the time. Elsewhere (transformers) the judge is read by its answers:
the pair agrees when the chosen side wins in both orders, which a judge answering at random does 1 time in 4.
Agreement with the pipeline's direction is reported with its 95% interval beside that baseline.

On by default with the embedded model on a seeded sample of pairs per run (`pairs`), which is enough to
estimate agreement at a cost a CPU can pay; `keep="agreed"` judges every pair and keeps only those the judge
agrees with. Calls go through the same disk cache, so a rerun costs nothing. Outputs in the pairs dir:
    judge_verdicts.parquet   per judged pair: both raw replies, both verdicts, P(chosen), the decision
    judge_report.json        agreement overall (with its interval), per attribute and per pair type
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import asdict
from pathlib import Path

import polars as pl

from alfa.data.attributes import Attribute
from alfa.data.prompts import post_text
from alfa.llm.cache import CallCache
from alfa.llm.calls import CallStats, run_calls
from alfa.stats import seeded_hash, wilson

log = logging.getLogger(__name__)

# Prompt processing (~75 tokens/s for Qwen2.5-1.5B on 2 CPU cores) is most of a judge call: the post comes first,
# so the calls about one question share it in llama.cpp's prompt cache, and the reply is one letter.
JUDGE_SYSTEM = (
    "You compare two follow-up questions a doctor could ask a patient. Judge only the quality named, "
    "nothing else. Reply with one letter: A or B."
)
ANSWER = re.compile(r"answer\s*[:\-]?\s*\**\s*(A|B|tie)\b", re.IGNORECASE)
BASELINE = {"probability": 0.5, "answers": 0.25}  # agreement of a judge with no information, per reading
KEEP = ("all", "agreed")


def judge_messages(attribute: Attribute, post: str, a: str, b: str, max_context_chars: int = 800) -> list[dict]:
    name = attribute.name.replace("_", " ")
    post = post if len(post) <= max_context_chars else post[: max_context_chars - 3] + "..."
    return [
        {"role": "system", "content": JUDGE_SYSTEM},
        {
            "role": "user",
            "content": (
                f"Patient's post: {post}\n\nQuality: {name}. {attribute.definition}\n\n"
                f"Question A: {a}\nQuestion B: {b}\n\nWhich question is better on {name}? Reply A or B."
            ),
        },
    ]


def p_first(logprobs: dict[str, float] | None) -> float | None:
    """P(A) / (P(A) + P(B)) from a reply's first-token log-probs; None when neither letter is among them."""
    if not logprobs:
        return None
    best = {}
    for token, lp in logprobs.items():
        letter = token.strip().upper()
        if letter in ("A", "B"):
            best[letter] = max(lp, best.get(letter, -math.inf))
    if not best:
        return None
    a, b = best.get("A", -math.inf), best.get("B", -math.inf)
    top = max(a, b)
    return math.exp(a - top) / (math.exp(a - top) + math.exp(b - top))


def chosen_probability(chosen_first: dict | None, rejected_first: dict | None) -> float | None:
    """P(chosen is better), the two orders averaged: chosen is A in the first, B in the second."""
    p1, p2 = p_first(chosen_first), p_first(rejected_first)
    return None if p1 is None or p2 is None else (p1 + (1 - p2)) / 2


def parse_verdict(reply: str | None) -> str:
    """'A', 'B', 'tie', or 'unparsed' (the last 'Answer: X' wins; a bare final A/B is accepted)."""
    if not reply:
        return "unparsed"
    found = ANSWER.findall(reply)
    if found:
        v = found[-1]
        return "tie" if v.lower() == "tie" else v.upper()
    last = reply.strip().splitlines()[-1].strip().strip(".*").upper()
    return last if last in ("A", "B") else "unparsed"


def decide(chosen_first: str, rejected_first: str) -> str:
    """Both orders' verdicts -> 'agree' (chosen better both times), 'disagree' (rejected better both
    times), 'tie', 'position_bias' (the verdict followed the position), or 'unparsed'."""
    if "unparsed" in (chosen_first, rejected_first):
        return "unparsed"
    if chosen_first == "A" and rejected_first == "B":
        return "agree"
    if chosen_first == "B" and rejected_first == "A":
        return "disagree"
    if chosen_first == rejected_first == "tie":
        return "tie"
    return "position_bias"


def sample_for_judging(pairs: pl.DataFrame, n: int | None, seed: int = 0) -> pl.DataFrame:
    """`n` pairs (all when None or more than there are), the same ones on every run: ranked by a seeded hash of
    the pair id, so a bigger `n` judges a superset and reuses every cached verdict."""

    def rank(pair_id: str) -> str:
        return seeded_hash(pair_id, seed)

    if n is None or n >= pairs.height:
        return pairs
    return (
        pairs.with_columns(pl.col("pair_id").map_elements(rank, return_dtype=pl.String).alias("_rank"))
        .sort("_rank")
        .head(n)
        .drop("_rank")
    )


def judge_pairs(
    pairs: pl.DataFrame,
    attributes: dict[str, Attribute],
    judge,
    cache: CallCache,
    max_context_chars: int = 800,
    sample: int | None = None,
    seed: int = 0,
    keep: str = "agreed",
) -> tuple[pl.DataFrame, pl.DataFrame, CallStats]:
    """Judge `sample` pairs (all when None) in both orders. Returns (pairs to keep, verdicts of the judged pairs,
    call stats). `keep="agreed"`: only the pairs the judge agrees with (every pair must be judged);
    `keep="all"`: every pair, the verdicts only measure agreement."""
    if keep not in KEEP:
        raise ValueError(f"judge keep must be one of {KEEP}, got {keep!r}")
    if keep == "agreed" and sample is not None and sample < pairs.height:
        raise ValueError("judge keep='agreed' drops the pairs the judge disagrees with: judge every pair (pairs: null)")
    # One question's pairs in a row: their calls share the post, so llama.cpp's prompt cache processes it once.
    rows = sample_for_judging(pairs, sample, seed).sort(["qid", "attribute", "pair_id"]).to_dicts()
    requests = []
    for r in rows:
        attribute, post = attributes[r["attribute"]], post_text(r["prompt"])
        chosen, rejected = r["chosen"][-1]["content"], r["rejected"][-1]["content"]
        requests.append(judge_messages(attribute, post, chosen, rejected, max_context_chars))
        requests.append(judge_messages(attribute, post, rejected, chosen, max_context_chars))
    stats = CallStats()
    replies, _ = run_calls(judge.with_logprobs(), cache, requests, "judge", stats)
    verdicts = [verdict(r, replies[2 * k], replies[2 * k + 1], judge.model_id) for k, r in enumerate(rows)]
    verdict_df = pl.DataFrame(verdicts, schema=VERDICT_SCHEMA)
    if keep == "all":
        return pairs, verdict_df, stats
    agreed = verdict_df.filter(pl.col("decision") == "agree")["pair_id"].to_list()
    return pairs.filter(pl.col("pair_id").is_in(agreed)), verdict_df, stats


def verdict(pair: dict, first, second, judge_name: str) -> dict:
    """One pair's verdict from its two replies (chosen shown first, then rejected first)."""
    v1, v2 = parse_verdict(first.text), parse_verdict(second.text)
    p = chosen_probability(*((c.usage or {}).get("first_token_logprobs") for c in (first, second)))
    if first.error or second.error:
        decision = "call_failed"
    elif p is not None:
        decision = "agree" if p > 0.5 else "disagree" if p < 0.5 else "tie"
    else:
        decision = decide(v1, v2)
    return {
        "pair_id": pair["pair_id"],
        "attribute": pair["attribute"],
        "pair_type": pair["pair_type"],
        "judge": judge_name,
        "reading": "failed" if decision == "call_failed" else "answers" if p is None else "probability",
        "reply_chosen_first": first.text if first.error is None else first.error,
        "reply_rejected_first": second.text if second.error is None else second.error,
        "verdict_chosen_first": v1,
        "verdict_rejected_first": v2,
        "p_chosen": p,
        "p_a_chosen_first": p_first((first.usage or {}).get("first_token_logprobs")),
        "p_a_rejected_first": p_first((second.usage or {}).get("first_token_logprobs")),
        "decision": decision,
    }


VERDICT_SCHEMA = {
    **{
        k: pl.String
        for k in (
            "pair_id",
            "attribute",
            "pair_type",
            "judge",
            "reading",
            "reply_chosen_first",
            "reply_rejected_first",
            "verdict_chosen_first",
            "verdict_rejected_first",
        )
    },
    "p_chosen": pl.Float64,
    "p_a_chosen_first": pl.Float64,
    "p_a_rejected_first": pl.Float64,
    "decision": pl.String,
}


def agreement(verdicts: pl.DataFrame) -> dict:
    """Share of judged pairs the judge agrees with, with its 95% Wilson interval. Every judged pair counts,
    failed and unparsed ones too (as not agreeing)."""
    n = verdicts.height
    agreed = verdicts.filter(pl.col("decision") == "agree").height
    low, high = wilson(agreed, n)
    return {"pairs": n, "agree": agreed, "rate": round(agreed / n, 4) if n else None, "ci95": [low, high]}


def judge_report(verdicts: pl.DataFrame) -> dict:
    """{"overall": agreement, "reading" (probability, answers, or mixed), "no_information_baseline" (None when
    mixed), "failed_calls", "by_reading": {reading: agreement + its baseline}, "mean_p_a" (position bias: 0.5 is none),
    "by_attribute": {attribute: agreement}, "by_type": {attribute: {pair_type: {"pairs", "agree", "rate",
    "decisions"}}}}"""
    by_type: dict = {}
    for (attribute, pair_type), g in verdicts.group_by(["attribute", "pair_type"]):
        agreed = g.filter(pl.col("decision") == "agree").height
        by_type.setdefault(attribute, {})[pair_type] = {
            "pairs": g.height,
            "agree": agreed,
            "rate": round(agreed / g.height, 4),
            "decisions": dict(sorted(g["decision"].value_counts().rows())),
        }
    # Each reading has its own no-information baseline; a set read both ways is reported per reading.
    readings = sorted(set(verdicts["reading"].to_list()) - {"failed"})
    reading = readings[0] if len(readings) == 1 else "mixed" if readings else "none"
    p_a = pl.concat([verdicts["p_a_chosen_first"], verdicts["p_a_rejected_first"]]).drop_nulls()
    attributes = sorted(by_type)
    return {
        "overall": agreement(verdicts),
        "reading": reading,
        "no_information_baseline": BASELINE.get(reading),
        "failed_calls": verdicts.filter(pl.col("decision") == "call_failed").height,
        "by_reading": {
            r: agreement(verdicts.filter(pl.col("reading") == r)) | {"no_information_baseline": BASELINE[r]}
            for r in readings
        },
        "mean_p_a": round(float(p_a.mean()), 4) if p_a.len() else None,
        "by_attribute": {a: agreement(verdicts.filter(pl.col("attribute") == a)) for a in attributes},
        "by_type": {a: dict(sorted(by_type[a].items())) for a in attributes},
    }


def load_run_attributes(run_dir: Path) -> dict[str, Attribute]:
    from alfa.data.attributes import load_pack

    return load_pack(run_dir / "attribute_pack.yaml").attributes


def verify_with_judge(
    pairs: pl.DataFrame, run_dir: Path, judge, out_dir: Path, sample: int | None, keep: str, seed: int
) -> tuple[pl.DataFrame, dict]:
    """The LLM verifier on `sample` pairs (all when None); verdicts and report into out_dir."""
    cache = CallCache(out_dir / "judge_cache.sqlite")
    before = pairs.height
    attributes = load_run_attributes(run_dir)
    pairs, verdicts, judge_stats = judge_pairs(pairs, attributes, judge, cache, sample=sample, seed=seed, keep=keep)
    cache.close()
    verdicts.write_parquet(out_dir / "judge_verdicts.parquet")
    report = judge_report(verdicts)
    (out_dir / "judge_report.json").write_text(json.dumps(report, indent=2))
    judged = {
        "judge": judge.model_id,
        "backend": judge.backend,
        "keep": keep,
        "pairs_before": before,
        "pairs_judged": verdicts.height,
        "pairs_kept": pairs.height,
        "agreement": report["overall"],
        "reading": report["reading"],
        "no_information_baseline": report["no_information_baseline"],
        "failed_calls": report["failed_calls"],
        "by_reading": report["by_reading"],
        "mean_p_a": report["mean_p_a"],
        "stats": asdict(judge_stats),
    }
    log.info(
        "judge %s agreed with %d of %d judged pairs; %d of %d pairs kept (verdicts in %s)",
        judge.model_id,
        report["overall"]["agree"],
        verdicts.height,
        pairs.height,
        before,
        out_dir / "judge_verdicts.parquet",
    )
    if report["failed_calls"]:
        log.warning(
            "judge: %d of %d pairs could not be judged (a call failed; replies in %s)%s: rerun the same command "
            "to ask only those again",
            report["failed_calls"],
            verdicts.height,
            out_dir / "judge_verdicts.parquet",
            ", and --judge-keep agreed dropped them" if keep == "agreed" else "",
        )
    return pairs, judged
