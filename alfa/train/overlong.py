"""`data.drop_overlong`: leave out the rows that do not fit `max_length` instead of letting TRL cut them.

TRL keeps a sequence's start (`truncation_mode: keep_start`), so a long post pushes the question it precedes off
the end: SFT then trains on part of the question or none of it, and DPO on cut-off chosen and rejected sides that
may no longer differ. A row is too long when its prompt and its longest completion, through the chat template,
are more than `max_length` tokens. The count goes into alfa_train.json.
"""

from __future__ import annotations

COMPLETION_COLUMNS = ("completion", "chosen", "rejected")


def row_tokens(tokenizer, row: dict) -> int:
    """Tokens of the prompt with its longest completion, as the chat template renders them."""
    lengths = [
        len(tokenizer(tokenizer.apply_chat_template(row["prompt"] + row[c], tokenize=False))["input_ids"])
        for c in COMPLETION_COLUMNS
        if c in row
    ]
    return max(lengths)


def drop_overlong(dataset, tokenizer, max_length: int | None):
    """(the rows that fit max_length, how many were left out)."""
    if max_length is None:  # TRL cuts nothing either
        return dataset, 0
    keep = [i for i, row in enumerate(dataset) if row_tokens(tokenizer, row) <= max_length]
    return dataset.select(keep), len(dataset) - len(keep)
