"""Stage 7, review: what a review record is. The Argilla dataset's settings (fields, questions, hidden
metadata), the reviewer guidelines, the stratified sample, and one pair rendered as a blind A/B record
(which side is the pipeline's choice is random per pair, deterministically, and kept in hidden metadata).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import polars as pl

from alfa.data.attributes import load_pack
from alfa.review.connection import ReviewError
from alfa.stats import seeded_hash

PROBLEMS = {
    "not_a_question": "Not a question",
    "medically_wrong": "Medically wrong or misleading",
    "unsafe": "Unsafe (could delay urgent care or cause harm)",
    "contains_phi": "Contains personal health information (a name, date, place...)",
    "other": "Other problem (say which in the comment)",
}
BETTER_LABELS = {"A": "Question A", "B": "Question B", "tie": "Equally good / can't tell"}
ONLY_LABELS = {"yes": "Yes", "no": "No"}


def review_settings(definitions: dict[str, str], min_submitted: int):
    import argilla as rg

    return rg.Settings(
        guidelines=guidelines(definitions),
        fields=[
            rg.TextField("context", title="Patient's message (and earlier questions and answers)", use_markdown=True),
            rg.TextField("attribute_definition", title="Judge only this attribute", use_markdown=True),
            rg.TextField("question_a", title="Question A"),
            rg.TextField("question_b", title="Question B"),
        ],
        questions=[
            rg.LabelQuestion("better", labels=BETTER_LABELS, title="Which question is better on this attribute?"),
            rg.LabelQuestion(
                "differ_only_in_attribute",
                labels=ONLY_LABELS,
                title="Do A and B differ only in this attribute (otherwise about the same)?",
            ),
            rg.MultiLabelQuestion(
                "problems", labels=PROBLEMS, required=False, title="Problems with either question (tick all that apply)"
            ),
            rg.TextQuestion("comment", required=False, title="Comment (optional)"),
        ],
        metadata=[
            rg.TermsMetadataProperty("attribute", title="Attribute"),
            # Hidden from reviewers so the review stays blind; visible to owners for filtering.
            rg.TermsMetadataProperty("pair_type", visible_for_annotators=False),
            rg.TermsMetadataProperty("chosen_side", visible_for_annotators=False),
            rg.TermsMetadataProperty("split", visible_for_annotators=False),
            rg.TermsMetadataProperty("rewriter", visible_for_annotators=False),
            rg.FloatMetadataProperty("chosen_similarity", visible_for_annotators=False),
            rg.FloatMetadataProperty("rejected_similarity", visible_for_annotators=False),
        ],
        distribution=rg.TaskDistribution(min_submitted=min_submitted),
    )


def guidelines(definitions: dict[str, str]) -> str:
    """Shown in Argilla beside every record. The long guide with screenshots: annotation/reviewer_guide.md."""
    attrs = "\n".join(f"- **{name.replace('_', ' ').capitalize()}**: {d}" for name, d in definitions.items())
    return f"""\
# Reviewing follow-up questions

Each record shows a patient's message and two follow-up questions a doctor could ask next, **A** and **B**.
They were written to differ in **one attribute** (shown above the questions). Judge only that attribute.

1. **Which question is better on this attribute?** A, B, or *Equally good / can't tell*.
2. **Do A and B differ only in this attribute?** *No* when one also changes the topic, adds a second
   question or differs in some other way that matters.
3. **Problems**: tick any that apply to either question, even if you answered the rest.
4. Submit. *Discard* a record you cannot judge at all.

The order of A and B is random. Nothing you see tells you which one a computer preferred.
Do not copy any text from these records elsewhere: it is health information.

## The attributes
{attrs}
"""


def settings_schema(settings) -> dict:
    """What must match for records pushed now and before to mean the same thing."""

    def labels(q):
        return sorted(q.labels) if hasattr(q, "labels") and q.labels else None

    return {
        "fields": sorted(f.name for f in settings.fields),
        "questions": {q.name: [type(q).__name__, labels(q)] for q in settings.questions},
        "metadata": sorted(m.name for m in settings.metadata),
    }


def schema_diff(ours: dict, theirs: dict) -> list[str]:
    out = []
    for part in ours:
        if ours[part] != theirs[part]:
            out.append(f"{part}: the dataset has {theirs[part]}, alfa pushes {ours[part]}")
    return out


def sample_pairs(pairs: pl.DataFrame, n: int | None, stratify: list[str], seed: int = 0) -> pl.DataFrame:
    """Up to n pairs spread evenly over the strata (every attribute x pair type gets its share; a stratum with
    fewer pairs gives its leftover to the others). Deterministic for a seed, whatever the row order."""
    unknown = [c for c in stratify if c not in pairs.columns]
    if unknown:
        raise ReviewError(f"--stratify {','.join(unknown)}: not a column of the pairs; use e.g. attribute,pair_type")
    key = pl.col("pair_id").map_elements(lambda p: seeded_hash(p, seed), return_dtype=pl.String)
    pairs = pairs.with_columns(_order=key).sort("_order")
    if n is None or n >= pairs.height:
        return pairs.drop("_order")
    strata = pairs.partition_by(stratify, maintain_order=True) if stratify else [pairs]
    strata.sort(key=lambda df: df.height)
    taken, left = [], n
    for i, df in enumerate(strata):
        share = left // (len(strata) - i)  # even split of what is left over the strata still to go
        take = df.head(min(share, df.height))
        taken.append(take)
        left -= take.height
    return pl.concat(taken).sort("_order").drop("_order")


def chosen_side(pair_id: str) -> str:
    """Where the pipeline's chosen question goes, A or B: random per pair but the same on every push."""
    return "A" if int(hashlib.sha256(f"side:{pair_id}".encode()).hexdigest(), 16) % 2 == 0 else "B"


def render_context(messages: list[dict]) -> str:
    """The prompt's chat messages as markdown a reviewer reads: the patient's post, then earlier turns."""
    names = {"user": "Patient", "assistant": "Doctor asked", "system": "Note"}
    return "\n\n".join(f"**{names.get(m['role'], m['role'])}:** {m['content'].strip()}" for m in messages)


def to_record(row: dict, definitions: dict[str, str], suggest: bool = False):
    import argilla as rg

    side = chosen_side(row["pair_id"])
    chosen, rejected = row["chosen"][0]["content"], row["rejected"][0]["content"]
    a, b = (chosen, rejected) if side == "A" else (rejected, chosen)
    definition = definitions.get(row["attribute"], "(not in the attribute pack)")
    suggestions = [rg.Suggestion("better", side, agent="alfa pipeline")] if suggest else []
    return rg.Record(
        id=row["pair_id"],
        fields={
            "context": render_context(row["prompt"]),
            "question_a": a,
            "question_b": b,
            "attribute_definition": f"**{row['attribute'].replace('_', ' ').capitalize()}**: {definition}",
        },
        metadata={
            "attribute": row["attribute"],
            "pair_type": row["pair_type"],
            "chosen_side": side,
            "split": row["split"],
            "rewriter": row["rewriter"],
        }
        # a method's pairs (UoT, CollabLLM, flaws) rewrote no original: no similarity to report
        | {k: float(row[k]) for k in ("chosen_similarity", "rejected_similarity") if row[k] is not None},
        suggestions=suggestions,
    )


def attribute_definitions(pairs_dir: Path, pack: str | None = None) -> dict[str, str]:
    """What a reviewer judges, per attribute: from the pack named by `pack`, else from the pack the pairs were
    made with (its copy in the run dir), or from the manifest of pairs a method made (UoT, CollabLLM, flaws)."""
    manifest = json.loads((Path(pairs_dir) / "pairs.json").read_text())
    if pack:
        attribute_pack = load_pack(pack)
    elif "method" in manifest:
        return manifest["attribute_definitions"]
    else:
        copies = [Path(d) / "attribute_pack.yaml" for d in manifest["run_dirs"]]
        copies = [c for c in copies if c.exists()]
        attribute_pack = load_pack(copies[0] if copies else manifest["run"]["attribute_pack"]["name"])
    return {a.name: a.definition.strip() for a in attribute_pack.attributes.values()}
