"""The consultation: one model that, each turn, either asks its partner a question or answers the case.

The GRPO rollout (`stage: grpo`, alfa.train.rollout) and SML dialogues (alfa.methods.sml) share it: the
student/questioner sees a case as a chat prompt (`student_prompt`), writes one turn at a time, and a turn is an
answer only where it is marked as one ("Answer: C", alfa.dialogue.parsing); anything else is a question for the
partner (a simulated patient or a teacher). The partner's words are context, never a training target.
"""

from __future__ import annotations

import re

from alfa.dialogue.case_view import render_case
from alfa.dialogue.parsing import parse_answer

STUDENT_SYSTEM = (
    "You are a doctor working out a patient's case. Each turn, either ask one question to learn something you "
    "need, or, when you are ready, reply 'Answer: ' followed by the letter of your answer."
)
# A word problem (no options, e.g. the GSM8K missing-premise testbed): the same choice, answered with a number.
PROBLEM_STUDENT_SYSTEM = (
    "You are solving a word problem, but a piece of information it needs may be missing. Each turn, either ask one "
    "question to learn something you need, or, when you are ready, reply 'Answer: ' followed by the number."
)
# Q-priming (SML): the extra instruction the student gets while the priming dialogues are sampled; the saved
# training copy is written without it, so the trained model asks without being told to.
Q_PRIMING = "Before you answer, ask at least one question about anything that would help you answer correctly."
# "Answer: C" anywhere, or "answer is (C)" at the start of a line: an answer turn. A letter mentioned in passing
# ("A 21-year-old ...") is not one.
_QUESTION_TURN = re.compile(r"^\W*question\s*:\s*", re.IGNORECASE)
_ANSWER_TURN = re.compile(r"^\W*(?:final\s+)?answer\b|\banswer\s*:", re.IGNORECASE | re.MULTILINE)


def case_prompt_text(initial_info: str, question: str, options: dict[str, str]) -> str:
    """The case as the student's first user turn: the one renderer evaluation uses too (alfa.dialogue.case_view)."""
    return render_case(initial_info, question, options)


def student_system(options: dict[str, str]) -> str:
    return STUDENT_SYSTEM if options else PROBLEM_STUDENT_SYSTEM


def answer_now(options: dict[str, str]) -> str:
    """The user turn that asks for the answer at the end of a consultation (a letter, or a number)."""
    return f"Now give your answer: reply 'Answer: ' and the {'letter' if options else 'number'}."


def student_prompt(case_text: str, options: dict[str, str], q_priming: bool = False) -> list[dict]:
    """The chat prompt the student starts from (a diagnosis with `options`, else a word problem); with `q_priming`
    the system turn also tells it to ask first."""
    system = student_system(options) + (" " + Q_PRIMING if q_priming else "")
    return [{"role": "system", "content": system}, {"role": "user", "content": case_text}]


def unprimed(messages: list[dict]) -> list[dict]:
    """The same conversation with the Q-priming instruction taken out of its system turn (the training copy)."""
    out = []
    for m in messages:
        if m["role"] == "system" and Q_PRIMING in m["content"]:
            m = {**m, "content": m["content"].replace(" " + Q_PRIMING, "").replace(Q_PRIMING, "")}
        out.append(m)
    return out


def read_student_turn(text: str | None, options: dict[str, str]) -> tuple[str, str | None]:
    """("answer", the answer) for an answer turn, ("question", the text) otherwise, ("empty", None) for nothing.

    The one reader of a turn that may ask or answer: training (GRPO rollouts, SML, CollabLLM) and the interactive
    evaluation's implicit expert read a reply alike. An answer turn says "Answer: ..." (its answer None when it
    names no option), or, being no question (no '?'), marks an option the way an answer does ("C. Ceftriaxone",
    "The answer is (C)"). Without options (a word problem) only "Answer: ..." makes an answer turn, and its answer
    is the marked number ("29"). A leading "Question:" (the implicit expert's format) marks a question."""
    reply = (text or "").strip()
    if not reply:
        return "empty", None
    if _QUESTION_TURN.match(reply):
        asked = _QUESTION_TURN.sub("", reply, count=1).strip()
        return ("question", asked) if asked else ("empty", None)
    marked = _ANSWER_TURN.search(reply) is not None
    answer = parse_answer(reply, options)
    if marked or (options and answer is not None and "?" not in reply):
        return "answer", answer
    return "question", reply
