"""Stage 10, evaluate: reward-model accuracy on held-out pairs, per attribute, and the scorecard.

A reward model is right on a pair when it scores `chosen` above `rejected`. Both training and scoring
render a (prompt, completion) with `reward_input_ids`: the model's chat template when it has one (as TRL's
RewardTrainer renders conversations), else, for an encoder such as MiniLM, a text pair (context, question).
The scorecard puts each attribute's reward model against every attribute's pairs: the diagonal says
whether a model learned its attribute, the rest whether the attributes are really separate.

    alfa evaluate-rm --model clarity=runs/train/rm-clarity --model focus=runs/train/rm-focus \\
        --pairs runs/askdocs/pairs --split test -o runs/eval/rm
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from alfa.llm.backends import default_device
from alfa.llm.reward_inputs import encoder_max_length, reward_input_ids


class RewardScorer:
    def __init__(self, model_dir: Path, batch_size: int = 16):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.torch = torch
        self.device = default_device()
        self.model = AutoModelForSequenceClassification.from_pretrained(model_dir).to(self.device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.max_length = (
            None if self.tokenizer.chat_template else encoder_max_length(self.tokenizer, self.model.config, None)
        )
        self.batch_size = batch_size

    def score(self, prompts: list[list[dict]], completions: list[list[dict]]) -> list[float]:
        ids = [reward_input_ids(self.tokenizer, p, c, self.max_length) for p, c in zip(prompts, completions)]
        out = []
        for i in range(0, len(ids), self.batch_size):
            # input_ids and attention_mask only: what TRL's collator gives the model in training
            enc = self.tokenizer.pad({"input_ids": ids[i : i + self.batch_size]}, return_tensors="pt")
            with self.torch.no_grad():
                logits = self.model(
                    input_ids=enc["input_ids"].to(self.device), attention_mask=enc["attention_mask"].to(self.device)
                ).logits
            out += logits[:, 0].tolist()
        return out


def chosen_ranked_first(scorer: RewardScorer, pairs: pl.DataFrame) -> list[bool]:
    """Per pair, in row order: does the reward model score `chosen` above `rejected`?"""
    prompts = pairs["prompt"].to_list()
    chosen = scorer.score(prompts, pairs["chosen"].to_list())
    rejected = scorer.score(prompts, pairs["rejected"].to_list())
    return [c > r for c, r in zip(chosen, rejected)]


def accuracy_by_attribute(scorer: RewardScorer, pairs: pl.DataFrame) -> dict[str, tuple[float, int]]:
    """{attribute: (share of pairs where chosen scores above rejected, number of pairs)}"""
    right: dict[str, list[bool]] = {}
    for attribute, ok in zip(pairs["attribute"].to_list(), chosen_ranked_first(scorer, pairs)):
        right.setdefault(attribute, []).append(ok)
    return {a: (sum(v) / len(v), len(v)) for a, v in sorted(right.items())}


def scorecard(models: dict[str, Path], pairs_dir: Path, split: str, out_dir: Path) -> pl.DataFrame:
    """Every model on every attribute's pairs of `split`; writes scorecard.csv, .md and .png."""
    pairs = pl.read_parquet(Path(pairs_dir) / "data" / f"{split}.parquet")
    if pairs.height == 0:
        raise ValueError(f"{pairs_dir}: split {split!r} has no pairs to evaluate on")
    attributes = sorted(pairs["attribute"].unique().to_list())
    rows = []
    for name, model_dir in models.items():
        acc = accuracy_by_attribute(RewardScorer(Path(model_dir)), pairs)
        rows.append({"model": name, **{a: acc[a][0] for a in attributes}})
    table = pl.DataFrame(rows)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table.write_csv(out_dir / "scorecard.csv")
    counts = pairs.group_by("attribute").len()
    n = dict(counts.iter_rows())
    header = "| model | " + " | ".join(f"{a} (n={n[a]})" for a in attributes) + " |"
    lines = [
        f"Reward-model accuracy on `{pairs_dir}` split `{split}` (chosen scored above rejected)",
        "",
        header,
        "|" + "---|" * (len(attributes) + 1),
    ]
    lines += ["| " + r["model"] + " | " + " | ".join(f"{r[a]:.2f}" for a in attributes) + " |" for r in rows]
    (out_dir / "scorecard.md").write_text("\n".join(lines) + "\n")
    _heatmap(table, attributes, out_dir / "scorecard.png", split)
    return table


def _heatmap(table: pl.DataFrame, attributes: list[str], path: Path, split: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = [[r[a] for a in attributes] for r in table.to_dicts()]
    fig, ax = plt.subplots(figsize=(1.2 * len(attributes) + 2.5, 0.6 * len(values) + 1.8))
    im = ax.imshow(values, vmin=0, vmax=1, cmap="RdYlGn")
    ax.set_xticks(range(len(attributes)), attributes, rotation=30, ha="right")
    ax.set_yticks(range(len(values)), table["model"].to_list())
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8)
    ax.set_xlabel(f"pairs of attribute ({split} split)")
    ax.set_ylabel("reward model")
    ax.set_title("Reward-model accuracy")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
