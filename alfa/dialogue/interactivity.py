"""The judged interactivity term of CollabLLM's multiturn-aware reward: a judge reads a consultation and rates how
well the assistant engaged, 1 (poorly) to 5 (very well), scaled to 0..1.

Shared by `alfa collab build` (rating the sampled futures of each candidate reply) and the GRPO stage's
`interactivity` reward (rating each played-out conversation), so both ask the judge the same question and their
calls share cache keys.
"""

from __future__ import annotations

from alfa.dialogue.parsing import parse_scale

JUDGE_PROMPT = (
    "Here is a conversation between a doctor (assistant) and a patient (user). How well did the doctor engage: "
    "asking useful questions, being clear and brief? Reply with one number from 1 (poorly) to 5 (very well)."
)


def judge_request(case: str, turns: list[tuple[str, str]]) -> list[dict]:
    """The judge's request for a conversation given as (role, text) turns, role `assistant` or `user`, with the
    case as the doctor was shown it: whether a question was useful depends on what the doctor already knew."""
    text = "\n".join(f"{role}: {content}" for role, content in turns)
    return [
        {
            "role": "user",
            "content": f"{JUDGE_PROMPT}\n\nWhat the doctor was shown:\n{case}\n\nThe conversation:\n{text}",
        }
    ]


def interactivity_score(reply: str) -> float | None:
    """The judge's 1-5 rating scaled to 0..1; None when the reply holds no rating (a failure, counted by callers)."""
    rating = parse_scale(reply)
    return None if rating is None else (rating - 1) / 4
