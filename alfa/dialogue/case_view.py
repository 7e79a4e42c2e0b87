"""How a case is shown to a model, and the questioner's instruction: one renderer and one prompt per task type,
shared by the evaluation (alfa.eval.case_prompts) and every method that trains a questioner (STaR-GATE, SML,
CollabLLM, GRPO tasks), so a method trains on the words it is tested on.

A case with options (a diagnosis):   What you know: ...             A word problem (no options):  What you know: ...
                                     You asked: ... / The patient said: ...                       Question: ...
                                     Diagnostic question: ...
                                     A. ...  B. ...
"""

from __future__ import annotations

QUESTIONER_SYSTEM = (
    "You are a doctor interviewing a patient. Ask the one follow-up question whose answer would help most with "
    "the diagnostic question. Reply with the question only."
)
# Word problems (no options): the questioner asks the person who set the problem.
PROBLEM_QUESTIONER_SYSTEM = (
    "You are solving a word problem, but a piece of information it needs may be missing. Ask the one question "
    "whose answer you most need to solve it. Reply with the question only."
)


def render_case(
    initial_info: str,
    question: str,
    options: dict[str, str],
    conversation: list[tuple[str, str]] = (),
    with_options: bool = True,
) -> str:
    """What is known (the initial information, then each question asked and its answer), the question to answer
    and, `with_options`, its options."""
    lines = [f"What you know: {initial_info}"]
    lines += [f"You asked: {q}\nThe patient said: {a}" for q, a in conversation]
    lines.append(f"Diagnostic question: {question}" if options else f"Question: {question}")
    if with_options:
        lines += [f"{k}. {v}" for k, v in sorted(options.items())]
    return "\n".join(lines)


def questioner_system(options: dict[str, str]) -> str:
    return QUESTIONER_SYSTEM if options else PROBLEM_QUESTIONER_SYSTEM
