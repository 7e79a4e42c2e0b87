"""The consultation: one model that, each turn, either asks its partner a question or answers the case.

The GRPO rollout (`stage: grpo`, alfa.train.rollout) and SML dialogues (alfa.methods.sml) share it: the
student/questioner sees a case as a chat prompt (`student_prompt`), writes one turn at a time, and a turn is an
answer only where it is marked as one ("Answer: C", alfa.dialogue.parsing); anything else is a question for the
partner (a simulated patient or a teacher). The partner's words are context, never a training target.
"""

from __future__ import annotations

import re

from alfa.dialogue.parsing import final_number, parse_answer_letter

STUDENT_SYSTEM = (
    "You are a doctor working out a patient's case. Each turn, either ask one question to learn something you "
    "need, or, when you are ready, reply 'Answer: ' followed by the letter of your answer."
)
# Q-priming (SML): the extra instruction the student gets while the priming dialogues are sampled; the saved
# training copy is written without it, so the trained model asks without being told to.
Q_PRIMING = "Before you answer, ask at least one question about anything that would help you answer correctly."
# "Answer: C" anywhere, or "answer is (C)" at the start of a line: an answer turn. A letter mentioned in passing
# ("A 21-year-old ...") is not one.
_ANSWER_TURN = re.compile(r"^\W*(?:final\s+)?answer\b|\banswer\s*:", re.IGNORECASE | re.MULTILINE)


def case_prompt_text(initial_info: str, question: str, options: dict[str, str]) -> str:
    listing = "\n".join(f"{k}. {v}" for k, v in sorted(options.items()))
    return f"What you know: {initial_info}\n\nDiagnostic question: {question}\n{listing}"


def student_prompt(case_text: str, q_priming: bool = False) -> list[dict]:
    """The chat prompt the student starts from; with `q_priming` the system turn also tells it to ask first."""
    system = STUDENT_SYSTEM + (" " + Q_PRIMING if q_priming else "")
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
    """("answer", letter) for an answer turn, ("question", the text) otherwise, ("empty", None) for nothing.

    An answer turn says "Answer: ..." (its letter None when it names no option), or, being no question (no '?'),
    marks an option the way an answer does ("C. Ceftriaxone", "The answer is (C)"). Without options (a word
    problem) only "Answer: ..." makes an answer turn, and its value is the number ("29")."""
    reply = (text or "").strip()
    if not reply:
        return "empty", None
    marked = _ANSWER_TURN.search(reply) is not None
    if not options:
        if not marked:
            return "question", reply
        number = final_number(reply)
        return "answer", None if number is None else (str(int(number)) if number.is_integer() else str(number))
    letter = parse_answer_letter(reply, options)
    if marked or (letter is not None and "?" not in reply):
        return "answer", letter
    return "question", reply
