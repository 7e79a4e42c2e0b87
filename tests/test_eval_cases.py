"""Case files as published (MediQ, CRAFT-MD, ALFA-style AskDocs) read into one shape, and the checks that flag
a case set a trivial strategy wins."""

import json

import pytest

from alfa.eval.cases import check_cases, load_cases, warnings


def test_the_shared_medqa_and_craft_md_files_read_whole(mediq_dir):
    medqa, rejects = load_cases(mediq_dir / "medqa_dev_interactive.jsonl")
    # 3 of the 1,272 published cases have an empty context (no chief complaint): rejected, named by line
    assert len(medqa) == 1269 and [r["line"] for r in rejects] == [225, 299, 780]
    assert all("field 'context' is empty" in r["reason"] for r in rejects)
    first = medqa[0]
    assert first.initial_info == first.context[0] and first.answer in first.options
    assert not first.facts[0][0].isdigit()  # "1. A culture ..." numbering stripped
    craft, rejects = load_cases(mediq_dir / "craft_md_interactive.jsonl")
    assert len(craft) == 140 and rejects == [] and craft[0].facts  # CRAFT-MD's `facts`
    report = check_cases(medqa)
    assert abs(sum(report["answer_letter_share"].values()) - 1) < 1e-3 and 0 <= report["longest_option_share"] <= 1


def test_skip_leaves_out_the_first_readable_cases_as_limit_counts_them(mediq_dir):
    """`--skip N --limit M` is the M cases after the N a method's `--limit N` built from (line 225, a reject,
    counts in neither)."""
    every, _ = load_cases(mediq_dir / "medqa_dev_interactive.jsonl", limit=250)
    built_from, _ = load_cases(mediq_dir / "medqa_dev_interactive.jsonl", limit=240)
    held_out, rejects = load_cases(mediq_dir / "medqa_dev_interactive.jsonl", limit=10, skip=240)
    assert [c.case_id for c in held_out] == [c.case_id for c in every[240:]]
    assert not {c.case_id for c in held_out} & {c.case_id for c in built_from}
    assert [r["line"] for r in rejects] == [225]


def _case(i, **over):
    case = {
        "id": i,
        "question": "Most likely diagnosis?",
        "options": {"A": "Flu", "B": "Common cold", "C": "Allergic rhinitis"},
        "answer_idx": "A",
        "context": "['Fever and aches for two days', 'No sneezing']",  # a Python-style list in a string
        "atomic_facts": ["1. Fever for two days.", "2. No sneezing."],
    }
    case.update(over)
    return json.dumps(case)


def test_python_style_lists_bad_rows_and_an_invented_initial_info_are_flagged(tmp_path):
    path = tmp_path / "cases.jsonl"
    lines = [_case(i) for i in range(6)]
    lines.append(_case(6, answer_idx="E"))  # not an option
    lines.append("{not json")
    lines.append(
        _case(8, initial_info="Persistent migraine with aura", post="My kid has had a fever and aches for two days.")
    )
    lines.append(
        _case(9, initial_info="Fever and aches in my kid", post="My kid has had a fever and aches for two days.")
    )
    path.write_text("\n".join(lines) + "\n")
    cases, rejects = load_cases(path)
    assert len(cases) == 8 and cases[0].context == ["Fever and aches for two days", "No sneezing"]
    assert [r["line"] for r in rejects] == [7, 8]
    assert "answer_idx" in rejects[0]["reason"] and str(path) in rejects[0]["reason"]
    report = check_cases(cases)
    assert report["answer_letter_share"] == {"A": 1.0}
    assert report["ungrounded_initial_info"]["count"] == 1 and report["ungrounded_initial_info"]["of"] == 2
    assert report["ungrounded_initial_info"]["examples"][0]["case_id"] == "8"
    said = " ".join(warnings(report))
    assert "answer A is right in 100%" in said and "1 of 2 initial infos" in said


@pytest.mark.parametrize("bad", [{"options": []}, {"context": []}])
def test_a_case_without_options_or_facts_is_a_reject_naming_the_field(tmp_path, bad):
    path = tmp_path / "c.jsonl"
    path.write_text(_case(0, **bad) + "\n")
    cases, rejects = load_cases(path)
    assert cases == [] and ("options" in rejects[0]["reason"] or "context" in rejects[0]["reason"])


def test_a_repeated_case_id_is_a_reject_naming_the_first_line(tmp_path):
    # episodes, call caches and pairs are keyed by the case id: a second case under the same id would overwrite the first
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join([_case(0), _case(1), _case(0)]) + "\n")
    cases, rejects = load_cases(path)
    assert [c.case_id for c in cases] == ["0", "1"]
    assert rejects[0]["line"] == 3 and "field 'id' is '0', the id of line 1" in rejects[0]["reason"]


def test_eval_interactive_on_a_file_with_no_readable_case_stops_with_a_clear_error(tmp_path, capsys):
    from alfa.cli import main

    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(["eval", "interactive", str(empty), "-o", str(tmp_path / "out")]) == 2
    assert "no readable case" in capsys.readouterr().err
    broken = tmp_path / "broken.jsonl"
    broken.write_text("{not json\n" + "x" * 1_000_000 + "\n")  # a malformed line and a huge one
    cases, rejects = load_cases(broken)
    assert cases == [] and [r["line"] for r in rejects] == [1, 2]
    assert main(["eval", "interactive", str(broken), "-o", str(tmp_path / "out")]) == 2
    two = tmp_path / "two.jsonl"
    two.write_text("\n".join([_case(0), _case(1)]) + "\n")
    assert main(["eval", "interactive", str(two), "--skip", "2", "-o", str(tmp_path / "out")]) == 2
    assert "no readable case after the first 2 (--skip 2)" in capsys.readouterr().err
    assert main(["eval", "interactive", str(two), "--skip", "-1", "-o", str(tmp_path / "out")]) == 2
    assert "--skip must be 0 or more, got -1" in capsys.readouterr().err


def test_eval_cases_on_a_questions_file_says_what_the_file_is_and_what_a_case_is(tmp_path, capsys):
    """The issue's reproduction: `alfa eval cases` on askdocs questions said `"n": 0` with 433 identical reasons
    and exit 0. Now one line: the reason counted once, the file's fields, what it looks like, what a case is."""
    from alfa.cli import main

    questions = tmp_path / "questions.jsonl"
    rows = [{"qid": f"q{i}", "post": "My knee hurts.", "question": "Since when?"} for i in range(3)]
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["eval", "cases", str(questions)]) == 2
    err = capsys.readouterr().err
    assert "no readable case: field 'context' is missing (3 lines)" in err and err.count("is missing") == 1
    assert "first row's fields: post, qid, question" in err and "looks like a questions file" in err
    assert "A case is one JSON object per line with question, context" in err


def test_a_line_that_is_not_utf8_is_one_reject_naming_its_file_and_line(tmp_path):
    path = tmp_path / "cases.jsonl"
    path.write_bytes(_case(0).encode() + b"\n" + b'{"question": "caf\xe9?"}\n' + _case(1).encode() + b"\n")
    cases, rejects = load_cases(path)
    assert [c.case_id for c in cases] == ["0", "1"]
    assert len(rejects) == 1 and rejects[0]["line"] == 2 and f"{path}:2: not UTF-8" in rejects[0]["reason"]


def test_alfas_published_mediq_askdocs_layout_reads_as_it_is(tmp_path):
    """ALFA's MediQ-AskDocs file: options a string holding a Python dict, atomic_facts a string holding a Python
    list, context the post as plain text (here beginning "[34/m]", which is no list), original_post the source.
    A hand-written line in that layout (not from the file)."""
    post = "[34/m] I have had a dry cough for three weeks. No fever. I smoke."
    line = {
        "id": "askdocs-1",
        "question": "What is the most likely cause of the cough?",
        "options": "{'A': 'Asthma', 'B': 'Post-viral cough', 'C': 'Lung cancer', 'D': 'GERD'}",
        "answer": "Post-viral cough",
        "answer_idx": "B",
        "atomic_facts": "['The patient is 34.', 'The cough is dry.', 'The patient smokes.']",
        "usage": "{}",
        "context": post,
        "initial_info": "A 34-year-old man has a dry cough.",
        "original_post": post,
    }
    path = tmp_path / "alfa_askdocs.jsonl"
    path.write_text(json.dumps(line) + "\n")
    cases, rejects = load_cases(path)
    assert rejects == []
    case = cases[0]
    assert case.options["B"] == "Post-viral cough" and case.answer == "B"
    assert case.context == [post] and case.facts[2] == "The patient smokes."
    assert case.post == post and case.initial_info == "A 34-year-old man has a dry cough."
    assert check_cases(cases)["ungrounded_initial_info"]["of"] == 1
