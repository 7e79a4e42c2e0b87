"""`alfa generate`: a policy (trained, merged or base) asks its follow-up question for each post of a questions
table. The policy sees what the preference pairs' `prompt` holds (the patient's post and earlier turns as chat
messages), so a DPO-trained model is asked exactly as it was trained. Every call is cached."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from alfa.llm.cache import CallCache
from alfa.llm.calls import CallStats, run_calls


def generate_questions(questions: pl.DataFrame, policy, out_path: Path, cache_path: Path | None = None) -> CallStats:
    """One JSON object a line in `out_path`: qid, group_id, question (None with `error` when the call failed), model."""
    from alfa.data.filter import extract_question

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    cache = CallCache(cache_path or out_path.with_suffix(".cache.sqlite"))
    rows = questions.to_dicts()
    stats = CallStats()
    replies, _ = run_calls(policy, cache, [list(r["context"]) for r in rows], "generate", stats)
    cache.close()
    with open(out_path, "w", encoding="utf-8") as f:
        for r, reply in zip(rows, replies):
            question = extract_question(reply.text)[0] if reply.error is None else None
            record = {
                "qid": r["qid"],
                "group_id": r["group_id"],
                "question": question or (reply.text or None),
                "model": policy.model_id,
            }
            if reply.error is not None:
                record["error"] = reply.error
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return stats
