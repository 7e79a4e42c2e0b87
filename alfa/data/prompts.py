"""The chat messages sent to a rewriter. Change wording here; the template hash in every run dir and
card changes with it, so old and new outputs are never confused.

Few-shot turns come from the attribute pack's examples: small models (the embedded SmolLM2-135M)
follow an example far better than an instruction.
"""

from __future__ import annotations

import hashlib
import inspect
import json

from alfa.data.attributes import Attribute

DIRECTIONS = ("enhance", "corrupt")

SYSTEM = (
    "You rewrite a doctor's follow-up question to a patient. Change only the quality named in the task "
    "and keep the topic. Reply with exactly one question and nothing else."
)

STANDALONE_TASK = (
    "Rewrite the doctor's message as one short, self-contained question to the patient. "
    "Keep its meaning; drop greetings and explanations."
)


def _turn(post: str, question: str, task: str) -> str:
    # The question to rewrite comes last: ending on the post, a small model answers as the patient.
    return f"Task: {task}\nPatient's post: {post}\nQuestion to rewrite: {question}"


def _clip(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[: max_chars - 3].rstrip() + "..."


def task_text(attribute: Attribute, direction: str) -> str:
    what = "better" if direction == "enhance" else "worse"
    guidance = attribute.enhance if direction == "enhance" else attribute.corrupt
    return f"Make the question {what} on {attribute.name.replace('_', ' ')} only. {guidance}"


def rewrite_messages(attribute: Attribute, direction: str, post: str, question: str,
                     hindsight: dict | None = None, max_context_chars: int = 1200) -> list[dict]:
    """Messages asking for one variant of `question` along `attribute` in `direction`."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    # The task is repeated in every turn: measured with SmolLM2-135M, it follows a task stated beside
    # each example far more often than one stated once in the system message.
    task = task_text(attribute, direction)
    messages = [{"role": "system", "content": SYSTEM}]
    for ex in attribute.examples:
        messages.append({"role": "user", "content": _turn(ex.post, ex.question, task)})
        messages.append({"role": "assistant", "content": ex.enhanced if direction == "enhance" else ex.corrupted})
    patient = _clip(post, max_context_chars)
    if hindsight:
        # Hindsight (the thread's outcome) only ever reaches the enhance direction: see synthesize.
        patient += "\n(What the doctor later learned: " + "; ".join(f"{v}" for v in hindsight.values()) + ")"
    messages.append({"role": "user", "content": _turn(patient, question, task)})
    return messages


def standalone_messages(post: str, question: str, max_context_chars: int = 1200) -> list[dict]:
    """Messages asking to restate the original as one standalone question (the paper's first step)."""
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": _turn(_clip(post, max_context_chars), question, STANDALONE_TASK)},
    ]


def template_hash() -> str:
    """Hash of this module's prompt wording and code: recorded with every run."""
    src = json.dumps([SYSTEM, STANDALONE_TASK, inspect.getsource(_turn), inspect.getsource(task_text),
                      inspect.getsource(rewrite_messages)])
    return hashlib.sha256(src.encode()).hexdigest()[:16]


def post_text(context: list[dict]) -> str:
    """The rewriter sees the patient's post plus earlier turns as plain text."""
    parts = [context[0]["content"]]
    for m in context[1:]:
        who = "Doctor" if m["role"] == "assistant" else "Patient"
        parts.append(f"{who}: {m['content']}")
    return "\n".join(parts)
