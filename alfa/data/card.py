"""Stage 6, card: a Hugging Face dataset card (PAIRS_DIR/README.md) plus plots in PAIRS_DIR/plots/.

The wording lives in the template alfa/data/templates/dataset_card.md.j2; this module computes what
fills it. The YAML front matter is built with huggingface_hub's own DatasetCardData, so the Hub (and
`DatasetCard.load`) parse it. The body reports what a reader of a preference set needs and other
tools leave out: counts per attribute and pair type, filter pass rates with the reasons, the
rewriter, prompt and pack hashes, lint findings, and a personal-health-information statement.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from alfa.card_templates import render
from alfa.data.card_common import (
    CARD_SETTINGS,
    PHI_STATEMENT,
    card_settings,
    current_report,
    random_pair_rows,
    review_section,
    size_category,
)
from alfa.data.method_card import is_method_pairs, write_method_card
from alfa.data.pairs import FLIPPED_PAIR_TYPES, PAIR_TYPES, SPLITS, load_pairs


def make_plots(pairs: pl.DataFrame, pairs_dir: Path, filter_report: dict, bounds: dict) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    plots = pairs_dir / "plots"
    plots.mkdir(exist_ok=True)
    out = []

    # 1. Similarity of each variant to its original, by direction, kept vs rejected: where the bounds bite.
    kept = (
        pl.read_parquet(pairs_dir / "kept_variants.parquet") if (pairs_dir / "kept_variants.parquet").exists() else None
    )
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
    for t in pair_types_present(pairs):
        counts = [pairs.filter((pl.col("attribute") == a) & (pl.col("pair_type") == t)).height for a in attributes]
        ax.bar(attributes, counts, bottom=bottom, label=t)
        bottom = [b + c for b, c in zip(bottom, counts)]
    ax.set_ylabel("pairs")
    ax.set_title("Pairs per attribute and pair type")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the bars, never over them
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


def pair_types_present(pairs: pl.DataFrame) -> list[str]:
    """The three pair types, and the flipped ones where a review made them."""
    present = set(pairs["pair_type"].unique().to_list())
    return list(PAIR_TYPES) + [t for t in FLIPPED_PAIR_TYPES.values() if t in present]


def count_rows(pairs: pl.DataFrame) -> list[list]:
    """Pairs per attribute and pair type, with a total row."""
    types, rows = pair_types_present(pairs), []
    for a in sorted(pairs["attribute"].unique().to_list()):
        sub = pairs.filter(pl.col("attribute") == a)
        rows.append([a] + [sub.filter(pl.col("pair_type") == t).height for t in types] + [sub.height])
    rows.append(["**total**"] + [pairs.filter(pl.col("pair_type") == t).height for t in types] + [pairs.height])
    return rows


def filter_rate_rows(filter_report: dict) -> list[list]:
    """Variants kept per attribute and direction, with the rejection reasons, most frequent first."""
    rows = []
    for a, dirs in filter_report.items():
        for d, r in dirs.items():
            reasons = ", ".join(f"{k} {v}" for k, v in sorted(r["reasons"].items(), key=lambda kv: -kv[1]))
            rows.append([a, d, r["total"], r["kept"], f"{r['rate']:.0%}", reasons or "-"])
    return rows


def judge_rows(pairs_dir: Path) -> list[list]:
    """The LLM verifier's agreement per attribute and pair type, with its decisions."""
    report = json.loads((pairs_dir / "judge_report.json").read_text())
    return [
        [
            a,
            t,
            r["pairs"],
            r["agree"],
            f"{r['rate']:.0%}",
            ", ".join(f"{k} {v}" for k, v in sorted(r["decisions"].items(), key=lambda kv: -kv[1])),
        ]
        for a, d in report["by_type"].items()
        for t, r in d.items()
    ]


def card_data(pairs: pl.DataFrame, run: dict, license: str, pretty_name: str | None, splits_present: list[str]):
    """The YAML front matter, built with huggingface_hub's own DatasetCardData so the Hub parses it."""
    from huggingface_hub import DatasetCardData

    return DatasetCardData(
        license=license,
        language=["en"],
        pretty_name=pretty_name or f"alfa preference pairs ({run['attribute_pack']['name']})",
        tags=["dpo", "preference", "alfa", "question-asking", "clinical", "synthetic"],
        task_categories=["text-generation"],
        size_categories=[size_category(pairs.height)],
        configs=[
            {
                "config_name": "default",
                "data_files": [{"split": s, "path": f"data/{s}.parquet"} for s in splits_present],
            }
        ],
    )


def write_card(
    pairs_dir: Path, license: str | None = None, pretty_name: str | None = None, source_description: str | None = None
) -> Path:
    """Write PAIRS_DIR/README.md (from alfa/data/templates/dataset_card.md.j2) and PAIRS_DIR/plots/*.png.
    A setting left None keeps what the card was last written with (card.json). Returns the README path."""
    from huggingface_hub import DatasetCard

    pairs_dir = Path(pairs_dir)
    settings = card_settings(pairs_dir, license, pretty_name, source_description)
    (pairs_dir / CARD_SETTINGS).write_text(json.dumps(settings, indent=2))
    license, pretty_name, source_description = (
        settings["license"],
        settings["pretty_name"],
        settings["source_description"],
    )
    if is_method_pairs(pairs_dir):  # made by a method (UoT, CollabLLM, flaws), not by the rewriting pipeline
        return write_method_card(pairs_dir, license, pretty_name, source_description)
    pairs = load_pairs(pairs_dir)
    info = json.loads((pairs_dir / "pairs.json").read_text())
    filter_report = json.loads((pairs_dir / "filter_report.json").read_text())
    run, judge = info["run"], info.get("judge")
    plots = make_plots(pairs, pairs_dir, filter_report, info["filter"])
    split_sizes = {s: pairs.filter(pl.col("split") == s).height for s in SPLITS}  # after a review, not pairs.json's
    data = card_data(pairs, run, license, pretty_name, [s for s in SPLITS if split_sizes[s] > 0])
    text = render(
        "dataset_card.md.j2",
        front_matter=data.to_yaml(),
        pretty_name=data.pretty_name,
        phi_statement=PHI_STATEMENT,
        source=source_description or run.get("questions_source") or "See pairs.json.",
        run=run,
        split_sizes=split_sizes,
        pair_types=pair_types_present(pairs),
        count_rows=count_rows(pairs),
        random_pairs=random_pair_rows(pairs),
        plots=[p.relative_to(pairs_dir).as_posix() for p in plots],
        bounds=info["filter"],
        kept_variants=info["kept_variants"],
        variants=info["variants"],
        rate_rows=filter_rate_rows(filter_report),
        judge=judge if judge and "agreement" in judge else None,  # a judge of an alfa before 2026-12 is left out
        judge_rows=judge_rows(pairs_dir) if judge and "agreement" in judge else [],
        review_text=review_section(pairs_dir),
        lint=current_report(pairs_dir, "lint_report.json"),
        question_split_sizes=info.get("question_split_sizes"),
        split=info["split"],
        groups=run.get("groups", "unknown"),
        fallbacks=run.get("standalone_fallbacks"),
    )
    path = pairs_dir / "README.md"
    DatasetCard(text).save(path)
    return path
