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

from alfa.data.card_templates import fmt, render
from alfa.data.pairs import FLIPPED_PAIR_TYPES, PAIR_TYPES, SPLITS, data_digest, load_pairs
from alfa.stats import seeded_hash

PHI_STATEMENT = (
    "**Personal health information.** The patient posts in this dataset describe health conditions. "
    "alfa does not remove personal health information (PHI): whatever the source text contains, this "
    "dataset contains. Before sharing it, confirm the source's licence and consent terms allow it, check "
    "it for names, dates, places and other identifiers, and do not use it to make decisions about any "
    "individual. Generated questions are not medical advice."
)


def size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
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


def review_section(pairs_dir: Path) -> str:
    """The card's account of `alfa review pull`: verdicts, agreement, and what changed in the data."""
    r = current_report(pairs_dir, "review_report.json")
    if r is None:
        return "No human review yet (`alfa review push` / `alfa review pull` add one)."
    if r == "stale":
        return (
            "The review report in this folder was made for other data (an earlier build): it is left out. "
            "Pull the review again (`alfa review pull`) for this data."
        )
    cells = [
        [
            c["attribute"],
            c["pair_type"],
            c["reviewed"],
            c["agree"],
            c["reversed"],
            c["tie"],
            c["split"],
            f"{c['agreement']:.0%}",
        ]
        for c in r["pipeline_vs_humans"]["by_attribute_and_pair_type"]
    ]
    between = []
    for question, a in r["between_annotators"].items():
        kappas = (
            "; ".join(f"{' & '.join(k['annotators'])}: {fmt(k['kappa'])} (n={k['records']})" for k in a["cohen_kappa"])
            or "n/a"
        )
        between.append(
            [
                question,
                a["records_with_2plus"],
                a["annotators"],
                fmt(a["raw_agreement"], ".0%"),
                fmt(a["krippendorff_alpha"]),
                kappas,
            ]
        )
    return render("review_section.md.j2", review=r, review_cells=cells, between_rows=between).rstrip("\n")


def current_report(pairs_dir: Path, name: str) -> dict | list | str | None:
    """A report of this folder (lint_report.json, review_report.json) if it describes the data now here,
    "stale" if it was made for other data (or carries no digest), None if there is none."""
    path = pairs_dir / name
    if not path.exists():
        return None
    report = json.loads(path.read_text())
    if not isinstance(report, dict) or report.get("data_digest") != data_digest(pairs_dir):
        return "stale"
    return report


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


def random_pair_rows(pairs: pl.DataFrame, n: int = 10) -> list[list]:
    """`n` pairs ranked by a hash of their id: a fixed, unbiased sample for the card."""
    rank = pl.col("pair_id").map_elements(seeded_hash, return_dtype=pl.String)
    picked = pairs.with_columns(rank.alias("_rank")).sort("_rank").head(n).sort(["attribute", "pair_type"])

    def cell(messages) -> str:
        return messages[-1]["content"].replace("|", "\\|").replace("\n", " ")

    return [[r["attribute"], r["pair_type"], cell(r["chosen"]), cell(r["rejected"])] for r in picked.to_dicts()]


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


DEFAULT_LICENSE = "cc-by-4.0"
CARD_SETTINGS = "card.json"  # what the card was last written with: a rerun keeps it unless told otherwise
# Licence ids the Hub takes besides SPDX ones (its lowercase SPDX ids are checked by packaging.licenses).
HUB_ONLY_LICENSES = {"other", "unknown", "openrail", "openrail++", "bigscience-openrail-m", "creativeml-openrail-m",
                     "bigscience-bloom-rail-1.0", "llama2", "llama3", "llama3.1", "llama3.2", "llama3.3", "gemma"}  # fmt: skip


def check_license(license: str) -> str:
    """`license` as the Hub spells it (lowercase), or a ValueError saying what a licence id looks like."""
    from packaging.licenses import InvalidLicenseExpression, canonicalize_license_expression

    if license.lower() in HUB_ONLY_LICENSES:
        return license.lower()
    try:
        canonicalize_license_expression(license)
    except InvalidLicenseExpression:
        raise ValueError(
            f"--license {license!r} is not a licence id: give an SPDX id as the Hub spells it (apache-2.0, mit, "
            "cc-by-4.0, cc-by-nc-sa-4.0, ...; follow your source data) or 'other'"
        ) from None
    return license.lower()


def card_settings(pairs_dir: Path, license: str | None, pretty_name: str | None, source: str | None) -> dict:
    """Each setting as given, else as the card was last written (card.json, or an older card's front matter),
    else the default: a rerun of `alfa card` keeps the licence, title and source a person chose."""
    saved, readme = pairs_dir / CARD_SETTINGS, pairs_dir / "README.md"
    before = json.loads(saved.read_text()) if saved.exists() else {}
    if not before and readme.exists():
        from huggingface_hub import DatasetCard

        data = DatasetCard.load(readme).data
        before = {"license": data.license, "pretty_name": data.pretty_name}
    given = {"license": license, "pretty_name": pretty_name, "source_description": source}
    settings = {k: v if v is not None else before.get(k) for k, v in given.items()}
    settings["license"] = check_license(settings["license"] or DEFAULT_LICENSE)
    return settings


def write_card(
    pairs_dir: Path, license: str | None = None, pretty_name: str | None = None, source_description: str | None = None
) -> Path:
    """Write PAIRS_DIR/README.md (from alfa/data/templates/dataset_card.md.j2) and PAIRS_DIR/plots/*.png.
    A setting left None keeps what the card was last written with (card.json). Returns the README path."""
    from huggingface_hub import DatasetCard

    from alfa.data.method_card import is_method_pairs, write_method_card

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
