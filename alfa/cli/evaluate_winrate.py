"""`alfa eval winrate` (alfa.eval.winrate, alfa.eval.judges): its options and the glue that builds the judge."""

from __future__ import annotations

import sys
from pathlib import Path


def add_eval_winrate(verbs, fmt) -> None:
    """alfa eval winrate"""
    w = verbs.add_parser(
        "winrate",
        help="win rate of A's questions over B's (or the human ones), with the judge's own controls",
        formatter_class=fmt,
        description="The judge compares A's and B's question for each post, overall and per attribute. A win "
        "counts 1, a tie 0.5, a loss 0; a post where a side generated nothing is a loss for that side "
        "(missing_a, missing_b); unreadable judgements are counted apart, never dropped. Beside the rate, two "
        "checks of the judge: `control` (an irrelevant question against B: a fit judge puts it near 0) and "
        "`known_difference` (each post's human question against the one written for another post, and with "
        "--pairs against its corrupted variant: a fit judge puts it near 1), and the verdict `judge_fit`. Writes "
        "DIR/winrate.json, DIR/report.md and DIR/verdicts.jsonl.\n\nJudges: a backend (pairwise, both orders; "
        "read from its first-token probabilities of A and B where it reports them, as llama.cpp does); "
        "`pointwise` or `pointwise:BACKEND` (it rates each question alone, 1-5, the expected rating under its "
        "first-token probabilities); `rm:DIR[,DIR...]` (reward models from `alfa train`, one per attribute; posts "
        "they were trained on are refused).",
        epilog="Example:\n  alfa generate transformers:runs/train/dpo q.parquet -o runs/gen/dpo.jsonl\n"
        "  alfa eval winrate --a runs/gen/dpo.jsonl --b human --questions q.parquet -o runs/eval/dpo-vs-human\n"
        "  alfa eval winrate ... --judge pointwise --pairs runs/askdocs/pairs -o runs/eval/pointwise",
    )
    w.add_argument("--a", required=True, help="questions JSONL of model A (from alfa generate)")
    w.add_argument("--b", required=True, help="questions JSONL of model B, or `human` (the original questions)")
    w.add_argument("--questions", required=True, help="the questions table both were generated for")
    w.add_argument("-o", "--output", required=True, help="folder for winrate.json, report.md, verdicts.jsonl")
    w.add_argument(
        "--judge",
        default="local",
        help="a backend judging pairwise (local, smollm2, llamacpp:FILE.gguf, openai:MODEL@URL...), `pointwise[:"
        "BACKEND]` or `rm:DIR[,DIR...]` (default: local)",
    )
    w.add_argument(
        "--attributes",
        default="core",
        help="attribute pack whose definitions give the per-attribute judgements; `none`: the overall judgement "
        "only (default: core)",
    )
    w.add_argument(
        "--reading",
        choices=["probability", "text"],
        default="probability",
        help="pairwise judges: probability = P(A better) from first-token log-probs, both orders averaged (text "
        "where the backend has none); text = the written verdict (default: probability)",
    )
    w.add_argument(
        "--pairs",
        help="a pairs dir of the same questions: the known difference also puts each human question against its "
        "corrupted variant (default: another post's question only)",
    )
    w.add_argument(
        "--no-control",
        action="store_true",
        help="skip the known-bad check (an irrelevant question against B); judge_fit is then not checked",
    )
    w.add_argument(
        "--no-known-difference",
        action="store_true",
        help="skip the known-better check (human question against a known-worse one); judge_fit is then not checked",
    )
    w.set_defaults(func=run_eval_winrate)


def read_questions_jsonl(path: str) -> dict[str, str | None]:
    """qid -> question from `alfa generate`'s output; None where the generation was empty or failed (the post still
    counts: a loss for that side)."""
    import json

    with open(path, encoding="utf-8") as f:
        return {r["qid"]: r.get("question") or None for r in map(json.loads, filter(str.strip, f))}


def corrupted_variants(pairs_dir: Path) -> dict[str, str]:
    """qid -> a corrupted variant of its original question (the first attribute's, by name), from a pairs dir."""
    import polars as pl

    files = sorted((Path(pairs_dir) / "data").glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"{pairs_dir}/data/: no pairs (build them with `alfa pairs` or `alfa build`)")
    df = pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed")
    rows = df.filter(pl.col("pair_type") == "original_vs_corrupted").sort("attribute", "pair_id")
    out: dict[str, str] = {}
    for qid, rejected in zip(rows["qid"], rows["rejected"]):
        out.setdefault(qid, rejected[-1]["content"])
    return out


def make_judge(spec: str):
    """(judge, backend to close or None) from --judge's word."""
    from alfa.eval.judges import PointwiseJudge, RewardModelJudge
    from alfa.llm.make import backend_from_spec

    if spec.startswith("rm:"):
        return RewardModelJudge([Path(d) for d in spec[3:].split(",") if d]), None
    if spec == "pointwise" or spec.startswith("pointwise:"):
        backend = backend_from_spec(spec.partition(":")[2] or "local", max_new_tokens=1)
        return PointwiseJudge(backend), backend
    backend = backend_from_spec(spec, max_new_tokens=4)
    return backend, backend


def run_eval_winrate(args) -> int:
    import json

    from alfa.data.attributes import load_pack
    from alfa.data.ingest import read_questions
    from alfa.eval.winrate import judge_winrate

    questions = read_questions(args.questions)
    a = read_questions_jsonl(args.a)
    if args.b == "human":  # the human question of each post A was asked about
        b = {q: h for q, h in zip(questions["qid"], questions["question"]) if q in a}
    else:
        b = read_questions_jsonl(args.b)
    corrupted = corrupted_variants(Path(args.pairs)) if args.pairs else None
    attributes = {} if args.attributes == "none" else load_pack(args.attributes).attributes
    judge, backend = make_judge(args.judge)
    try:
        report = judge_winrate(
            a, b, questions, judge, attributes, Path(args.output), reading=args.reading,
            control=not args.no_control, known_difference=not args.no_known_difference, corrupted=corrupted,
        )  # fmt: skip
    finally:
        if backend is not None:
            backend.close()
    keys = ("n", "reading", "win_rate", "missing_a", "missing_b", "wins", "ties", "losses", "failures")
    checks = {k: report[k]["win_rate"] for k in ("control", "known_difference") if k in report}
    print(json.dumps({k: report[k] for k in keys} | checks | {"judge_fit": report["judge_fit"]}, indent=2))
    if report["judge_fit"]["fit"] is False:
        print(
            f"warning: the judge failed its own controls ({report['judge_fit']['why']}): it does not tell a better "
            "question from a worse one well enough for its win rates to say anything about the models. Use a fitter "
            "judge (--judge pointwise, rm:DIR..., or openai:MODEL@BASE_URL); see docs/evaluation.md.",
            file=sys.stderr,
        )
    return 0
