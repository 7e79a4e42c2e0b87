"""log p(target | context): batched scores of rows of different lengths equal a hand computation, one row at a
time with no padding, token by token; padding never counts."""

import math

import pytest

from alfa.llm.cache import CallCache
from alfa.llm.scorer import LogProbScorer

ITEMS = [
    ([{"role": "user", "content": "My knee hurts."}], "When did it start?"),
    ([{"role": "user", "content": "I have had a cough for three weeks, worse at night, no fever."}], "Do you smoke?"),
    ([{"role": "user", "content": "Rash."}, {"role": "assistant", "content": "Where?"}, {"role": "user", "content": "Arms."}],
     "Is it itchy, and did it start after a new soap or food?"),
]  # fmt: skip


def hand_score(scorer, context, target) -> float:
    """One row, no padding, one token at a time: the sum of log softmax of each target token."""
    import torch

    ids, n_context = scorer.token_ids(context, target)
    total = 0.0
    with torch.inference_mode():
        logits = scorer.model(input_ids=torch.tensor([ids])).logits[0]
    for t in range(n_context, len(ids)):
        row = logits[t - 1].double()
        total += float(row[ids[t]] - torch.logsumexp(row, dim=0))
    return total


def test_batched_scores_equal_a_hand_computation_on_mixed_lengths_and_are_cached(tmp_path, tiny_model_dir):
    cache = CallCache(tmp_path / "scores.sqlite")
    scorer = LogProbScorer(tiny_model_dir, batch_size=3, cache=cache)
    lengths = {len(scorer.token_ids(c, t)[0]) for c, t in ITEMS}
    assert len(lengths) == 3  # three different lengths: two rows carry padding in the batch
    batched = scorer.score(ITEMS)
    for (context, target), value in zip(ITEMS, batched):
        assert value == pytest.approx(hand_score(scorer, context, target), abs=1e-4)
        assert value < 0 and math.isfinite(value)
    assert len(cache) == 3
    again = LogProbScorer(tiny_model_dir, batch_size=1, cache=cache)
    again.model = None  # a rerun must not touch the model: every score comes from the cache
    assert again.score(ITEMS) == batched


def test_another_chat_template_on_the_same_weights_is_scored_again(tmp_path, tiny_model_dir):
    """The cache keys on the tokenizer and its chat template too: the same weights under another template score
    other tokens, so they must not be handed the old scores."""
    import shutil

    from transformers import AutoTokenizer

    cache = CallCache(tmp_path / "scores.sqlite")
    first = LogProbScorer(tiny_model_dir, cache=cache).score(ITEMS[:1])
    other = tmp_path / "retemplated"
    shutil.copytree(tiny_model_dir, other)
    tokenizer = AutoTokenizer.from_pretrained(other)
    tokenizer.chat_template = "{% for m in messages %}<<{{ m['content'] }}>>{% endfor %}"
    tokenizer.save_pretrained(other)
    again = LogProbScorer(other, cache=cache)
    assert again.score(ITEMS[:1]) != first and len(cache) == 2  # scored again, not read from the cache
