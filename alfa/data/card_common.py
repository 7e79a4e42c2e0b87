"""What every card alfa writes shares (the pipeline's dataset card, alfa.data.card; a method's pairs card,
alfa.data.method_card): the personal-health-information statement, the size category, the ten pairs picked at
random, the reports of this folder (lint, review) that still describe its data, and the card's settings (licence,
title, source), kept from one `alfa card` to the next. Both card modules import this one, never each other."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from alfa.card_templates import fmt, render
from alfa.data.pairs import data_digest
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


def random_pair_rows(pairs: pl.DataFrame, n: int = 10) -> list[list]:
    """`n` pairs ranked by a hash of their id: a fixed, unbiased sample for the card."""
    rank = pl.col("pair_id").map_elements(seeded_hash, return_dtype=pl.String)
    picked = pairs.with_columns(rank.alias("_rank")).sort("_rank").head(n).sort(["attribute", "pair_type"])

    def cell(messages) -> str:
        return messages[-1]["content"].replace("|", "\\|").replace("\n", " ")

    return [[r["attribute"], r["pair_type"], cell(r["chosen"]), cell(r["rejected"])] for r in picked.to_dicts()]


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
