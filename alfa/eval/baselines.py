"""The baselines beside every interactive evaluation (alfa.eval.interactive): what a run's accuracy must beat to
say anything about its questioner.

- `majority_letter` / `majority_answer`: always the most frequent answer of cases the run does not score (the
  skipped ones or the rest of the file; the scored cases only where there are no others, and then it says so:
  the majority of the very cases scored is a post-hoc maximum);
- `longest_option` (cases with options): always the longest option;
- `no_questions` and `full_information` (where an expert runs): the expert answering from the initial info alone,
  and from every fact of the case (the upper bound a questioner can reach);
- `generic_question_floor`: how often a generic question ("Can you tell me more?") draws the decisive fact out of
  the fact-select patient, the floor of `asked_decisive` (no model call).
"""

from __future__ import annotations

from collections import Counter

from alfa.dialogue.parsing import parse_answer
from alfa.dialogue.patients import FactSelectPatient
from alfa.eval.case_prompts import final_messages
from alfa.eval.cases import Case
from alfa.stats import rate

GENERIC_QUESTION = "Can you tell me more?"


def baseline_accuracies(cases: list[Case], infos: list[str], expert, cache, stats, reference) -> dict:
    """`reference`: (cases, what they are) the majority answer is taken from. The expert's baselines are left
    out when there is no expert (`--expert none`)."""
    from alfa.llm.calls import run_calls

    def one_call(full: bool, desc: str) -> list[bool]:
        requests = []
        for c, info in zip(cases, infos):
            if c.options:
                requests.append(final_messages(c, " ".join(c.context) if full else info, []))
            else:
                requests.append(final_messages(c, info, [], list(range(len(c.facts))) if full else []))
        replies, _ = run_calls(expert, cache, requests, desc, stats)
        return [parse_answer(r.text, c.options) == c.answer for r, c in zip(replies, cases)]

    reference_cases, reference_name = reference
    majority = Counter(c.answer for c in reference_cases).most_common(1)[0][0] if reference_cases else None
    name = "majority_letter" if any(c.options for c in cases) else "majority_answer"
    out = {name: rate([c.answer == majority for c in cases]) | {"answer": majority, "from": reference_name}}
    if any(c.options for c in cases):
        out["longest_option"] = rate([max(c.options, key=lambda k: len(c.options[k])) == c.answer for c in cases])
    if expert is not None:
        out["no_questions"] = rate(one_call(False, "no questions"))
        out["full_information"] = rate(one_call(True, "full information"))
    return out


def generic_question_floor(cases: list[Case], patient) -> dict:
    """The share of cases whose decisive fact the fact-select patient tells for GENERIC_QUESTION, with its
    interval; no value where no case marks a decisive fact or the patient is a model."""
    marked = [c for c in cases if c.decisive_fact is not None]
    if not isinstance(patient, FactSelectPatient) or not marked:
        return rate([]) | {"question": GENERIC_QUESTION}
    drawn = [c.decisive_fact in patient.answer(c.facts, GENERIC_QUESTION)[1] for c in marked]
    return rate(drawn) | {"question": GENERIC_QUESTION}
