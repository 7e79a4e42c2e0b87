"""The LLM verifier (the ALFA paper used one but never released it): a judge model compares the two
questions of every pair on the pair's attribute, in both orders to cancel position bias. A pair is
kept only when the judge prefers its chosen side in both orders.

Any rewriter backend can judge (`local`, `transformers`, `openai`); calls go through the same disk
cache, so a rerun costs nothing. Outputs in the pairs dir:
    judge_verdicts.parquet   per pair: both raw replies (the rationale), both parsed verdicts, the decision
    judge_report.json        pass rates per attribute and pair type
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from alfa.data.attributes import Attribute
from alfa.data.prompts import post_text
from alfa.llm.cache import CallCache
from alfa.llm.calls import CallStats, run_calls

JUDGE_SYSTEM = (
    "You compare two follow-up questions a doctor could ask a patient. Judge only the quality named, "
    "nothing else. Give one short sentence of reasoning, then a last line 'Answer: A', 'Answer: B' or "
    "'Answer: tie'."
)
ANSWER = re.compile(r"answer\s*[:\-]?\s*\**\s*(A|B|tie)\b", re.IGNORECASE)


def judge_messages(attribute: Attribute, post: str, a: str, b: str, max_context_chars: int = 1200) -> list[dict]:
    scale = "; ".join(f"{k} = {v}" for k, v in sorted(attribute.scale.items()))
    post = post if len(post) <= max_context_chars else post[: max_context_chars - 3] + "..."
    return [
        {"role": "system", "content": JUDGE_SYSTEM},
        {
            "role": "user",
            "content": (
                f"Quality: {attribute.name.replace('_', ' ')}. {attribute.definition}\nScale: {scale}\n\n"
                f"Patient's post: {post}\n\nQuestion A: {a}\nQuestion B: {b}\n\n"
                f"Which question is better on {attribute.name.replace('_', ' ')}?"
            ),
        },
    ]


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


def judge_pairs(
    pairs: pl.DataFrame, attributes: dict[str, Attribute], judge, cache: CallCache, max_context_chars: int = 1200
) -> tuple[pl.DataFrame, pl.DataFrame, CallStats]:
    """Returns (kept pairs, verdicts for every pair, call stats)."""
    rows = pairs.to_dicts()
    requests = []
    for r in rows:
        attribute = attributes[r["attribute"]]
        post = post_text(r["prompt"])
        chosen, rejected = r["chosen"][-1]["content"], r["rejected"][-1]["content"]
        requests.append(judge_messages(attribute, post, chosen, rejected, max_context_chars))
        requests.append(judge_messages(attribute, post, rejected, chosen, max_context_chars))
    stats = CallStats()
    replies, _ = run_calls(judge, cache, requests, "judge", stats)
    verdicts = []
    for k, r in enumerate(rows):
        first, second = replies[2 * k], replies[2 * k + 1]
        v1, v2 = parse_verdict(first.text), parse_verdict(second.text)
        decision = "call_failed" if first.error or second.error else decide(v1, v2)
        verdicts.append(
            {
                "pair_id": r["pair_id"],
                "attribute": r["attribute"],
                "pair_type": r["pair_type"],
                "judge": judge.model_id,
                "reply_chosen_first": first.text if first.error is None else first.error,
                "reply_rejected_first": second.text if second.error is None else second.error,
                "verdict_chosen_first": v1,
                "verdict_rejected_first": v2,
                "decision": decision,
            }
        )
    verdict_df = pl.DataFrame(verdicts, infer_schema_length=None)
    keep = set(verdict_df.filter(pl.col("decision") == "agree")["pair_id"].to_list())
    return pairs.filter(pl.col("pair_id").is_in(list(keep))), verdict_df, stats


def judge_report(verdicts: pl.DataFrame) -> dict:
    """{attribute: {pair_type: {"pairs", "kept", "rate", "decisions": {decision: n}}}}"""
    out: dict = {}
    for (attribute, pair_type), g in verdicts.group_by(["attribute", "pair_type"]):
        kept = g.filter(pl.col("decision") == "agree").height
        out.setdefault(attribute, {})[pair_type] = {
            "pairs": g.height,
            "kept": kept,
            "rate": round(kept / g.height, 4),
            "decisions": dict(sorted(g["decision"].value_counts().rows())),
        }
    return {a: dict(sorted(d.items())) for a, d in sorted(out.items())}


def load_run_attributes(run_dir: Path) -> dict[str, Attribute]:
    from alfa.data.attributes import load_pack

    return load_pack(run_dir / "attribute_pack.yaml").attributes
