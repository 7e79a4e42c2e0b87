"""The words of interactive diagnosis: the expert's system prompts and answering call, and the questioner's
prompt (the case and the questioner instruction come from alfa.dialogue.case_view, shared with training). Shared by the evaluation (alfa.eval.interactive),
its baselines (alfa.eval.baselines) and the methods that train on the same format (alfa.methods.uot_pairs)."""

from __future__ import annotations

from alfa.dialogue.case_view import questioner_system, render_case
from alfa.eval.cases import Case

EXPERT_SYSTEM = (
    "You are a doctor working out a patient's case from what you have been told so far. You know only what is "
    "written below; ask nothing you were already told."
)
# Word problems (no options): the expert solves them from what it was told.
PROBLEM_EXPERT_SYSTEM = "You solve word problems from what you have been told so far, and only from that."
FINAL_LETTER = "Reply with the letter of the answer."
# Short and plain: the 1.5B's LaTeX-laden working ran past a 320-token budget before its answer.
FINAL_NUMBER = "Solve it in a few short lines of plain arithmetic (no LaTeX), then end with 'Answer: ' and the number."


def case_text(case: Case, initial_info: str, conversation: list[tuple[str, str]], with_options: bool = True) -> str:
    return render_case(initial_info, case.question, case.options, conversation, with_options)


def final_messages(case: Case, initial_info: str, conversation, told: list[int] | None = None) -> list[dict]:
    """The expert's answering call. A case with options: the conversation and the options (those still open, under
    UoT). A word problem: its facts known so far in case order (those in the initial info and those told, indices
    `told`), then the question; the questions' wording is left out, so runs that drew the same facts share a call."""
    if case.options:
        body = case_text(case, initial_info, conversation) + "\n" + FINAL_LETTER
    else:
        told = set(told or [])
        known = [f.strip() for i, f in enumerate(case.facts) if i in told or f.strip() in initial_info]
        body = f"{' '.join(known)}\n\nQuestion: {case.question}\n\n{FINAL_NUMBER}"
    return [{"role": "system", "content": expert_system(case)}, {"role": "user", "content": body}]


def expert_system(case: Case) -> str:
    return EXPERT_SYSTEM if case.options else PROBLEM_EXPERT_SYSTEM


def questioner_messages(case: Case, initial_info: str, conversation) -> list[dict]:
    """The plain questioner's prompt: what is known and asked so far, never the options or the hidden facts."""
    system, ask = questioner_system(case.options), "to the patient" if case.options else ""
    body = (
        case_text(case, initial_info, conversation, with_options=False)
        + f"\nYour one question{' ' + ask if ask else ''}:"
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": body}]
