import json

import datasets
import polars as pl
import pytest
from conftest import SAMPLE, SAMPLE_MAP

from alfa.data.ingest import PRESETS, FieldMap, ingest, parse_map, run_ingest


def test_askdocs_preset_reads_the_real_file_as_is(askdocs_path):
    result = ingest(askdocs_path, PRESETS["askdocs"])
    raw = [json.loads(line) for line in askdocs_path.read_text().splitlines()]
    assert result.read == len(raw) == 433
    assert result.questions.height + len(result.rejects) == 433
    assert result.questions.height >= 430
    q = result.questions.to_dicts()
    by_id = {r["qid"]: r for r in raw}
    for row in q:
        src = by_id[row["qid"]]
        assert row["group_id"] == src["id_post"]
        assert row["question"] == src["question"].strip()
        assert row["context"][0]["role"] == "user"
        assert row["context"][0]["content"].startswith(src["title"].strip())
        # earlier Q/A turns become assistant/user messages after the post
        assert len(row["context"]) == 1 + 2 * sum(1 for t in src["prev_additional_contexts"] if t["question"].strip())
        if src["final_diagnosis"]:
            assert json.loads(row["hindsight"])["final_diagnosis"] == src["final_diagnosis"]
    assert result.questions["group_id"].n_unique() == 190


def _write(path, lines: list[bytes]):
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_bad_jsonl_rows_are_rejected_with_line_field_reason_and_nothing_else_is_lost(tmp_path):
    good = {"id": "a", "q": "Does it hurt?", "post": "My knee hurts.", "g": "p1"}
    lines = [
        json.dumps(good).encode(),
        b'{"id": "b", "q": "Is it swollen?", "post": "knee", ',  # 2 malformed JSON
        json.dumps({"id": "c", "post": "no question field", "g": "p2"}).encode(),  # 3 missing field
        json.dumps({"id": "d", "q": "   ", "post": "empty question", "g": "p3"}).encode(),  # 4 empty
        b'{"id": "e", "q": "Caf\xe9?", "post": "latin-1 bytes", "g": "p4"}',  # 5 not UTF-8
        b"[1, 2, 3]",  # 6 not an object
        json.dumps({**good, "q": "Same id again?"}).encode(),  # 7 duplicate qid
        json.dumps({"id": "f", "q": "When did it start?", "post": "Ankle pain.", "g": "p1"}).encode(),
        b"",
        json.dumps({"id": "g", "q": "Any fever?", "post": "", "g": "p5"}).encode(),  # 10 empty context
    ]
    path = _write(tmp_path / "in.jsonl", lines)
    fm = parse_map("question=q,context=post,group=g,qid=id")
    out = tmp_path / "q.parquet"
    result = run_ingest([path], fm, out)
    assert result.questions["qid"].to_list() == ["a", "f"]
    rejects = {r.line: r for r in result.rejects}
    assert set(rejects) == {2, 3, 4, 5, 6, 7, 10}
    assert "malformed JSON" in rejects[2].reason
    assert rejects[3].field == "q" and "missing" in rejects[3].reason
    assert rejects[4].field == "q" and "empty" in rejects[4].reason
    assert "UTF-8" in rejects[5].reason
    assert "JSON object" in rejects[6].reason
    assert "duplicate qid" in rejects[7].reason
    assert rejects[10].field == "post"
    assert all(r.file == str(path) for r in result.rejects)
    # the reject file holds the same, one JSON object per line
    written = [json.loads(x) for x in (tmp_path / "q.rejects.jsonl").read_text().splitlines()]
    assert [w["line"] for w in written] == [r.line for r in result.rejects]
    assert pl.read_parquet(out).height == 2


def test_csv_with_a_bad_byte_and_a_ragged_row(tmp_path):
    path = tmp_path / "in.csv"
    path.write_bytes(
        b"qid,question,post,thread\n"
        b"1,Does it itch?,Red rash on arm.,t1\n"
        b"2,Is it \xff raised?,Rash.,t1\n"
        b"3,Any fever?,Cough for a week.,t2,EXTRA\n"
        b'4,"Where, exactly, is the pain?","Pain, left side.",t3\n'
    )
    result = ingest(path, parse_map("question=question,context=post,group=thread,qid=qid"))
    assert result.questions["qid"].to_list() == ["1", "4"]
    assert result.questions["question"].to_list()[1] == "Where, exactly, is the pain?"
    reasons = {r.line: r.reason for r in result.rejects}
    assert "UTF-8" in reasons[3] and "more cells" in reasons[4]


def test_a_quote_left_open_in_a_csv_is_rejected_naming_its_lines_and_a_multiline_post_is_kept(tmp_path, caplog):
    """The issue's reproductions: row 1 opens a quote that never closes (before: `1 questions; 0 rejected`, the
    next three rows swallowed into one question), and a quote that closes rows later (before: line 6 named
    nowhere). Every physical line is now kept or rejected with its number; a quoted post with line breaks is
    still one row, kept under its first line."""
    fm = parse_map("question=question,context=post")
    unclosed = tmp_path / "unclosed.csv"
    unclosed.write_text('question,post\n"Does it hurt?,Knee.\nWhen did it start?,Head.\nAny fever?,Cough.\n')
    result = ingest(unclosed, fm)
    assert result.questions.height == 0
    assert [(r.line, r.field) for r in result.rejects] == [(2, "*")]
    assert "opened on line 2 is not closed: lines 2-4" in result.rejects[0].reason
    later = tmp_path / "later.csv"
    rows = ["question,post", "Q1?,P1.", '"Q2?,P2.', "Q3?,P3.", 'Q4 "x"?,P4.', "Q5?,P5.", "Q6?,P6."]
    later.write_text("\n".join(rows) + "\n")
    result = ingest(later, fm)
    kept = result.questions["qid"].to_list()
    rejected = [r.line for r in result.rejects]
    assert kept == ["later-2", "later-6", "later-7"] and rejected == [3]
    assert "lines 3-5" in result.rejects[0].reason  # lines 3, 4 and 5 are named, in the reject
    posts = tmp_path / "posts.csv"
    posts.write_text('question,post\nAny fever?,"Cough for a week.\n\nWorse at night, ""dry"" cough."\nQ2?,P2.\n')
    with caplog.at_level("WARNING"):
        result = ingest(posts, fm)
    assert result.questions["qid"].to_list() == ["posts-2", "posts-5"] and not result.rejects
    assert 'Worse at night, "dry" cough.' in result.questions["context"][0][0]["content"]
    assert "1 rows span several lines" in caplog.text and "lines 2-4" in caplog.text


def test_parquet_and_saved_hf_dataset_inputs(tmp_path):
    rows = [
        {"question": "Does it hurt when you walk?", "context": "Hip pain for a month.", "thread": "t1"},
        {"question": "Any numbness?", "context": "Back pain.", "thread": "t2"},
    ]
    pl.DataFrame(rows).write_parquet(tmp_path / "in.parquet")
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "hf"))
    fm = FieldMap(group="thread")
    a = ingest(tmp_path / "in.parquet", fm)
    b = ingest(tmp_path / "hf", fm)
    assert a.questions["question"].to_list() == b.questions["question"].to_list() == [r["question"] for r in rows]
    assert a.questions["group_id"].to_list() == ["t1", "t2"]
    assert a.questions["qid"].to_list() == ["in-1", "in-2"]  # ids from file stem and row when none given


def test_sample_ingests_cleanly():
    result = ingest(SAMPLE, parse_map(SAMPLE_MAP))
    assert result.questions.height == 40 and not result.rejects
    assert result.questions["group_id"].n_unique() == 32


def test_unusable_inputs_fail_with_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="unsupported input type '.txt'"):
        ingest(_write(tmp_path / "x.txt", [b"hi"]), FieldMap())
    with pytest.raises(FileNotFoundError, match="no such file"):
        ingest(tmp_path / "missing.jsonl", FieldMap())
    with pytest.raises(ValueError, match="unknown; use question"):
        parse_map("questoin=q")
    with pytest.raises(ValueError, match="not KEY=COLUMN"):
        parse_map("question")


def test_empty_file_gives_no_questions_and_no_crash(tmp_path):
    result = ingest(_write(tmp_path / "e.jsonl", [b""]), FieldMap())
    assert result.questions.height == 0 and result.rejects == []


def test_cli_says_when_input_is_empty_and_synthesize_refuses_no_questions(tmp_path, capsys):
    from alfa.cli import main

    (tmp_path / "e.jsonl").write_text("")
    assert main(["ingest", str(tmp_path / "e.jsonl"), "-o", str(tmp_path / "q.parquet")]) == 1
    assert "no records in" in capsys.readouterr().err
    assert main(["synthesize", str(tmp_path / "q.parquet"), "-o", str(tmp_path / "run")]) == 2
    assert "holds no questions" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_byte_order_mark_keeps_the_first_row_and_non_text_questions_are_rejected(tmp_path):
    rows = [
        {"id": "a", "q": "Does it hurt?", "post": "Knee.", "g": "p1"},
        {"id": "b", "q": 42, "post": "A number, not a question.", "g": "p2"},
        {"id": "c", "q": ["Is it", "a list?"], "post": "A list.", "g": "p3"},
        {"id": "d", "q": "When did it start?", "post": "Ankle.", "g": "p4"},
    ]
    path = tmp_path / "excel.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(json.dumps(r) for r in rows).encode() + b"\n")
    result = ingest(path, parse_map("question=q,context=post,group=g,qid=id"))
    assert result.questions["qid"].to_list() == ["a", "d"]  # the first row survives the BOM
    rejects = {r.line: r for r in result.rejects}
    assert set(rejects) == {2, 3}
    assert rejects[2].field == "q" and "must be text, got int" in rejects[2].reason
    assert "got list" in rejects[3].reason


def test_json_error_wording(tmp_path):
    path = _write(tmp_path / "bad.jsonl", [b'{"q": "unterminated', b'{"q": "x" "y"}'])
    reasons = [r.reason for r in ingest(path, parse_map("question=q,context=q")).rejects]
    # json's own messages end in "at" ("Invalid control character at"): one "at", then the offset
    assert reasons == [
        "malformed JSON: Invalid control character at character 19",
        "malformed JSON: Expecting ',' delimiter at character 10",
    ]


def test_no_group_mapped_warns_and_is_recorded_in_the_table(tmp_path, caplog):
    from alfa.data.ingest import groups_of

    path = _write(tmp_path / "in.jsonl", [json.dumps({"q": "Any fever?", "post": "Cough."}).encode()])
    with caplog.at_level("WARNING"):
        run_ingest([path], parse_map("question=q,context=post"), tmp_path / "none.parquet")
    assert "no group column mapped" in caplog.text
    assert groups_of(tmp_path / "none.parquet") == "none"
    run_ingest([path], parse_map("question=q,context=post,group=post"), tmp_path / "given.parquet")
    assert groups_of(tmp_path / "given.parquet") == "given"


def test_default_ids_stay_unique_across_inputs_named_alike(tmp_path, capsys):
    """The issue's reproduction: `alfa ingest a/q.jsonl b/q.jsonl` without a qid column rejected b's rows as
    duplicates of a's (both `q-2`). Now each file's ids carry as many folders as tell them apart."""
    from alfa.cli import main

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        rows = [{"q": f"Does it hurt, {folder}{i}?", "post": f"My knee {folder}{i}."} for i in range(2)]
        (tmp_path / folder / "q.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "z.jsonl").write_text(json.dumps({"q": "Any fever?", "post": "Cough."}) + "\n")
    out = tmp_path / "out.parquet"
    inputs = [str(tmp_path / "a" / "q.jsonl"), str(tmp_path / "b" / "q.jsonl"), str(tmp_path / "z.jsonl")]
    assert main(["ingest", *inputs, "--map", "question=q,context=post", "-o", str(out)]) == 0
    assert "0 rejected" in capsys.readouterr().out
    assert pl.read_parquet(out)["qid"].to_list() == ["a/q-1", "a/q-2", "b/q-1", "b/q-2", "z-1"]
    # one input keeps the short ids it always had
    assert main(["ingest", inputs[0], "--map", "question=q,context=post", "-o", str(out)]) == 0
    assert pl.read_parquet(out)["qid"].to_list() == ["q-1", "q-2"]


def test_tracebacks_a_new_user_met_are_one_line_messages(tmp_path, capsys):
    """Found trying the CLI as a new user would: a CSV given to synthesize, a pairs file given to synthesize
    (KeyError: 'context'), ingest into an existing folder (IsADirectoryError), and a --map typo reported once
    per row without the file's real columns."""
    from alfa.cli import main

    mine = tmp_path / "mine.csv"
    mine.write_text("question,post\nDoes it hurt?,Knee.\nSince when?,Head.\n")
    assert main(["synthesize", str(mine), "-o", str(tmp_path / "r")]) == 2
    assert (
        "is not a questions table (the Parquet file `alfa ingest` writes): run `alfa ingest" in capsys.readouterr().err
    )
    pairs = tmp_path / "train.parquet"
    pl.DataFrame({"prompt": [[{"role": "user", "content": "x"}]], "chosen": ["a"], "rejected": ["b"]}).write_parquet(
        pairs
    )
    assert main(["synthesize", str(pairs), "-o", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "lacks qid, group_id, context, question" in err and "looks like a pairs file" in err
    (tmp_path / "outdir").mkdir()
    assert main(["ingest", str(mine), "--map", "question=question,context=post", "-o", str(tmp_path / "outdir")]) == 2
    assert "is a folder: give the questions file to write" in capsys.readouterr().err
    assert (
        main(["ingest", str(mine), "--map", "question=questoin,context=post", "-o", str(tmp_path / "q.parquet")]) == 2
    )
    err = capsys.readouterr().err
    assert err.count("questoin") == 1 and "its columns: post, question" in err
    assert not (tmp_path / "q.parquet").exists()
