import polars as pl
import pytest

from alfa.data.filter import UNFILTERED, FilterConfig, extract_question, filter_variants


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("Does the pain wake you up at night?", ("Does the pain wake you up at night?", None)),
        (
            'Here is the rewritten question: "Does the pain wake you at night?"',
            ("Does the pain wake you at night?", None),
        ),
        ("Rewritten question: does it hurt when you walk?", ("Does it hurt when you walk?", None)),
        ("**Enhanced question:** How long has the rash been there?", ("How long has the rash been there?", None)),
        ("Okay. Is the rash itchy?", ("Is the rash itchy?", None)),
        ("", (None, "empty")),
        ("   \n ", (None, "empty")),
        ("I'm sorry, but I can't help with medical questions.", (None, "refusal")),
        ("As an AI language model, I cannot diagnose.", (None, "refusal")),
        ("The tightness usually comes on during rest and it is fine", (None, "no_question")),
        ("Does it hurt? When did it start?", (None, "multiple_questions")),
        ("1. Does it hurt?\n2. Is it red?", (None, "multiple_questions")),
        (
            "I'm 41M and I've been taking ibuprofen every day for two months and I'm not sure what to do. Should I stop?",
            (None, "no_question"),
        ),
    ],
)
def test_extract_question(reply, expected):
    assert extract_question(reply) == expected


def test_extract_question_too_long():
    assert extract_question("Is " + "very " * 70 + "bad?") == (None, "too_long")


def _variants(rows):
    base = {"group_id": "g1", "standalone": None, "error": None, "call_key": "k"}
    return pl.DataFrame([{**base, **r} for r in rows], infer_schema_length=None)


ORIGINAL = "Do you have any fever or chills with the cough?"


def _mixed_rows():
    return [
        # kept: a plausible rewrite on each side
        dict(
            qid="q1",
            attribute="specificity",
            direction="enhance",
            original=ORIGINAL,
            source_question=ORIGINAL,
            reply="Have you measured a fever above 38 C or had shaking chills since the cough began?",
        ),
        dict(
            qid="q1",
            attribute="specificity",
            direction="corrupt",
            original=ORIGINAL,
            source_question=ORIGINAL,
            reply="Have you felt unwell in any other way with the cough?",
        ),
        # echo (punctuation/case differ only)
        dict(
            qid="q2",
            attribute="clarity",
            direction="enhance",
            original=ORIGINAL,
            source_question=ORIGINAL,
            reply="do you have any fever, or chills, with the cough" + "?",
        ),
        # off topic -> too dissimilar
        dict(
            qid="q2",
            attribute="clarity",
            direction="corrupt",
            original=ORIGINAL,
            source_question=ORIGINAL,
            reply="What is your favourite football team?",
        ),
        # a verbatim few-shot example
        dict(
            qid="q3",
            attribute="clarity",
            direction="corrupt",
            original=ORIGINAL,
            source_question=ORIGINAL,
            reply="Is there any manifestation of that thoracic sensation in non-exertional states?",
        ),
        # the call failed
        dict(
            qid="q3",
            attribute="clarity",
            direction="enhance",
            original=ORIGINAL,
            source_question=ORIGINAL,
            reply=None,
            error="HTTP 500: boom",
        ),
        # near-duplicates of each other
        dict(
            qid="q4",
            attribute="relevance",
            direction="enhance",
            original=ORIGINAL,
            source_question=ORIGINAL,
            reply="Along with the cough, have you had a fever or chills?",
        ),
        dict(
            qid="q4",
            attribute="relevance",
            direction="corrupt",
            original=ORIGINAL,
            source_question=ORIGINAL,
            reply="Along with the cough, have you had fever or chills?",
        ),
    ]


EXAMPLES = {"Is there any manifestation of that thoracic sensation in non-exertional states?"}


def test_filter_reasons_with_real_embeddings(embedder):
    result = filter_variants(_variants(_mixed_rows()), FilterConfig(), embedder, EXAMPLES)
    reasons = {(r["qid"], r["direction"]): r["reason"] for r in result.rejected.to_dicts()}
    assert reasons == {
        ("q2", "enhance"): "echo",
        ("q2", "corrupt"): "too_dissimilar",
        ("q3", "corrupt"): "copied_example",
        ("q3", "enhance"): "call_failed",
        ("q4", "enhance"): "near_duplicate",
        ("q4", "corrupt"): "near_duplicate",
    }
    assert sorted(result.kept["direction"].to_list()) == ["corrupt", "enhance"]
    assert all(0.3 <= s <= 0.98 for s in result.kept["similarity"])
    # pass rates account for every variant
    total = sum(d["total"] for a in result.pass_rates.values() for d in a.values())
    kept = sum(d["kept"] for a in result.pass_rates.values() for d in a.values())
    assert (total, kept) == (8, 2)
    assert result.pass_rates["clarity"]["corrupt"]["reasons"] == {"copied_example": 1, "too_dissimilar": 1}


def test_filter_config_rejects_inverted_bounds():
    with pytest.raises(ValueError, match="enhance_min_similarity"):
        FilterConfig(enhance_min_similarity=0.9, enhance_max_similarity=0.5)


def test_unfiltered_keeps_what_only_the_similarity_checks_reject(embedder):
    """ALFA's unfiltered ablation: the off-topic rewrite and the near-duplicates stay; a non-question, an echo, a
    copied example and a failed call still cannot be a pair."""
    result = filter_variants(_variants(_mixed_rows()), UNFILTERED, embedder, EXAMPLES)
    reasons = {(r["qid"], r["direction"]): r["reason"] for r in result.rejected.to_dicts()}
    assert reasons == {("q2", "enhance"): "echo", ("q3", "corrupt"): "copied_example", ("q3", "enhance"): "call_failed"}
    kept = {(r["qid"], r["direction"]) for r in result.kept.to_dicts()}
    assert kept == {("q1", "enhance"), ("q1", "corrupt"), ("q2", "corrupt"), ("q4", "enhance"), ("q4", "corrupt")}


def test_unfiltered_still_drops_identical_enhanced_and_corrupted(embedder):
    same = "Have you had a fever with the cough?"
    rows = [
        dict(qid="q1", attribute="clarity", direction=d, original=ORIGINAL, source_question=ORIGINAL, reply=same)
        for d in ("enhance", "corrupt")
    ]
    result = filter_variants(_variants(rows), UNFILTERED, embedder)
    assert result.kept.height == 0
    assert set(result.rejected["reason"]) == {"near_duplicate"}
