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
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import polars as pl

from alfa.data import prompts
from alfa.data.attributes import AttributePack
from alfa.data.ingest import GROUPS_KEY
from alfa.llm.cache import CallCache
from alfa.llm.calls import CallStats, run_calls

log = logging.getLogger(__name__)


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


@dataclass
class SynthesisConfig:
    """How each question is rewritten: a pipeline YAML's `synthesis:` block, and `alfa synthesize`'s flags."""

    standalone: bool = False  # restate each original as one self-contained question first (the paper's step)
    hindsight_for_enhance: bool = False  # show the thread's outcome (hindsight) in enhance prompts
    max_context_chars: int = 1200  # the post is cut to this many characters in prompts
    limit: int | None = None  # first N questions only (a quick look before a full run)
    cache: str | None = None  # share one call cache between runs (default: RUN_DIR/cache.sqlite)
    samples: int = 3  # attempts per variant: greedy, then sampled while the reply fails the text checks
    temperature: float = 0.8  # of the sampled attempts


def synthesize(
    questions: pl.DataFrame,
    pack: AttributePack,
    rewriter,
    run_dir: Path,
    config: SynthesisConfig | None = None,
    *,
    directions: tuple[str, ...] = prompts.DIRECTIONS,
    questions_source: str = "",
    shard: tuple[int, int] | None = None,
    groups: str | None = None,
    max_words: int = 60,  # the filter's max_words: a reply it would reject as too long is sampled again
) -> CallStats:
    """Write variants for every question x attribute x direction into `run_dir`.

    `standalone`: first restate each original as one self-contained question (the paper's step) and
    rewrite that, so the original and both variants share one style. `hindsight_for_enhance`: show
    the thread's outcome (e.g. final diagnosis) to the rewriter, for the enhance direction only:
    a corrupted variant written with hindsight could leak the answer into a rejected example.
    `config` (SynthesisConfig; its defaults when None): `limit` keeps the first N questions, before sharding.
    `shard=(i, n)`: only shard i of n (see select_shard); `alfa pairs` merges the n run dirs.
    `groups`: "given" or "none", as `alfa ingest` recorded in the questions table (alfa.data.ingest.groups_of);
    by default "none" when every question is its own group.
    `samples`: attempts per variant. The first is greedy; a reply that fails the filter's text checks (a refusal,
    no single question, an echo, a copied example) is asked again with sampling at `temperature`, seed 1, 2, ...
    (each sample its own cached call), up to `samples` attempts. Every attempt's reason is kept.
    """
    config = config or SynthesisConfig()
    if config.limit:
        questions = questions.head(config.limit)
    if groups is None:
        groups = "none" if questions["group_id"].equals(questions["qid"], check_names=False) else "given"
    all_questions, digest = questions.height, questions_digest(questions)
    if shard:
        questions = select_shard(questions, *shard)
    run_dir = start_run_dir(Path(run_dir), questions, pack, groups)
    cache = CallCache(Path(config.cache) if config.cache else run_dir / "cache.sqlite")
    stats = CallStats()
    rows = questions.to_dicts()
    posts = [prompts.post_text(r["context"]) for r in rows]

    sources = [r["question"] for r in rows]
    standalone_texts: list[str | None] = [None] * len(rows)
    fallbacks: list[str | None] = [None] * len(rows)
    if config.standalone:
        standalone_texts, fallbacks = restate_standalone(
            rewriter, cache, posts, sources, config.max_context_chars, stats
        )
        sources = [s or q for s, q in zip(standalone_texts, sources)]  # a failed restatement keeps the original

    plan, requests = rewrite_requests(
        rows, posts, sources, pack, directions, config.hindsight_for_enhance, config.max_context_chars
    )
    replies, keys = run_calls(rewriter, cache, requests, "synthesize", stats)
    originals = [(sources[i], rows[i]["question"]) for i, _, _ in plan]
    attempts = sample_again(
        rewriter, cache, requests, replies, keys, originals, pack, config.samples, config.temperature, stats, max_words
    )
    cache.close()
    resampled = sum(len(a) > 1 for a in attempts)

    out = write_variants(run_dir, rows, plan, keys, replies, attempts, sources, standalone_texts, fallbacks)
    manifest = run_manifest(
        questions=questions,
        questions_source=questions_source,
        shard=shard,
        all_questions=all_questions,
        digest=digest,
        pack=pack,
        directions=directions,
        config=config,
        fallbacks=fallbacks,
        groups=groups,
        rewriter=rewriter,
        stats=stats,
        sampling_again={"max_words": max_words, "resampled": resampled},
    )
    (run_dir / "run.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    log_outcome(len(out), stats, run_dir)
    return stats


def log_outcome(variants: int, stats: CallStats, run_dir: Path) -> None:
    log.info("synthesize: %d variants, %s -> %s", variants, stats, run_dir)
    if stats.failed:
        log.warning(
            "synthesize: %d calls failed (reasons in %s); none was cached and their variants are rejected as "
            "call_failed: rerun the same command to ask only those again",
            stats.failed,
            run_dir / "failed_calls.jsonl",
        )


def start_run_dir(run_dir: Path, questions: pl.DataFrame, pack: AttributePack, groups: str) -> Path:
    """The run dir with the run's own copies of its questions and its attribute pack."""
    run_dir.mkdir(parents=True, exist_ok=True)
    questions.write_parquet(run_dir / "questions.parquet", metadata={GROUPS_KEY: groups})
    if pack.source:
        shutil.copyfile(pack.source, run_dir / "attribute_pack.yaml")
    return run_dir


def run_manifest(
    *,
    questions: pl.DataFrame,
    questions_source: str,
    shard: tuple[int, int] | None,
    all_questions: int,
    digest: str,
    pack: AttributePack,
    directions: tuple[str, ...],
    config: SynthesisConfig,
    fallbacks: list[str | None],
    groups: str,
    rewriter,
    stats: CallStats,
    sampling_again: dict,  # {max_words, resampled}: beside the config's samples and temperature
) -> dict:
    """run.json: what this run was made from and with, and what it cost."""
    return {
        "questions": questions.height,
        "questions_source": questions_source,
        "shard": list(shard) if shard else None,
        "all_questions": all_questions,
        "questions_digest": digest,
        "attribute_pack": {"name": pack.name, "digest": pack.digest, "attributes": list(pack.attributes)},
        "directions": list(directions),
        "standalone": config.standalone,
        # questions whose restatement failed and that were rewritten from the original instead, with why
        "standalone_fallbacks": {
            "count": sum(f is not None for f in fallbacks),
            "reasons": dict(Counter(f for f in fallbacks if f is not None)),
        },
        "groups": groups,
        "hindsight_for_enhance": config.hindsight_for_enhance,
        "rewriter": {
            "backend": rewriter.backend,
            "model": rewriter.model_id,
            "sampling": rewriter.sampling,
            "cache_id": rewriter.cache_id,
        },
        "sample_again": {"samples": config.samples, "temperature": config.temperature, **sampling_again},
        "prompt_template_hash": prompts.template_hash(),
        "stats": asdict(stats),
    }


def rewrite_requests(
    rows: list[dict],
    posts: list[str],
    sources: list[str],
    pack: AttributePack,
    directions: tuple[str, ...],
    hindsight_for_enhance: bool,
    max_context_chars: int,
) -> tuple[list[tuple], list[list[dict]]]:
    """One request per question x attribute x direction, and its (question index, attribute, direction)."""
    plan, requests = [], []
    for i, r in enumerate(rows):
        hindsight = json.loads(r["hindsight"] or "{}")
        for name, attribute in pack.attributes.items():
            for direction in directions:
                shown = hindsight if (hindsight_for_enhance and direction == "enhance") else None
                plan.append((i, name, direction))
                requests.append(
                    prompts.rewrite_messages(attribute, direction, posts[i], sources[i], shown, max_context_chars)
                )
    return plan, requests


def sample_again(
    rewriter,
    cache: CallCache,
    requests: list[list[dict]],
    replies: list,
    keys: list[str],
    originals: list[tuple[str, ...]],
    pack: AttributePack,
    samples: int,
    temperature: float,
    stats: CallStats,
    max_words: int,
) -> list[list[dict]]:
    """Ask again, sampling, for every reply that fails the text checks (the filter's, with its `max_words`);
    `replies` and `keys` are updated in place to the first attempt that passes (or the last one). Returns each
    request's attempts: sample, seed, reason."""
    from alfa.data.filter import normalize, text_check

    examples = {
        normalize(t)
        for a in pack.attributes.values()
        for ex in a.examples
        for t in (ex.question, ex.enhanced, ex.corrupted)
    }

    def reason_of(i: int) -> str | None:
        if replies[i].error is not None:
            return "call_failed"  # not sampled again: the call itself failed, and the next run retries it
        return text_check(replies[i].text, originals[i], examples, max_words)[1]

    attempts = [[{"sample": 0, "seed": None, "reason": reason_of(i)}] for i in range(len(requests))]
    for seed in range(1, samples):
        todo = [i for i, a in enumerate(attempts) if a[-1]["reason"] not in (None, "call_failed")]
        if not todo:
            break
        sampled = rewriter.with_sampling(temperature, seed)
        again, again_keys = run_calls(sampled, cache, [requests[i] for i in todo], f"sample {seed}", stats)
        for i, reply, key in zip(todo, again, again_keys):
            replies[i], keys[i] = reply, key
            attempts[i].append({"sample": seed, "seed": seed, "reason": reason_of(i)})
    return attempts


def restate_standalone(
    rewriter, cache: CallCache, posts: list[str], questions: list[str], max_context_chars: int, stats: CallStats
) -> tuple[list[str | None], list[str | None]]:
    """Each question restated as one self-contained question, and where that failed (None), why: the call
    failed, or the reply held no single question (the filter's reason)."""
    from alfa.data.filter import extract_question

    replies, _ = run_calls(
        rewriter,
        cache,
        [prompts.standalone_messages(p, q, max_context_chars) for p, q in zip(posts, questions)],
        "standalone",
        stats,
    )
    texts, fallbacks = [], []
    for reply in replies:
        text, reason = extract_question(reply.text or "") if reply.error is None else (None, "call_failed")
        texts.append(text or None)
        fallbacks.append(None if text else reason or "empty")
    return texts, fallbacks


def write_variants(
    run_dir: Path,
    rows: list[dict],
    plan: list[tuple],
    keys: list[str],
    replies: list,
    attempts: list[list[dict]],
    sources: list[str],
    standalone_texts: list[str | None],
    fallbacks: list[str | None],
) -> list[dict]:
    """variants.parquet (one row per request: the reply or the error) and failed_calls.jsonl."""
    out, failures = [], []
    for (i, name, direction), key, reply, tries in zip(plan, keys, replies, attempts):
        out.append(
            {
                "qid": rows[i]["qid"],
                "group_id": rows[i]["group_id"],
                "attribute": name,
                "direction": direction,
                "original": rows[i]["question"],
                "source_question": sources[i],
                "standalone": standalone_texts[i],
                "standalone_fallback": fallbacks[i],
                "reply": reply.text if reply.error is None else None,
                "error": reply.error,
                "call_key": key,
                "sample": tries[-1]["sample"],  # which attempt this reply is (0 = greedy)
                "attempts": json.dumps(tries),  # every attempt's sample, seed and text-check reason
            }
        )
        if reply.error is not None:
            failures.append(
                {
                    "qid": rows[i]["qid"],
                    "attribute": name,
                    "direction": direction,
                    "call_key": key,
                    "error": reply.error,
                }
            )
    pl.DataFrame(out, infer_schema_length=None).write_parquet(run_dir / "variants.parquet")
    with open(run_dir / "failed_calls.jsonl", "w", encoding="utf-8") as f:
        for row in failures:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return out
