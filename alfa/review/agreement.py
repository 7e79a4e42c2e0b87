"""Agreement figures for human review: per-pair verdicts and agreement between annotators.

Plain functions over plain lists, so they can be checked by hand (tests/test_agreement.py does).
Cohen's kappa comes from scikit-learn, Krippendorff's alpha from the `krippendorff` package.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import polars as pl

# A pair's human verdict, relative to the pipeline's choice.
AGREE, REVERSED, TIE, SPLIT = "agree", "reversed", "tie", "split"


def relative_label(label: str, chosen_side: str) -> str:
    """Turn a blind answer (A / B / tie) into one relative to the pipeline: agree / reversed / tie."""
    if label == "tie":
        return TIE
    return AGREE if label == chosen_side else REVERSED


def majority(labels: list[str]) -> str:
    """The most common label; "split" when two labels share the top count. A "tie" answer stays a tie."""
    if not labels:
        raise ValueError("majority of no labels")
    counts = Counter(labels).most_common()
    if len(counts) > 1 and counts[0][1] == counts[1][1]:
        return SPLIT
    return counts[0][0]


def _none_if_nan(x: float) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


def cohen_kappa(a: list[str], b: list[str]) -> float | None:
    """Cohen's kappa of two annotators over the same items; None where it is undefined (one label only)."""
    from sklearn.metrics import cohen_kappa_score

    if len(set(a) | set(b)) < 2:
        return None
    return _none_if_nan(cohen_kappa_score(a, b))


def krippendorff_alpha(units: list[dict[str, str]]) -> float | None:
    """Nominal Krippendorff's alpha over units (records), each {annotator: label}; missing answers allowed.
    Units with fewer than two answers carry no agreement information and are ignored by the formula."""
    import krippendorff

    annotators = sorted({a for u in units for a in u})
    labels = sorted({v for u in units for v in u.values()})
    if len(labels) < 2:
        return None
    code = {label: i for i, label in enumerate(labels)}
    data = np.full((len(annotators), len(units)), np.nan)
    for j, unit in enumerate(units):
        for annotator, label in unit.items():
            data[annotators.index(annotator), j] = code[label]
    return _none_if_nan(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"))


def annotator_agreement(units: dict[str, dict[str, str]]) -> dict:
    """Agreement between annotators on one question. `units`: record id -> {annotator: label}.

    Only records with two or more answers count. Returns the counts, raw agreement (share of annotator
    pairs on a record that gave the same label), Krippendorff's alpha over everyone, and Cohen's kappa
    for every pair of annotators with the number of records they share."""
    multi = {rid: u for rid, u in units.items() if len(u) >= 2}
    pairs_same = pairs_all = 0
    for unit in multi.values():
        for x, y in itertools.combinations(unit.values(), 2):
            pairs_all += 1
            pairs_same += x == y
    annotators = sorted({a for u in multi.values() for a in u})
    kappas = []
    for a, b in itertools.combinations(annotators, 2):
        shared = [u for u in multi.values() if a in u and b in u]
        if shared:
            kappas.append(
                {
                    "annotators": [a, b],
                    "records": len(shared),
                    "kappa": cohen_kappa([u[a] for u in shared], [u[b] for u in shared]),
                }
            )
    return {
        "records_with_2plus": len(multi),
        "annotators": len(annotators),
        "answers": sum(len(u) for u in multi.values()),
        "raw_agreement": pairs_same / pairs_all if pairs_all else None,
        "krippendorff_alpha": krippendorff_alpha(list(multi.values())) if multi else None,
        "cohen_kappa": kappas,
    }


def agreement_report(records: pl.DataFrame, answers: pl.DataFrame, decided: pl.DataFrame) -> dict:
    """Pipeline vs humans per attribute x pair type, and annotators among themselves."""
    per_cell = []
    joined = decided.join(records, on="pair_id")
    for (attribute, pair_type), g in joined.group_by("attribute", "pair_type", maintain_order=True):
        counts = {v: int((g["review_verdict"] == v).sum()) for v in (AGREE, REVERSED, TIE, SPLIT)}
        per_cell.append(
            {
                "attribute": attribute,
                "pair_type": pair_type,
                "reviewed": g.height,
                **counts,
                "agreement": counts[AGREE] / g.height,
            }
        )
    per_cell.sort(key=lambda r: (r["attribute"], r["pair_type"]))
    submitted = answers.filter(pl.col("status") == "submitted")
    between = {}
    for question in ("better", "differ_only_in_attribute"):
        units: dict[str, dict[str, str]] = {}
        for row in submitted.select("pair_id", "annotator", question).drop_nulls().iter_rows():
            units.setdefault(row[0], {})[row[1]] = row[2]
        between[question] = annotator_agreement(units)
    overall = int((decided["review_verdict"] == AGREE).sum())
    return {
        "records": records.height,
        "reviewed": decided.height,
        "pipeline_vs_humans": {
            "agree": overall,
            "reviewed": decided.height,
            "agreement": overall / decided.height if decided.height else None,
            "by_attribute_and_pair_type": per_cell,
        },
        "between_annotators": between,
        "actions": {a: int((decided["review_action"] == a).sum()) for a in ("keep", "flip", "drop")},
    }
