"""The card of a pairs dir that a method made rather than the rewriting pipeline (UoT's question plans, CollabLLM's
multiturn-aware reward, flawed problems): PAIRS_DIR/README.md from alfa/data/templates/method_pairs_card.md.j2,
with a plot of how far each chosen reply's score lies above its rejected one.

Such a dir holds the same split files as any other (`alfa lint`, `alfa train` and `alfa review push` read it
unchanged) and a manifest `pairs.json` with a `method` key, written by alfa.methods.scored_pairs:

    method                  short name ("uot", "collab", "flaws")
    made_by                 the command that made it
    description             what a pair is, in a sentence or two
    attribute_definitions   {attribute: what a reviewer judges}, shown in Argilla beside every record
    roles, settings         models and options of the run
    source                  where its cases or problems came from
    split, splits           the split fractions (by group) and the resulting sizes

`alfa card` writes this card when the manifest has a `method` key, the pipeline's card otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from alfa.card_templates import render
from alfa.data.card_common import PHI_STATEMENT, current_report, random_pair_rows, review_section, size_category
from alfa.data.pairs import SPLITS, load_pairs


def is_method_pairs(pairs_dir: Path) -> bool:
    manifest = Path(pairs_dir) / "pairs.json"
    return manifest.exists() and "method" in json.loads(manifest.read_text())


def score_rows(pairs: pl.DataFrame) -> list[list]:
    """Per pair type: pairs, pairs with both scores, mean chosen and rejected score, median and smallest gap."""
    rows = []
    for t in sorted(pairs["pair_type"].unique().to_list()):
        sub = pairs.filter(pl.col("pair_type") == t)
        scored = sub.drop_nulls(["chosen_score", "rejected_score"]) if "chosen_score" in sub.columns else sub.head(0)
        if scored.height:
            gap = scored["chosen_score"] - scored["rejected_score"]
            cells = [
                f"{scored['chosen_score'].mean():.3f}",
                f"{scored['rejected_score'].mean():.3f}",
                f"{gap.median():.3f}",
                f"{gap.min():.3f}",
            ]
        else:
            cells = ["-"] * 4
        rows.append([t, sub.height, scored.height, *cells])
    return rows


def plot_score_gaps(pairs: pl.DataFrame, path: Path) -> Path | None:
    """Histogram of chosen score - rejected score by pair type; None when no pair carries both scores."""
    if "chosen_score" not in pairs.columns:
        return None
    scored = pairs.drop_nulls(["chosen_score", "rejected_score"])
    if not scored.height:
        return None
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    for t in sorted(scored["pair_type"].unique().to_list()):
        sub = scored.filter(pl.col("pair_type") == t)
        ax.hist(
            (sub["chosen_score"] - sub["rejected_score"]).to_list(), bins=20, alpha=0.6, label=f"{t} ({sub.height})"
        )
    ax.set_xlabel("chosen score - rejected score")
    ax.set_ylabel("pairs")
    ax.set_title("How far each chosen reply scored above its rejected one")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_method_card(
    pairs_dir: Path, license: str = "cc-by-4.0", pretty_name: str | None = None, source_description: str | None = None
) -> Path:
    """Write PAIRS_DIR/README.md for a pairs dir made by a method; returns its path."""
    from huggingface_hub import DatasetCard, DatasetCardData

    pairs_dir = Path(pairs_dir)
    manifest = json.loads((pairs_dir / "pairs.json").read_text())
    pairs = load_pairs(pairs_dir)
    split_sizes = {s: pairs.filter(pl.col("split") == s).height for s in SPLITS}
    plot = plot_score_gaps(pairs, pairs_dir / "plots" / "score_gaps.png")
    data = DatasetCardData(
        license=license,
        language=["en"],
        pretty_name=pretty_name or f"alfa {manifest['method']} pairs",
        tags=["dpo", "preference", "alfa", "question-asking", manifest["method"]],
        task_categories=["text-generation"],
        size_categories=[size_category(pairs.height)],
        configs=[
            {
                "config_name": "default",
                "data_files": [{"split": s, "path": f"data/{s}.parquet"} for s in SPLITS if split_sizes[s]],
            }
        ],
    )
    text = render(
        "method_pairs_card.md.j2",
        front_matter=data.to_yaml(),
        pretty_name=data.pretty_name,
        m=manifest,
        phi_statement=PHI_STATEMENT,
        source=source_description or manifest.get("source") or "See pairs.json.",
        split_sizes=split_sizes,
        score_rows=score_rows(pairs),
        plot=plot.relative_to(pairs_dir).as_posix() if plot else None,
        random_pairs=random_pair_rows(pairs),
        settings_json=json.dumps(manifest.get("settings", {}), indent=2),
        review_text=review_section(pairs_dir),
        lint=current_report(pairs_dir, "lint_report.json"),
    )
    path = pairs_dir / "README.md"
    DatasetCard(text).save(path)
    return path
