"""Stage 7, review: answers back from Argilla. Progress per annotator and stratum (`status`), per-pair
verdicts (the majority of submitted answers), and a *reviewed* copy of the pair dataset where every row says
who decided it (`pull`)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from alfa.data.lint import lint
from alfa.data.lint import write_report as write_lint_report
from alfa.data.pairs import FLIPPED_PAIR_TYPES, SPLITS, data_digest, load_pairs
from alfa.data.pairs import pair_id as make_pair_id
from alfa.review.agreement import AGREE, REVERSED, TIE, agreement_report, majority, relative_label
from alfa.review.connection import DEFAULT_DATASET, DEFAULT_WORKSPACE, Connection, ReviewError, open_dataset


def fetch(conn: Connection, dataset: str = DEFAULT_DATASET, workspace: str = DEFAULT_WORKSPACE):
    """(records, answers): one row per record (pair_id, attribute, pair_type, chosen_side) and one row per
    annotator and record (annotator, status, better, differ_only_in_attribute, problems, comment)."""
    if conn.role == "annotator":
        raise ReviewError(
            f"user {conn.username!r} is an annotator and sees only their own answers; "
            "status and pull need an owner or admin key"
        )
    ds = open_dataset(conn, dataset, workspace)
    client = conn.client
    names = {str(u.id): u.username for u in client.users}
    records, answers = [], []
    for rec in ds.records(with_responses=True, with_suggestions=False):
        md = rec.metadata
        if "chosen_side" not in md:
            raise ReviewError(
                f"record {rec.id} of dataset {dataset!r} has no chosen_side metadata: this dataset was "
                "not made by `alfa review push`"
            )
        records.append(
            {
                "pair_id": rec.id,
                "attribute": md["attribute"],
                "pair_type": md["pair_type"],
                "chosen_side": md["chosen_side"],
                "record_status": str(rec.status),
            }
        )
        by_user: dict[str, dict] = {}
        for resp in rec.responses:
            user = names.get(str(resp.user_id), str(resp.user_id))
            entry = by_user.setdefault(
                user,
                {
                    "pair_id": rec.id,
                    "annotator": user,
                    "status": resp.status.value,
                    "better": None,
                    "differ_only_in_attribute": None,
                    "problems": [],
                    "comment": None,
                },
            )
            entry[resp.question_name] = resp.value
        answers.extend(by_user.values())
    answer_schema = {
        "pair_id": pl.String,
        "annotator": pl.String,
        "status": pl.String,
        "better": pl.String,
        "differ_only_in_attribute": pl.String,
        "problems": pl.List(pl.String),
        "comment": pl.String,
    }
    record_schema = {
        "pair_id": pl.String,
        "attribute": pl.String,
        "pair_type": pl.String,
        "chosen_side": pl.String,
        "record_status": pl.String,
    }
    return (
        pl.DataFrame(records, schema=record_schema),
        pl.DataFrame([{k: a[k] for k in answer_schema} for a in answers], schema=answer_schema),
    )


# ---------------------------------------------------------------- status


def review_status(
    conn: Connection,
    dataset: str = DEFAULT_DATASET,
    workspace: str = DEFAULT_WORKSPACE,
    min_submitted: int | None = None,
) -> dict:
    """Progress per annotator (submitted / draft / discarded) and per stratum (records with enough answers)."""
    records, answers = fetch(conn, dataset, workspace)
    if min_submitted is None:
        min_submitted = open_dataset(conn, dataset, workspace).settings.distribution.min_submitted
    per_annotator = (
        answers.group_by("annotator")
        .agg([(pl.col("status") == s).sum().alias(s) for s in ("submitted", "draft", "discarded")])
        .sort("annotator")
    )
    submitted = answers.filter(pl.col("status") == "submitted").group_by("pair_id").len("answers")
    per_stratum = (
        records.join(submitted, on="pair_id", how="left")
        .with_columns(pl.col("answers").fill_null(0))
        .group_by("attribute", "pair_type")
        .agg(
            pl.len().alias("records"),
            (pl.col("answers") >= 1).sum().alias("started"),
            (pl.col("answers") >= min_submitted).sum().alias("done"),
        )
        .sort("attribute", "pair_type")
    )
    client = conn.client
    members = {u.username for u in client.workspaces(workspace).users}
    no_access = sorted(u.username for u in client.users if u.role == "annotator" and u.username not in members)
    return {
        "records": records.height,
        "min_submitted": min_submitted,
        "per_annotator": per_annotator,
        "per_stratum": per_stratum,
        "annotators_without_access": no_access,
    }


# ---------------------------------------------------------------- pull


@dataclass
class ReviewPolicy:
    """What a human verdict does to a pair in the reviewed dataset."""

    on_reversed: str = "drop"  # drop | flip: humans preferred the pipeline's rejected question
    on_tie: str = "drop"  # drop | keep: humans saw no difference on the attribute
    on_split: str = "keep"  # keep | drop: annotators disagreed and no label won
    drop_confounded: bool = True  # drop when most reviewers said the two differ in more than the attribute
    flag_quorum: int = 1  # drop when at least this many reviewers ticked a problem

    def __post_init__(self):
        for key, allowed in (
            ("on_reversed", ("drop", "flip")),
            ("on_tie", ("drop", "keep")),
            ("on_split", ("keep", "drop")),
        ):
            if getattr(self, key) not in allowed:
                raise ReviewError(f"{key}={getattr(self, key)!r}: choose one of {', '.join(allowed)}")


def verdicts(records: pl.DataFrame, answers: pl.DataFrame, policy: ReviewPolicy) -> pl.DataFrame:
    """One row per record with at least one submitted answer: the majority verdict and what it does."""
    side = dict(zip(records["pair_id"], records["chosen_side"]))
    rows = []
    for (pair_id,), group in answers.filter(pl.col("status") == "submitted").group_by("pair_id", maintain_order=True):
        relative = [relative_label(b, side[pair_id]) for b in group["better"]]
        verdict = majority(relative)
        only_answers = group["differ_only_in_attribute"].drop_nulls().to_list()
        only = majority(only_answers) if only_answers else None
        problem_lists = [ps or [] for ps in group["problems"].to_list()]
        flags = sorted({p for ps in problem_lists for p in ps})
        flaggers = sum(1 for ps in problem_lists if ps)
        if flaggers >= policy.flag_quorum:
            action, reason = "drop", "problem: " + ",".join(flags)
        elif policy.drop_confounded and only == "no":
            action, reason = "drop", "differs in more than the attribute"
        elif verdict == AGREE:
            action, reason = "keep", "humans agree"
        elif verdict == REVERSED:
            action, reason = ("flip" if policy.on_reversed == "flip" else "drop"), "humans preferred the rejected side"
        elif verdict == TIE:
            action, reason = policy.on_tie, "humans saw no difference"
        else:
            action, reason = policy.on_split, "annotators disagreed"
        rows.append(
            {
                "pair_id": pair_id,
                "review_verdict": verdict,
                "review_action": action,
                "review_reason": reason,
                "review_answers": group.height,
                "review_annotators": sorted(group["annotator"]),
                "review_votes": ",".join(relative),
                "review_problems": flags,
                "review_differ_only": only,
            }
        )
    schema = {
        "pair_id": pl.String,
        "review_verdict": pl.String,
        "review_action": pl.String,
        "review_reason": pl.String,
        "review_answers": pl.Int64,
        "review_annotators": pl.List(pl.String),
        "review_votes": pl.String,
        "review_problems": pl.List(pl.String),
        "review_differ_only": pl.String,
    }
    return pl.DataFrame(rows, schema=schema)


# A flip maps a type to its mirror, and a flip of a flipped pair (a second review) back to the original type.
MIRROR_TYPE = {**FLIPPED_PAIR_TYPES, **{v: k for k, v in FLIPPED_PAIR_TYPES.items()}}


def mirror_type(t: pl.Expr) -> pl.Expr:
    """The pair type of a flipped pair: the pipeline's mirror name, or `flipped:` before a method's own type (and
    taken off again when a flipped pair is flipped back)."""
    return (
        pl.when(t.is_in(list(MIRROR_TYPE)))
        .then(t.replace_strict(MIRROR_TYPE, default=None))
        .when(t.str.starts_with("flipped:"))
        .then(t.str.strip_prefix("flipped:"))
        .otherwise(pl.lit("flipped:") + t)
    )


def apply_review(
    pairs_dir: Path, out_dir: Path, decided: pl.DataFrame, answers: pl.DataFrame, report: dict, source: str
) -> dict:
    """Write the reviewed dataset: every pair of PAIRS_DIR, each saying who decided it. Dropped pairs go to
    review/dropped.parquet with their reason; flipped pairs swap chosen and rejected and become new pairs (new
    pair_id, the mirror pair_type, flipped_from = the old id)."""
    pairs_dir, out_dir = Path(pairs_dir), Path(out_dir)
    if out_dir.resolve() == pairs_dir.resolve():
        raise ReviewError("write the reviewed dataset to a new folder (-o), so the pipeline's version stays as it was")
    out_dir.mkdir(parents=True, exist_ok=True)
    for item in pairs_dir.iterdir():  # the pipeline's reports and plots travel with the data
        if item.name in (
            "data",
            "hf_dataset",
            "review",
            "README.md",
            "lint_report.json",
        ):  # the reviewed data gets its own
            continue
        (
            shutil.copytree(item, out_dir / item.name, dirs_exist_ok=True)
            if item.is_dir()
            else shutil.copy2(item, out_dir / item.name)
        )
    pairs = (
        load_pairs(pairs_dir)
        .join(decided, on="pair_id", how="left")
        .with_columns(
            pl.col("review_action").fill_null("keep"),
            pl.when(pl.col("review_verdict").is_null())
            .then(pl.lit("pipeline"))
            .otherwise(pl.lit("humans: ") + pl.col("review_annotators").list.join(","))
            .alias("decided_by"),
            pl.col("review_verdict").fill_null("unreviewed"),
        )
    )
    flip = pl.col("review_action") == "flip"
    swapped = {
        a: pl.when(flip).then(pl.col(b)).otherwise(pl.col(a))
        for a, b in (
            ("chosen", "rejected"),
            ("rejected", "chosen"),
            ("chosen_similarity", "rejected_similarity"),
            ("rejected_similarity", "chosen_similarity"),
            ("chosen_score", "rejected_score"),  # pairs a method scored (UoT, CollabLLM)
            ("rejected_score", "chosen_score"),
        )
        if a in pairs.columns
    }
    pairs = pairs.with_columns(**swapped)
    # A flipped pair is a new pair: a new id and a type that says what `chosen` now is; flipped_from keeps the old id.
    pairs = pairs.with_columns(
        flipped_from=pl.when(flip).then(pl.col("pair_id")).otherwise(None),
        pair_type=pl.when(flip).then(mirror_type(pl.col("pair_type"))).otherwise(pl.col("pair_type")),
    )
    pairs = pairs.with_columns(
        pair_id=pl.Series(
            [_new_pair_id(r) if r["review_action"] == "flip" else r["pair_id"] for r in pairs.iter_rows(named=True)],
            dtype=pl.String,
        )
    )
    (out_dir / "data").mkdir(exist_ok=True)
    (out_dir / "review").mkdir(exist_ok=True)
    kept = pairs.filter(pl.col("review_action") != "drop")
    for split in SPLITS:
        kept.filter(pl.col("split") == split).write_parquet(out_dir / "data" / f"{split}.parquet")
    pairs.filter(pl.col("review_action") == "drop").write_parquet(out_dir / "review" / "dropped.parquet")
    answers.write_parquet(out_dir / "review" / "answers.parquet")
    report = {
        **report,
        "source": source,
        "pairs_in": pairs.height,
        "pairs_out": kept.height,
        "flipped": int(kept["review_action"].eq("flip").sum()),
        "dropped": pairs.height - kept.height,
        "data_digest": data_digest(out_dir),
    }
    (out_dir / "review_report.json").write_text(json.dumps(report, indent=2))
    return report


def _new_pair_id(row: dict) -> str:
    return make_pair_id(
        row["qid"], row["attribute"], row["pair_type"], row["chosen"][0]["content"], row["rejected"][0]["content"]
    )


def pull(
    conn: Connection,
    pairs_dir: Path,
    out_dir: Path,
    dataset: str = DEFAULT_DATASET,
    workspace: str = DEFAULT_WORKSPACE,
    policy: ReviewPolicy | None = None,
) -> dict:
    policy = policy or ReviewPolicy()
    records, answers = fetch(conn, dataset, workspace)
    unknown = set(records["pair_id"]) - set(load_pairs(pairs_dir)["pair_id"])
    if unknown:
        raise ReviewError(
            f"{len(unknown)} records of dataset {dataset!r} are not pairs of {pairs_dir} (e.g. "
            f"{sorted(unknown)[0]}): pull into the pairs dir they were pushed from"
        )
    decided = verdicts(records, answers, policy)
    report = agreement_report(records, answers, decided)
    report["policy"] = policy.__dict__
    report = apply_review(
        pairs_dir,
        out_dir,
        decided,
        answers,
        report,
        source=f"Argilla {conn.url}, workspace {workspace}, dataset {dataset}",
    )
    write_lint_report(lint(out_dir), out_dir)  # the reviewed data is other data: its own lint, not the pipeline's
    return report
