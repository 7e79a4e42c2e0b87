import json

import polars as pl
import pytest

from alfa.cli import main
from alfa.data.ingest import PRESETS, ingest
from alfa.data.lint import LintConfig, lint
from alfa.data.pairs import (
    PAIR_SCHEMA,
    PAIR_TYPES,
    SPLITS,
    SplitConfig,
    build_pairs,
    pair_id,
    question_splits,
    split_groups,
    write_split_files,
)

MANIFEST = {"rewriter": {"model": "m"}, "prompt_template_hash": "t", "attribute_pack": {"name": "core", "digest": "d"}}


def _questions(n_groups=4):
    rows = [
        {
            "qid": f"q{i}",
            "group_id": f"g{i % n_groups}",
            "question": f"Original question {i}?",
            "context": [{"role": "user", "content": f"Post {i % n_groups}"}],
            "hindsight": "{}",
            "meta": "{}",
        }
        for i in range(8)
    ]
    return pl.DataFrame(rows)


def _kept(rows):
    return pl.DataFrame(
        [
            {
                "group_id": "x",
                "original": f"Original question {r[0][1:]}?",
                "source_question": f"Original question {r[0][1:]}?",
                "qid": r[0],
                "attribute": r[1],
                "direction": r[2],
                "text": r[3],
                "similarity": 0.8,
            }
            for r in rows
        ]
    )


def test_three_pair_types_and_deterministic_ids():
    kept = _kept(
        [
            ("q0", "clarity", "enhance", "Better 0?"),
            ("q0", "clarity", "corrupt", "Worse 0?"),
            ("q1", "clarity", "enhance", "Better 1?"),
            ("q2", "clarity", "corrupt", "Worse 2?"),
        ]
    )
    pairs = build_pairs(kept, _questions(), MANIFEST, question_splits(_questions(), SplitConfig()))
    got = {
        (r["qid"], r["pair_type"]): (r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in pairs.to_dicts()
    }
    assert got == {
        ("q0", "enhanced_vs_corrupted"): ("Better 0?", "Worse 0?"),
        ("q0", "enhanced_vs_original"): ("Better 0?", "Original question 0?"),
        ("q0", "original_vs_corrupted"): ("Original question 0?", "Worse 0?"),
        ("q1", "enhanced_vs_original"): ("Better 1?", "Original question 1?"),
        ("q2", "original_vs_corrupted"): ("Original question 2?", "Worse 2?"),
    }
    again = build_pairs(kept, _questions(), MANIFEST, question_splits(_questions(), SplitConfig()))
    assert pairs["pair_id"].to_list() == again["pair_id"].to_list()
    assert pairs["pair_id"].n_unique() == pairs.height
    assert pair_id("q0", "clarity", "enhanced_vs_original", "a", "b") != pair_id(
        "q0", "clarity", "enhanced_vs_original", "a", "c"
    )
    # TRL conversational format
    r = pairs.to_dicts()[0]
    assert r["prompt"][0]["role"] == "user" and r["chosen"][0]["role"] == "assistant"


def test_group_aware_split_on_real_posts(askdocs_path):
    q = ingest(askdocs_path, PRESETS["askdocs"]).questions
    sizes = dict(q.group_by("group_id").len().iter_rows())
    assignment = split_groups(list(sizes), sizes, SplitConfig(0.8, 0.1, 0.1, seed=1))
    assert set(assignment) == set(sizes)  # each group in exactly one split
    share = {s: sum(n for g, n in sizes.items() if assignment[g] == s) / q.height for s in SPLITS}
    # each post by its own bucket: the fractions hold in expectation over 190 posts, not exactly
    assert abs(share["train"] - 0.8) < 0.08 and abs(share["test"] - 0.1) < 0.06
    assert split_groups(list(sizes), sizes, SplitConfig(seed=1)) == assignment  # deterministic
    assert split_groups(list(sizes), sizes, SplitConfig(seed=2)) != assignment


def test_adding_questions_never_moves_a_post_already_split(askdocs_path):
    q = ingest(askdocs_path, PRESETS["askdocs"]).questions
    sizes = dict(q.group_by("group_id").len().iter_rows())
    posts = sorted(sizes)
    for seed in range(3):
        config = SplitConfig(0.7, 0.15, 0.15, seed=seed)
        before = split_groups(posts[:100], sizes, config)
        # more questions of posts already split (sizes change) and 90 more posts
        grown = {g: n + 3 for g, n in sizes.items()}
        after = split_groups(posts, grown, config)
        assert {g: after[g] for g in before} == before
        assert set(after.values()) == set(SPLITS)


def test_a_small_set_gets_no_empty_split_and_the_log_says_which_post_moved(caplog):
    sizes = {f"post-{i}": 1 + i % 3 for i in range(13)}  # the 40-question fixture's shape: 13 posts
    repaired = 0
    for seed in range(20):
        caplog.clear()
        assignment = split_groups(list(sizes), sizes, SplitConfig(0.8, 0.1, 0.1, seed=seed))
        assert set(assignment.values()) == set(SPLITS), seed
        for record in caplog.records:
            split, post = record.args[0], record.args[3]
            assert assignment[post] == split  # the post the log names is where it says
            repaired += 1
    assert repaired > 0  # 13 posts leave a 10% split empty about a quarter of the time
    # a fraction of 0 stays empty; two posts cannot fill three splits and nothing breaks
    assert "validation" not in split_groups(list(sizes), sizes, SplitConfig(0.9, 0.0, 0.1)).values()
    two = {"a": 1, "b": 1}
    assert len(set(split_groups(list(two), two, SplitConfig()).values())) == 2


def _pairs_dir(tmp_path, rows):
    base = {
        "rewriter": "m",
        "prompt_template_hash": "t",
        "attribute_pack": "core@d",
        "chosen_similarity": 0.9,
        "rejected_similarity": 0.8,
    }
    write_split_files(pl.DataFrame([{**base, **r} for r in rows], schema=PAIR_SCHEMA), tmp_path)
    return tmp_path


def _row(
    i,
    split="train",
    group=None,
    attribute="clarity",
    pair_type="enhanced_vs_original",
    chosen=None,
    rejected=None,
    post="My knee hurts.",
):
    return {
        "pair_id": f"p{i}",
        "qid": f"q{i}",
        "group_id": group or f"g{i}",
        "split": split,
        "attribute": attribute,
        "pair_type": pair_type,
        "prompt": [{"role": "user", "content": post}],
        "chosen": [{"role": "assistant", "content": chosen or f"When did the knee pain {i} start?"}],
        "rejected": [{"role": "assistant", "content": rejected or f"Anything else {i}?"}],
    }


def test_lint_blocks_identical_pairs_and_group_leakage(tmp_path, capsys):
    rows = [_row(i, split=s, pair_type=t) for i, (s, t) in enumerate([(s, t) for s in SPLITS for t in PAIR_TYPES])]
    rows.append(_row(20, chosen="Does it hurt?", rejected="does it hurt"))
    rows.append(_row(21, split="test", group="g0"))  # g0 is also in train
    d = _pairs_dir(tmp_path, rows)
    checks = {f.check: f for f in lint(d)}
    assert checks["identical_pair"].severity == "error" and checks["identical_pair"].examples == ["p20"]
    assert checks["group_leakage"].severity == "error" and checks["group_leakage"].examples == ["g0"]
    assert main(["lint", str(d)]) == 1
    out = capsys.readouterr().out
    assert "[ERROR] identical_pair" in out and "[ERROR] group_leakage" in out
    saved = json.loads((d / "lint_report.json").read_text())
    assert {f["check"] for f in saved["findings"] if f["severity"] == "error"} == {"identical_pair", "group_leakage"}


def test_lint_warns_on_length_bias_balance_and_empty_split(tmp_path):
    rows = [
        _row(i, chosen=f"When exactly did the pain in your left knee start, number {i}?", rejected="Pain?")
        for i in range(12)
    ]
    rows.append(_row(50, attribute="focus", pair_type="original_vs_corrupted", rejected="Any pain at all, then?"))
    d = _pairs_dir(tmp_path, rows)
    checks = {f.check: f for f in lint(d)}
    assert checks["length_bias"].severity == "warning" and "clarity" in checks["length_bias"].message
    assert "focus" not in checks["length_bias"].message  # too few pairs to judge
    assert checks["balance"].severity == "warning"
    assert checks["empty_split"].severity == "warning"
    assert all(f.severity == "warning" for f in checks.values())
    assert main(["lint", str(d)]) == 0  # warnings alone do not block


def test_a_split_holding_one_questions_pairs_is_a_warning(tmp_path):
    rows = [_row(i) for i in range(6)] + [_row(10 + i, split="test", group="g99") for i in range(2)]
    for r in rows[-2:]:
        r["qid"] = "q-only"  # the test split's two pairs both come from one question
    rows.append(_row(20, split="validation"))
    checks = {f.check: f for f in lint(_pairs_dir(tmp_path, rows))}
    assert checks["tiny_split"].severity == "warning" and "split 'test' holds the pairs of one question" in (
        checks["tiny_split"].message
    )


def test_lint_truncation_with_a_real_tokenizer(tmp_path, tiny_model_dir):
    long_post = "My knee has been swollen for weeks and it hurts when I climb stairs. " * 20
    rows = [
        _row(0, post=long_post),
        _row(1, post="Short post.", chosen="When did it start?", rejected="When did it stop?"),
    ]
    d = _pairs_dir(tmp_path, rows)
    checks = {f.check: f for f in lint(d, LintConfig(tokenizer=str(tiny_model_dir), max_length=64))}
    assert checks["truncated_diff"].severity == "error" and checks["truncated_diff"].examples == ["p0"]
    assert "truncated_diff" not in {
        f.check for f in lint(d, LintConfig(tokenizer=str(tiny_model_dir), max_length=4096))
    }
    with pytest.raises(ValueError, match="both tokenizer and max_length"):
        LintConfig(max_length=10)


def test_lint_on_a_missing_dir_says_how_to_build_it(tmp_path, capsys):
    assert main(["lint", str(tmp_path / "nope")]) == 2
    assert "alfa pairs RUN_DIR" in capsys.readouterr().err
