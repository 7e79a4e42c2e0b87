import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import polars as pl
import pytest

from alfa.attributes import load_pack
from alfa.ingest import ingest, parse_map
from alfa.rewriters import TransformersRewriter
from alfa.synthesize import synthesize
from conftest import SAMPLE, SAMPLE_MAP


@pytest.fixture(scope="module")
def questions():
    return ingest(SAMPLE, parse_map(SAMPLE_MAP)).questions


@pytest.fixture(scope="module")
def tiny_rewriter(tiny_model_dir):
    return TransformersRewriter(tiny_model_dir, batch_size=8, max_new_tokens=12)


def _variants(run_dir):
    return pl.read_parquet(run_dir / "variants.parquet").sort("qid", "attribute", "direction")


def test_finished_run_rerun_makes_zero_calls(tmp_path, questions, tiny_rewriter, counting):
    pack = load_pack("core")
    first = counting(tiny_rewriter)
    stats = synthesize(questions.head(5), pack, first, tmp_path / "run")
    assert first.calls == stats.calls_made == 5 * 3 * 2 and stats.cache_hits == 0
    again = counting(tiny_rewriter)
    stats2 = synthesize(questions.head(5), pack, again, tmp_path / "run")
    assert again.calls == 0 and stats2.cache_hits == 30 and stats2.calls_made == 0
    manifest = json.loads((tmp_path / "run" / "run.json").read_text())
    assert manifest["rewriter"]["model"] == tiny_rewriter.model_id
    assert manifest["attribute_pack"]["digest"] == pack.digest
    assert (tmp_path / "run" / "attribute_pack.yaml").exists()


def test_interrupted_run_resumes_and_pays_no_call_twice(tmp_path, questions, tiny_rewriter, counting):
    pack = load_pack("core")
    q = questions.head(6)  # 36 requests, batches of 8
    interrupted = counting(tiny_rewriter, stop_after=20)
    with pytest.raises(KeyboardInterrupt):
        synthesize(q, pack, interrupted, tmp_path / "run")
    assert interrupted.calls == 16  # two whole batches got through before the interrupt
    resumed = counting(tiny_rewriter)
    stats = synthesize(q, pack, resumed, tmp_path / "run")
    assert resumed.calls == 36 - 16 and stats.cache_hits == 16
    # the resumed run produced exactly what an uninterrupted run produces
    clean = counting(tiny_rewriter)
    synthesize(q, pack, clean, tmp_path / "clean")
    assert clean.calls == 36
    assert _variants(tmp_path / "run").drop("call_key").equals(_variants(tmp_path / "clean").drop("call_key"))


def test_kill_9_mid_run_then_rerun_repeats_no_completed_call(tmp_path, questions, tiny_rewriter, counting):
    """A real `alfa synthesize` process killed with SIGKILL while it writes its cache."""
    qfile = tmp_path / "q.parquet"
    questions.write_parquet(qfile)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "alfa.cli", "-q", "synthesize", str(qfile), "--rewriter", "transformers",
           "--model", str(tiny_rewriter.model_path), "--batch-size", "8", "--max-new-tokens", "12", "-o", str(run)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cache = run / "cache.sqlite"
    deadline = time.time() + 120
    done_before_kill = 0
    while time.time() < deadline and proc.poll() is None:
        if cache.exists():
            try:
                done_before_kill = sqlite3.connect(cache).execute("SELECT COUNT(*) FROM calls").fetchone()[0]
            except sqlite3.OperationalError:
                done_before_kill = 0
            if done_before_kill >= 24:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed; make it longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    cached = sqlite3.connect(cache).execute("SELECT COUNT(*) FROM calls").fetchone()[0]
    assert 24 <= cached < 240
    resumed = counting(tiny_rewriter)
    stats = synthesize(questions, load_pack("core"), resumed, run)
    assert stats.requests == 240
    assert resumed.calls == 240 - cached and stats.cache_hits == cached


def test_standalone_and_hindsight(tmp_path, questions, local_rewriter, counting):
    """The embedded model: standalone restatement first, hindsight only in enhance prompts."""
    pack = load_pack("core").select(["relevance"])
    rw = counting(local_rewriter)
    stats = synthesize(questions.head(2), pack, rw, tmp_path / "run", standalone=True, hindsight_for_enhance=True)
    assert stats.requests == 2 + 2 * 2 and rw.calls == 6
    v = _variants(tmp_path / "run")
    diagnosis = json.loads(questions.head(1)["hindsight"][0])["diagnosis"]
    from alfa.prompts import rewrite_messages
    from alfa.synthesize import _post_text

    row = questions.head(1).to_dicts()[0]
    src = v.filter(pl.col("qid") == row["qid"])["source_question"][0]
    enhance = rewrite_messages(pack.attributes["relevance"], "enhance", _post_text(row["context"]), src,
                               {"diagnosis": diagnosis})
    corrupt = rewrite_messages(pack.attributes["relevance"], "corrupt", _post_text(row["context"]), src)
    from alfa.cache import call_key

    keys = set(v["call_key"].to_list())
    assert call_key(rw.model_id, enhance, rw.sampling) in keys
    assert call_key(rw.model_id, corrupt, rw.sampling) in keys
    assert diagnosis in enhance[-1]["content"] and diagnosis not in str(corrupt)
