"""Stage 4, pairs: filtered variants -> a TRL-ready conversational preference dataset.

Per question and attribute, up to three pairs:
    enhanced_vs_corrupted   chosen = enhanced,  rejected = corrupted
    enhanced_vs_original    chosen = enhanced,  rejected = original
    original_vs_corrupted   chosen = original,  rejected = corrupted
("original" is the standalone restatement when the run made one, so all three share one style.)

Pairs dir layout:
    data/{train,validation,test}.parquet   the dataset (what the card's `configs` point at)
    hf_dataset/                            the same as a datasets.DatasetDict (load_from_disk)
    rejected_variants.parquet              every variant the filter dropped, with its reason
    filter_report.json                     pass rates per attribute and direction, with reasons
    pairs.json                             manifest: run provenance, split sizes, filter config
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import polars as pl
import yaml

from alfa.data.filter import FilterConfig, filter_variants
from alfa.data.judge import verify_with_judge
from alfa.llm.embedder import Embedder
from alfa.stats import seeded_hash

log = logging.getLogger(__name__)

PAIR_TYPES = ("enhanced_vs_corrupted", "enhanced_vs_original", "original_vs_corrupted")
# A pair that reviewers reversed (`alfa review pull --on-reversed flip`) becomes a new pair of the mirror type:
# chosen and rejected swap, so its type must say what `chosen` now is (SFT takes `chosen` of
# original_vs_corrupted as a good question; a flipped one is corrupted_vs_original and is left out).
FLIPPED_PAIR_TYPES = {
    "enhanced_vs_corrupted": "corrupted_vs_enhanced",
    "enhanced_vs_original": "original_vs_enhanced",
    "original_vs_corrupted": "corrupted_vs_original",
}
ALL_PAIR_TYPES = PAIR_TYPES + tuple(FLIPPED_PAIR_TYPES.values())
SPLITS = ("train", "validation", "test")
MESSAGE = pl.Struct({"role": pl.String, "content": pl.String})
PAIR_SCHEMA = {
    "pair_id": pl.String,
    "qid": pl.String,
    "group_id": pl.String,
    "split": pl.String,
    "attribute": pl.String,
    "pair_type": pl.String,
    "prompt": pl.List(MESSAGE),
    "chosen": pl.List(MESSAGE),
    "rejected": pl.List(MESSAGE),
    "chosen_similarity": pl.Float64,
    "rejected_similarity": pl.Float64,
    "rewriter": pl.String,
    "prompt_template_hash": pl.String,
    "attribute_pack": pl.String,
}


@dataclass
class SplitConfig:
    """Fractions of the questions per split, cut at whole groups (posts): a group never spans two splits."""

    train: float = 0.8
    validation: float = 0.1
    test: float = 0.1
    seed: int = 0  # of the hash that orders the groups

    def __post_init__(self):
        total = self.train + self.validation + self.test
        if abs(total - 1.0) > 1e-6 or min(self.train, self.validation, self.test) < 0:
            raise ValueError(f"split fractions must be >= 0 and sum to 1, got {total:.3f}")


def pair_id(qid: str, attribute: str, pair_type: str, chosen: str, rejected: str) -> str:
    """Deterministic: the same pair built twice, anywhere, gets the same id."""
    return hashlib.sha256("\x1f".join([qid, attribute, pair_type, chosen, rejected]).encode()).hexdigest()[:16]


def split_groups(groups: list[str], sizes: dict[str, int], config: SplitConfig) -> dict[str, str]:
    """Assign whole groups (posts) to splits, each by its own hash bucket: a stable hash of the group id and
    the seed puts the group at a point on the 0..1 line, and the split's fraction is its stretch of the line.
    A post's split never depends on the other posts, so adding questions never moves a post already split,
    nor does a rewriter or filter setting. The fractions hold in expectation over posts (433 askdocs
    questions in 190 posts: train shares of 0.72-0.86 across seeds 0-4 for 0.8); pairs.json says what they came to.

    The one exception is a small set: a split with a fraction above 0 that no post falls into takes the post
    nearest its stretch of the line from a split holding two or more (a few dozen posts can leave test
    empty). The log says when that happens; such a split is too small to read anyway (lint warns).
    `sizes` (questions per group) only decides which split can spare a post."""
    bounds = {"train": (0.0, config.train), "validation": (config.train, config.train + config.validation)}
    bounds["test"] = (config.train + config.validation, 1.0)
    point = {g: int(seeded_hash(g, config.seed)[:16], 16) / 16**16 for g in sorted(set(groups))}
    assignment = {g: next((s for s in SPLITS if u < bounds[s][1]), "test") for g, u in point.items()}
    for split in SPLITS:
        low, high = bounds[split]
        if high <= low or split in assignment.values():
            continue
        members = {s: [g for g in assignment if assignment[g] == s] for s in SPLITS}
        donors = [g for g in assignment if len(members[assignment[g]]) >= 2]
        if not donors:
            continue
        # nearest to the stretch, then the smaller post, then the id: deterministic
        moved = min(donors, key=lambda g: (max(low - point[g], point[g] - high, 0.0), sizes[g], g))
        log.warning(
            "split %s: no post fell in its %.0f%% of the hash line (%d posts in all); moved post %s (%d question(s)) "
            "from %s into it",
            split,
            100 * (high - low),
            len(point),
            moved,
            sizes[moved],
            assignment[moved],
        )
        assignment[moved] = split
    return assignment


def question_splits(questions: pl.DataFrame, split: SplitConfig) -> dict[str, str]:
    """{group_id: split} of every post of the questions table. Sized by the questions table, not by the pairs: a
    post's split must not move when another rewriter or filter setting changes which of its questions yield pairs."""
    sizes = dict(questions.group_by("group_id").len().iter_rows())
    return split_groups(list(sizes), sizes, split)


def build_pairs(
    kept: pl.DataFrame, questions: pl.DataFrame, manifest: dict, assignment: dict[str, str]
) -> pl.DataFrame:
    """All pair types from the kept variants; one row per pair with TRL's prompt/chosen/rejected, each in its
    post's split (`assignment`: question_splits)."""
    q_by_id = {r["qid"]: r for r in questions.to_dicts()}
    variants: dict[tuple, dict] = {}
    for r in kept.to_dicts():
        variants.setdefault((r["qid"], r["attribute"]), {})[r["direction"]] = r
    rewriter = manifest["rewriter"]["model"]
    template = manifest["prompt_template_hash"]
    pack = f"{manifest['attribute_pack']['name']}@{manifest['attribute_pack']['digest']}"
    rows = []
    for (qid, attribute), d in sorted(variants.items()):
        q = q_by_id[qid]
        original = next(iter(d.values()))["source_question"]
        enhanced, corrupted = d.get("enhance"), d.get("corrupt")
        candidates = []
        if enhanced and corrupted:
            candidates.append(
                (
                    "enhanced_vs_corrupted",
                    enhanced["text"],
                    corrupted["text"],
                    enhanced["similarity"],
                    corrupted["similarity"],
                )
            )
        if enhanced:
            candidates.append(("enhanced_vs_original", enhanced["text"], original, enhanced["similarity"], 1.0))
        if corrupted:
            candidates.append(("original_vs_corrupted", original, corrupted["text"], 1.0, corrupted["similarity"]))
        for pair_type, chosen, rejected, cs, rs in candidates:
            rows.append(
                {
                    "pair_id": pair_id(qid, attribute, pair_type, chosen, rejected),
                    "qid": qid,
                    "group_id": q["group_id"],
                    "split": None,
                    "attribute": attribute,
                    "pair_type": pair_type,
                    "prompt": list(q["context"]),
                    "chosen": [{"role": "assistant", "content": chosen}],
                    "rejected": [{"role": "assistant", "content": rejected}],
                    "chosen_similarity": cs,
                    "rejected_similarity": rs,
                    "rewriter": rewriter,
                    "prompt_template_hash": template,
                    "attribute_pack": pack,
                }
            )
    for r in rows:
        r["split"] = assignment[r["group_id"]]
    return pl.DataFrame(rows, schema=PAIR_SCHEMA)


def example_texts(run_dir: Path) -> set[str]:
    """Few-shot example texts of the run's pack: a variant that copies one is not a rewrite."""
    path = run_dir / "attribute_pack.yaml"
    if not path.exists():
        return set()
    pack = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {
        ex[k]
        for a in pack["attributes"].values()
        for ex in a.get("examples", [])
        for k in ("question", "enhanced", "corrupted")
    }


# Keys of run.json that must agree for run dirs (shards) to be merged into one dataset.
MERGE_KEYS = (
    "attribute_pack",
    "directions",
    "standalone",
    "hindsight_for_enhance",
    "rewriter",
    "prompt_template_hash",
    "questions_digest",
    "groups",
)


def _sampling_settings(manifest: dict) -> dict:
    return {k: v for k, v in manifest.get("sample_again", {}).items() if k != "resampled"}


def load_runs(run_dirs: list[Path]) -> tuple[dict, pl.DataFrame, pl.DataFrame]:
    """One run dir, or the n shard run dirs of one job, as (manifest, variants, questions).

    Merging refuses run dirs made with different settings, a shard given twice, a missing shard and
    any question present twice, naming the dirs at fault: a merged dataset has no duplicated and no
    missing question.
    """
    manifests = []
    for d in run_dirs:
        for name in ("run.json", "variants.parquet", "questions.parquet"):
            if not (d / name).exists():
                raise FileNotFoundError(f"{d}/{name} is missing: is {d} a finished `alfa synthesize` run dir?")
        manifests.append(json.loads((d / "run.json").read_text()))
    first = manifests[0]
    if len(run_dirs) > 1:
        for d, m in zip(run_dirs[1:], manifests[1:]):
            for key in MERGE_KEYS:
                if m.get(key) != first.get(key):
                    raise ValueError(
                        f"cannot merge {run_dirs[0]} and {d}: they differ in {key!r} "
                        f"({first.get(key)!r} vs {m.get(key)!r})"
                    )
            if _sampling_settings(m) != _sampling_settings(first):
                raise ValueError(
                    f"cannot merge {run_dirs[0]} and {d}: they differ in 'sample_again' "
                    f"({_sampling_settings(first)!r} vs {_sampling_settings(m)!r}: --samples and --temperature)"
                )
        shards = [tuple(m["shard"]) if m.get("shard") else None for m in manifests]
        if None in shards:
            raise ValueError(f"cannot merge {run_dirs[shards.index(None)]}: it is not a shard (made without --shard)")
        counts = {n for _, n in shards}
        if len(counts) > 1:
            raise ValueError(f"cannot merge shards of different shard counts: {sorted(counts)}")
        n = counts.pop()
        seen: dict[int, Path] = {}
        for d, (i, _) in zip(run_dirs, shards):
            if i in seen:
                raise ValueError(f"shard {i}/{n} given twice: {seen[i]} and {d}")
            seen[i] = d
        missing = sorted(set(range(n)) - set(seen))
        if missing:
            raise ValueError(
                f"shard(s) {missing} of {n} missing: run `alfa synthesize ... --shard I/{n}` for them "
                "and pass every shard's run dir"
            )
    variants = pl.concat([pl.read_parquet(d / "variants.parquet") for d in run_dirs], how="diagonal_relaxed")
    questions = pl.concat([pl.read_parquet(d / "questions.parquet") for d in run_dirs])
    if len(run_dirs) == 1:
        return first, variants, questions
    dup = questions.filter(pl.col("qid").is_duplicated())["qid"].unique().to_list()
    if dup:
        raise ValueError(f"question(s) {dup[:5]} appear in more than one run dir")
    if questions.height != first["all_questions"]:
        raise ValueError(f"the shards hold {questions.height} questions, the job had {first['all_questions']}")
    manifest = {**first, "questions": questions.height, "shard": None, "merged_from": [str(d) for d in run_dirs]}
    manifest["stats"] = {k: sum(m["stats"][k] for m in manifests) for k in first["stats"]}
    if "sample_again" in first:  # the settings agree (checked above); the count is every shard's
        manifest["sample_again"] = {
            **first["sample_again"],
            "resampled": sum(m["sample_again"]["resampled"] for m in manifests),
        }
    if "standalone_fallbacks" in first:
        reasons = Counter()
        for m in manifests:
            reasons.update(m["standalone_fallbacks"]["reasons"])
        manifest["standalone_fallbacks"] = {"count": sum(reasons.values()), "reasons": dict(reasons)}
    return manifest, variants, questions


def make_pairs(
    run_dirs: Path | list[Path],
    out_dir: Path,
    filter_config: FilterConfig | None = None,
    split: SplitConfig | None = None,
    embedder: Embedder | None = None,
    judge=None,
    judge_sample: int | None = None,
    judge_keep: str = "agreed",
) -> pl.DataFrame:
    """Filter one synthesis run (or all shards of one) and write the pair dataset to `out_dir`.

    `judge`: a rewriter-like backend used as the LLM verifier (alfa.data.judge) on `judge_sample` pairs (all
    when None). `judge_keep="agreed"` drops the pairs it does not agree with in both orders; "all" keeps every
    pair and only measures agreement. Every verdict is kept in judge_verdicts.parquet.
    """
    run_dirs = [Path(d) for d in ([run_dirs] if isinstance(run_dirs, (str, Path)) else run_dirs)]
    out_dir = Path(out_dir)
    filter_config = filter_config or FilterConfig()
    split = split or SplitConfig()
    manifest, variants, questions = load_runs(run_dirs)
    run_dir = run_dirs[0]

    result = filter_variants(variants, filter_config, embedder or Embedder(), example_texts(run_dir))
    assignment = question_splits(questions, split)  # once: a small set's repair is logged once
    pairs = build_pairs(result.kept, questions, manifest, assignment)
    (out_dir / "data").mkdir(parents=True, exist_ok=True)
    judged = None
    if judge is not None:
        pairs, judged = verify_with_judge(pairs, run_dir, judge, out_dir, judge_sample, judge_keep, split.seed)

    write_split_files(pairs, out_dir)
    result.rejected.write_parquet(out_dir / "rejected_variants.parquet")
    result.kept.write_parquet(out_dir / "kept_variants.parquet")
    (out_dir / "filter_report.json").write_text(json.dumps(result.pass_rates, indent=2))
    _save_hf(pairs, out_dir)
    split_sizes = {s: pairs.filter(pl.col("split") == s).height for s in SPLITS}
    question_split_sizes = {s: sum(1 for g in questions["group_id"] if assignment[g] == s) for s in SPLITS}
    (out_dir / "pairs.json").write_text(
        json.dumps(
            {
                "run_dirs": [str(d) for d in run_dirs],
                "run": manifest,
                "filter": asdict(filter_config),
                "split": asdict(split),
                "pairs": pairs.height,
                "split_sizes": split_sizes,
                "question_split_sizes": question_split_sizes,
                "judge": judged,
                "variants": variants.height,
                "kept_variants": result.kept.height,
                "rejected_variants": result.rejected.height,
            },
            indent=2,
        )
    )
    log.info(
        "pairs: %d variants -> %d kept, %d rejected (reasons in %s) -> %d pairs %s -> %s",
        variants.height,
        result.kept.height,
        result.rejected.height,
        out_dir / "rejected_variants.parquet",
        pairs.height,
        split_sizes,
        out_dir,
    )
    return pairs


def data_digest(pairs_dir: Path) -> str:
    """Identity of a pairs dir's data (its split files' bytes): reports (lint, review) carry it, and the card
    includes a report only when it matches, so a report from an earlier build never describes new data."""
    h = hashlib.sha256()
    for f in sorted((Path(pairs_dir) / "data").glob("*.parquet")):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def write_split_files(pairs: pl.DataFrame, pairs_dir: Path) -> None:
    """PAIRS_DIR/data/{train,validation,test}.parquet, one per split (an empty split gets an empty file):
    the layout `alfa lint`, `alfa card`, `alfa train` and `load_dataset("parquet", data_dir=...)` read."""
    (Path(pairs_dir) / "data").mkdir(parents=True, exist_ok=True)
    for s in SPLITS:
        pairs.filter(pl.col("split") == s).write_parquet(Path(pairs_dir) / "data" / f"{s}.parquet")


def _save_hf(pairs: pl.DataFrame, out_dir: Path) -> None:
    import datasets

    # datasets cannot reload a saved empty split, so a split with no pairs (small data) is left out
    # here; it still exists as an empty Parquet file, and `alfa lint` reports it.
    parts = {s: pairs.filter(pl.col("split") == s) for s in SPLITS}
    dd = datasets.DatasetDict({s: datasets.Dataset(df.to_arrow()) for s, df in parts.items() if df.height})
    dd.save_to_disk(str(out_dir / "hf_dataset"))


def load_pairs(pairs_dir: Path) -> pl.DataFrame:
    pairs_dir = Path(pairs_dir)
    files = [pairs_dir / "data" / f"{s}.parquet" for s in SPLITS]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise FileNotFoundError(f"{pairs_dir}: missing {missing}; build it with `alfa pairs RUN_DIR -o {pairs_dir}`")
    return pl.concat([pl.read_parquet(f) for f in files])
