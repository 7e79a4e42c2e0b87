"""Stage 6, card: a Hugging Face dataset card (PAIRS_DIR/README.md) plus plots in PAIRS_DIR/plots/.

The YAML front matter is built with huggingface_hub's own DatasetCardData, so the Hub (and
`DatasetCard.load`) parse it. The body reports what a reader of a preference set needs and other
tools leave out: counts per attribute and pair type, filter pass rates with the reasons, the
rewriter, prompt and pack hashes, lint findings, and a personal-health-information statement.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from alfa.pairs import PAIR_TYPES, SPLITS, load_pairs

PHI_STATEMENT = (
    "**Personal health information.** The patient posts in this dataset describe health conditions. "
    "alfa does not remove personal health information (PHI): whatever the source text contains, this "
    "dataset contains. Before sharing it, confirm the source's licence and consent terms allow it, check "
    "it for names, dates, places and other identifiers, and do not use it to make decisions about any "
    "individual. Generated questions are not medical advice."
)


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                        (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "n>1M"


def make_plots(pairs: pl.DataFrame, pairs_dir: Path, filter_report: dict, bounds: dict) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    plots = pairs_dir / "plots"
    plots.mkdir(exist_ok=True)
    out = []

    # 1. Similarity of each variant to its original, by direction, kept vs rejected: where the bounds bite.
    kept = pl.read_parquet(pairs_dir / "kept_variants.parquet") if (pairs_dir / "kept_variants.parquet").exists() else None
    rej = pl.read_parquet(pairs_dir / "rejected_variants.parquet")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
    for ax, direction in zip(axes, ("enhance", "corrupt")):
        for df, label, color in ((kept, "kept", "tab:green"), (rej, "rejected", "tab:red")):
            if df is None or "similarity" not in df.columns:
                continue
            vals = df.filter(pl.col("direction") == direction)["similarity"].drop_nulls().to_list()
            if vals:
                ax.hist(vals, bins=20, range=(0, 1), alpha=0.6, label=f"{label} ({len(vals)})", color=color)
        for x in (bounds[f"{direction}_min_similarity"], bounds[f"{direction}_max_similarity"]):
            ax.axvline(x, color="black", linestyle="--", linewidth=1)  # the filter's bounds
        ax.set_title(f"{direction}: similarity to original (bounds dashed)")
        ax.set_xlabel("cosine similarity (MiniLM)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    axes[0].set_ylabel("variants")
    fig.tight_layout()
    out.append(plots / "similarity_by_direction.png")
    fig.savefig(out[-1], dpi=110)
    plt.close(fig)

    # 2. Pairs per attribute and pair type.
    attributes = sorted(pairs["attribute"].unique().to_list()) or sorted(filter_report)
    fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(attributes)), 3.2))
    bottom = [0] * len(attributes)
    for t in PAIR_TYPES:
        counts = [pairs.filter((pl.col("attribute") == a) & (pl.col("pair_type") == t)).height for a in attributes]
        ax.bar(attributes, counts, bottom=bottom, label=t)
        bottom = [b + c for b, c in zip(bottom, counts)]
    ax.set_ylabel("pairs")
    ax.set_title("Pairs per attribute and pair type")
    ax.legend(fontsize=8)
    plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
    fig.tight_layout()
    out.append(plots / "pairs_per_attribute.png")
    fig.savefig(out[-1], dpi=110)
    plt.close(fig)

    # 3. Filter pass rate per attribute and direction.
    names = sorted(filter_report)
    fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(names)), 3.2))
    width = 0.4
    for k, direction in enumerate(("enhance", "corrupt")):
        rates = [filter_report[a].get(direction, {}).get("rate", 0) for a in names]
        ax.bar([i + (k - 0.5) * width for i in range(len(names))], rates, width, label=direction)
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of variants kept")
    ax.set_title("Filter pass rate")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.append(plots / "pass_rate.png")
    fig.savefig(out[-1], dpi=110)
    plt.close(fig)
    return out


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _fmt(x: float | None, spec: str = ".2f") -> str:
    return "n/a" if x is None else format(x, spec)


def review_section(pairs_dir: Path) -> str:
    """The card's account of `alfa review pull`: verdicts, agreement, and what changed in the data."""
    path = pairs_dir / "review_report.json"
    if not path.exists():
        return "No human review yet (`alfa review push` / `alfa review pull` add one)."
    r = json.loads(path.read_text())
    pvh, policy = r["pipeline_vs_humans"], r["policy"]
    cells = _table(["attribute", "pair type", "reviewed", "agree", "reversed", "tie", "split", "agreement"],
                   [[c["attribute"], c["pair_type"], c["reviewed"], c["agree"], c["reversed"], c["tie"], c["split"],
                     f"{c['agreement']:.0%}"] for c in pvh["by_attribute_and_pair_type"]])
    between = []
    for question, a in r["between_annotators"].items():
        kappas = "; ".join(f"{' & '.join(k['annotators'])}: {_fmt(k['kappa'])} (n={k['records']})"
                           for k in a["cohen_kappa"]) or "n/a"
        between.append([question, a["records_with_2plus"], a["annotators"], _fmt(a["raw_agreement"], ".0%"),
                        _fmt(a["krippendorff_alpha"]), kappas])
    return f"""People reviewed a stratified sample of pairs blind (the order of the two questions random per pair)
in Argilla ({r['source']}): {r['reviewed']} of {r['records']} pushed records have at least one submitted answer.
A pair's verdict is the majority of its answers, relative to the pipeline's choice (a 2-2 vote is *split*).

Pipeline vs humans: humans agree with the pipeline's chosen question on {pvh['agree']} of {pvh['reviewed']}
reviewed pairs ({_fmt(pvh['agreement'], '.0%')}).

{cells}

Between annotators (records with two or more answers):

{_table(['question', 'records', 'annotators', 'raw agreement', "Krippendorff's alpha", "Cohen's kappa per pair"], between)}

What the review changed (policy: reversed -> {policy['on_reversed']}, tie -> {policy['on_tie']}, split ->
{policy['on_split']}, drop when reviewers say the two differ in more than the attribute: {policy['drop_confounded']},
drop when {policy['flag_quorum']}+ reviewer(s) tick a problem): {r['pairs_out']} of {r['pairs_in']} pairs kept,
{r['flipped']} flipped, {r['dropped']} dropped (`review/dropped.parquet`, each with its reason). Every row says who
decided it (`decided_by`: `pipeline` or `humans: NAMES`) with `review_verdict`, `review_action`, `review_reason`;
every answer is in `review/answers.parquet`."""


def write_card(pairs_dir: Path, license: str = "cc-by-4.0", pretty_name: str | None = None,
               source_description: str | None = None) -> Path:
    """Write PAIRS_DIR/README.md and PAIRS_DIR/plots/*.png. Returns the README path."""
    from huggingface_hub import DatasetCard, DatasetCardData

    pairs_dir = Path(pairs_dir)
    pairs = load_pairs(pairs_dir)
    info = json.loads((pairs_dir / "pairs.json").read_text())
    filter_report = json.loads((pairs_dir / "filter_report.json").read_text())
    lint_path = pairs_dir / "lint_report.json"
    lint_findings = json.loads(lint_path.read_text()) if lint_path.exists() else None
    run = info["run"]
    plots = make_plots(pairs, pairs_dir, filter_report, info["filter"])

    split_sizes = {s: pairs.filter(pl.col("split") == s).height for s in SPLITS}  # after a review, not pairs.json's
    splits_present = [s for s in SPLITS if split_sizes[s] > 0]
    data = DatasetCardData(
        license=license,
        language=["en"],
        pretty_name=pretty_name or f"alfa preference pairs ({run['attribute_pack']['name']})",
        tags=["dpo", "preference", "alfa", "question-asking", "clinical", "synthetic"],
        task_categories=["text-generation"],
        size_categories=[_size_category(pairs.height)],
        configs=[{"config_name": "default",
                  "data_files": [{"split": s, "path": f"data/{s}.parquet"} for s in splits_present]}],
    )

    count_rows = []
    for a in sorted(pairs["attribute"].unique().to_list()):
        sub = pairs.filter(pl.col("attribute") == a)
        count_rows.append([a] + [sub.filter(pl.col("pair_type") == t).height for t in PAIR_TYPES] + [sub.height])
    count_rows.append(["**total**"] + [pairs.filter(pl.col("pair_type") == t).height for t in PAIR_TYPES]
                      + [pairs.height])
    rate_rows = []
    for a, dirs in filter_report.items():
        for d, r in dirs.items():
            reasons = ", ".join(f"{k} {v}" for k, v in sorted(r["reasons"].items(), key=lambda kv: -kv[1]))
            rate_rows.append([a, d, r["total"], r["kept"], f"{r['rate']:.0%}", reasons or "-"])
    stats = run["stats"]
    if lint_findings is None:
        lint_text = "Not linted yet: run `alfa lint` on this folder before training."
    elif not lint_findings:
        lint_text = "`alfa lint` passed every check."
    else:
        lint_text = "\n".join(f"- **{f['severity']}** `{f['check']}`: {f['message']}" for f in lint_findings)
    rel = [p.relative_to(pairs_dir).as_posix() for p in plots]
    judge_text = "No LLM judge was used (`alfa pairs --judge ...` adds one)."
    if info.get("judge"):
        j = info["judge"]
        report = json.loads((pairs_dir / "judge_report.json").read_text())
        judge_rows = [[a, t, r["pairs"], r["kept"], f"{r['rate']:.0%}",
                       ", ".join(f"{k} {v}" for k, v in sorted(r["decisions"].items(), key=lambda kv: -kv[1]))]
                      for a, d in report.items() for t, r in d.items()]
        judge_text = (f"Judge `{j['judge']}` ({j['backend']}) compared each pair on its attribute in both orders; "
                      f"a pair was kept only if the judge preferred its chosen side both times: {j['pairs_kept']} of "
                      f"{j['pairs_before']} kept. Verdicts and rationales: `judge_verdicts.parquet`.\n\n"
                      + _table(["attribute", "pair type", "pairs", "kept", "pass rate", "decisions"], judge_rows))

    review_text = review_section(pairs_dir)
    body = f"""
# {data.pretty_name}

Preference pairs for teaching a language model to ask better follow-up questions, built with
alfa following the ALFA method (Li et al. 2025, "Aligning LLMs to Ask Good
Questions: A Case Study in Clinical Reasoning"): each original follow-up question was rewritten along one
attribute at a time into an *enhanced* and a *corrupted* variant, the variants were verified and filtered,
and each question and attribute yields up to three pairs.

{PHI_STATEMENT}

## Source
{source_description or run.get('questions_source') or 'See pairs.json.'}
{run['questions']} questions; splits are cut by group (post), so no post appears in two splits.

## Structure
Conversational preference format, ready for TRL's `DPOTrainer` and `RewardTrainer`:
`prompt` (the patient's post and earlier turns as chat messages), `chosen` and `rejected` (one assistant
message each: a follow-up question). Provenance columns: `pair_id` (deterministic), `qid`, `group_id`,
`split`, `attribute`, `pair_type`, `chosen_similarity` / `rejected_similarity` (MiniLM cosine similarity of
each side to the original question; 1.0 for the original itself), `rewriter`, `prompt_template_hash`,
`attribute_pack`.

```python
from datasets import load_dataset
ds = load_dataset("parquet", data_dir="data")  # or datasets.load_from_disk("hf_dataset")
```

| split | pairs |
|---|---|
""" + "\n".join(f"| {s} | {split_sizes[s]} |" for s in SPLITS) + f"""

## Pairs per attribute and pair type
{_table(['attribute', *PAIR_TYPES, 'all'], count_rows)}

![pairs per attribute]({rel[1]})

## How the variants were made
- Rewriter: `{run['rewriter']['model']}` ({run['rewriter']['backend']} backend), sampling `{json.dumps(run['rewriter']['sampling'])}`
- Attribute pack: `{run['attribute_pack']['name']}` (digest `{run['attribute_pack']['digest']}`): {', '.join(run['attribute_pack']['attributes'])}
- Prompt template hash: `{run['prompt_template_hash']}`; standalone restatement first: {run['standalone']}; hindsight shown to enhance rewrites: {run['hindsight_for_enhance']}
- Calls: {stats['requests']} requests, {stats['calls_made']} model calls, {stats['cache_hits']} answered from the cache, {stats['failed']} failed

## Verification and filtering
Each reply must hold exactly one question (no preamble, refusal, echo of the original, copy of a few-shot
example, or second question) whose similarity to the original lies within the direction's bounds
(enhance {info['filter']['enhance_min_similarity']}-{info['filter']['enhance_max_similarity']},
corrupt {info['filter']['corrupt_min_similarity']}-{info['filter']['corrupt_max_similarity']}); enhanced and
corrupted variants of one question that are near-duplicates are both dropped.
{info['kept_variants']} of {info['variants']} variants kept. Every rejected variant and its reason is in
`rejected_variants.parquet`.

{_table(['attribute', 'direction', 'variants', 'kept', 'pass rate', 'rejection reasons'], rate_rows)}

![pass rate]({rel[2]})
![similarity by direction]({rel[0]})

## LLM verifier
{judge_text}

## Human review
{review_text}

## Lint
{lint_text}

## Intended use and limits
For research on question-asking alignment (DPO, reward modelling). Variants are machine-written and only
spot-checked by people where a review is reported; a small rewriter yields few, simple variants. Not for
clinical use.
"""
    card = DatasetCard(f"---\n{data.to_yaml()}\n---\n{body}")
    path = pairs_dir / "README.md"
    card.save(path)
    return path
