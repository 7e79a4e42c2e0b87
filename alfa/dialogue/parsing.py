"""Reading a reply in a dialogue: an answer letter, a confidence, a yes/no (the interactive evaluation, the GRPO
rollout and SML dialogues all read replies this way).

Each parser returns None when the reply does not say, and the caller counts that as a parse failure: never a
random number in its place, never a guess. The failure modes these guard against were found in MediQ's public
code: the article "A" in "A 21-year-old ..." read as option A, "not very confident" read as very confident, a
failed confidence parse replaced by a random number.
"""

from __future__ import annotations

import re

# An answer letter only where it is marked as one: "Answer: C", "(C)", "C)", "C.", "C:" or the whole reply "C".
# A capital letter followed by a space and a word ("A 21-year-old") is an article, not an answer. The marks rank:
# the word answer ("Answer: C", "the answer is (C)") over a line that starts with a letter ("C. Ceftriaxone") over
# the rest ("option D", "(B)").
_LETTER = r"\(?\**((?-i:[A-Z]))\b\**\)?"  # a capital: "the answer is a virus" names no option A
# Between the word answer and its letter: spaces, Markdown emphasis and "is", ":", "-", "=" in any order ("**Answer:** C",
# "The answer is: C").
_ANSWER_MARK = re.compile(r"\banswer\b(?:[\s*_:=-]|\bis\b)*" + _LETTER, re.IGNORECASE)
_LINE_MARK = re.compile(r"^\s*\**([A-Z])\**\s*(?:[.):]|$)", re.IGNORECASE | re.MULTILINE)
_OTHER_MARK = re.compile(r"(?:\boption\b|\bchoice\b)\s*(?:is|:|-)?\s*" + _LETTER + r"|\(((?-i:[A-Z]))\)", re.IGNORECASE)
_NEGATED = re.compile(r"\b(?:not|n't|never|hardly|barely|no longer)\s+(?:\w+\s+){0,2}$", re.IGNORECASE)
_YES = re.compile(r"^\W*(yes|yeah|yep|i am ready|ready)\b", re.IGNORECASE)
_NO = re.compile(r"^\W*(no|nope|not yet|not ready)\b", re.IGNORECASE)


def parse_answer_letter(reply: str | None, options: dict[str, str]) -> str | None:
    """The option letter the reply gives, or None. Where the word answer marks a letter, the last one wins ("Answer:
    B, no wait, Answer: C" is C). Otherwise the lines that start with a letter ("C. Ceftriaxone", then talk of
    option A) or, lacking those, the other marks must name one option: a reply that lists the options ("A. ...
    B. ... C. ... D. ...") gives none, it does not answer D. A reply that only names an option's text ("Has he
    received Ceftriaxone before?", "I would not give Ceftriaxone.") gives none: a question or a refusal that
    mentions an option is no answer, so a reply without a marked letter is never guessed."""
    text = (reply or "").strip()
    if not text:
        return None
    letters = {k.upper() for k in options}

    def marked(pattern: re.Pattern) -> list[str]:
        found = [next(g for g in m.groups() if g).upper() for m in pattern.finditer(text)]
        return [x for x in found if x in letters]

    if answered := marked(_ANSWER_MARK):
        return answered[-1]
    for pattern in (_LINE_MARK, _OTHER_MARK):
        if named := set(marked(pattern)):
            return named.pop() if len(named) == 1 else None
    return None


# The range a confidence is asked in is not the confidence: "Between 0 and 1, 0.85" is 0.85.
_CONFIDENCE_BOUNDS = re.compile(
    r"\b(?:between|from)?\s*0(?:\.0)?\s*(?:and|to|-|–)\s*1(?:\.0)?\b(?!\.\d|\s*%)"
    r"|\b(?:between|from)?\s*0\s*%?\s*(?:and|to|-|–)\s*100\s*%",
    re.IGNORECASE,
)


def parse_confidence(reply: str | None) -> float | None:
    """A confidence in [0, 1] from "0.8", "80%", "Confidence: 4/5"-style numbers, or None. Words are not read:
    "I am not very confident" gives None (a failure the caller counts), never "very confident". The asked range
    is not the answer: "Between 0 and 1, 0.85" is 0.85."""
    text = _CONFIDENCE_BOUNDS.sub(" ", (reply or "").strip())
    m = re.search(r"(\d+(?:\.\d+)?)\s*(%|/\s*(\d+(?:\.\d+)?))?", text)
    if not m:
        return None
    if _NEGATED.search(text[: m.start()]):
        return None  # "not 90% sure"
    value = float(m.group(1))
    if m.group(2) == "%":
        value /= 100
    elif m.group(3):
        value /= float(m.group(3))
    return value if 0 <= value <= 1 else None


_SCALE_BOUNDS = re.compile(r"\b1\s*(?:-|–|to)\s*\d+\b|\b1\s*\([^)]*\)\s*to\s*\d+\b|\bout of \d+\b|/\s*\d+\b")


def parse_scale(reply: str | None, top: int = 5) -> int | None:
    """A rating 1..top (MediQ's 5-point confidence scale), or None. The scale's own bounds are not a rating:
    "On a scale of 1 to 5: 4" and "4/5" are 4."""
    text = _SCALE_BOUNDS.sub(" ", reply or "")
    m = re.search(r"\b([1-9]\d*)\b", text)
    if not m or _NEGATED.search(text[: m.start()]):
        return None
    value = int(m.group(1))
    return value if 1 <= value <= top else None


def parse_yes_no(reply: str | None) -> bool | None:
    """True for a reply that starts with yes, False for one that starts with no, else None."""
    text = reply or ""
    if _NO.match(text):
        return False
    if _YES.match(text):
        return True
    return None


# A number marked as the answer: "Answer: 29", "**Answer:** $1,200", "the answer is 29", "#### 29", "\\boxed{29}".
_NUMBER_MARK = re.compile(
    r"(?:\banswer\b(?:[\s*_:=-]|\bis\b)*|####\s*|\\boxed\{)\s*\$?\s*(-?\d[\d,]*(?:\.\d+)?)", re.IGNORECASE
)


def final_number(reply: str | None) -> float | None:
    """The number marked as the answer (the last mark wins), or None. A number elsewhere in the reply (a step of
    the working, a quantity the reply asks about) is never read as the answer."""
    marked = _NUMBER_MARK.findall(reply or "")
    return float(marked[-1].replace(",", "")) if marked else None


def parse_answer(reply: str | None, options: dict[str, str]) -> str | None:
    """The answer a reply gives, as the case states its answer: an option letter where the case has options, else
    the marked number written plainly ("29", "2.5"). None when the reply does not say."""
    if options:
        return parse_answer_letter(reply, options)
    number = final_number(reply)
    return None if number is None else number_text(number)


def number_text(value) -> str | None:
    """A number as answers are compared: "1,200" -> "1200", "2.50" -> "2.5", "18.0" -> "18"; None if not one."""
    try:
        number = float(str(value).replace(",", "").replace("$", "").strip())
    except ValueError:
        return None
    return str(int(number)) if number.is_integer() else str(number)


def same_words(question: str) -> str:
    """A question's words as compared for "asked again": case and surrounding spaces ignored."""
    return question.strip().lower()
