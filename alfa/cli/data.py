"""`alfa ingest | synthesize | pairs | lint | card | build`: the data stages (alfa.data), one parser
function and one handler per verb."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from alfa.cli.arguments import positive_int
from alfa.data.filter import UNFILTERED, FilterConfig
from alfa.data.pairs import SplitConfig
from alfa.data.synthesize import SynthesisConfig
from alfa.llm.make import KINDS, BackendConfig


def add_ingest(sub) -> None:
    """alfa ingest"""
    fmt = argparse.RawDescriptionHelpFormatter
    s = sub.add_parser(
        "ingest",
        help="JSONL/CSV/Parquet/HF dataset -> normalized questions table",
        formatter_class=fmt,
        description="Normalize input files into a questions table. Bad rows go "
        "to OUTPUT_STEM.rejects.jsonl with file, line, field and reason; they never stop the others.",
        epilog="Examples:\n  alfa ingest ../shared/data/askdocs/questions_dev.jsonl --preset askdocs -o q.parquet\n"
        "  alfa ingest posts.csv --map question=followup,context=title+body,group=thread -o q.parquet",
    )
    s.add_argument("inputs", nargs="+", help=".jsonl/.csv/.tsv/.parquet files or save_to_disk folders")
    s.add_argument("--preset", choices=["askdocs"], help="a known input layout")
    s.add_argument(
        "--map",
        help="KEY=COLUMN pairs: question, context (COL+COL), group, qid, turns, hindsight, meta. Without qid the "
        "ids are FILESTEM-LINE (with inputs named alike, FOLDER/FILESTEM-LINE: unique across inputs)",
    )
    s.add_argument("-o", "--output", required=True, help="questions Parquet file to write")
    s.set_defaults(func=_ingest)


def _ingest(args) -> int:
    from alfa.data.ingest import PRESETS, FieldMap, parse_map, run_ingest

    if args.preset and args.map:
        raise SystemExit("alfa ingest: give --preset or --map, not both")
    fm = PRESETS[args.preset] if args.preset else parse_map(args.map) if args.map else FieldMap()
    result = run_ingest([Path(p) for p in args.inputs], fm, Path(args.output))
    print(
        f"{result.questions.height} questions -> {args.output}; {len(result.rejects)} rejected "
        f"-> {Path(args.output).with_name(Path(args.output).stem + '.rejects.jsonl')}"
    )
    for r in result.rejects[:5]:
        print(f"  rejected {r.file}:{r.line} field {r.field!r}: {r.reason}")
    if len(result.rejects) > 5:
        print(f"  ... and {len(result.rejects) - 5} more")
    if result.read == 0 and not result.rejects:
        print(f"alfa ingest: error: no records in {' '.join(args.inputs)} (empty input?)", file=sys.stderr)
    return 0 if result.questions.height else 1


def add_synthesize(sub) -> None:
    """alfa synthesize"""
    fmt = argparse.RawDescriptionHelpFormatter
    s = sub.add_parser(
        "synthesize",
        help="rewrite each question per attribute into enhanced/corrupted variants",
        formatter_class=fmt,
        description="Ask a rewriter for one enhanced and one corrupted variant per "
        "question x attribute. Every call is cached: a rerun makes no call twice, a killed run resumes.",
        epilog="Examples:\n  alfa synthesize q.parquet --attributes clinical -o runs/r1            # embedded model, offline\n"
        "  alfa synthesize q.parquet --rewriter openai --model meta-llama/Llama-3.1-70B-Instruct \\\n"
        "      --base-url http://gpu1:8000/v1,http://gpu2:8000/v1 --concurrency 64 -o runs/r1",
    )
    s.add_argument("questions", help="questions Parquet from `alfa ingest`")
    s.add_argument("--attributes", default="core", help="pack name (core, clinical) or path to your pack YAML")
    s.add_argument("--select", help="comma-separated attributes of the pack to use (default: all)")
    s.add_argument(
        "--rewriter",
        default="local",
        choices=KINDS,
        help="local = embedded Qwen2.5-Coder-1.5B on llama.cpp (offline); smollm2 = embedded SmolLM2-135M "
        "(fast, weak); transformers = --model PATH; openai = endpoint; llamacpp = --model PATH.gguf on "
        "llama.cpp's own server (started and stopped by alfa)",
    )
    s.add_argument("--model", help="model folder (transformers) or served model name (openai)")
    s.add_argument("--base-url", help="OpenAI-compatible base URL(s), comma-separated, e.g. http://localhost:8000/v1")
    s.add_argument(
        "--api-key-env", default=BackendConfig.api_key_env, help="name of the env variable holding the API key"
    )
    s.add_argument("--concurrency", type=int, default=BackendConfig.concurrency, help="parallel requests (openai)")
    s.add_argument("--rpm", type=float, help="at most this many requests per minute (openai; a provider's quota)")
    s.add_argument("--tpm", type=float, help="at most this many tokens per minute (openai; estimated before each call)")
    s.add_argument(
        "--timeout",
        type=float,
        default=BackendConfig.timeout_s,
        help="seconds per request before it is retried (openai)",
    )
    s.add_argument(
        "--batch-size", type=int, default=BackendConfig.batch_size, help="generation batch size (smollm2/transformers)"
    )
    s.add_argument(
        "--max-new-tokens", type=int, default=BackendConfig.max_new_tokens, help="longest reply per call, in tokens"
    )
    s.add_argument("--limit", type=positive_int, help="only the first N questions")
    s.add_argument(
        "--samples",
        type=int,
        default=SynthesisConfig.samples,
        help="attempts per variant: greedy first, then sampled (seed 1, 2, ...) while the reply fails the text checks",
    )
    s.add_argument(
        "--temperature",
        type=float,
        default=SynthesisConfig.temperature,
        help="sampling temperature of the attempts after the first",
    )
    s.add_argument("--standalone", action="store_true", help="restate each original as one standalone question first")
    s.add_argument(
        "--hindsight-for-enhance",
        action="store_true",
        help="show outcome fields (e.g. final diagnosis) to enhance rewrites only",
    )
    s.add_argument("--cache", help="call cache file to use/share (default RUN_DIR/cache.sqlite)")
    s.add_argument(
        "--shard",
        metavar="I/N",
        help="only shard I of N (whole posts, stable hash); give all N run dirs to `alfa pairs` to merge them",
    )
    s.add_argument("-o", "--output", required=True, help="run dir to write")
    s.set_defaults(func=_synthesize)


def _synthesize(args) -> int:
    import polars as pl

    from alfa.data.attributes import load_pack
    from alfa.data.ingest import groups_of, read_questions
    from alfa.data.synthesize import parse_shard, synthesize
    from alfa.llm.make import BackendConfig, make_backend

    questions = read_questions(args.questions)
    if questions.height == 0:
        raise ValueError(f"{args.questions} holds no questions; check `alfa ingest`'s rejects file next to it")
    pack = load_pack(args.attributes).select(args.select.split(",") if args.select else None)
    rewriter = make_backend(
        BackendConfig(
            kind=args.rewriter,
            model=args.model,
            base_url=args.base_url,
            api_key_env=args.api_key_env,
            concurrency=args.concurrency,
            batch_size=args.batch_size,
            max_new_tokens=args.max_new_tokens,
            timeout_s=args.timeout,
            requests_per_minute=args.rpm,
            tokens_per_minute=args.tpm,
        )
    )
    try:
        stats = synthesize(
            questions,
            pack,
            rewriter,
            Path(args.output),
            SynthesisConfig(
                standalone=args.standalone,
                hindsight_for_enhance=args.hindsight_for_enhance,
                limit=args.limit,
                cache=args.cache,
                samples=args.samples,
                temperature=args.temperature,
            ),
            questions_source=args.questions,
            shard=parse_shard(args.shard) if args.shard else None,
            groups=groups_of(Path(args.questions)),
        )
    finally:
        rewriter.close()  # stops a llama.cpp server alfa started
    variants = pl.read_parquet(Path(args.output) / "variants.parquet").height
    resampled = json.loads((Path(args.output) / "run.json").read_text())["sample_again"]["resampled"]
    print(
        f"{variants} variants ({resampled} sampled again): {stats.requests} requests, "
        f"{stats.calls_made} model calls, {stats.cache_hits} from cache, {stats.failed} failed -> {args.output}"
    )
    return 0


def add_pairs(sub) -> None:
    """alfa pairs"""
    fmt = argparse.RawDescriptionHelpFormatter
    s = sub.add_parser(
        "pairs",
        help="verify & filter variants, build the three pair types, split by group",
        formatter_class=fmt,
        description="Filter a synthesis run (one question per reply, no echoes "
        "or refusals, similarity bounds, near-duplicates) and write a TRL-ready preference dataset.",
        epilog="Examples:\n  alfa pairs runs/r1 -o runs/r1-pairs --split-fractions 0.7,0.15,0.15\n"
        "  alfa pairs runs/shard0 runs/shard1 runs/shard2 -o runs/all-pairs   # merge shards",
    )
    s.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="one run dir, or every shard's run dir")
    s.add_argument("-o", "--output", required=True, help="pairs dir to write")
    s.add_argument(
        "--enhance-min",
        type=float,
        default=FilterConfig.enhance_min_similarity,
        help="min similarity of an enhanced variant to the original",
    )
    s.add_argument(
        "--corrupt-min",
        type=float,
        default=FilterConfig.corrupt_min_similarity,
        help="min similarity of a corrupted variant to the original",
    )
    s.add_argument(
        "--unfiltered",
        action="store_true",
        help="ALFA's unfiltered ablation: no similarity bounds and no near-duplicate removal (the text checks "
        "stay: one question, no echo); replaces --enhance-min and --corrupt-min",
    )
    s.add_argument(
        "--split-fractions",
        default=f"{SplitConfig.train},{SplitConfig.validation},{SplitConfig.test}",
        help="train,validation,test fractions, held in expectation over posts: each group (post) goes whole to "
        "one split by its own hash bucket",
    )
    s.add_argument("--seed", type=int, default=0, help="seed of the split hash and of the judged sample")
    s.add_argument(
        "--judge",
        choices=("none",) + KINDS,
        default="local",
        help="LLM verifier: the backend that compares each judged pair in both orders (default: the embedded "
        "model; none = no judge)",
    )
    s.add_argument(
        "--judge-pairs",
        type=lambda v: None if v == "all" else int(v),
        default=40,
        help="judge this many pairs (a seeded sample) to measure agreement, or 'all'",
    )
    s.add_argument(
        "--judge-keep",
        choices=["all", "agreed"],
        default="all",
        help="all = keep every pair, verdicts measure agreement; agreed = keep only the pairs the judge prefers "
        "in both orders (judges every pair)",
    )
    s.add_argument("--judge-model", help="judge model folder (transformers) or served name (openai)")
    s.add_argument("--judge-base-url", help="judge endpoint base URL(s) (openai)")
    s.add_argument("--judge-max-new-tokens", type=int, default=16, help="longest judge reply, in tokens")
    s.add_argument(
        "--api-key-env", default=BackendConfig.api_key_env, help="name of the env variable holding the judge's key"
    )
    s.add_argument(
        "--concurrency", type=int, default=BackendConfig.concurrency, help="parallel judge requests (openai)"
    )
    s.set_defaults(func=_pairs)


def _pairs(args) -> int:
    from alfa.data.pairs import make_pairs
    from alfa.llm.make import BackendConfig, make_backend

    fc = (
        UNFILTERED
        if args.unfiltered
        else FilterConfig(enhance_min_similarity=args.enhance_min, corrupt_min_similarity=args.corrupt_min)
    )
    fractions = args.split_fractions.split(",")
    if len(fractions) != 3:
        raise ValueError(f"--split-fractions {args.split_fractions}: give three numbers, train,validation,test")
    sc = SplitConfig(*[float(x) for x in fractions], seed=args.seed)
    if args.judge_pairs is not None and args.judge_pairs < 1:  # before a judge model loads
        raise ValueError(f"--judge-pairs {args.judge_pairs}: give a number of pairs (1 or more) or 'all'")
    judge = (
        make_backend(
            BackendConfig(
                kind=args.judge,
                model=args.judge_model,
                base_url=args.judge_base_url,
                api_key_env=args.api_key_env,
                concurrency=args.concurrency,
                max_new_tokens=args.judge_max_new_tokens,
            ),
            stop=(),
        )
        if args.judge != "none"
        else None
    )
    sample = None if args.judge_keep == "agreed" else args.judge_pairs
    try:
        pairs = make_pairs(
            [Path(d) for d in args.run_dirs],
            Path(args.output),
            fc,
            sc,
            judge=judge,
            judge_sample=sample,
            judge_keep=args.judge_keep,
        )
    finally:
        if judge is not None:
            judge.close()
    print(
        f"{pairs.height} pairs -> {args.output} (rejected variants and reasons: "
        f"{Path(args.output) / 'rejected_variants.parquet'})"
    )
    return 0


def add_lint(sub) -> None:
    """alfa lint"""
    fmt = argparse.RawDescriptionHelpFormatter
    s = sub.add_parser(
        "lint",
        help="check a pair dataset before training; exit 1 on blocking findings",
        formatter_class=fmt,
        description="Identical/near-identical pairs, length bias, truncation "
        "that hides the difference, group leakage, balance. Writes PAIRS_DIR/lint_report.json.",
        epilog="Example:\n  alfa lint runs/r1-pairs --tokenizer smollm2 --max-length 1024",
    )
    s.add_argument("pairs_dir", help="a pairs dir written by `alfa pairs` (or `alfa build`)")
    s.add_argument("--tokenizer", help="tokenizer folder the trainer will use ('smollm2' = the embedded SmolLM2's)")
    s.add_argument("--max-length", type=int, help="the trainer's max_length (prompt + completion)")
    s.set_defaults(func=_lint)


def _lint(args) -> int:
    from alfa.data.lint import LintConfig, lint, report, write_report

    config = LintConfig(tokenizer=args.tokenizer, max_length=args.max_length)
    findings = lint(Path(args.pairs_dir), config)
    write_report(findings, Path(args.pairs_dir), config)
    print(report(findings, Path(args.pairs_dir), config))
    return 1 if any(f.severity == "error" for f in findings) else 0


def add_card(sub) -> None:
    """alfa card"""
    fmt = argparse.RawDescriptionHelpFormatter
    s = sub.add_parser(
        "card",
        help="write the dataset card PAIRS_DIR/README.md with plots",
        epilog="Example:\n  alfa card runs/r1-pairs --license cc-by-4.0",
        formatter_class=fmt,
    )
    s.add_argument("pairs_dir", help="a pairs dir written by `alfa pairs`, a review pull or a method")
    s.add_argument(
        "--license",
        help="licence id of the dataset, as the Hub spells it (follow your source data; default: what the card "
        "says now, else cc-by-4.0)",
    )
    s.add_argument("--name", help="pretty name for the card (default: what the card says now, else one from the pack)")
    s.set_defaults(func=_card)


def _card(args) -> int:
    from alfa.data.card import write_card

    path = write_card(Path(args.pairs_dir), args.license, args.name)
    print(f"card -> {path} (plots in {path.parent / 'plots'})")
    return 0


def add_build(sub) -> None:
    """alfa build"""
    fmt = argparse.RawDescriptionHelpFormatter
    s = sub.add_parser(
        "build",
        help="every stage from one pipeline YAML (see configs/pipelines/)",
        epilog="Example:\n  alfa build configs/pipelines/demo.yaml --dry-run   # check it first\n"
        "  alfa build configs/pipelines/demo.yaml\nEvery key: docs/pipeline-reference.md",
        formatter_class=fmt,
    )
    s.add_argument("config", help="pipeline YAML; keys map onto alfa.data.pipeline.PipelineConfig")
    s.add_argument(
        "--dry-run", action="store_true", help="check the whole YAML (keys, files, pack, backends) and stop there"
    )
    s.set_defaults(func=_build)


def _build(args) -> int:
    from alfa.data.pipeline import build, dry_run, load_pipeline

    config = load_pipeline(Path(args.config))  # every problem of the YAML stops here, with its line
    if args.dry_run:
        print(dry_run(config, Path(args.config)))
        return 0
    return build(config)
