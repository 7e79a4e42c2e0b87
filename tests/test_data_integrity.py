"""Data that must never be silently wrong: flipped pairs become new pairs, splits stay put across rebuilds,
standalone fallbacks are counted, cards leave out stale reports and say when no groups were given."""

from __future__ import annotations

import json
import shutil

import polars as pl
import pytest
from conftest import SAMPLE, SAMPLE_MAP

from alfa.data.attributes import load_pack
from alfa.data.card import write_card
from alfa.data.filter import FilterConfig
from alfa.data.ingest import ingest, parse_map
from alfa.data.lint import lint, write_report
from alfa.data.pairs import FLIPPED_PAIR_TYPES, SPLITS, load_pairs, make_pairs, pair_id
from alfa.data.synthesize import SynthesisConfig, synthesize
from alfa.llm.backends import TransformersBackend
from alfa.review.pull import apply_review


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_model_dir):
    """A real synthesis run with the tiny model and standalone restatement on (an untrained model's
    restatements mostly fail, which is what the fallback accounting is for)."""
    d = tmp_path_factory.mktemp("tiny-run")
    questions = ingest(SAMPLE, parse_map(SAMPLE_MAP)).questions.head(12)
    rewriter = TransformersBackend(tiny_model_dir, batch_size=8, max_new_tokens=12)
    synthesize(questions, load_pack("core"), rewriter, d / "run", SynthesisConfig(standalone=True, samples=1))
    return d / "run"


def test_a_flipped_pair_is_a_new_pair_with_the_mirror_type(pairs_dir, tmp_path):
    pairs = load_pairs(pairs_dir)
    target = pairs.filter(pl.col("pair_type") == "original_vs_corrupted").row(0, named=True)
    decided = pl.DataFrame(
        [
            {
                "pair_id": target["pair_id"],
                "review_verdict": "reversed",
                "review_action": "flip",
                "review_reason": "humans preferred the rejected side",
                "review_answers": 2,
                "review_annotators": ["a", "b"],
                "review_votes": "reversed,reversed",
                "review_problems": [],
                "review_differ_only": "yes",
            }
        ]
    )
    apply_review(pairs_dir, tmp_path / "reviewed", decided, pl.DataFrame(), {}, source="test")
    reviewed = load_pairs(tmp_path / "reviewed")
    flipped = reviewed.filter(pl.col("flipped_from") == target["pair_id"]).row(0, named=True)
    assert flipped["pair_type"] == FLIPPED_PAIR_TYPES["original_vs_corrupted"] == "corrupted_vs_original"
    assert flipped["chosen"] == target["rejected"] and flipped["rejected"] == target["chosen"]
    assert flipped["pair_id"] == pair_id(
        target["qid"],
        target["attribute"],
        "corrupted_vs_original",
        target["rejected"][0]["content"],
        target["chosen"][0]["content"],
    )
    assert target["pair_id"] not in set(reviewed["pair_id"])  # the old id no longer names a pair
    # SFT reads `chosen` of original_vs_corrupted as a good question: the corrupted one is no longer among them
    good = reviewed.filter(pl.col("pair_type") == "original_vs_corrupted")["chosen"].to_list()
    assert target["rejected"] not in good
    assert reviewed.height == pairs.height and reviewed["pair_id"].n_unique() == reviewed.height
    # a second review that reverses it again gives back the original pair, id and type
    again = decided.with_columns(pair_id=pl.lit(flipped["pair_id"]))
    apply_review(tmp_path / "reviewed", tmp_path / "twice", again, pl.DataFrame(), {}, source="test")
    back = load_pairs(tmp_path / "twice").filter(pl.col("flipped_from") == flipped["pair_id"]).row(0, named=True)
    original_id = pair_id(
        target["qid"],
        target["attribute"],
        target["pair_type"],
        target["chosen"][0]["content"],
        target["rejected"][0]["content"],
    )  # the fixture's ids are short names, not computed
    assert (back["pair_id"], back["pair_type"], back["chosen"]) == (original_id, target["pair_type"], target["chosen"])


def test_posts_keep_their_split_whatever_the_filter_lets_through(askdocs_run, tmp_path, embedder):
    """The same real askdocs run built twice with different filter bounds: other pairs, same splits."""
    loose = make_pairs(
        askdocs_run.run,
        tmp_path / "loose",
        FilterConfig(enhance_min_similarity=0.0, corrupt_min_similarity=0.0),
        embedder=embedder,
    )
    strict = make_pairs(
        askdocs_run.run,
        tmp_path / "strict",
        FilterConfig(enhance_min_similarity=0.7, corrupt_min_similarity=0.6),
        embedder=embedder,
    )
    assert loose.height > strict.height > 0, "the two builds must differ for the test to mean something"
    split_of = dict(zip(loose["group_id"], loose["split"]))
    assert all(split_of[g] == s for g, s in zip(strict["group_id"], strict["split"]))
    info = json.loads((tmp_path / "strict" / "pairs.json").read_text())
    questions = pl.read_parquet(askdocs_run.run / "questions.parquet")
    assert sum(info["question_split_sizes"].values()) == questions.height
    shares = {s: n / questions.height for s, n in info["question_split_sizes"].items()}
    assert abs(shares["train"] - 0.8) < 0.1 and abs(shares["test"] - 0.1) < 0.1  # as close as 40 questions allow


def test_pairs_unfiltered_keeps_what_the_similarity_filter_rejects_in_the_same_splits(askdocs_run, tmp_path):
    """`alfa pairs --unfiltered` (ALFA's unfiltered ablation) on the real askdocs run: every pair of the filtered
    build and more (but where enhanced and corrupted came out identical), the posts in the same splits, and no variant
    rejected for its similarity."""
    from alfa.cli import main

    out = tmp_path / "unfiltered"
    assert main(["pairs", str(askdocs_run.run), "--unfiltered", "--judge", "none", "-o", str(out)]) == 0
    filtered, unfiltered = (
        pl.concat([pl.read_parquet(f) for f in sorted((d / "data").glob("*.parquet"))], how="diagonal_relaxed")
        for d in (askdocs_run.pairs, out)
    )
    rejected = pl.read_parquet(askdocs_run.pairs / "rejected_variants.parquet")
    similarity_reasons = {"too_similar", "too_dissimilar", "near_duplicate"}
    assert set(rejected["reason"]) & similarity_reasons, (
        "the filtered build must reject on similarity to mean something"
    )
    assert unfiltered.height > filtered.height
    # every filtered pair is kept, except where the unfiltered build met identical enhanced and corrupted texts
    # (which the filtered one never compared, having rejected one of them on similarity): both are dropped there
    unfiltered_rejects = pl.read_parquet(out / "rejected_variants.parquet")
    identical = set(unfiltered_rejects.filter(pl.col("reason") == "near_duplicate").select("qid", "attribute").rows())
    missing = filtered.filter(~pl.col("pair_id").is_in(unfiltered["pair_id"].to_list()))
    assert set(missing.select("qid", "attribute").rows()) <= identical
    assert missing.height < filtered.height / 10
    split_of = dict(zip(unfiltered["group_id"], unfiltered["split"]))
    assert all(split_of[g] == s for g, s in zip(filtered["group_id"], filtered["split"]))
    assert not set(unfiltered_rejects["reason"]) & {"too_similar", "too_dissimilar"}


def test_standalone_fallbacks_are_recorded_per_row_and_counted_in_the_card(tiny_run, tmp_path, embedder):
    variants = pl.read_parquet(tiny_run / "variants.parquet")
    per_question = variants.unique("qid")
    failed = per_question.filter(pl.col("standalone").is_null())
    assert failed.height > 0, "the untrained model should fail some restatements"
    assert failed["standalone_fallback"].null_count() == 0  # each failure keeps its reason
    assert (failed["source_question"] == failed["original"]).all()  # rewritten from the original instead
    assert (
        per_question.filter(pl.col("standalone").is_not_null())["standalone_fallback"].null_count()
        == per_question.height - failed.height
    )
    run = json.loads((tiny_run / "run.json").read_text())
    assert run["standalone_fallbacks"]["count"] == failed.height
    make_pairs(
        tiny_run,
        tmp_path / "pairs",
        FilterConfig(enhance_min_similarity=0.0, corrupt_min_similarity=0.0),
        embedder=embedder,
    )
    card = write_card(tmp_path / "pairs").read_text()
    assert f"{failed.height} of {per_question.height} restatements failed and were rewritten from the original" in card


def _cardable_copy(pairs_dir, d):
    """A copy of the training tests' pairs with the files a card reads beside them."""
    shutil.copytree(pairs_dir, d)
    for name, body in (
        (
            "pairs.json",
            {
                "run": _run_manifest(),
                "filter": FilterConfig().__dict__,
                "variants": 0,
                "kept_variants": 0,
                "split": {"train": 0.8, "validation": 0.1, "test": 0.1, "seed": 0},
            },
        ),
        ("filter_report.json", {}),
        ("rejected_variants.parquet", None),
    ):
        if body is None:
            pl.DataFrame(
                {"direction": [], "similarity": []}, schema={"direction": pl.String, "similarity": pl.Float64}
            ).write_parquet(d / name)
        else:
            (d / name).write_text(json.dumps(body))
    return d


def test_the_card_leaves_out_reports_made_for_other_data(pairs_dir, tmp_path):
    d = _cardable_copy(pairs_dir, tmp_path / "pairs")
    write_report(lint(d), d)
    first = write_card(d).read_text()
    assert "## Lint\n" in first and "made for other data" not in first and "Not linted yet" not in first
    # the data changes (a rebuild), the report stays: the card must not present it as this data's lint
    pairs = load_pairs(d)
    pairs.filter(pl.col("split") == "train").head(5).write_parquet(d / "data" / "train.parquet")
    card = write_card(d).read_text()
    assert "The lint report in this folder was made for other data" in card


def test_the_card_says_when_no_groups_were_given(tmp_path, tiny_model_dir, embedder):
    no_groups = SAMPLE_MAP.replace(",group=post_id", "")
    assert no_groups != SAMPLE_MAP
    questions = ingest(SAMPLE, parse_map(no_groups)).questions.head(4)
    rewriter = TransformersBackend(tiny_model_dir, batch_size=8, max_new_tokens=12)
    synthesize(questions, load_pack("core").select(["clarity"]), rewriter, tmp_path / "run", SynthesisConfig(samples=1))
    assert json.loads((tmp_path / "run" / "run.json").read_text())["groups"] == "none"
    make_pairs(
        tmp_path / "run",
        tmp_path / "pairs",
        FilterConfig(enhance_min_similarity=0.0, corrupt_min_similarity=0.0),
        embedder=embedder,
    )
    card = write_card(tmp_path / "pairs").read_text()
    assert "groups: none given" in card and "so no post appears in two splits" not in card


def _run_manifest() -> dict:
    return {
        "questions": 36,
        "questions_source": "fixture",
        "attribute_pack": {"name": "core", "digest": "d", "attributes": ["clarity"]},
        "rewriter": {"model": "m", "backend": "transformers", "sampling": {}},
        "prompt_template_hash": "t",
        "standalone": False,
        "hindsight_for_enhance": False,
        "groups": "given",
        "stats": {"requests": 0, "calls_made": 0, "cache_hits": 0, "failed": 0},
    }


def test_split_fractions_follow_the_questions(tiny_run):
    from alfa.data.pairs import SplitConfig, split_groups

    questions = pl.read_parquet(tiny_run / "questions.parquet")
    sizes = dict(questions.group_by("group_id").len().iter_rows())
    a = split_groups(list(sizes), sizes, SplitConfig())
    # adding questions of other posts never moves a post whose questions did not change... within the same
    # question set the assignment is a pure function of the seed and the group ids
    assert a == split_groups(list(reversed(list(sizes))), dict(reversed(list(sizes.items()))), SplitConfig())
    assert set(a.values()) <= set(SPLITS)


def test_the_card_shows_ten_pairs_drawn_by_a_seeded_hash(pairs_dir, tiny_run, tmp_path, embedder):
    from alfa.data.card_common import random_pair_rows

    pairs = load_pairs(pairs_dir)
    rows = random_pair_rows(pairs)
    assert len(rows) == 10 and rows == random_pair_rows(pairs.reverse())  # the same ten, whatever the order
    texts = {(r["attribute"], r["pair_type"], r["chosen"][-1]["content"]) for r in pairs.to_dicts()}
    assert all((a, t, c) in texts for a, t, c, _ in rows)
    loose = FilterConfig(enhance_min_similarity=0.0, corrupt_min_similarity=0.0)
    built = make_pairs(tiny_run, tmp_path / "pairs", loose, embedder=embedder)
    section = write_card(tmp_path / "pairs").read_text().split("## Ten pairs picked at random")[1].split("\n## ")[0]
    assert section.count("\n| ") == min(10, built.height) + 1  # the header and one line a pair


def test_lint_says_which_checks_it_skipped_in_its_printout_report_and_card(pairs_dir, tmp_path, tiny_model_dir, capsys):
    """Without a tokenizer the truncation checks do not run: "passed" must not cover them."""
    from alfa.cli import main

    d = _cardable_copy(pairs_dir, tmp_path / "pairs")
    assert main(["lint", str(d)]) == 0
    out = capsys.readouterr().out
    assert "all checks passed" not in out
    assert "skipped: truncated_diff, truncated: no tokenizer and max_length given" in out
    assert set(json.loads((d / "lint_report.json").read_text())["skipped"]) == {"truncated_diff", "truncated"}
    card = write_card(d).read_text()
    assert "it skipped truncated_diff, truncated: no tokenizer" in card or "- skipped `truncated_diff`" in card
    # with a tokenizer every check runs, and neither the report nor the card names a skip
    assert main(["lint", str(d), "--tokenizer", str(tiny_model_dir), "--max-length", "4096"]) == 0
    assert "skipped" not in capsys.readouterr().out
    assert json.loads((d / "lint_report.json").read_text())["skipped"] == {}
    assert "skipped" not in write_card(d).read_text().split("## Lint")[1].split("\n## ")[0]


def test_a_rerun_of_alfa_card_keeps_the_licence_and_title_and_a_bad_licence_is_refused(pairs_dir, tmp_path, capsys):
    """The issue's reproduction: a rerun of `alfa card` rewrote `license: apache-2.0` to the hidden default."""
    from alfa.cli import main

    d = _cardable_copy(pairs_dir, tmp_path / "pairs")
    assert main(["card", str(d), "--license", "apache-2.0", "--name", "Knee questions"]) == 0
    assert main(["card", str(d)]) == 0
    card = (d / "README.md").read_text()
    assert "license: apache-2.0" in card and "pretty_name: Knee questions" in card
    assert main(["card", str(d), "--license", "mit"]) == 0  # a new value given is taken, the title kept
    card = (d / "README.md").read_text()
    assert "license: mit" in card and "pretty_name: Knee questions" in card
    capsys.readouterr()
    assert main(["card", str(d), "--license", "apache2"]) != 0
    assert "'apache2' is not a licence id" in capsys.readouterr().err
    assert "license: mit" in (d / "README.md").read_text()  # the refused run changed nothing


def test_the_card_says_when_the_judges_agreement_interval_holds_chance(pairs_dir, tmp_path):
    d = _cardable_copy(pairs_dir, tmp_path / "pairs")
    info = json.loads((d / "pairs.json").read_text())
    (d / "judge_report.json").write_text(json.dumps({"by_type": {}}))
    for agree, ci, says in ((6, [0.31, 0.83], True), (10, [0.72, 1.0], False)):
        info["judge"] = {"judge": "j", "backend": "openai", "keep": "all", "pairs_before": 36, "pairs_judged": 10,
                         "pairs_kept": 36, "agreement": {"pairs": 10, "agree": agree, "rate": agree / 10, "ci95": ci},
                         "reading": "probability", "no_information_baseline": 0.5, "failed_calls": 0,
                         "by_reading": {}, "mean_p_a": 0.5, "stats": {}}  # fmt: skip
        (d / "pairs.json").write_text(json.dumps(info))
        card = write_card(d).read_text()
        assert ("no evidence the judge agrees with the pipeline beyond chance" in card) == says, agree
