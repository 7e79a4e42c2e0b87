import json
import os
import sys

import polars as pl
import pytest
from conftest import SAMPLE, SAMPLE_MAP, kill_9_when_cached

from alfa.data.attributes import load_pack
from alfa.data.ingest import ingest, parse_map
from alfa.data.synthesize import SynthesisConfig, synthesize
from alfa.llm.backends import TransformersBackend


@pytest.fixture(scope="module")
def questions():
    return ingest(SAMPLE, parse_map(SAMPLE_MAP)).questions


@pytest.fixture(scope="module")
def tiny_rewriter(tiny_model_dir):
    return TransformersBackend(tiny_model_dir, batch_size=8, max_new_tokens=12)


def _variants(run_dir):
    return pl.read_parquet(run_dir / "variants.parquet").sort("qid", "attribute", "direction")


def test_finished_run_rerun_makes_zero_calls(tmp_path, questions, tiny_rewriter, counting):
    pack = load_pack("core")
    first = counting(tiny_rewriter)
    stats = synthesize(questions.head(5), pack, first, tmp_path / "run", SynthesisConfig(samples=1))
    assert first.calls == stats.calls_made == 5 * 3 * 2 and stats.cache_hits == 0
    again = counting(tiny_rewriter)
    stats2 = synthesize(questions.head(5), pack, again, tmp_path / "run", SynthesisConfig(samples=1))
    assert again.calls == 0 and stats2.cache_hits == 30 and stats2.calls_made == 0
    manifest = json.loads((tmp_path / "run" / "run.json").read_text())
    assert manifest["rewriter"]["model"] == tiny_rewriter.model_id
    assert manifest["attribute_pack"]["digest"] == pack.digest
    assert (tmp_path / "run" / "attribute_pack.yaml").exists()


def test_interrupted_run_resumes_and_pays_no_call_twice(tmp_path, questions, tiny_rewriter, counting):
    pack = load_pack("core")
    q = questions.head(6)  # 36 requests: 6 prompt prefixes (attribute x direction) of 6, one batch each
    interrupted = counting(tiny_rewriter, stop_after=12)
    with pytest.raises(KeyboardInterrupt):
        synthesize(q, pack, interrupted, tmp_path / "run", SynthesisConfig(samples=1))
    assert interrupted.calls == 12  # two whole batches got through before the interrupt
    resumed = counting(tiny_rewriter)
    stats = synthesize(q, pack, resumed, tmp_path / "run", SynthesisConfig(samples=1))
    assert resumed.calls == 36 - 12 and stats.cache_hits == 12
    # the resumed run produced exactly what an uninterrupted run produces
    clean = counting(tiny_rewriter)
    synthesize(q, pack, clean, tmp_path / "clean", SynthesisConfig(samples=1))
    assert clean.calls == 36
    assert _variants(tmp_path / "run").drop("call_key").equals(_variants(tmp_path / "clean").drop("call_key"))


def test_kill_9_mid_run_then_rerun_repeats_no_completed_call(tmp_path, questions, tiny_rewriter, counting):
    """A real `alfa synthesize` process killed with SIGKILL while it writes its cache."""
    qfile = tmp_path / "q.parquet"
    questions.write_parquet(qfile)
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "alfa.cli",
        "-q",
        "synthesize",
        str(qfile),
        "--rewriter",
        "transformers",
        "--model",
        str(tiny_rewriter.model_path),
        "--batch-size",
        "8",
        "--max-new-tokens",
        "12",
        "--samples",
        "1",
        "-o",
        str(run),
    ]
    cached = len(kill_9_when_cached(cmd, run / "cache.sqlite", at_least=24))
    assert 24 <= cached < 240
    resumed = counting(tiny_rewriter)
    stats = synthesize(questions, load_pack("core"), resumed, run, SynthesisConfig(samples=1))
    assert stats.requests == 240
    assert resumed.calls == 240 - cached and stats.cache_hits == cached


def test_standalone_and_hindsight(tmp_path, questions, smollm2, counting):
    """The embedded model: standalone restatement first, hindsight only in enhance prompts."""
    pack = load_pack("core").select(["relevance"])
    rw = counting(smollm2)
    stats = synthesize(
        questions.head(2),
        pack,
        rw,
        tmp_path / "run",
        SynthesisConfig(standalone=True, hindsight_for_enhance=True, samples=1),
    )
    assert stats.requests == 2 + 2 * 2 and rw.calls == 6
    v = _variants(tmp_path / "run")
    diagnosis = json.loads(questions.head(1)["hindsight"][0])["diagnosis"]
    from alfa.data.prompts import post_text, rewrite_messages

    row = questions.head(1).to_dicts()[0]
    src = v.filter(pl.col("qid") == row["qid"])["source_question"][0]
    enhance = rewrite_messages(
        pack.attributes["relevance"], "enhance", post_text(row["context"]), src, {"diagnosis": diagnosis}
    )
    corrupt = rewrite_messages(pack.attributes["relevance"], "corrupt", post_text(row["context"]), src)
    from alfa.llm.cache import call_key

    keys = set(v["call_key"].to_list())
    assert call_key(rw.cache_id, enhance, rw.sampling) in keys
    assert call_key(rw.cache_id, corrupt, rw.sampling) in keys
    assert diagnosis in enhance[-1]["content"] and diagnosis not in str(corrupt)


def test_failed_replies_are_sampled_again_each_sample_its_own_cached_call(tmp_path, questions, tiny_rewriter, counting):
    """The untrained model writes noise, so most greedy replies fail the text checks and are asked again with
    sampling: seed 1, then 2; every attempt is one cached call with its own key, and a rerun makes none."""
    from alfa.data.prompts import post_text, rewrite_messages
    from alfa.llm.cache import call_key

    pack = load_pack("core").select(["clarity"])
    q = questions.head(4)
    rw = counting(tiny_rewriter)
    stats = synthesize(q, pack, rw, tmp_path / "run", SynthesisConfig(samples=3, temperature=0.8))
    v = _variants(tmp_path / "run")
    attempts = [json.loads(a) for a in v["attempts"]]
    assert any(len(a) == 3 for a in attempts), "noise should fail three times somewhere"
    for tries in attempts:
        assert [t["sample"] for t in tries] == list(range(len(tries)))
        assert all(t["reason"] not in (None, "call_failed") for t in tries[:-1])  # only failures are asked again
        assert len(tries) == 3 or tries[-1]["reason"] is None  # a pass ends the attempts
    assert rw.calls == stats.calls_made == sum(len(a) for a in attempts) == stats.requests
    rows = {r["qid"]: r for r in q.to_dicts()}
    for row, tries in zip(v.to_dicts(), attempts):
        source = rows[row["qid"]]
        messages = rewrite_messages(
            pack.attributes["clarity"], row["direction"], post_text(source["context"]), source["question"]
        )
        sampling = rw.sampling if row["sample"] == 0 else rw.with_sampling(0.8, row["sample"]).sampling
        assert row["call_key"] == call_key(rw.cache_id, messages, sampling) and row["sample"] == tries[-1]["sample"]
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    resampled = sum(len(a) > 1 for a in attempts)
    assert run["sample_again"] == {"samples": 3, "temperature": 0.8, "max_words": 60, "resampled": resampled}
    again = counting(tiny_rewriter)
    synthesize(q, pack, again, tmp_path / "run", SynthesisConfig(samples=3, temperature=0.8))
    assert again.calls == 0 and _variants(tmp_path / "run").equals(v)


def test_shards_split_whole_posts_and_merge_back_with_nothing_missing(tmp_path, questions, tiny_rewriter, embedder):
    from alfa.data.pairs import load_pairs, make_pairs
    from alfa.data.synthesize import parse_shard, select_shard

    q = questions.head(12)
    shards = [select_shard(q, i, 3) for i in range(3)]
    assert sum(s.height for s in shards) == 12
    assert sorted(qid for s in shards for qid in s["qid"]) == sorted(q["qid"])
    groups = [set(s["group_id"]) for s in shards]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])  # whole posts
    pack = load_pack("core").select(["clarity"])
    shared_cache = tmp_path / "shared-cache.sqlite"  # several shards may share one cache file
    for i in range(3):
        synthesize(q, pack, tiny_rewriter, tmp_path / f"s{i}", SynthesisConfig(cache=shared_cache), shard=(i, 3))
    assert not (tmp_path / "s0" / "cache.sqlite").exists()
    pairs = make_pairs([tmp_path / f"s{i}" for i in range(3)], tmp_path / "pairs", embedder=embedder)
    info = json.loads((tmp_path / "pairs" / "pairs.json").read_text())
    assert info["variants"] == 12 * 2 and info["run"]["questions"] == 12
    # the count of variants sampled again is every shard's, not the first shard's
    resampled = [
        json.loads((tmp_path / f"s{i}" / "run.json").read_text())["sample_again"]["resampled"] for i in range(3)
    ]
    assert info["run"]["sample_again"]["resampled"] == sum(resampled) and sum(resampled) > resampled[0]
    assert load_pairs(tmp_path / "pairs").height == pairs.height
    with pytest.raises(ValueError, match=r"shard\(s\) \[2\] of 3 missing"):
        make_pairs([tmp_path / "s0", tmp_path / "s1"], tmp_path / "p2", embedder=embedder)
    with pytest.raises(ValueError, match="shard 1/3 given twice"):
        make_pairs([tmp_path / "s0", tmp_path / "s1", tmp_path / "s1"], tmp_path / "p3", embedder=embedder)
    synthesize(q, load_pack("core").select(["relevance"]), tiny_rewriter, tmp_path / "other", shard=(2, 3))
    with pytest.raises(ValueError, match="differ in 'attribute_pack'"):
        make_pairs([tmp_path / "s0", tmp_path / "s1", tmp_path / "other"], tmp_path / "p4", embedder=embedder)
    synthesize(
        q, pack, tiny_rewriter, tmp_path / "one-sample", SynthesisConfig(cache=shared_cache, samples=1), shard=(2, 3)
    )
    with pytest.raises(ValueError, match="differ in 'sample_again'"):
        make_pairs([tmp_path / "s0", tmp_path / "s1", tmp_path / "one-sample"], tmp_path / "p5", embedder=embedder)
    with pytest.raises(ValueError, match="expected I/N"):
        parse_shard("two of three")
    with pytest.raises(ValueError, match="0 <= I < N"):
        parse_shard("3/3")


def test_local_models_run_on_the_gpu_when_there_is_one_and_where_alfa_device_says(
    tiny_model_dir, tiny_rewriter, embedder, monkeypatch
):
    """The rule written out here, not read back from default_device(): the GPU when torch sees one (so this
    passes on a CPU machine and a GPU machine alike), else the CPU; ALFA_DEVICE wins when set."""
    import torch

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if "ALFA_DEVICE" not in os.environ:
        assert tiny_rewriter.model.device.type == expected and embedder.model.device.type == expected
    monkeypatch.setenv("ALFA_DEVICE", "cpu")
    assert TransformersBackend(tiny_model_dir, batch_size=1, max_new_tokens=1).model.device.type == "cpu"


def test_the_cli_counts_variants_sampled_again_not_restatements(tmp_path, questions, tiny_rewriter, capsys):
    """With --standalone the restatements are requests too; "sampled again" counts only variants asked again."""
    from alfa.cli import main

    qfile = tmp_path / "q.parquet"
    questions.head(3).write_parquet(qfile)
    base = ["synthesize", str(qfile), "--rewriter", "transformers", "--model", str(tiny_rewriter.model_path),
            "--select", "clarity", "--standalone", "--max-new-tokens", "12"]  # fmt: skip
    assert main([*base, "--samples", "1", "-o", str(tmp_path / "once")]) == 0
    assert "6 variants (0 sampled again): 9 requests" in capsys.readouterr().out  # 3 restatements + 6 rewrites
    assert main([*base, "--samples", "2", "-o", str(tmp_path / "twice")]) == 0
    resampled = json.loads((tmp_path / "twice" / "run.json").read_text())["sample_again"]["resampled"]
    assert (
        0 < resampled <= 6
        and f"6 variants ({resampled} sampled again): {9 + resampled} requests" in capsys.readouterr().out
    )


def test_a_reply_too_long_for_the_filters_max_words_is_sampled_again(tmp_path, questions):
    """Resampling judges "too long" by the filter's max_words (a pipeline's filter.max_words), not a fixed 60:
    a 14-word question passes at 60 and is asked again at 10. A scripted rewriter (not a model) writes it."""
    from scripted import ScriptedBackend

    long = "Could you tell me exactly when the pain first started and how bad it is?"
    short = "When did the pain start?"
    pack = load_pack("core").select(["clarity"])
    for max_words, expected in ((60, 0), (10, 2)):
        rw = ScriptedBackend("long-then-short", reply=lambda messages, seed: long if seed is None else short)
        synthesize(
            questions.head(1), pack, rw, tmp_path / str(max_words), SynthesisConfig(samples=2), max_words=max_words
        )
        run = json.loads((tmp_path / str(max_words) / "run.json").read_text())
        assert run["sample_again"]["resampled"] == expected and run["sample_again"]["max_words"] == max_words
        assert set(_variants(tmp_path / str(max_words))["reply"]) == {long if expected == 0 else short}
