"""The `alfa` command: thin glue over the stage functions (each importable on its own).

    alfa ingest INPUT... [--preset askdocs | --map question=COL,...] -o questions.parquet
    alfa synthesize questions.parquet --attributes core -o RUN_DIR
    alfa pairs RUN_DIR -o PAIRS_DIR
    alfa lint PAIRS_DIR [--tokenizer PATH --max-length N]
    alfa card PAIRS_DIR
    alfa build PIPELINE.yaml
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

EPILOG = """\
The flow: ingest -> synthesize -> pairs -> lint -> card (or all of them: alfa build PIPELINE.yaml).
Example, offline with the embedded model:
  alfa ingest examples/clinical_sample.jsonl --map question=question,context=title+post,group=post_id,qid=row_id -o q.parquet
  alfa synthesize q.parquet --attributes core --limit 5 -o runs/try
  alfa pairs runs/try -o runs/try-pairs && alfa lint runs/try-pairs && alfa card runs/try-pairs
Run `alfa VERB --help` for each verb's options.
"""


def _ingest(args) -> int:
    from alfa.ingest import PRESETS, FieldMap, parse_map, run_ingest

    if args.preset and args.map:
        raise SystemExit("alfa ingest: give --preset or --map, not both")
    fm = PRESETS[args.preset] if args.preset else parse_map(args.map) if args.map else FieldMap()
    result = run_ingest([Path(p) for p in args.inputs], fm, Path(args.output))
    print(f"{result.questions.height} questions -> {args.output}; {len(result.rejects)} rejected "
          f"-> {Path(args.output).with_name(Path(args.output).stem + '.rejects.jsonl')}")
    for r in result.rejects[:5]:
        print(f"  rejected {r.file}:{r.line} field {r.field!r}: {r.reason}")
    if len(result.rejects) > 5:
        print(f"  ... and {len(result.rejects) - 5} more")
    if result.read == 0 and not result.rejects:
        print(f"alfa ingest: error: no records in {' '.join(args.inputs)} (empty input?)", file=sys.stderr)
    return 0 if result.questions.height else 1


def _synthesize(args) -> int:
    import polars as pl

    from alfa.attributes import load_pack
    from alfa.rewriters import make_rewriter
    from alfa.synthesize import parse_shard, synthesize

    questions = pl.read_parquet(args.questions)
    if args.limit:
        questions = questions.head(args.limit)
    if questions.height == 0:
        raise ValueError(f"{args.questions} holds no questions; check `alfa ingest`'s rejects file next to it")
    pack = load_pack(args.attributes).select(args.select.split(",") if args.select else None)
    rewriter = make_rewriter(args.rewriter, args.model, args.base_url, args.concurrency, args.batch_size,
                             args.max_new_tokens, args.api_key_env, timeout_s=args.timeout,
                             requests_per_minute=args.rpm, tokens_per_minute=args.tpm)
    stats = synthesize(questions, pack, rewriter, Path(args.output), standalone=args.standalone,
                       hindsight_for_enhance=args.hindsight_for_enhance,
                       cache_path=Path(args.cache) if args.cache else None, questions_source=args.questions,
                       shard=parse_shard(args.shard) if args.shard else None)
    print(f"{stats.requests} variants requested: {stats.calls_made} model calls, {stats.cache_hits} from cache, "
          f"{stats.failed} failed -> {args.output}")
    return 0


def _pairs(args) -> int:
    from alfa.filter import FilterConfig
    from alfa.pairs import SplitConfig, make_pairs

    from alfa.rewriters import make_rewriter

    fc = FilterConfig(enhance_min_similarity=args.enhance_min, corrupt_min_similarity=args.corrupt_min)
    sc = SplitConfig(*[float(x) for x in args.split.split(",")], seed=args.seed)
    judge = make_rewriter(args.judge, args.judge_model, args.judge_base_url, args.concurrency,
                          max_new_tokens=args.judge_max_new_tokens, api_key_env=args.api_key_env,
                          stop=()) if args.judge else None
    pairs = make_pairs([Path(d) for d in args.run_dirs], Path(args.output), fc, sc, judge=judge)
    print(f"{pairs.height} pairs -> {args.output} (rejected variants and reasons: "
          f"{Path(args.output) / 'rejected_variants.parquet'})")
    return 0


def _lint(args) -> int:
    from alfa.lint import LintConfig, lint, report, write_report

    findings = lint(Path(args.pairs_dir), LintConfig(tokenizer=args.tokenizer, max_length=args.max_length))
    write_report(findings, Path(args.pairs_dir))
    print(report(findings, Path(args.pairs_dir)))
    return 1 if any(f.severity == "error" for f in findings) else 0


def _card(args) -> int:
    from alfa.card import write_card

    path = write_card(Path(args.pairs_dir), args.license, args.name)
    print(f"card -> {path} (plots in {path.parent / 'plots'})")
    return 0


def _build(args) -> int:
    from alfa.pipeline import build, load_pipeline

    return build(load_pipeline(Path(args.config)))


def _train(args) -> int:
    from alfa.recipe import dry_run
    from alfa.train import train_command

    if args.dry_run:
        return dry_run(Path(args.recipe))
    return train_command(Path(args.recipe), Path(args.ref_store) if args.ref_store else None)


def _merge(args) -> int:
    from alfa.merge import load_merge_recipe, run_merge_recipe

    for out in run_merge_recipe(load_merge_recipe(Path(args.recipe))):
        print(f"merged -> {out}")
    return 0


def _evaluate_rm(args) -> int:
    from alfa.evaluate import scorecard

    models = {}
    for spec in args.model:
        name, sep, path = spec.partition("=")
        if not sep:
            raise ValueError(f"--model {spec!r}: expected NAME=PATH, e.g. clarity=runs/train/rm-clarity")
        models[name] = Path(path)
    table = scorecard(models, Path(args.pairs), args.split, Path(args.output))
    print((Path(args.output) / "scorecard.md").read_text())
    print(f"table, CSV and heatmap -> {args.output}")
    return 0 if table.height else 1


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="alfa", description="Build preference data that teaches language models to "
                                "ask good follow-up questions (the ALFA method).", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors in the log")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    fmt = argparse.RawDescriptionHelpFormatter

    s = sub.add_parser("ingest", help="JSONL/CSV/Parquet/HF dataset -> normalized questions table",
                       formatter_class=fmt, description="Normalize input files into a questions table. Bad rows go "
                       "to OUTPUT_STEM.rejects.jsonl with file, line, field and reason; they never stop the others.",
                       epilog="Examples:\n  alfa ingest ../shared/data/askdocs/questions_dev.jsonl --preset askdocs -o q.parquet\n"
                       "  alfa ingest posts.csv --map question=followup,context=title+body,group=thread -o q.parquet")
    s.add_argument("inputs", nargs="+", help=".jsonl/.csv/.tsv/.parquet files or save_to_disk folders")
    s.add_argument("--preset", choices=["askdocs"], help="a known input layout")
    s.add_argument("--map", help="KEY=COLUMN pairs: question, context (COL+COL), group, qid, turns, hindsight, meta")
    s.add_argument("-o", "--output", required=True, help="questions Parquet file to write")
    s.set_defaults(func=_ingest)

    s = sub.add_parser("synthesize", help="rewrite each question per attribute into enhanced/corrupted variants",
                       formatter_class=fmt, description="Ask a rewriter for one enhanced and one corrupted variant per "
                       "question x attribute. Every call is cached: a rerun makes no call twice, a killed run resumes.",
                       epilog="Examples:\n  alfa synthesize q.parquet --attributes clinical -o runs/r1            # embedded model, offline\n"
                       "  alfa synthesize q.parquet --rewriter openai --model meta-llama/Llama-3.1-70B-Instruct \\\n"
                       "      --base-url http://gpu1:8000/v1,http://gpu2:8000/v1 --concurrency 64 -o runs/r1")
    s.add_argument("questions", help="questions Parquet from `alfa ingest`")
    s.add_argument("--attributes", default="core", help="pack name (core, clinical) or path to your pack YAML")
    s.add_argument("--select", help="comma-separated attributes of the pack to use (default: all)")
    s.add_argument("--rewriter", default="local", choices=["local", "transformers", "openai"],
                   help="local = embedded SmolLM2-135M (offline); transformers = --model PATH; openai = endpoint")
    s.add_argument("--model", help="model folder (transformers) or served model name (openai)")
    s.add_argument("--base-url", help="OpenAI-compatible base URL(s), comma-separated, e.g. http://localhost:8000/v1")
    s.add_argument("--api-key-env", default="OPENAI_API_KEY", help="name of the env variable holding the API key")
    s.add_argument("--concurrency", type=int, default=16, help="parallel requests (openai)")
    s.add_argument("--rpm", type=float, help="at most this many requests per minute (openai; a provider's quota)")
    s.add_argument("--tpm", type=float, help="at most this many tokens per minute (openai; estimated before each call)")
    s.add_argument("--timeout", type=float, default=60.0, help="seconds per request before it is retried (openai)")
    s.add_argument("--batch-size", type=int, default=16, help="generation batch size (local/transformers)")
    s.add_argument("--max-new-tokens", type=int, default=40)
    s.add_argument("--limit", type=int, help="only the first N questions")
    s.add_argument("--standalone", action="store_true", help="restate each original as one standalone question first")
    s.add_argument("--hindsight-for-enhance", action="store_true",
                   help="show outcome fields (e.g. final diagnosis) to enhance rewrites only")
    s.add_argument("--cache", help="call cache file to use/share (default RUN_DIR/cache.sqlite)")
    s.add_argument("--shard", metavar="I/N", help="only shard I of N (whole posts, stable hash); give all N run "
                   "dirs to `alfa pairs` to merge them")
    s.add_argument("-o", "--output", required=True, help="run dir to write")
    s.set_defaults(func=_synthesize)

    s = sub.add_parser("pairs", help="verify & filter variants, build the three pair types, split by group",
                       formatter_class=fmt, description="Filter a synthesis run (one question per reply, no echoes "
                       "or refusals, similarity bounds, near-duplicates) and write a TRL-ready preference dataset.",
                       epilog="Examples:\n  alfa pairs runs/r1 -o runs/r1-pairs --split 0.8,0.1,0.1\n"
                       "  alfa pairs runs/shard0 runs/shard1 runs/shard2 -o runs/all-pairs   # merge shards")
    s.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="one run dir, or every shard's run dir")
    s.add_argument("-o", "--output", required=True, help="pairs dir to write")
    s.add_argument("--enhance-min", type=float, default=0.5, help="min similarity of an enhanced variant to the original")
    s.add_argument("--corrupt-min", type=float, default=0.3, help="min similarity of a corrupted variant to the original")
    s.add_argument("--split", default="0.8,0.1,0.1", help="train,validation,test fractions of groups")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--judge", choices=["local", "transformers", "openai"],
                   help="LLM verifier: keep a pair only if this judge prefers its chosen side in both orders")
    s.add_argument("--judge-model", help="judge model folder (transformers) or served name (openai)")
    s.add_argument("--judge-base-url", help="judge endpoint base URL(s) (openai)")
    s.add_argument("--judge-max-new-tokens", type=int, default=64)
    s.add_argument("--api-key-env", default="OPENAI_API_KEY", help="name of the env variable holding the judge's key")
    s.add_argument("--concurrency", type=int, default=16, help="parallel judge requests (openai)")
    s.set_defaults(func=_pairs)

    s = sub.add_parser("lint", help="check a pair dataset before training; exit 1 on blocking findings",
                       formatter_class=fmt, description="Identical/near-identical pairs, length bias, truncation "
                       "that hides the difference, group leakage, balance. Writes PAIRS_DIR/lint_report.json.",
                       epilog="Example:\n  alfa lint runs/r1-pairs --tokenizer local --max-length 1024")
    s.add_argument("pairs_dir")
    s.add_argument("--tokenizer", help="tokenizer folder the trainer will use ('local' = embedded SmolLM2)")
    s.add_argument("--max-length", type=int, help="the trainer's max_length (prompt + completion)")
    s.set_defaults(func=_lint)

    s = sub.add_parser("card", help="write the dataset card PAIRS_DIR/README.md with plots",
                       epilog="Example:\n  alfa card runs/r1-pairs --license cc-by-4.0", formatter_class=fmt)
    s.add_argument("pairs_dir")
    s.add_argument("--license", default="cc-by-4.0", help="licence id of the dataset (follow your source data)")
    s.add_argument("--name", help="pretty name for the card")
    s.set_defaults(func=_card)

    s = sub.add_parser("build", help="every stage from one pipeline YAML (see configs/pipelines/)",
                       epilog="Example:\n  alfa build configs/pipelines/demo.yaml", formatter_class=fmt)
    s.add_argument("config", help="pipeline YAML; keys map onto alfa.pipeline.PipelineConfig")
    s.set_defaults(func=_build)

    s = sub.add_parser("train", help="train from a recipe YAML (SFT / DPO / reward model); --dry-run checks it first",
                       formatter_class=fmt, description="A recipe YAML maps onto alfa.recipe.Recipe; its `trl:` block "
                       "onto the installed TRL's DPOConfig / SFTConfig / RewardConfig. --dry-run checks, before any "
                       "model loads: unknown keys (ours and TRL's, naming TRL's version), world size x micro batch x "
                       "accumulation = global batch, the DeepSpeed JSON (validated by DeepSpeed with 'auto' resolved), "
                       "dataset columns and splits, the tokenizer's chat template; then prints the launch command.",
                       epilog="Examples:\n  alfa train recipes/paper-scale/dpo_clinical_llama8b.yaml --dry-run\n"
                       "  alfa train recipes/tiny/dpo_specificity.yaml --ref-store runs/ref_logps.sqlite")
    s.add_argument("recipe", help="recipe YAML (see recipes/)")
    s.add_argument("--dry-run", action="store_true", help="check and print; load no model, touch no GPU")
    s.add_argument("--ref-store", help="DPO: SQLite file of reference log-probs shared by all runs from the same "
                   "model (computed once per pair, reused by every per-attribute and mixed run)")
    s.set_defaults(func=_train)

    s = sub.add_parser("evaluate-rm", help="reward-model accuracy per attribute: a scorecard table and heatmap",
                       formatter_class=fmt, description="Each reward model is scored on every attribute's pairs of a "
                       "split (right when chosen scores above rejected). Writes scorecard.csv/.md/.png.",
                       epilog="Example:\n  alfa evaluate-rm --model clarity=runs/train/rm-clarity "
                       "--model focus=runs/train/rm-focus --pairs runs/pairs --split test -o runs/eval")
    s.add_argument("--model", action="append", required=True, metavar="NAME=PATH", help="a reward model (repeat)")
    s.add_argument("--pairs", required=True, help="pairs dir")
    s.add_argument("--split", default="test")
    s.add_argument("-o", "--output", required=True, help="folder for the scorecard")
    s.set_defaults(func=_evaluate_rm)

    s = sub.add_parser("merge", help="merge per-attribute models into one (mergekit): uniform average, TIES, DARE...",
                       formatter_class=fmt, description="A merge YAML maps onto alfa.merge.MergeRecipe. The models "
                       "are checked against each other first (model type, every tensor's shape, tokenizer vocabulary).",
                       epilog="Example:\n  alfa merge configs/merge/uniform.yaml")
    s.add_argument("recipe", help="merge YAML (see configs/merge/)")
    s.set_defaults(func=_merge)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "sentence_transformers", "transformers", "datasets", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Libraries' own bars (weights loading, dataset saving) bury alfa's; alfa's bars stay on.
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    from alfa.yamlconfig import ConfigError

    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"alfa {args.verb}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
