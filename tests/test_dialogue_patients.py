"""The fact-select patient answers from the case's facts only, verbatim, the same way every time."""

from alfa.dialogue.patients import CANNOT_ANSWER, FactSelectPatient
from alfa.eval.cases import load_cases


def test_fact_select_patient_quotes_matching_facts_and_refuses_the_rest(embedder, medqa_path):
    case = load_cases(medqa_path, limit=1)[0][0]  # the 21-year-old with knee pain; a bacterium that ferments no maltose
    patient = FactSelectPatient(embedder)
    answer, used = patient.answer(case.facts, "Does the bacteria ferment maltose?")
    assert "does not ferment maltose" in answer and all(case.facts[i].rstrip(".") in answer for i in used)
    assert patient.answer(case.facts, "Does the bacteria ferment maltose?") == (answer, used)  # deterministic
    assert patient.answer(case.facts, "What is your favourite football team?") == (CANNOT_ANSWER, [])
    assert patient.answer([], "Any fever?") == (CANNOT_ANSWER, [])
