"""What a DPO policy learnt, read off its own implicit reward on held-out pairs, per attribute: no judge needed.

DPO raises log pi(chosen) - log pi_ref(chosen) above the same for rejected. On pairs from posts it never trained
on (the validation and test splits: pairs are split by post), a policy that learnt an attribute's preference keeps
doing so: its margin [log pi(c) - log pi_ref(c)] - [log pi(r) - log pi_ref(r)] is above 0. The share of pairs where
it is, per attribute, is the policy's preference accuracy; a tie (0, e.g. the reference scored against itself)
counts as half. This reads whether a policy learnt the rewriter's preference, not whether its questions are
better: that is the win rate's part, and it needs a judge that passes its controls.

Log-probs come from TRL's own DPO code (its chat template, tokenization, truncation and scoring: the precompute
step of DPOTrainer with the scored model as its own reference), so a held-out pair is scored exactly as a train
pair was in training. With a store (`alfa train --ref-store`'s SQLite file), each model's log-probs are kept, and a
rerun or a killed run pays only for the pairs not scored yet.

    alfa evaluate-policy --reference runs/train/smollm2-sft-askdocs \\
        --policy clarity=runs/train/smollm2-dpo-askdocs-clarity --policy mixed=runs/train/smollm2-dpo-askdocs-mixed \\
        --pairs runs/askdocs-core-120/pairs --split validation,test --base mixed -o runs/eval/askdocs-policy
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import polars as pl

from alfa.stats import bootstrap_mean, rate
from alfa.train.overlong import drop_overlong
from alfa.train.ref_store import RefLogpStore, reference_digest, stored_ref_dpo_trainer

log = logging.getLogger(__name__)

# Trivial baselines beside every policy: a rule that reads only the two questions' lengths in words.
LENGTH_RULES = ("shorter question", "longer question")
# What scoring reads of a pairs file.
PAIR_COLUMNS = ("pair_id", "group_id", "attribute", "prompt", "chosen", "rejected")


def held_out_pairs(pairs_dir: Path, splits: list[str]) -> pl.DataFrame:
    """The pairs of `splits`, one frame; an empty selection is an error naming the dir."""
    frames = []
    for split in splits:
        path = Path(pairs_dir) / "data" / f"{split}.parquet"
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such split; a pairs dir holds train, validation and test")
        try:
            frame = pl.read_parquet(path)
        except pl.exceptions.PolarsError as e:
            raise ValueError(f"{path}: not a readable Parquet file ({e}); rebuild the pairs with alfa pairs") from None
        missing = [c for c in PAIR_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"{path}: no column {', '.join(missing)}; a pairs file from alfa pairs has them")
        frames.append(frame)
    pairs = pl.concat(frames, how="diagonal_relaxed")
    if pairs.height == 0:
        raise ValueError(f"{pairs_dir}: splits {','.join(splits)} hold no pairs to score")
    return pairs


def fitting_pairs(pairs: pl.DataFrame, tokenizer_dir: Path, max_length: int | None) -> tuple[pl.DataFrame, int]:
    """(the pairs whose prompt and longer side fit max_length, how many were left out): as `data.drop_overlong` in
    training, so no score reads a question TRL cut off."""
    import datasets
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    rows = datasets.Dataset.from_dict({c: pairs[c].to_list() for c in ("pair_id", "prompt", "chosen", "rejected")})
    kept, dropped = drop_overlong(rows, tokenizer, max_length)
    return pairs.filter(pl.col("pair_id").is_in(kept["pair_id"])), dropped


def pair_logps(
    model_dir: Path, pairs: pl.DataFrame, max_length: int | None, batch_size: int = 8, store: Path | None = None
) -> pl.DataFrame:
    """pair_id, chosen_logp, rejected_logp: each pair's two summed completion log-probs under the model."""
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    rows = datasets.Dataset.from_dict({c: pairs[c].to_list() for c in ("pair_id", "prompt", "chosen", "rejected")})
    ref_store = RefLogpStore(store) if store is not None else None
    with tempfile.TemporaryDirectory() as scratch:
        config = DPOConfig(
            output_dir=scratch,
            precompute_ref_log_probs=True,
            precompute_ref_batch_size=batch_size,
            max_length=max_length,
            report_to=[],
            bf16=False,
            use_cpu=not torch.cuda.is_available(),
        )
        # the model is its own reference: TRL's precompute scores it, with TRL's tokenization and collator
        trainer = stored_ref_dpo_trainer()(
            model=model,
            args=config,
            train_dataset=rows,
            processing_class=tokenizer,
            ref_store=ref_store,
            ref_model_digest=reference_digest(model_dir),
        )
        scored = trainer.train_dataset
    if ref_store is not None:
        ref_store.close()
    if scored.num_rows != len(rows):  # TRL drops a pair whose prompt alone fills max_length
        raise ValueError(
            f"{model_dir}: TRL scored {scored.num_rows} of {len(rows)} pairs; pass them through fitting_pairs"
        )
    return pl.DataFrame(
        {
            "pair_id": scored["pair_id"],
            "chosen_logp": scored["ref_chosen_logps"],
            "rejected_logp": scored["ref_rejected_logps"],
        }
    )


def margins(policy: pl.DataFrame, reference: pl.DataFrame) -> pl.DataFrame:
    """pair_id, margin, right (1 when the margin is above 0, 0.5 at 0, else 0) from two pair_logps frames."""
    joined = policy.join(reference, on="pair_id", suffix="_ref", how="inner")
    if joined.height != policy.height or joined.height != reference.height:
        raise ValueError("the policy and the reference were scored on different pairs")
    margin = (pl.col("chosen_logp") - pl.col("chosen_logp_ref")) - (
        pl.col("rejected_logp") - pl.col("rejected_logp_ref")
    )
    return joined.select(
        "pair_id",
        margin.alias("margin"),
        pl.when(margin > 0).then(1.0).when(margin == 0).then(0.5).otherwise(0.0).alias("right"),
    )


def length_rule(pairs: pl.DataFrame, prefer: str) -> pl.DataFrame:
    """pair_id, right for the rule that prefers the `shorter question` or the `longer question` (in words)."""
    words = [
        (len(c[-1]["content"].split()), len(r[-1]["content"].split()))
        for c, r in zip(pairs["chosen"].to_list(), pairs["rejected"].to_list())
    ]
    sign = 1 if prefer == "shorter question" else -1
    right = [1.0 if sign * (r - c) > 0 else 0.5 if c == r else 0.0 for c, r in words]
    return pl.DataFrame({"pair_id": pairs["pair_id"], "right": right})


def scorecard(
    policies: dict[str, Path],
    reference: Path,
    pairs_dir: Path,
    splits: list[str],
    out_dir: Path,
    max_length: int | None = 512,
    base: str | None = None,
    store: Path | None = None,
) -> pl.DataFrame:
    """Every policy's preference accuracy on every attribute's held-out pairs, beside the length rules; with `base`,
    each policy's paired difference from it on the same pairs. Writes margins.parquet, scorecard.csv/.md/.png."""
    if base is not None and base not in policies:
        raise ValueError(f"--base {base!r} is none of the policies: {', '.join(policies)}")
    pairs, dropped = fitting_pairs(held_out_pairs(pairs_dir, splits), reference, max_length)
    log.info("%d held-out pairs to score, %d left out as longer than max_length %s", pairs.height, dropped, max_length)
    ref = pair_logps(reference, pairs, max_length, store=store)
    scored = {name: margins(pair_logps(path, pairs, max_length, store=store), ref) for name, path in policies.items()}
    scored |= {rule: length_rule(pairs, rule) for rule in LENGTH_RULES}
    keys = pairs.select("pair_id", "attribute", "group_id")
    long = pl.concat(
        [keys.join(frame, on="pair_id").with_columns(model=pl.lit(name)) for name, frame in scored.items()],
        how="diagonal_relaxed",
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    long.write_parquet(out_dir / "margins.parquet")
    table = accuracy_table(long, list(scored), base)
    table.write_csv(out_dir / "scorecard.csv")
    header = (
        f"Preference accuracy (DPO implicit reward against `{reference}`) on `{pairs_dir}` splits "
        f"{', '.join(splits)}: {pairs.height} pairs on {pairs['group_id'].n_unique()} posts, {dropped} longer than "
        f"max_length {max_length} left out. 95% intervals over posts."
    )
    (out_dir / "scorecard.md").write_text(header + "\n\n" + markdown(table) + "\n")
    accuracy_plot(table, out_dir / "scorecard.png")
    return table


def paired_difference(long: pl.DataFrame, a: str, b: str, attribute: str | None = None) -> dict:
    """Model `a`'s `right` minus model `b`'s on the pairs both scored (of one attribute, or all), from a
    margins.parquet frame: {"value", "ci_low", "ci_high"} with a bootstrap over posts, "n", and each side's mean."""
    part = long if attribute is None else long.filter(pl.col("attribute") == attribute)
    left = part.filter(pl.col("model") == a).select("pair_id", "group_id", a_right="right")
    both = left.join(part.filter(pl.col("model") == b).select("pair_id", b_right="right"), on="pair_id")
    diff = bootstrap_mean((both["a_right"] - both["b_right"]).to_list(), both["group_id"].to_list())
    return diff | {"n": both.height, "a": both["a_right"].mean(), "b": both["b_right"].mean()}


def accuracy_table(long: pl.DataFrame, models: list[str], base: str | None) -> pl.DataFrame:
    """One row per model and attribute (and `all`): accuracy with its interval over posts; the paired difference
    from `base` (points) where given."""
    attributes = sorted(long["attribute"].unique().to_list()) + ["all"]
    rows = []
    for model in models:
        for attribute in attributes:
            only = None if attribute == "all" else attribute
            part = long.filter(pl.col("model") == model)
            if only is not None:
                part = part.filter(pl.col("attribute") == only)
            acc = rate(part["right"].to_list(), part["group_id"].to_list())
            row = {"model": model, "attribute": attribute, "n": acc["n"], "accuracy": acc["value"]}
            row |= {"ci_low": acc["ci_low"], "ci_high": acc["ci_high"]}
            if base is not None and model != base:
                diff = paired_difference(long, model, base, only)
                row |= {f"vs_{base}": diff["value"], "diff_low": diff["ci_low"], "diff_high": diff["ci_high"]}
            rows.append(row)
    return pl.DataFrame(rows, infer_schema_length=None)


def markdown(table: pl.DataFrame) -> str:
    """The accuracy table; with a base, a second table of each policy's paired difference from it, per attribute."""
    attributes = table["attribute"].unique(maintain_order=True).to_list()
    models = table["model"].unique(maintain_order=True).to_list()
    n = {r["attribute"]: r["n"] for r in table.iter_rows(named=True)}
    head = "| model | " + " | ".join(f"{a} (n={n[a]})" for a in attributes) + " |"
    rule = "|" + "---|" * (len(attributes) + 1)

    def block(cell) -> list[str]:
        lines = [head, rule]
        for model in models:
            rows = table.filter(pl.col("model") == model).iter_rows(named=True)
            lines.append(f"| {model} | " + " | ".join(cell(r) for r in rows) + " |")
        return lines

    lines = block(lambda r: f"{100 * r['accuracy']:.1f}% ({100 * r['ci_low']:.1f}-{100 * r['ci_high']:.1f})")
    paired = [c for c in table.columns if c.startswith("vs_")]
    if paired:
        column = paired[0]
        lines += ["", f"Paired difference from {column[3:]} on the same pairs (points, 95% interval over posts):", ""]
        lines += block(
            lambda r: (
                "-"
                if r[column] is None
                else f"{100 * r[column]:+.1f} ({100 * r['diff_low']:+.1f} to {100 * r['diff_high']:+.1f})"
            )
        )
    return "\n".join(lines)


def accuracy_plot(table: pl.DataFrame, path: Path) -> None:
    """Accuracy per attribute, one marker per model with its interval; chance at 50%."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    attributes = table["attribute"].unique(maintain_order=True).to_list()
    models = table["model"].unique(maintain_order=True).to_list()
    fig, ax = plt.subplots(figsize=(1.6 * len(attributes) + 3, 4))
    width = 0.8 / len(models)
    for i, model in enumerate(models):
        rows = table.filter(pl.col("model") == model)
        x = [attributes.index(a) - 0.4 + (i + 0.5) * width for a in rows["attribute"]]
        y = rows["accuracy"].to_numpy()
        err = [y - rows["ci_low"].to_numpy(), rows["ci_high"].to_numpy() - y]
        ax.errorbar(x, y, yerr=err, fmt="o", capsize=2, label=model)
    ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    ax.set_xticks(range(len(attributes)), attributes)
    ax.set_ylim(0, 1)
    ax.set_ylabel("chosen above rejected (held-out pairs)")
    ax.legend(fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
