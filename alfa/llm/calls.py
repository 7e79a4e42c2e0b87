"""Answer a batch of chat requests through any backend, from the call cache where possible.

Every stage that calls a model (synthesize, the judge, and later the dialogue engine) goes through
`run_calls`: identical requests are called once, each new answer is cached as it arrives (so a killed run
loses at most the batches in flight), and failed calls are counted, never cached.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass

from tqdm.auto import tqdm

from alfa.llm.backends import Backend, Completion
from alfa.llm.cache import CallCache, call_key

# `alfa -q` sets it: tqdm reads it only for a bar made without an explicit `disable`, and alfa's bars pass one.
QUIET = "TQDM_DISABLE"

EMPTY_REPLY = "empty reply"  # the error of a call that came back with no text

log = logging.getLogger(__name__)

CHUNK = 4096  # requests handed to a rewriter at once (bounds memory for very large runs)


@dataclass
class CallStats:
    requests: int = 0
    cache_hits: int = 0
    calls_made: int = 0
    failed: int = 0
    prompt_tokens: int = 0  # tokens of the calls this run made
    completion_tokens: int = 0
    seconds: float = 0.0
    cached_prompt_tokens: int = 0  # tokens of the answers taken from the cache (paid by an earlier run)
    cached_completion_tokens: int = 0


def run_calls(
    rewriter: Backend, cache: CallCache, requests: list[list[dict]], desc: str, stats: CallStats
) -> tuple[list[Completion], list[str]]:
    """Answer every request, from the cache where possible; new answers are cached as they arrive.
    Returns the completions and each request's cache key, in request order."""
    keys = [call_key(rewriter.cache_id, m, rewriter.sampling) for m in requests]
    cached = cache.get_many(list(set(keys)))
    results: list[Completion | None] = [
        Completion(cached[k][0], usage=cached[k][1]) if k in cached else None for k in keys
    ]
    stats.requests += len(requests)
    stats.cache_hits += sum(r is not None for r in results)
    for r in results:  # answers an earlier run paid for: cost figures count them too
        if r is not None:
            stats.cached_prompt_tokens += int(r.usage.get("prompt_tokens") or 0)
            stats.cached_completion_tokens += int(r.usage.get("completion_tokens") or 0)
    # Identical requests (same key) are called once.
    todo: dict[str, list[int]] = {}
    for i, (k, r) in enumerate(zip(keys, results)):
        if r is None:
            todo.setdefault(k, []).append(i)
    todo_keys = list(todo)
    if todo_keys:
        log.info(
            "%s: %d requests, %d from cache, %d to call %s (%s)",
            desc,
            len(requests),
            len(requests) - sum(len(v) for v in todo.values()),
            len(todo_keys),
            rewriter.model_id,
            rewriter.backend,
        )
    bar = tqdm(total=len(todo_keys), desc=desc, unit="call", disable=not todo_keys or QUIET in os.environ)

    def on_done(j: int, completion: Completion) -> None:
        key = todo_keys[j]
        stats.calls_made += 1
        if completion.error is None and not (completion.text or "").strip():
            # an empty reply is a failed call, from any backend: not cached, so the next run retries it
            completion = Completion(None, error=EMPTY_REPLY, usage=completion.usage)
        if completion.usage:
            stats.prompt_tokens += int(completion.usage.get("prompt_tokens") or 0)
            stats.completion_tokens += int(completion.usage.get("completion_tokens") or 0)
        if completion.error is None:
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
