"""The dialogue engine's throughput against the same calls made flat (issue: interactive evaluation; target the
engine at >= 0.8 of flat).

Runs `alfa eval interactive`'s protocol on the first N MedQA dev cases (fixed budget, fact-select patient), with
a recorder around the backend that keeps every request the engine sent, in order. Then sends exactly those
requests again through `run_calls` in one flat batch, against a fresh cache and the same server. The ratio is
flat seconds / engine seconds for the same calls: what the turn loop (rounds, per-role batches, the patient's
MiniLM lookups, episode writes) costs over a flat batch.

    .venv/bin/python bench/bench_engine.py                       # SmolLM2's GGUF on llama.cpp: a few minutes
    .venv/bin/python bench/bench_engine.py --model local --cases 10  # the embedded Qwen default
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alfa.dialogue.patients import FactSelectPatient  # noqa: E402
from alfa.eval.cases import load_cases  # noqa: E402
from alfa.eval.interactive import InteractiveProtocol, evaluate_interactive  # noqa: E402
from alfa.llm.cache import CallCache  # noqa: E402
from alfa.llm.calls import CallStats, run_calls  # noqa: E402
from alfa.llm.embedded import smollm2_gguf_path  # noqa: E402
from alfa.llm.embedder import Embedder  # noqa: E402
from alfa.llm.make import backend_from_spec  # noqa: E402

MEDQA = ROOT.parent / "shared" / "data" / "mediq" / "medqa_dev_interactive.jsonl"


class Recorder:
    """Wraps a backend and keeps every request it is sent."""

    def __init__(self, inner):
        self.inner, self.sent = inner, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def complete(self, requests, on_done):
        self.sent += requests
        self.inner.complete(requests, on_done)


def warm_server(spec: str, cache_dir: Path):
    """A new backend for `spec`, warmed by one call (the first call pages the weights in): neither side of the
    ratio pays for it."""
    backend = backend_from_spec(spec, max_new_tokens=32)
    run_calls(
        backend, CallCache(cache_dir / "warm.sqlite"), [[{"role": "user", "content": "Hello"}]], "warm-up", CallStats()
    )
    return backend


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="backend spec (default: SmolLM2's GGUF on llama.cpp)")
    ap.add_argument("--cases", type=int, default=20)
    ap.add_argument("--max-questions", type=int, default=3)
    args = ap.parse_args()
    spec = args.model or f"llamacpp:{smollm2_gguf_path()}"
    cases = load_cases(MEDQA, limit=args.cases)[0]
    patient = FactSelectPatient(Embedder())
    with tempfile.TemporaryDirectory() as tmp:
        backend = warm_server(spec, Path(tmp) / "engine")
        try:
            recorder = Recorder(backend)
            protocol = InteractiveProtocol(recorder, recorder, patient, "fixed", max_questions=args.max_questions)
            t0 = time.perf_counter()
            report = evaluate_interactive(cases, protocol, Path(tmp) / "engine")
            engine_s = time.perf_counter() - t0
            sent = recorder.sent
        finally:
            backend.close()
        # A fresh server for the flat side: llama.cpp keeps earlier prompts' KV states in host memory, so the
        # same server would answer the repeated requests from that prompt cache.
        backend = warm_server(spec, Path(tmp) / "flat")
        try:
            cache = CallCache(Path(tmp) / "flat" / "flat.sqlite")
            t1 = time.perf_counter()
            run_calls(backend, cache, sent, "flat", CallStats())
            flat_s = time.perf_counter() - t1
            cache.close()
        finally:
            backend.close()
    print(f"{len(cases)} cases, {report['calls']['made']} calls through the engine in {engine_s:.1f} s "
          f"(baselines included); the same {len(sent)} requests flat in {flat_s:.1f} s")  # fmt: skip
    print(f"engine throughput / flat = {flat_s / engine_s:.3f}")


if __name__ == "__main__":
    main()
