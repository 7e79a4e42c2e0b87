"""Judges that score each question alone, for `alfa eval winrate` (alfa.eval.winrate compares their scores).

- `pointwise:SPEC` (`pointwise` alone: the embedded model): a model rates one question at a time, 1-5, on one
  quality (overall, or one attribute's definition); the score is the expected rating under its first-token
  probabilities over the five digits. There is no second position to be biased towards.
- `rm:DIR[,DIR...]`: reward models trained by `alfa train` on alfa's pairs (`stage: reward`, e.g. the MiniLM
  recipes in recipes/minilm/): each scores the attribute it was trained on, and `overall` is the mean of their
  scores. A post whose group id one of them saw in training (alfa_train.json's `train_group_ids`) is refused: a
  judge must not grade the posts it learned from.

A question's score is None where it cannot be read (no digit among the first token's candidates); the comparison
then counts as a failure, as an unreadable pairwise verdict does.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

POINTWISE_SYSTEM = "You rate one follow-up question a doctor could ask a patient about their post."
DIGITS = ("1", "2", "3", "4", "5")


def pointwise_messages(post: str, question: str, quality: str) -> list[dict]:
    return [
        {"role": "system", "content": POINTWISE_SYSTEM},
        {
            "role": "user",
            "content": f"Patient's post: {post[:1200]}\n\n{quality}\n\nQuestion: {question}\n\n"
            "Rate the question from 1 (poor) to 5 (excellent). Reply with the digit only.",
        },
    ]


def expected_rating(logprobs: dict[str, float] | None) -> float | None:
    """The expected 1-5 rating under the first token's probabilities of the five digits (renormalised over them);
    None when no digit is among the candidates."""
    weights = {}
    for token, lp in (logprobs or {}).items():
        digit = token.strip()
        if digit in DIGITS:
            weights[digit] = weights.get(digit, 0.0) + math.exp(lp)
    total = sum(weights.values())
    return sum(int(d) * w for d, w in weights.items()) / total if total else None


class PointwiseJudge:
    """Rates each (post, question, quality) once through the call cache."""

    def __init__(self, backend):
        self.backend = backend
        self.model_id = f"pointwise:{backend.model_id}"

    def scores(self, items: list[tuple[str, str, str]], cache, stats) -> list[float | None]:
        """`items`: (post, question, quality text) -> expected ratings, in order."""
        from alfa.llm.calls import run_calls

        scoring = self.backend.with_logprobs(top=20)
        requests = [pointwise_messages(post, q, quality) for post, q, quality in items]
        replies, _ = run_calls(scoring, cache, requests, "pointwise", stats)
        return [expected_rating((r.usage or {}).get("first_token_logprobs")) for r in replies]


class RewardModelJudge:
    """Per-attribute reward models: `dirs` are `alfa train` outputs of `stage: reward`."""

    def __init__(self, dirs: list[Path]):
        from alfa.eval.reward_scorecard import RewardScorer

        self.by_attribute, self.seen = {}, set()
        for d in dirs:
            record = Path(d) / "alfa_train.json"
            if not record.exists():
                raise FileNotFoundError(f"{record}: not an `alfa train` output (train it with a stage: reward recipe)")
            trained = json.loads(record.read_text())
            if trained.get("stage") != "reward" or "train_group_ids" not in trained:
                raise ValueError(
                    f"{record}: --judge rm: needs a reward model whose training recorded its attributes and posts "
                    "(stage: reward, trained by this version of alfa)"
                )
            attrs = trained["attributes"] or ["overall"]
            if len(attrs) != 1:
                raise ValueError(f"{d}: trained on {attrs}; --judge rm: takes one reward model per attribute")
            self.by_attribute[attrs[0]] = RewardScorer(Path(d))
            self.seen |= set(trained["train_group_ids"])
        self.model_id = "rm:" + ",".join(f"{a}={Path(d).name}" for a, d in zip(self.by_attribute, dirs))

    def refuse_seen(self, groups: set[str]) -> None:
        seen = sorted(groups & self.seen)
        if seen:
            raise ValueError(
                f"--judge {self.model_id}: {len(seen)} of the {len(groups)} posts to judge were in its reward models' "
                f"training data (group ids {', '.join(seen[:5])}{' ...' if len(seen) > 5 else ''}); judge the test "
                "split's posts (alfa ingest ... then the pairs' test split) or posts the models never saw"
            )

    def scores(self, items: list[tuple[list[dict], str, str]], cache=None, stats=None) -> list[float | None]:
        """`items`: (the post as chat messages, question, attribute or "overall") -> reward (overall: the mean of
        every attribute model's)."""
        out: list[float | None] = [None] * len(items)
        for name, scorer in self.by_attribute.items():
            wanted = [i for i, (_, _, quality) in enumerate(items) if quality in (name, "overall")]
            values = scorer.score(
                [items[i][0] for i in wanted], [[{"role": "assistant", "content": items[i][1]}] for i in wanted]
            )
            for i, v in zip(wanted, values):
                if items[i][2] == "overall":
                    out[i] = (out[i] or 0.0) + v / len(self.by_attribute)
                else:
                    out[i] = v
        return out
