"""The GSM8K missing-premise testbed: `alfa tasks gsm8k` makes the cases, `alfa eval interactive` reads
`asked_decisive` (no expert call) and a numeric expert's accuracy. Questioners and experts here are scripts (not
models); the patient is the real fact-select patient (MiniLM)."""

import json

import pytest
from scripted import ScriptedBackend

from alfa.dialogue.patients import FactSelectPatient
from alfa.eval.cases import load_cases
from alfa.eval.gsm8k import make_case, solution_operands, write_gsm8k_cases
from alfa.eval.interactive import ORACLE, InteractiveProtocol, evaluate_interactive

# Hand-written in GSM8K's format (not from the data set).
PROBLEM = (
    "Tom has 12 red marbles. He buys 3 bags of blue marbles. Each bag holds 5 marbles. "
    "The shop is on Elm Street. How many marbles does Tom have now?"
)
SOLUTION = "Tom buys 3*5 = <<3*5=15>>15 blue marbles.\nHe has 12+15 = <<12+15=27>>27 marbles.\n#### 27"


def test_a_case_removes_one_premise_whose_number_the_solution_uses():
    assert solution_operands(SOLUTION) == ({"3", "5", "12", "15"}, 2)
    removed = set()
    for seed in range(12):
        case = make_case(PROBLEM, SOLUTION, "tom", seed)
        assert case["answer"] == "27" and case["steps"] == 2
        assert case["question"] == "How many marbles does Tom have now?"
        assert len(case["facts"]) == 4 and case["facts"][3] == "The shop is on Elm Street."
        gone = case["facts"][case["decisive_fact"]]
        assert gone not in case["initial_info"] and all(
            f in case["initial_info"] for i, f in enumerate(case["facts"]) if i != case["decisive_fact"]
        )
        removed.add(case["decisive_fact"])
    assert removed <= {0, 1, 2} and len(removed) > 1  # never the street (no number); the seed picks among the rest
    with pytest.raises(ValueError, match="fewer than two premise"):
        make_case("Ann has 3 cats. How many cats?", "#### 3", "ann")
    with pytest.raises(ValueError, match="no '#### <number>'"):
        make_case(PROBLEM, "27", "tom")


def _problems(n: int, start: int = 0) -> list[dict]:
    return [
        {
            "question": f"Ann has {i + 2} apples. She buys {i + 3} pears. She walks {i + 4} miles. How many fruits?",
            "answer": f"{i + 2}+{i + 3} = <<{i + 2}+{i + 3}={2 * i + 5}>>{2 * i + 5}\n#### {2 * i + 5}",
        }
        for i in range(start, start + n)
    ]


def test_split_by_each_problems_own_hash_and_every_reject_named(tmp_path):
    src = tmp_path / "p.jsonl"
    rows = [json.dumps(p) for p in _problems(60)]
    src.write_text("\n".join(rows[:30] + ["{not json", json.dumps({"question": "Q?"})] + rows[30:]) + "\n")
    counts = write_gsm8k_cases(src, tmp_path / "a", heldout_share=0.3)
    assert counts["train"] + counts["heldout"] == 60 and counts["rejected"] == 2
    assert 8 <= counts["heldout"] <= 30
    rejects = [json.loads(x) for x in (tmp_path / "a" / "rejects.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rejects] == [31, 32] and "field 'answer' is missing" in rejects[1]["reason"]
    card = (tmp_path / "a" / "README.md").read_text()
    assert "alfa tasks gsm8k" in card and "MIT" in card and "| heldout |" in card
    # more problems move none of the earlier ones between splits
    src.write_text(src.read_text() + "\n".join(json.dumps(p) for p in _problems(40, start=60)) + "\n")
    write_gsm8k_cases(src, tmp_path / "b", heldout_share=0.3)

    def split_of(d):
        return {json.loads(x)["id"]: name for name in ("train", "heldout") for x in (d / f"{name}.jsonl").open()}

    before, after = split_of(tmp_path / "a"), split_of(tmp_path / "b")
    assert len(after) == 100 and {i: after[i] for i in before} == before
    cases, bad = load_cases(tmp_path / "a" / "train.jsonl")
    assert bad == [] and cases[0].options == {} and cases[0].decisive_fact is not None


class Solver(ScriptedBackend):
    """A scripted expert (not a model): right when the facts it was shown include the removed premise, else off by
    one; it always writes 'Answer: N' after a line of working."""

    def __init__(self, cases):
        super().__init__("solver")
        self.cases = {c.question: c for c in cases}

    def reply(self, messages):
        text = messages[-1]["content"]
        case = next(c for q, c in self.cases.items() if q in text)
        knows = case.facts[case.decisive_fact] in text
        return f"Adding up gives the total.\nAnswer: {int(case.answer) + (0 if knows else 1)}"


@pytest.fixture(scope="module")
def gsm8k_cases(tmp_path_factory, gsm8k_path):
    head = tmp_path_factory.mktemp("gsm") / "head.jsonl"
    head.write_text("".join(gsm8k_path.open().readlines()[:200]))
    write_gsm8k_cases(head, head.parent / "cases", heldout_share=0.5)
    return load_cases(head.parent / "cases" / "heldout.jsonl", limit=40)[0]


def test_oracle_draws_the_decisive_fact_a_generic_or_off_target_question_does_not(tmp_path, gsm8k_cases, embedder):
    patient = FactSelectPatient(embedder, top_k=1)
    oracle = evaluate_interactive(
        gsm8k_cases, InteractiveProtocol(None, ORACLE, patient, "fixed", max_questions=1), tmp_path / "oracle"
    )
    assert oracle["n"] == len(gsm8k_cases) >= 30 and oracle["roles"] == {"questioner": ORACLE}
    assert oracle["asked_decisive"]["value"] >= 0.9 and oracle["asked_decisive_floor"]["value"] <= 0.2
    assert oracle["accuracy"]["value"] is None and "no_questions" not in oracle["baselines"]

    def about_a_given_quantity(messages, seed):  # the first sentence of what it was told, as a question
        known = messages[-1]["content"].split("What you know: ")[1].split("\n")[0]
        return known.split(". ")[0].rstrip(".") + "?"

    off = ScriptedBackend("off-target", about_a_given_quantity)
    report = evaluate_interactive(
        gsm8k_cases, InteractiveProtocol(None, off, patient, "fixed", max_questions=1), tmp_path / "off"
    )
    assert off.calls == len(gsm8k_cases) and report["asked_decisive"]["value"] <= 0.1
    assert any("not clearly above" in w for w in report["warnings"])


def test_the_expert_answers_numbers_from_the_facts_told_and_shares_calls(tmp_path, gsm8k_cases, embedder):
    patient = FactSelectPatient(embedder, top_k=1)
    cases = gsm8k_cases[:12]
    expert = Solver(cases)
    report = evaluate_interactive(
        cases, InteractiveProtocol(expert, ORACLE, patient, "fixed", max_questions=1), tmp_path
    )
    base = report["baselines"]
    assert base["full_information"]["value"] == 1.0 and base["no_questions"]["value"] == 0.0
    assert report["accuracy"]["value"] == report["asked_decisive"]["value"]
    assert report["answered_before_decisive_fact"]["value"] == 1 - report["asked_decisive"]["value"]
    # a final call sees the facts told, not the question's words: after the oracle drew the decisive fact it is the
    # full-information call (or, had it not, the no-questions one), so the baselines pay for no call twice
    assert expert.calls == 2 * len(cases) and report["calls"]["from_cache"] == len(cases)
    finals = [m[-1]["content"] for m in expert.requests]
    assert all("You asked" not in f and "Answer: ' and the number" in f for f in finals)


def test_the_training_partner_quotes_what_the_evaluation_patient_quotes(gsm8k_cases, medqa_path, embedder):
    """GRPO's fact partner and `alfa eval interactive`'s fact-select patient tell the same facts for the same
    question: one for a word problem, up to two for a diagnosis, so a training reward reads like the held-out one."""
    from alfa.dialogue.patients import default_top_k
    from alfa.eval.cases import load_cases
    from alfa.train.rollout import FactPartner

    partner = FactPartner()
    word = [(c.facts, c.facts[c.decisive_fact].split(",")[0] + "?", False) for c in gsm8k_cases[:10]]
    diagnosis = [(c.facts, f"{c.facts[0]} {c.facts[1]}?", True) for c in load_cases(medqa_path, limit=5)[0]]
    for asks, top_k in ((word, 1), (diagnosis, 2)):
        assert default_top_k(asks[0][2]) == top_k
        patient = FactSelectPatient(embedder, top_k=top_k)
        expected = [patient.answer(facts, q)[0] for facts, q, _ in asks]
        assert partner.replies(asks) == expected
        told = [len(patient.answer(facts, q)[1]) for facts, q, _ in asks]
        assert max(told) == top_k  # a word problem's premise is told alone; a diagnosis may get two facts


def test_premise_questions_ask_for_the_removed_premise_without_its_numbers(tmp_path, gsm8k_path, embedder):
    """ALFA's originals on the testbed: each asks the removed premise back with its quantities taken out, beside
    the case as the consultation shows it; one the patient does not answer with the premise is kept aside."""
    from alfa.eval.gsm8k import premise_question, write_premise_questions

    assert premise_question("Betty has $15 and 3 coins, after the 2nd week.") == (
        "Betty has how much and how many coins, after the 2nd week?"
    )
    assert premise_question("Prices rose 20% to 1,250.5 units.") == "Prices rose what percent to how many units?"
    head = tmp_path / "head.jsonl"
    head.write_text("".join(gsm8k_path.open().readlines()[:120]))
    write_gsm8k_cases(head, tmp_path / "cases", heldout_share=0.0)
    cases = {json.loads(line)["id"]: json.loads(line) for line in (tmp_path / "cases" / "train.jsonl").open()}
    out = tmp_path / "questions.jsonl"
    counts = write_premise_questions(tmp_path / "cases" / "train.jsonl", out, FactSelectPatient(embedder, top_k=1), 40)
    rows = [json.loads(line) for line in out.open()]
    assert counts["kept"] == len(rows) >= 36 and counts["kept"] + counts["rejected"] == 40
    for row in rows:
        case = cases[row["qid"]]
        premise = case["facts"][case["decisive_fact"]]
        assert row["group_id"] == row["qid"] and premise not in row["context"] and case["question"] in row["context"]
        assert premise_question(row["question"]) == row["question"]  # no quantity left to take out

    class Mute:  # never tells anything: every question is left out, with its reason
        def answer(self, facts, question):
            return "I can't answer that.", []

    counts = write_premise_questions(tmp_path / "cases" / "train.jsonl", out, Mute(), 5)
    rejects = [json.loads(line) for line in out.with_suffix(".rejects.jsonl").open()]
    assert counts == {"kept": 0, "rejected": 5} and not out.read_text()
    assert [r["line"] for r in rejects] == [1, 2, 3, 4, 5] and all("told facts []" in r["reason"] for r in rejects)
