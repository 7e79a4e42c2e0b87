"""The expert's replies in an interactive evaluation are read strictly: a reply that does not say is a parse
failure (None), never a guess. Adversarial replies from MediQ's known failure modes."""

import pytest

from alfa.dialogue.consult import read_student_turn
from alfa.dialogue.parsing import final_number, parse_answer_letter, parse_confidence, parse_scale, parse_yes_no

OPTIONS = {"A": "Gentamicin", "B": "Ciprofloxacin", "C": "Ceftriaxone", "D": "Trimethoprim"}


@pytest.mark.parametrize(
    "reply, letter",
    [
        # an option's text without a marked letter is never guessed (the article "A" is no answer either)
        ("A 21-year-old man with knee pain most likely needs Ceftriaxone.", None),
        ("Has he received Ceftriaxone before?", None),  # a question that names an option
        ("I would not give Ceftriaxone.", None),
        ("**Answer:** C", "C"),  # Markdown emphasis between the word answer and the letter
        ("The answer is: C", "C"),
        ("Final answer - **(C)**", "C"),
        ("A 21-year-old man with knee pain.", None),
        ("B.", "B"),
        ("B", "B"),
        ("  B  \n", "B"),
        ("The answer is (C)", "C"),
        ("Answer: B\nOn reflection, Answer: D", "D"),
        ("**C**: Ceftriaxone", "C"),
        ("Option D", "D"),
        ("Answer: E", None),  # not an option
        ("I would give gentamicin or ciprofloxacin.", None),  # two options quoted: no single answer
        # SmolLM2's replies in a CollabLLM build: a list of the options answers nothing (it read as D)
        ("A. Gentamicin\nB. Ciprofloxacin\nC. Ceftriaxone\nD. Trimethoprim", None),
        ("C. Ceftriaxone\n\nGo to option C, option A gives the drug to the wrong patient", "C"),  # it read as A
        ("A. Gentamicin\nB. Ciprofloxacin\n\nThe correct answer is C. It covers gonorrhoea.", "C"),
        ("The answer is a penicillin allergy test.", None),  # the article, after the word answer
        ("Option B or option D would do.", None),
        ("", None),
        (None, None),
    ],
)
def test_answer_letter(reply, letter):
    assert parse_answer_letter(reply, OPTIONS) == letter


@pytest.mark.parametrize(
    "reply, value",
    [
        ("0.8", 0.8),
        ("Confidence: 80%", 0.8),
        ("I'd say 4/5", 0.8),
        ("I am not very confident", None),  # words are never read as a number
        ("I am very confident", None),
        ("not 90% sure", None),
        ("7", None),  # outside [0, 1] and no scale given
        ("Between 0 and 1, 0.85", 0.85),  # the asked range is not the confidence
        ("On a scale from 0 to 1: 0.3", 0.3),
        ("0-1: 0.6", 0.6),
        ("Between 0% and 100%, about 70%", 0.7),
        ("", None),
    ],
)
def test_confidence(reply, value):
    assert parse_confidence(reply) == (pytest.approx(value) if value is not None else None)


@pytest.mark.parametrize(
    "reply, value",
    [
        ("4", 4),
        ("Rating: 5.", 5),
        ("6", None),
        ("not 4", None),
        ("high", None),
        ("On a scale of 1 to 5: 4", 4),  # the scale's bounds are not the rating
        ("4/5", 4),
        ("I'd rate it 3 out of 5.", 3),
        ("1 (poorly) to 5 (very well): 2", 2),
        ("Rating: 1 - poor", 1),
        ("Rating: 1 (poor) - 2 questions were off", 1),
    ],
)
def test_scale(reply, value):
    assert parse_scale(reply) == value


@pytest.mark.parametrize(
    "reply, value", [("Yes.", True), ("No, I need more information", False), ("Not yet", False), ("Maybe", None)]
)
def test_yes_no(reply, value):
    assert parse_yes_no(reply) is value


@pytest.mark.parametrize(
    "reply, value",
    [
        ("Answer: 29", 29.0),
        ("**Answer:** $1,200", 1200.0),
        ("She has 12 left, so the answer is 18.5", 18.5),
        ("#### 72", 72.0),
        ("Answer: 3\nNo wait. Answer: 4", 4.0),
        ("She sold 48 in April and 24 in May, 72 in all.", None),  # a number in the working is no answer
        ("How many clips did she sell in May?", None),
        ("", None),
    ],
)
def test_final_number_reads_only_a_marked_answer(reply, value):
    assert final_number(reply) == value


@pytest.mark.parametrize(
    "reply, options, turn",
    [
        ("Answer: C", OPTIONS, ("answer", "C")),
        ("**Answer:** C", OPTIONS, ("answer", "C")),
        ("The answer is: C", OPTIONS, ("answer", "C")),
        ("Has he received Ceftriaxone before?", OPTIONS, ("question", "Has he received Ceftriaxone before?")),
        ("Question: Is the rash itchy?", OPTIONS, ("question", "Is the rash itchy?")),
        ("Question:", OPTIONS, ("empty", None)),
        ("Answer: 29", {}, ("answer", "29")),
        ("Answer: 2.50", {}, ("answer", "2.5")),
        ("How many pages did she read yesterday?", {}, ("question", "How many pages did she read yesterday?")),
        ("", {}, ("empty", None)),
    ],
)
def test_one_reader_for_a_turn_that_asks_or_answers(reply, options, turn):
    """Training (GRPO rollouts, SML, CollabLLM) and the implicit expert of the evaluation read a turn alike."""
    assert read_student_turn(reply, options) == turn
