"""The openai backend against a real HTTP server on loopback that speaks the OpenAI chat API and
serves a real (tiny) transformers model, with faults injected on chosen requests."""

import json

import polars as pl
import pytest
from chat_server import ChatServer, serve_in_thread
from conftest import SAMPLE, SAMPLE_MAP, kill_9_when_cached

from alfa.data.attributes import load_pack
from alfa.data.ingest import ingest, parse_map
from alfa.data.synthesize import SynthesisConfig, synthesize
from alfa.llm.backends import TransformersBackend
from alfa.llm.endpoint import ChatEndpoint


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    chat = ChatServer(TransformersBackend(tiny_model_dir, batch_size=1, max_new_tokens=8), slow_s=2.0)
    chat.url, stop = serve_in_thread(chat)
    yield chat
    stop()


@pytest.fixture
def questions():
    return ingest(SAMPLE, parse_map(SAMPLE_MAP)).questions.head(3)


def test_synthesis_over_http_retries_faults_and_caches(tmp_path, server, questions, monkeypatch):
    monkeypatch.setenv("ALFA_TEST_KEY", "sk-secret-value")
    server.reset()
    server.faults = {1: "429", 2: "500", 3: "empty_choices", 4: "bad_json"}
    rw = ChatEndpoint("tiny", server.url, concurrency=4, max_tokens=8, max_retries=5, api_key_env="ALFA_TEST_KEY")
    stats = synthesize(questions, load_pack("core"), rw, tmp_path / "run", SynthesisConfig(samples=1))
    assert stats.requests == 18 and stats.failed == 0
    assert server.hits == 18 + 4  # each injected fault cost exactly one extra request
    assert set(server.auth_headers) == {"Bearer sk-secret-value"}
    # the key is never written anywhere in the run dir
    for f in (tmp_path / "run").iterdir():
        assert b"sk-secret-value" not in f.read_bytes(), f
    # a rerun makes no request at all
    server.hits = 0
    stats = synthesize(questions, load_pack("core"), rw, tmp_path / "run", SynthesisConfig(samples=1))
    assert server.hits == 0 and stats.cache_hits == 18


def test_failed_calls_are_recorded_and_retried_next_run(tmp_path, server, questions, caplog):
    server.reset()
    server.faults = {i: "401" for i in range(1, 4)}  # not retryable: fail at once
    rw = ChatEndpoint("tiny", server.url, concurrency=1, max_tokens=8, max_retries=2)
    pack = load_pack("core").select(["clarity"])
    stats = synthesize(questions, pack, rw, tmp_path / "run", SynthesisConfig(samples=1))
    assert stats.failed == 3 and server.hits == 6
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("3 calls failed" in w and "rerun the same command" in w for w in warned)  # not only in the stats
    failed = [json.loads(x) for x in (tmp_path / "run" / "failed_calls.jsonl").read_text().splitlines()]
    assert len(failed) == 3 and all("HTTP 401" in f["error"] for f in failed)
    server.hits, server.faults = 0, {}
    stats = synthesize(questions, pack, rw, tmp_path / "run", SynthesisConfig(samples=1))
    assert server.hits == 3 and stats.failed == 0 and stats.cache_hits == 3  # only the failed ones again
    assert (tmp_path / "run" / "failed_calls.jsonl").read_text() == ""


def test_empty_replies_are_failed_calls_not_cached_and_retried_next_run(tmp_path, server, questions):
    """A 200 whose content is "" or null is not an answer: retried in the run, recorded when retries run
    out, never cached, and asked again by the next run."""
    server.reset()
    server.faults = {1: "empty_content", 2: "null_content", **{i: "empty_content" for i in range(3, 9)}}
    rw = ChatEndpoint("tiny", server.url, concurrency=1, max_tokens=8, max_retries=1)
    pack = load_pack("core").select(["clarity"])
    stats = synthesize(questions, pack, rw, tmp_path / "run", SynthesisConfig(samples=1))
    # 6 requests, 2 attempts each: the first 8 hits are empty, so 4 requests fail, 2 get their answer
    assert server.hits == 10 and stats.failed == 4
    failed = [json.loads(x) for x in (tmp_path / "run" / "failed_calls.jsonl").read_text().splitlines()]
    assert len(failed) == 4 and {f["error"] for f in failed} == {"endpoint returned empty content"}
    server.hits, server.faults = 0, {}
    stats = synthesize(questions, pack, rw, tmp_path / "run", SynthesisConfig(samples=1))
    assert server.hits == 4 and stats.failed == 0 and stats.cache_hits == 2
    replies = pl.read_parquet(tmp_path / "run" / "variants.parquet")["reply"]
    assert replies.null_count() == 0 and all(r.strip() for r in replies)


def test_unreachable_endpoint_fails_with_reasons_not_a_crash(tmp_path, questions):
    rw = ChatEndpoint("tiny", "http://127.0.0.1:9/v1", concurrency=2, max_retries=1, timeout_s=5)
    stats = synthesize(
        questions.head(1), load_pack("core").select(["clarity"]), rw, tmp_path / "run", SynthesisConfig(samples=1)
    )
    assert stats.failed == 2
    failed = [json.loads(x) for x in (tmp_path / "run" / "failed_calls.jsonl").read_text().splitlines()]
    assert all("Connect" in f["error"] or "connect" in f["error"] for f in failed)


def test_twenty_percent_faults_every_question_done_or_failed_with_reason(tmp_path, server):
    """Random 429 / 500 / slow-past-timeout / dropped connection / bad JSON / empty choices on 20% of hits."""
    server.reset()
    server.fault_rate = 0.2
    server.rng.seed(1)
    # A "slow" fault sleeps well past the client's timeout, and an ordinary answer (8 tokens of the tiny model)
    # stays well inside it even on 2 busy cores, so the only requests the client gives up on are the slow faults.
    slow_before, server.slow_s, timeout_s = server.slow_s, 8.0, 4.0
    questions = ingest(SAMPLE, parse_map(SAMPLE_MAP)).questions.head(10)
    try:
        rw = ChatEndpoint("tiny", server.url, concurrency=8, max_tokens=8, max_retries=4, timeout_s=timeout_s)
        stats = synthesize(questions, load_pack("core"), rw, tmp_path / "run", SynthesisConfig(samples=1))
    finally:
        server.fault_rate, server.slow_s = 0.0, slow_before
    faults = set(server.fault_log)
    assert len(server.fault_log) >= 5 and faults <= {"429", "500", "slow", "drop", "bad_json", "empty_choices"}
    assert len(faults) >= 3  # several kinds, not one
    variants = pl.read_parquet(tmp_path / "run" / "variants.parquet")
    assert variants.height == 60
    done = variants.filter(pl.col("error").is_null())
    failed = variants.filter(pl.col("error").is_not_null())
    assert done.height + failed.height == 60 and failed.height == stats.failed
    assert done["reply"].null_count() == 0
    recorded = [json.loads(x) for x in (tmp_path / "run" / "failed_calls.jsonl").read_text().splitlines()]
    assert len(recorded) == failed.height and all(r["error"] for r in recorded)
    # every done variant was answered, and paid once: the only answers beyond one per done request are
    # those of "slow" faults, which the server finished after the client had given up and retried
    done_keys = set(done["call_key"])
    assert done_keys <= set(server.answered)
    assert len(server.answered) - len(done_keys) <= server.fault_log.count("slow")


def test_kill_9_during_http_synthesis_then_rerun_repeats_no_cached_call(tmp_path, server, tiny_model_dir):
    import sys

    qfile = tmp_path / "q.parquet"
    all_q = ingest(SAMPLE, parse_map(SAMPLE_MAP)).questions
    all_q.write_parquet(qfile)
    run = tmp_path / "run"
    server.reset()
    cmd = [
        sys.executable,
        "-m",
        "alfa.cli",
        "-q",
        "synthesize",
        str(qfile),
        "--rewriter",
        "openai",
        "--model",
        "tiny",
        "--base-url",
        server.url,
        "--concurrency",
        "4",
        "--max-new-tokens",
        "8",
        "--samples",
        "1",
        "-o",
        str(run),
    ]
    cached_keys = kill_9_when_cached(cmd, run / "cache.sqlite", at_least=40)
    server.reset()
    rw = ChatEndpoint("tiny", server.url, concurrency=4, max_tokens=8)
    stats = synthesize(all_q, load_pack("core"), rw, run, SynthesisConfig(samples=1))
    assert stats.requests == 240 and stats.failed == 0
    assert server.hits == 240 - len(cached_keys) == stats.calls_made
    # no request whose answer was cached before the kill reached the server again
    assert not set(server.answered) & cached_keys
    assert set(server.answered) | cached_keys == set(pl.read_parquet(run / "variants.parquet")["call_key"])


@pytest.mark.parametrize("rpm, tpm, cost", [(120, None, 1), (None, 12000, 100)])
def test_rate_limits_allow_a_full_bucket_then_pace_requests(rpm, tpm, cost):
    """A bucket of a minute's budget goes at once; after that each request waits for its share:
    here 60 s / 120 = 0.5 s per request, in either dimension."""
    import asyncio
    import time

    from alfa.llm.endpoint import RateLimiter

    async def run(n):
        limiter = RateLimiter(rpm, tpm)
        t = time.monotonic()
        for _ in range(n):
            await limiter.acquire(cost)
        return time.monotonic() - t

    assert asyncio.run(run(120)) < 0.2  # the first minute's budget is there at once
    assert 0.9 <= asyncio.run(run(122)) < 1.6  # two more requests wait ~0.5 s each
    assert asyncio.run(RateLimiter(None, None).acquire(10**9)) is None  # no limits: never waits


def test_requests_spread_over_two_servers_and_survive_one_dying_mid_run(tmp_path, tiny_model_dir):
    """Two replicas: the least busy one takes each request, so both work; when one dies mid-run its requests
    move to the other. Nothing is lost and a rerun pays for nothing again."""
    import threading

    a, b = (ChatServer(TransformersBackend(tiny_model_dir, batch_size=1, max_new_tokens=8)) for _ in range(2))
    stops = []
    original_chat = b.chat

    async def dies_after_ten(request):  # replica b goes away during its tenth request
        if b.hits == 9:
            threading.Thread(target=stops[1]).start()
        return await original_chat(request)

    b.chat = dies_after_ten  # before its app is built, so the route serves it
    for chat in (a, b):
        chat.url, stop = serve_in_thread(chat)
        stops.append(stop)
    questions = ingest(SAMPLE, parse_map(SAMPLE_MAP)).questions.head(10)
    concurrency = 4
    rw = ChatEndpoint("tiny", f"{a.url},{b.url}", concurrency=concurrency, max_tokens=8, max_retries=4, timeout_s=10)
    try:
        stats = synthesize(questions, load_pack("core"), rw, tmp_path / "run", SynthesisConfig(samples=1))
        assert stats.requests == 60 and stats.failed == 0  # nothing lost
        assert 5 <= b.hits <= 10 < a.hits  # both replicas worked until b died, then a took every request
        with pytest.raises(OSError):  # b is really gone: its port refuses connections
            __import__("urllib.request").request.urlopen(b.url + "/models", timeout=2)
        variants = pl.read_parquet(tmp_path / "run" / "variants.parquet")
        done = set(variants["call_key"])
        assert done <= set(a.answered) | set(b.answered)
        # paid twice only for what was in flight on b when it died
        assert len(a.answered) + len(b.answered) - len(done) <= concurrency
        again = synthesize(questions, load_pack("core"), rw, tmp_path / "run", SynthesisConfig(samples=1))
        assert again.calls_made == 0 and again.cache_hits == 60
    finally:
        stops[0]()
        stops[1]()
