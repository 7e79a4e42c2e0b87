"""Stage 3, verify & filter: keep only variants that are one real question, differ from the original,
and stay close enough to it in meaning. Every rejected variant keeps its reason.

Reasons (column `reason` of rejected_variants.parquet):
    call_failed          the rewriter call failed (its error is kept)
    empty                no text
    refusal              "I'm sorry, I can't...", "As an AI..."
    no_question          no sentence ending in '?'
    multiple_questions   more than one question
    too_long             longer than max_words
    echo                 the same question as the original (ignoring case, spaces, punctuation)
    copied_example       a verbatim copy of a few-shot example from the attribute pack
    too_similar          embedding similarity to the original above the direction's upper bound
    too_dissimilar       below the direction's lower bound: the rewrite changed the topic
    near_duplicate       enhanced and corrupted variants of one question+attribute are near-identical
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import polars as pl
from tqdm.auto import tqdm

from alfa.llm.calls import QUIET
from alfa.llm.embedder import Embedder

REFUSAL = re.compile(
    r"^\s*(i'?m sorry|i am sorry|sorry,|i can(?:'|no)t|i cannot|i am unable|i'?m unable|as an ai|"
    r"as a language model|i'?m not able|i am not able|unfortunately, i)",
    re.IGNORECASE,
)
PREAMBLE = re.compile(
    r"^\s*(?:(?:here(?:'s| is)[^:\n]{0,60}|sure[^:\n]{0,40}|certainly[^:\n]{0,40}|"
    r"(?:the )?(?:rewritten|revised|enhanced|corrupted|improved|new|standalone) (?:question|version)|"
    r"doctor'?s question|question|answer|output|rewrite)\s*[:\-]\s*)",
    re.IGNORECASE,
)
QUOTES = "\"'`\u201c\u201d\u2018\u2019*"


@dataclass
class FilterConfig:
    """Bounds on cosine similarity (MiniLM) between a variant and the original, per direction."""

    enhance_min_similarity: float = 0.5
    enhance_max_similarity: float = 0.98
    corrupt_min_similarity: float = 0.3
    corrupt_max_similarity: float = 0.98
    near_duplicate_similarity: float = 0.97  # enhanced vs corrupted of the same question+attribute
    max_words: int = 60  # a variant longer than this is rejected (too_long), and sampled again in synthesis
    embedding_batch_size: int = 64  # MiniLM batch

    def __post_init__(self):
        for d in ("enhance", "corrupt"):
            lo, hi = getattr(self, f"{d}_min_similarity"), getattr(self, f"{d}_max_similarity")
            if not -1 <= lo < hi <= 1:
                raise ValueError(f"{d}_min_similarity ({lo}) must be below {d}_max_similarity ({hi}), within [-1, 1]")


# ALFA's "unfiltered" ablation: no similarity bounds and no near-duplicate removal, only the text checks (one
# question, not an echo, not a copied example) and identical enhanced/corrupted texts, which make no preference.
UNFILTERED = FilterConfig(
    enhance_min_similarity=-1.0,
    enhance_max_similarity=1.0,
    corrupt_min_similarity=-1.0,
    corrupt_max_similarity=1.0,
    near_duplicate_similarity=1.0,
)


def normalize(text: str) -> str:
    """Lowercase, letters and digits only: what 'the same question' means for echo checks."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def extract_question(reply: str, max_words: int = 60) -> tuple[str | None, str | None]:
    """Pull exactly one question out of a model reply. Returns (question, None) or (None, reason)."""
    text = (reply or "").strip()
    if not text:
        return None, "empty"
    if REFUSAL.match(text):
        return None, "refusal"
    # Drop preambles like "Here is the rewritten question:" and wrapping quotes / markdown.
    for _ in range(2):
        text = PREAMBLE.sub("", text, count=1).strip().strip(QUOTES).strip()
    lines = [ln.strip().strip(QUOTES).strip() for ln in text.splitlines() if ln.strip()]
    lines = [re.sub(r"^(?:[-*\u2022]|\d+[.)])\s+", "", ln) for ln in lines]  # list bullets
    questions = []
    for ln in lines:
        # Sentences ending in '?' (a trailing fragment without '?' is not a question).
        questions += [s.strip() for s in re.findall(r"[^?.!]*\?", ln) if s.strip(" ?")]
    if not questions:
        return None, "no_question"
    if len({normalize(q) for q in questions}) > 1:
        return None, "multiple_questions"
    question = questions[0].strip().strip(QUOTES).strip()
    # A question that started mid-sentence after a statement ("Okay. Is it...?") is fine; a reply that
    # is mostly statements around one question is not a rewrite of a question.
    other = " ".join(lines).replace(question, "")
    if len(re.findall(r"[a-zA-Z]+", other)) > len(re.findall(r"[a-zA-Z]+", question)):
        return None, "multiple_questions" if "?" in other else "no_question"
    if len(question.split()) > max_words:
        return None, "too_long"
    return question[0].upper() + question[1:], None


def text_check(
    reply: str | None, originals: tuple[str, ...], examples: set[str], max_words: int = 60
) -> tuple[str | None, str | None]:
    """The checks that need no embeddings: one question (extract_question), not an echo of `originals`, not a
    copy of a few-shot example (`examples`: normalized texts). Returns (question, None) or (text, reason).
    Synthesis uses it to decide which replies to sample again."""
    text, reason = extract_question(reply or "", max_words)
    if text is not None:
        norm = normalize(text)
        if norm in {normalize(o) for o in originals}:
            reason = "echo"
        elif norm in examples:
            reason = "copied_example"
    return text, reason


@dataclass
class FilterResult:
    kept: pl.DataFrame  # variants with columns text, similarity
    rejected: pl.DataFrame  # variants with reason (+ detail)
    pass_rates: dict = field(default_factory=dict)


def filter_variants(
    variants: pl.DataFrame, config: FilterConfig, embedder: Embedder, example_texts: set[str] = frozenset()
) -> FilterResult:
    """Apply the text checks, then similarity bounds, then near-duplicate removal."""
    examples = {normalize(t) for t in example_texts}
    kept, rejected = [], []
    for row in tqdm(
        variants.to_dicts(), desc="verify", unit="variant", disable=variants.height < 500 or QUIET in os.environ
    ):
        if row["error"] is not None:
            rejected.append({**row, "text": None, "reason": "call_failed", "detail": row["error"]})
            continue
        text, reason = text_check(row["reply"], (row["source_question"], row["original"]), examples, config.max_words)
        if reason:
            rejected.append({**row, "text": text, "reason": reason, "detail": None})
        else:
            kept.append({**row, "text": text})

    # Similarity to the question that was rewritten, one batched encode for all texts (reused below
    # for the near-duplicate check: every survivor's text is among them).
    emb = {}
    if kept:
        texts = sorted({r["text"] for r in kept} | {r["source_question"] for r in kept})
        emb = dict(zip(texts, embedder.encode(texts)))
        for r in kept:
            r["similarity"] = float(emb[r["text"]] @ emb[r["source_question"]])
    survivors = []
    for r in kept:
        lo = getattr(config, f"{r['direction']}_min_similarity")
        hi = getattr(config, f"{r['direction']}_max_similarity")
        if r["similarity"] > hi:
            rejected.append({**r, "reason": "too_similar", "detail": f"similarity {r['similarity']:.3f} > {hi}"})
        elif r["similarity"] < lo:
            rejected.append({**r, "reason": "too_dissimilar", "detail": f"similarity {r['similarity']:.3f} < {lo}"})
        else:
            survivors.append(r)

    # Enhanced and corrupted variants that say the same thing make every pair between them noise.
    by_item: dict[tuple, dict] = {}
    for r in survivors:
        by_item.setdefault((r["qid"], r["attribute"]), {})[r["direction"]] = r
    duplicates = set()
    pairs = [(d["enhance"], d["corrupt"]) for d in by_item.values() if len(d) == 2]
    for e, c in pairs:
        sim = float(emb[e["text"]] @ emb[c["text"]])
        if sim > config.near_duplicate_similarity or normalize(e["text"]) == normalize(c["text"]):
            for r in (e, c):
                duplicates.add(id(r))
                rejected.append(
                    {**r, "reason": "near_duplicate", "detail": f"enhanced vs corrupted similarity {sim:.3f}"}
                )
    final = [r for r in survivors if id(r) not in duplicates]

    kept_df = (
        pl.DataFrame(final, infer_schema_length=None)
        if final
        else variants.head(0).with_columns(
            pl.lit(None, pl.String).alias("text"), pl.lit(None, pl.Float64).alias("similarity")
        )
    )
    rejected_df = (
        pl.DataFrame(rejected, infer_schema_length=None)
        if rejected
        else kept_df.head(0).with_columns(
            pl.lit(None, pl.String).alias("reason"), pl.lit(None, pl.String).alias("detail")
        )
    )
    return FilterResult(kept_df, rejected_df, pass_rates(variants, kept_df, rejected_df))


def pass_rates(variants: pl.DataFrame, kept: pl.DataFrame, rejected: pl.DataFrame) -> dict:
    """{attribute: {direction: {"total", "kept", "rate", "reasons": {reason: n}}}}"""
    out: dict = {}
    for (attribute, direction), group in variants.group_by(["attribute", "direction"]):
        n_kept = kept.filter((pl.col("attribute") == attribute) & (pl.col("direction") == direction)).height
        rej = rejected.filter((pl.col("attribute") == attribute) & (pl.col("direction") == direction))
        reasons = dict(sorted(rej["reason"].value_counts().rows())) if rej.height else {}
        out.setdefault(attribute, {})[direction] = {
            "total": group.height,
            "kept": n_kept,
            "rate": round(n_kept / group.height, 4) if group.height else 0.0,
            "reasons": reasons,
        }
    return {a: dict(sorted(d.items())) for a, d in sorted(out.items())}
