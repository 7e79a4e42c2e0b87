"""`alfa generate`: a policy (trained, merged or base) asks its follow-up question for each post of a questions
table. The policy sees what the preference pairs' `prompt` holds (the patient's post and earlier turns as chat
messages), so a DPO-trained model is asked exactly as it was trained. Every call is cached.

`generation_figures` reads a generations file without a judge: the share of replies that are one question (as
the pairs' filter reads one, alfa.data.filter.extract_question) and their mean length in words, each with its
interval, posts resampled whole. ALFA's table reports both beside the win rates."""

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
                "one_question": question is not None,
                "model": policy.model_id,
            }
            if reply.error is not None:
                record["error"] = reply.error
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return stats


def is_one_question(row: dict) -> bool:
    """A generation record's reply is one question (files written before `one_question` was recorded: read again
    from the question text, which holds the extracted question or the raw reply)."""
    from alfa.data.filter import extract_question

    if "one_question" in row:
        return bool(row["one_question"])
    return row.get("question") is not None and extract_question(row["question"])[0] is not None


def read_generations(path: Path) -> list[dict]:
    """The records of a generations file, one JSON object a line (blank lines skipped)."""
    rows = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}, line {number}: not JSON ({e}); write the file with alfa generate") from None
    return rows


def reply_words(row: dict) -> int:
    """Words of a record's reply (0 for a failed call)."""
    return len((row.get("question") or "").split())


def generation_figures(path: Path) -> dict:
    """{"n", "failed", "one_question", "words"} of a generations file: the share of posts whose reply is one
    question and the mean words of the reply, each a rate/mean with its interval over posts. A failed call counts
    as no question and 0 words: nothing is dropped."""
    from alfa.stats import bootstrap_mean, rate

    rows = read_generations(path)
    groups = [r["group_id"] for r in rows]
    return {
        "n": len(rows),
        "failed": sum("error" in r for r in rows),
        "one_question": rate([is_one_question(r) for r in rows], groups),
        "words": bootstrap_mean([reply_words(r) for r in rows], groups),
    }
