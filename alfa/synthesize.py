"""Stage 2, synthesize: ask a rewriter for one enhanced and one corrupted variant of every question
along every attribute.

Run dir layout (every file a person can open):
    questions.parquet      the questions this run used (a copy, so later stages need only the run dir)
    attribute_pack.yaml    the pack this run used (a copy: provenance, and few-shot texts the filter rejects)
    variants.parquet       one row per (qid, attribute, direction): the raw reply or the error
    failed_calls.jsonl     calls that failed, with their reason (retried on the next run)
    run.json               config, rewriter, prompt/pack hashes, counts, timings
    cache.sqlite           the call cache (unless --cache points elsewhere)
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import polars as pl
from tqdm.auto import tqdm

from alfa import prompts
from alfa.attributes import AttributePack
from alfa.cache import CallCache, call_key
from alfa.rewriters import Completion

log = logging.getLogger(__name__)


CHUNK = 4096  # requests handed to a rewriter at once (bounds memory for very large runs)


@dataclass
class SynthesisStats:
    requests: int = 0
    cache_hits: int = 0
    calls_made: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0


def run_calls(rewriter, cache: CallCache, requests: list[list[dict]], desc: str,
              stats: SynthesisStats) -> tuple[list[Completion], list[str]]:
    """Answer every request, from the cache where possible; new answers are cached as they arrive.
    Returns the completions and each request's cache key, in request order."""
    keys = [call_key(rewriter.model_id, m, rewriter.sampling) for m in requests]
    cached = cache.get_many(list(set(keys)))
    results: list[Completion | None] = [Completion(cached[k]) if k in cached else None for k in keys]
    stats.requests += len(requests)
    stats.cache_hits += sum(r is not None for r in results)
    # Identical requests (same key) are called once.
    todo: dict[str, list[int]] = {}
    for i, (k, r) in enumerate(zip(keys, results)):
        if r is None:
            todo.setdefault(k, []).append(i)
    todo_keys = list(todo)
    if todo_keys:
        log.info("%s: %d requests, %d from cache, %d to call %s (%s)", desc, len(requests),
                 len(requests) - sum(len(v) for v in todo.values()), len(todo_keys), rewriter.model_id,
                 rewriter.backend)
    bar = tqdm(total=len(todo_keys), desc=desc, unit="call", disable=not todo_keys)

    def on_done(j: int, completion: Completion) -> None:
        key = todo_keys[j]
        stats.calls_made += 1
        if completion.usage:
            stats.prompt_tokens += int(completion.usage.get("prompt_tokens") or 0)
            stats.completion_tokens += int(completion.usage.get("completion_tokens") or 0)
        if completion.error is None and completion.text is not None:
            cache.put(key, rewriter.model_id, completion.text, completion.usage)
        else:
            stats.failed += 1
        for i in todo[key]:
            results[i] = completion
        bar.update(1)

    # Requests that share a prompt prefix (one attribute and direction) go to the rewriter together,
    # so a local model batches them and computes the shared few-shot prefix once. The rewriter
    # reports each request as its batch ends and on_done caches it at once, so an interrupted run
    # loses at most the batches in flight.
    todo_keys.sort(key=lambda k: json.dumps(requests[todo[k][0]][:-1], sort_keys=True))
    t0 = time.perf_counter()
    try:
        for start in range(0, len(todo_keys), CHUNK):
            chunk = [requests[todo[k][0]] for k in todo_keys[start : start + CHUNK]]
            rewriter.complete(chunk, lambda j, c, start=start: on_done(start + j, c))
    finally:
        cache.flush()  # answers of the loop's last iteration
        bar.close()
        stats.seconds += time.perf_counter() - t0
    return results, keys  # type: ignore[return-value]


def parse_shard(spec: str) -> tuple[int, int]:
    """`i/n` -> (i, n), 0 <= i < n."""
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise ValueError(f"--shard {spec!r}: expected I/N, e.g. 0/4 for the first of four shards") from None
    if not 0 <= i < n:
        raise ValueError(f"--shard {spec!r}: need 0 <= I < N")
    return i, n


def questions_digest(questions: pl.DataFrame) -> str:
    """Identity of a question set: merging shards checks they came from the same one."""
    return hashlib.sha256("\n".join(sorted(questions["qid"].to_list())).encode()).hexdigest()[:16]


def select_shard(questions: pl.DataFrame, index: int, count: int) -> pl.DataFrame:
    """The questions of shard `index` of `count`: whole groups, by a stable hash of the group id, so
    every machine computes the same split with no coordination."""
    def shard_of(group: str) -> int:
        return int(hashlib.sha256(group.encode()).hexdigest()[:8], 16) % count

    return questions.filter(pl.col("group_id").map_elements(shard_of, return_dtype=pl.Int64) == index)


def synthesize(questions: pl.DataFrame, pack: AttributePack, rewriter, run_dir: Path, *,
               directions: tuple[str, ...] = prompts.DIRECTIONS, standalone: bool = False,
               hindsight_for_enhance: bool = False, max_context_chars: int = 1200,
               cache_path: Path | None = None, questions_source: str = "",
               shard: tuple[int, int] | None = None) -> SynthesisStats:
    """Write variants for every question x attribute x direction into `run_dir`.

    `standalone`: first restate each original as one self-contained question (the paper's step) and
    rewrite that, so the original and both variants share one style. `hindsight_for_enhance`: show
    the thread's outcome (e.g. final diagnosis) to the rewriter, for the enhance direction only:
    a corrupted variant written with hindsight could leak the answer into a rejected example.
    `shard=(i, n)`: only shard i of n (see select_shard); `alfa pairs` merges the n run dirs.
    """
    all_questions, digest = questions.height, questions_digest(questions)
    if shard:
        questions = select_shard(questions, *shard)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    questions.write_parquet(run_dir / "questions.parquet")
    if pack.source:
        shutil.copyfile(pack.source, run_dir / "attribute_pack.yaml")
    cache = CallCache(cache_path or run_dir / "cache.sqlite")
    stats = SynthesisStats()
    rows = questions.to_dicts()
    posts = [_post_text(r["context"]) for r in rows]

    sources = [r["question"] for r in rows]
    standalone_texts: list[str | None] = [None] * len(rows)
    if standalone:
        from alfa.filter import extract_question

        replies, _ = run_calls(rewriter, cache,
                            [prompts.standalone_messages(p, q, max_context_chars) for p, q in zip(posts, sources)],
                            "standalone", stats)
        for i, reply in enumerate(replies):
            text, reason = extract_question(reply.text or "")
            if text:  # otherwise keep the original: a failed restatement must not lose the question
                standalone_texts[i] = text
                sources[i] = text

    plan, requests = [], []
    for i, r in enumerate(rows):
        hindsight = json.loads(r["hindsight"] or "{}")
        for name, attribute in pack.attributes.items():
            for direction in directions:
                shown = hindsight if (hindsight_for_enhance and direction == "enhance") else None
                plan.append((i, name, direction))
                requests.append(prompts.rewrite_messages(attribute, direction, posts[i], sources[i], shown,
                                                         max_context_chars))
    replies, keys = run_calls(rewriter, cache, requests, "synthesize", stats)
    cache.close()

    out, failures = [], []
    for (i, name, direction), key, reply in zip(plan, keys, replies):
        out.append({
            "qid": rows[i]["qid"], "group_id": rows[i]["group_id"], "attribute": name, "direction": direction,
            "original": rows[i]["question"], "source_question": sources[i], "standalone": standalone_texts[i],
            "reply": reply.text if reply.error is None else None, "error": reply.error, "call_key": key,
        })
        if reply.error is not None:
            failures.append({"qid": rows[i]["qid"], "attribute": name, "direction": direction,
                             "call_key": key, "error": reply.error})
    pl.DataFrame(out, infer_schema_length=None).write_parquet(run_dir / "variants.parquet")
    with open(run_dir / "failed_calls.jsonl", "w", encoding="utf-8") as f:
        for row in failures:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")

    manifest = {
        "questions": questions.height,
        "questions_source": questions_source,
        "shard": list(shard) if shard else None,
        "all_questions": all_questions,
        "questions_digest": digest,
        "attribute_pack": {"name": pack.name, "digest": pack.digest, "attributes": list(pack.attributes)},
        "directions": list(directions),
        "standalone": standalone,
        "hindsight_for_enhance": hindsight_for_enhance,
        "rewriter": {"backend": rewriter.backend, "model": rewriter.model_id, "sampling": rewriter.sampling},
        "prompt_template_hash": prompts.template_hash(),
        "stats": asdict(stats),
    }
    (run_dir / "run.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    log.info("synthesize: %d variants (%d calls made, %d from cache, %d failed) -> %s",
             len(out), stats.calls_made, stats.cache_hits, stats.failed, run_dir)
    return stats


def _post_text(context: list[dict]) -> str:
    """The rewriter sees the patient's post plus earlier turns as plain text."""
    parts = [context[0]["content"]]
    for m in context[1:]:
        who = "Doctor" if m["role"] == "assistant" else "Patient"
        parts.append(f"{who}: {m['content']}")
    return "\n".join(parts)
