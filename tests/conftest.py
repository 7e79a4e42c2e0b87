"""Shared fixtures: real models only (a tiny Llama built from a config, the embedded SmolLM2, MiniLM),
the real askdocs data by path, and the project's own demo sample."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The real data (askdocs, MediQ, GSM8K) lives beside the repository on the project's machines; ALFA_DATA
# points elsewhere. Tests that read it are marked `real_data` and skipped where it is absent.
DATA = Path(os.environ.get("ALFA_DATA") or ROOT.parent / "shared" / "data")
ASKDOCS = DATA / "askdocs" / "questions_dev.jsonl"
MEDIQ = DATA / "mediq"
MEDQA = MEDIQ / "medqa_dev_interactive.jsonl"
GSM8K = DATA / "gsm8k" / "train.jsonl"
SAMPLE = ROOT / "examples" / "clinical_sample.jsonl"
SAMPLE_MAP = "question=question,context=title+post,group=post_id,qid=row_id,hindsight=diagnosis"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

# One mechanism for every test that needs something a fresh clone may not have: a marker, a check, and the
# reason a skip prints. ALFA_NO_SKIPS=1 (set by .ci/run) turns each such skip into a failure.
NEEDS = {
    "real_data": (
        lambda: DATA.is_dir(),
        f"needs the real data at {DATA} (askdocs, MediQ, GSM8K: the project's shared/data folder beside the "
        "repository); set ALFA_DATA=/path/to/data to point elsewhere",
    ),
    "chromium": (lambda: os.path.exists(CHROMIUM), "needs Debian's chromium: apt-get install chromium"),
}
# Fixtures that read the real data: a test that uses one (directly or through another fixture) is marked.
REAL_DATA_FIXTURES = {"askdocs_path", "medqa_path", "mediq_dir", "gsm8k_path"}


def require(need: str) -> None:
    present, reason = NEEDS[need]
    if present():
        return
    if os.environ.get("ALFA_NO_SKIPS") == "1":
        pytest.fail(f"{reason} (ALFA_NO_SKIPS=1: every test must run here)")
    pytest.skip(reason)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if REAL_DATA_FIXTURES & set(item.fixturenames):
            item.add_marker("real_data")


def pytest_runtest_setup(item):
    for need in NEEDS:
        if item.get_closest_marker(need):
            require(need)


@pytest.fixture(scope="session", autouse=True)
def _offline(tmp_path_factory):
    # No model hub here: any accidental download must fail fast instead of hanging.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def askdocs_path() -> Path:
    require("real_data")
    return ASKDOCS


@pytest.fixture(scope="session")
def medqa_path() -> Path:
    require("real_data")
    return MEDQA


@pytest.fixture(scope="session")
def mediq_dir() -> Path:
    require("real_data")
    return MEDIQ


@pytest.fixture(scope="session")
def gsm8k_path() -> Path:
    require("real_data")
    return GSM8K


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A real (untrained) Llama: hidden 64, 2 layers, with a BPE tokenizer trained on the demo sample
    and a ChatML chat template (alfa.train.tiny). Generates noise fast, which is what filter tests need."""
    from alfa.train.tiny import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


TRAIN_POSTS = [
    "My knee hurts when I climb stairs.",
    "I have had a cough for three weeks.",
    "My son has a rash on his arms.",
    "I get headaches every afternoon.",
    "My stomach burns after meals.",
    "I feel dizzy when I stand up.",
]


@pytest.fixture(scope="session")
def pairs_dir(tmp_path_factory):
    """Synthetic pairs with a learnable signal (chosen questions specific, rejected ones vague), for the
    training tests: 36 pairs, clarity and specificity, two pair types, all three splits."""
    import polars as pl

    from alfa.data.pairs import PAIR_SCHEMA, write_split_files

    rows = []
    for i in range(36):
        post = TRAIN_POSTS[i % len(TRAIN_POSTS)]
        attribute = ["clarity", "specificity"][i % 2]
        rows.append(
            {
                "pair_id": f"p{i:02d}",
                "qid": f"q{i}",
                "group_id": f"g{i % 12}",
                "split": "train" if i % 12 < 10 else ("validation" if i % 12 == 10 else "test"),
                "attribute": attribute,
                "pair_type": ["enhanced_vs_original", "original_vs_corrupted"][i % 3 == 0],
                "prompt": [{"role": "user", "content": post}],
                "chosen": [
                    {
                        "role": "assistant",
                        "content": f"When exactly did it start, and how bad is it from 1 to 10, case {i}?",
                    }
                ],
                "rejected": [{"role": "assistant", "content": "Anything else?"}],
                "chosen_similarity": 0.8,
                "rejected_similarity": 1.0,
                "rewriter": "m",
                "prompt_template_hash": "t",
                "attribute_pack": "core@d",
            }
        )
    d = tmp_path_factory.mktemp("pairs")
    write_split_files(pl.DataFrame(rows, schema=PAIR_SCHEMA), d)
    return d


@pytest.fixture(scope="session")
def embedder():
    from alfa.llm.embedder import Embedder

    return Embedder()


@pytest.fixture(scope="session")
def smollm2():
    """The embedded SmolLM2-135M through transformers: the quick embedded model for tests."""
    from alfa.llm.make import smollm2_backend

    return smollm2_backend()


class CountingRewriter:
    """Wraps a real rewriter and counts the requests it answers; with `stop_after`, raises
    KeyboardInterrupt once that many answers were delivered (an interrupt between two batches).

    Not a fake: every request still goes to the wrapped model."""

    def __init__(self, inner, stop_after: int | None = None):
        self.inner = inner
        self.backend, self.model_id, self.sampling = inner.backend, inner.model_id, inner.sampling
        self.cache_id = inner.cache_id
        self.calls = 0
        self.stop_after = stop_after
        self.root = self  # the sampling copies count into their original

    def with_sampling(self, temperature, seed):
        import copy

        sampled = copy.copy(self)
        sampled.inner = self.inner.with_sampling(temperature, seed)
        sampled.sampling = sampled.inner.sampling
        return sampled

    def with_logprobs(self, top=10):
        import copy

        scoring = copy.copy(self)
        scoring.inner = self.inner.with_logprobs(top)
        scoring.sampling = scoring.inner.sampling
        return scoring

    def complete(self, requests, on_done):
        root = self.root

        def counted(i, completion):
            root.calls += 1
            on_done(i, completion)
            if root.stop_after is not None and root.calls >= root.stop_after:
                raise KeyboardInterrupt(f"interrupted after {root.calls} calls")

        self.inner.complete(requests, counted)


@pytest.fixture
def counting():
    return CountingRewriter


def run_until_cached(cmd: list[str], cache, at_least: int, timeout_s: float = 120):
    """Start `alfa synthesize` (cmd) in its own process and return it, still running, once its call cache
    holds `at_least` answers."""
    import sqlite3
    import subprocess
    import time

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout_s
    while time.time() < deadline and proc.poll() is None:
        try:
            cached = sqlite3.connect(cache).execute("SELECT COUNT(*) FROM calls").fetchone()[0] if cache.exists() else 0
        except sqlite3.OperationalError:  # created but no table yet
            cached = 0
        if cached >= at_least:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be interrupted; make it longer"
    return proc


def kill_9_when_cached(cmd: list[str], cache, at_least: int) -> set[str]:
    """Start `alfa synthesize` (cmd) in its own process, SIGKILL it once its call cache holds
    `at_least` answers, and return the keys cached at that moment."""
    import signal
    import sqlite3

    proc = run_until_cached(cmd, cache, at_least)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return {k for (k,) in sqlite3.connect(cache).execute("SELECT key FROM calls")}


@pytest.fixture(scope="session")
def askdocs_run(tmp_path_factory, askdocs_path):
    """Real pairs from the real askdocs data: 40 questions, relevance and specificity, rewritten by the
    embedded SmolLM2 (greedy only) through the CLI (160 generations, ~3 min on 2 cores; 26 pairs). Shared by the pipeline and review tests."""
    from types import SimpleNamespace

    from alfa.cli import main

    d = tmp_path_factory.mktemp("askdocs")
    run = SimpleNamespace(
        questions=d / "questions.parquet",
        run=d / "run",
        pairs=d / "pairs",
        synthesize=[
            "synthesize",
            str(d / "questions.parquet"),
            "--rewriter",
            "smollm2",  # fast; the llama.cpp default has its own tests (test_llamacpp, test_qwen)
            "--samples",
            "1",
            "--attributes",
            "core",
            "--select",
            "relevance,specificity",
            "--limit",
            "40",
            "-o",
            str(d / "run"),
        ],
    )
    assert main(["ingest", str(askdocs_path), "--preset", "askdocs", "-o", str(run.questions)]) == 0
    assert main(run.synthesize) == 0
    assert main(["pairs", str(run.run), "-o", str(run.pairs), "--judge", "none"]) == 0
    return run


@pytest.fixture(scope="session")
def argilla(tmp_path_factory):
    """A real Argilla server (argilla-server 2.8.0 + noida-db) on free ports, stopped by pid at the end.
    Yields (state dir, URL, owner API key)."""
    from alfa.review.server import owner_credentials, server_down, server_up

    state_dir = tmp_path_factory.mktemp("argilla")
    state = server_up(state_dir)
    yield state_dir, state.url, owner_credentials(state_dir)["api_key"]
    server_down(state_dir)


@pytest.fixture
def owner(argilla, monkeypatch):
    """A connection with the owner's key, passed the way users pass it: in the environment."""
    from alfa.review.connection import connect

    _, url, key = argilla
    monkeypatch.setenv("ARGILLA_API_URL", url)
    monkeypatch.setenv("ARGILLA_API_KEY", key)
    return connect()
