"""The words of interactive diagnosis: the expert's and the questioner's system prompts, how a case and the
conversation so far are shown, and the expert's answering call. Shared by the evaluation (alfa.eval.interactive),
its baselines (alfa.eval.baselines) and the methods that train on the same format (alfa.methods.uot_pairs)."""

from __future__ import annotations

from alfa.eval.cases import Case

EXPERT_SYSTEM = (
    "You are a doctor working out a patient's case from what you have been told so far. You know only what is "
    "written below; ask nothing you were already told."
)
QUESTIONER_SYSTEM = (
    "You are a doctor interviewing a patient. Ask the one follow-up question whose answer would help most with "
    "the diagnostic question. Reply with the question only."
)
# Word problems (no options): the expert solves, the questioner asks the person who set the problem.
PROBLEM_EXPERT_SYSTEM = "You solve word problems from what you have been told so far, and only from that."
PROBLEM_QUESTIONER_SYSTEM = (
    "You are solving a word problem, but a piece of information it needs may be missing. Ask the one question "
    "whose answer you most need to solve it. Reply with the question only."
)
FINAL_LETTER = "Reply with the letter of the answer."
# Short and plain: the 1.5B's LaTeX-laden working ran past a 320-token budget before its answer.
FINAL_NUMBER = "Solve it in a few short lines of plain arithmetic (no LaTeX), then end with 'Answer: ' and the number."


def case_text(case: Case, initial_info: str, conversation: list[tuple[str, str]], with_options: bool = True) -> str:
    lines = [f"What you know: {initial_info}"]
    lines += [f"You asked: {q}\nThe patient said: {a}" for q, a in conversation]
    lines.append(f"Diagnostic question: {case.question}" if case.options else f"Question: {case.question}")
    if with_options:
        lines += [f"{k}. {v}" for k, v in sorted(case.options.items())]
    return "\n".join(lines)


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
    system, ask = (QUESTIONER_SYSTEM, "to the patient") if case.options else (PROBLEM_QUESTIONER_SYSTEM, "")
    body = (
        case_text(case, initial_info, conversation, with_options=False)
        + f"\nYour one question{' ' + ask if ask else ''}:"
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": body}]
