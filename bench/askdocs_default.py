"""The embedded default against SmolLM2 on real r/AskDocs posts, side by side in one run (issue: "an embedded
default that works on real posts").

For each rewriter, the first N askdocs dev questions (default 100), the core attributes, both directions:
alfa synthesize -> alfa pairs, then the embedded judge on a seeded sample of each backend's pairs. Prints,
per rewriter: the share of variants kept per attribute and direction, pairs per question, judge agreement
(95% interval, beside the 25% of a judge answering at random), wall time. And, for the llama.cpp path, its
throughput against llama.cpp's own timings for the same requests (the server reports prompt and generation
milliseconds with every reply): alfa's overhead is what the ratio misses from 1.

    .venv/bin/python bench/askdocs_default.py                    # ~1 h on 2 cores
    .venv/bin/python bench/askdocs_default.py --questions 5 --judge-pairs 4 -o runs/bench-default-smoke

Each rewriter keeps its own call cache in OUTPUT (a rerun makes no call twice; a larger --questions reuses
the smaller run's answers). Writes OUTPUT/summary.json and OUTPUT/summary.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alfa.data.attributes import load_pack  # noqa: E402
from alfa.data.ingest import PRESETS, run_ingest  # noqa: E402
from alfa.data.pairs import make_pairs  # noqa: E402
from alfa.data.synthesize import SynthesisConfig, synthesize  # noqa: E402
from alfa.llm.make import BackendConfig, make_backend  # noqa: E402

ASKDOCS = ROOT.parent / "shared" / "data" / "askdocs" / "questions_dev.jsonl"
# (name, rewriter kind, attempts per variant): SmolLM2 greedy only, as alfa's embedded default was before.
REWRITERS = [
    ("qwen2.5-coder-1.5b llama.cpp (new default)", "local", 3),
    ("smollm2-135m transformers (old)", "smollm2", 1),
]


class ServerTimings:
    """Wraps a rewriter and sums the server-side milliseconds llama.cpp reports with each reply."""

    def __init__(self, inner):
        self.inner = inner
        self.ms = 0.0
        self.replies = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def with_sampling(self, temperature, seed):
        sampled = ServerTimings(self.inner.with_sampling(temperature, seed))
        sampled.root = self
        return sampled

    def complete(self, requests, on_done):
        root = getattr(self, "root", self)

        def timed(i, completion):
            t = completion.timings or {}
            root.ms += float(t.get("prompt_ms") or 0) + float(t.get("predicted_ms") or 0)
            root.replies += completion.timings is not None
            on_done(i, completion)

        self.inner.complete(requests, timed)


def run_one(name, kind, samples, questions, out: Path, judge, judge_pairs: int) -> dict:
    rewriter = make_backend(BackendConfig(kind))
    timed = ServerTimings(rewriter) if rewriter.backend == "llamacpp" else rewriter
    t0 = time.perf_counter()
    try:
        stats = synthesize(
            questions,
            load_pack("core"),
            timed,
            out / "run",
            SynthesisConfig(samples=samples, cache=out / "cache.sqlite"),
        )
    finally:
        rewriter.close()
    synth_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    pairs = make_pairs(out / "run", out / "pairs", judge=judge, judge_sample=judge_pairs, judge_keep="all")
    pairs_s = time.perf_counter() - t1
    info = json.loads((out / "pairs" / "pairs.json").read_text())
    rates = json.loads((out / "pairs" / "filter_report.json").read_text())
    row = {
        "rewriter": name,
        "model": rewriter.model_id,
        "attempts_per_variant": samples,
        "questions": questions.height,
        "variants": info["variants"],
        "kept_variants": info["kept_variants"],
        "kept_share": round(info["kept_variants"] / info["variants"], 4),
        "kept_by_attribute_direction": {f"{a}/{d}": r["rate"] for a, ds in rates.items() for d, r in ds.items()},
        "rejection_reasons": _reasons(rates),
        "pairs": pairs.height,
        "pairs_per_question": round(pairs.height / questions.height, 2),
        "judge": info["judge"]["agreement"] if info["judge"] else None,
        "synthesis_s": round(synth_s, 1),
        "calls_made": stats.calls_made,
        "cache_hits": stats.cache_hits,
        "pairs_and_judge_s": round(pairs_s, 1),
    }
    if timed is not rewriter and stats.calls_made:
        row["server_ms_total"] = round(timed.ms)
        row["server_timed_replies"] = timed.replies
        row["throughput_vs_server"] = round(timed.ms / 1000 / stats.seconds, 3)  # 1.0 = no client overhead
    return row


def _reasons(rates: dict) -> dict:
    total: dict[str, int] = {}
    for ds in rates.values():
        for r in ds.values():
            for k, v in r["reasons"].items():
                total[k] = total.get(k, 0) + v
    return dict(sorted(total.items(), key=lambda kv: -kv[1]))


def markdown(rows: list[dict]) -> str:
    keys = sorted({k for r in rows for k in r["kept_by_attribute_direction"]})
    lines = ["| | " + " | ".join(r["rewriter"] for r in rows) + " |", "|---" * (len(rows) + 1) + "|"]

    def line(label, fn):
        lines.append(f"| {label} | " + " | ".join(fn(r) for r in rows) + " |")

    line("questions", lambda r: str(r["questions"]))
    line("variants kept", lambda r: f"{r['kept_variants']} of {r['variants']} ({r['kept_share']:.0%})")
    for k in keys:
        line(f"kept {k}", lambda r, k=k: f"{r['kept_by_attribute_direction'].get(k, 0):.0%}")
    line("pairs per question", lambda r: f"{r['pairs_per_question']:.2f} ({r['pairs']} pairs)")
    line(
        "judge agreement (95% CI; no information: 50%)",
        lambda r: (
            "n/a"
            if not r["judge"] or not r["judge"]["pairs"]
            else f"{r['judge']['rate']:.0%} ({r['judge']['ci95'][0]:.0%}-{r['judge']['ci95'][1]:.0%}) of {r['judge']['pairs']}"
        ),
    )
    line("rejections", lambda r: ", ".join(f"{k} {v}" for k, v in r["rejection_reasons"].items()) or "-")
    line("synthesis wall time", lambda r: f"{r['synthesis_s'] / 60:.1f} min ({r['calls_made']} calls)")
    line(
        "throughput vs server timings",
        lambda r: f"{r['throughput_vs_server']:.2f}" if "throughput_vs_server" in r else "-",
    )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--questions", type=int, default=100, help="the first N askdocs dev questions")
    ap.add_argument("--judge-pairs", type=int, default=100, help="pairs per rewriter the judge compares")
    ap.add_argument("-o", "--output", type=Path, default=ROOT / "runs" / "bench-default")
    ap.add_argument("--only", help="run only the rewriter of this kind (local or smollm2)")
    args = ap.parse_args()
    out = args.output
    questions = run_ingest([ASKDOCS], PRESETS["askdocs"], out / "questions.parquet").questions.head(args.questions)
    judge = make_backend(BackendConfig("local", max_new_tokens=16), stop=())
    rows = []
    try:
        for name, kind, samples in REWRITERS:
            if args.only and kind != args.only:
                continue
            rows.append(run_one(name, kind, samples, questions, out / kind, judge, args.judge_pairs))
            print(json.dumps(rows[-1], indent=2), flush=True)
    finally:
        judge.close()
    (out / "summary.json").write_text(json.dumps(rows, indent=2))
    table = markdown(rows)
    (out / "summary.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
