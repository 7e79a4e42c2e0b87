"""Does a reply ask for what is missing? One rule for `alfa eval flaws`, the `handles_flaws` GRPO reward and the
GSM8K testbed's cases.

- `asks`: the reply holds a question mark and commits to no answer (no marked number: "Answer: 26", "the answer
  is 26"). It can be fooled by a rhetorical question without an answer; a model judge can be fooled worse (the
  embedded 1.5B said Yes to "The answer is 5188.").
- `asks_for`: it asks, and its question is about the missing (or conflicting) premise: put to the fact-select
  patient holding every premise of the intact problem, the question (or the whole reply) retrieves a target
  sentence (top 1). A question about a quantity the problem already gives retrieves that sentence instead, and does
  not count.
"""

from __future__ import annotations

import re

from alfa.dialogue.parsing import final_number

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z$\d\"'])")


def sentences(text: str) -> list[str]:
    """A problem's sentences: split after '.', '!' or '?' where a new one starts ("$1.50" stays whole)."""
    return [s.strip() for s in _SENTENCE_END.split((text or "").strip()) if s.strip()]


def question_text(reply: str | None) -> str:
    """The reply's sentences that end with a question mark, joined (the rest is working or preamble)."""
    return " ".join(s for s in sentences(reply or "") if s.endswith("?"))


def asks(reply: str | None) -> bool:
    return "?" in (reply or "") and final_number(reply) is None


def asks_for(reply: str | None, facts: list[str], targets: list[int], patient) -> bool:
    """`asks`, and the fact-select `patient` (top 1) answers its question with one of the `targets` facts: the
    question sentences alone, or the whole reply (a question that quotes what it asks about, 'The problem says
    both "..." and "...". Which one is right?')."""
    if not asks(reply) or not targets:
        return False
    told = {i for text in {question_text(reply), reply.strip()} for i in patient.answer(list(facts), text)[1]}
    return bool(told & set(targets))


def flaw_facts(problem: str, removed: str | None, conflict: list[str] | None) -> tuple[list[str], list[int]]:
    """(the premises a flawed problem's patient holds, the indices a targeted question must retrieve): the problem's
    sentences plus the removed premise, target the removed one; or, for a contradiction, both conflicting
    sentences. ([], []) for a sound problem."""
    facts = sentences(problem)
    if removed:
        return facts + [removed.strip()], [len(facts)]
    if conflict:
        return facts, [i for i, s in enumerate(facts) if s in [c.strip() for c in conflict]]
    return [], []
