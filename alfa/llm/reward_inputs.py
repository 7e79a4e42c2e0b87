"""How a reward model reads one (prompt, completion) pair: shared by training (alfa.train.run) and
scoring (alfa.eval.reward_scorecard), so a reward model is scored on exactly the input it was trained on."""

from __future__ import annotations


def reward_input_ids(tokenizer, prompt: list[dict], completion: list[dict], max_length: int | None) -> list[int]:
    """The token ids a reward model reads for one (prompt, completion) conversation.

    With a chat template: the whole conversation rendered by it, exactly as TRL's RewardTrainer does.
    Without one (BERT-style encoders): "[CLS] context [SEP] question [SEP]", truncating the *context* to
    max_length, so the question being judged is never cut (TRL would drop an over-long pair instead)."""
    if tokenizer.chat_template is not None:
        return tokenizer.apply_chat_template(prompt + completion, tokenize=True, return_dict=True)["input_ids"]
    context = "\n\n".join(m["content"] for m in prompt)
    question = "\n".join(m["content"] for m in completion)
    return tokenizer(context, question, truncation="only_first" if max_length else False, max_length=max_length)[
        "input_ids"
    ]


def encoder_max_length(tokenizer, model_config, wanted: int | None) -> int:
    """The longest input an encoder takes: its position embeddings (MiniLM: 512), capped by `wanted`."""
    limit = min(tokenizer.model_max_length, getattr(model_config, "max_position_embeddings", None) or 10**9)
    return min(limit, wanted) if wanted else limit
