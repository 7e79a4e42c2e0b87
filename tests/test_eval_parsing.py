"""The expert's replies in an interactive evaluation are read strictly: a reply that does not say is a parse
failure (None), never a guess. Adversarial replies from MediQ's known failure modes."""

import pytest

from alfa.dialogue.parsing import parse_answer_letter, parse_confidence, parse_scale, parse_yes_no

OPTIONS = {"A": "Gentamicin", "B": "Ciprofloxacin", "C": "Ceftriaxone", "D": "Trimethoprim"}


@pytest.mark.parametrize(
    "reply, letter",
    [
        ("A 21-year-old man with knee pain most likely needs Ceftriaxone.", "C"),  # the article is no answer
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
