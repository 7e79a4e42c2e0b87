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
import json
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


def _review_server(args) -> int:
    from alfa.review_server import owner_credentials, server_down, server_status, server_up

    state_dir = Path(args.dir)
    if args.action == "up":
        state = server_up(state_dir, port=args.port, venv=Path(args.venv) if args.venv else None)
        creds = owner_credentials(state_dir)
        print(f"Argilla is running: {state.url}\n"
              f"  web UI login: {creds['username']} (owner); password and API key in {state_dir / 'owner.json'} "
              "(readable by you only)\n"
              f"  for alfa review push/pull/status: eval \"$(alfa review server env --dir {state_dir})\"\n"
              f"  logs: {state_dir / 'logs'}; stop with: alfa review server down --dir {state_dir}")
    elif args.action == "down":
        stopped = server_down(state_dir)
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    elif args.action == "status":
        status = server_status(state_dir)
        print(json.dumps(status, indent=2))
        return 0 if status["running"] else 1
    else:  # env: for eval in a shell; it prints the key, so never paste its output anywhere
        state = server_status(state_dir)
        if "url" not in state:
            raise RuntimeError(f"no local server in {state_dir}: start one with `alfa review server up`")
        print(f"export ARGILLA_API_URL={state['url']}\nexport ARGILLA_API_KEY={owner_credentials(state_dir)['api_key']}")
    return 0


def _review(args) -> int:
    import polars as pl

    from alfa import review

    conn = review.connect(args.api_url, args.api_key_env)
    if args.review_verb == "push":
        result = review.push(conn, Path(args.pairs_dir), args.sample, tuple(filter(None, args.stratify.split(","))),
                             args.dataset, args.workspace, args.min_submitted, args.suggestions, args.attributes,
                             args.seed)
        print(f"{result.pushed} records pushed, {result.already_there} were already there "
              f"({result.sampled} sampled) -> {result.url}, workspace {result.workspace}, dataset {result.dataset}")
    elif args.review_verb == "users":
        for u in review.add_users(conn, args.usernames, args.workspace, Path(args.credentials)):
            print(f"{u['username']}: {u['role']} in workspace {u['workspace']}"
                  + (f" (new; password in {args.credentials}: hand it over privately)" if u["password"] else ""))
    elif args.review_verb == "status":
        status = review.review_status(conn, args.dataset, args.workspace)
        with pl.Config(tbl_rows=-1, tbl_hide_dataframe_shape=True):
            print(f"{status['records']} records; a record is done with {status['min_submitted']} submitted answer(s)")
            print(status["per_stratum"])
            print(status["per_annotator"])
        if status["annotators_without_access"]:
            print(f"annotators without access to workspace {args.workspace}: "
                  f"{', '.join(status['annotators_without_access'])} "
                  f"(add them: alfa review users add NAME --workspace {args.workspace})")
    else:  # pull
        policy = review.ReviewPolicy(args.on_reversed, args.on_tie, args.on_split, not args.keep_confounded,
                                     args.flag_quorum)
        report = review.pull(conn, Path(args.pairs_dir), Path(args.output), args.dataset, args.workspace, policy)
        pvh = report["pipeline_vs_humans"]
        alpha = report["between_annotators"]["better"]["krippendorff_alpha"]
        print(f"{report['reviewed']} of {report['records']} records reviewed; humans agree with the pipeline on "
              f"{pvh['agree']} of {pvh['reviewed']}" + (f" ({pvh['agreement']:.0%})" if pvh["reviewed"] else "")
              + f"; Krippendorff's alpha between annotators: {'n/a' if alpha is None else f'{alpha:.2f}'}")
        print(f"reviewed dataset -> {args.output}: {report['pairs_out']} of {report['pairs_in']} pairs kept, "
              f"{report['flipped']} flipped, {report['dropped']} dropped (review/dropped.parquet); "
              f"then: alfa card {args.output}")
    return 0


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
                       "dataset columns, splits and selected attributes, the logger (report_to, TensorBoard by default), "
                       "the tokenizer's chat template; then prints the launch command. Without --dry-run: trains in "
                       "this process, or under that `accelerate launch` command for several processes or DeepSpeed; "
                       "resumes from the newest checkpoint in output_dir; writes the model, alfa_train.json (losses, "
                       "tokens/s, peak memory) and a model card.",
                       epilog="Examples:\n  alfa train recipes/paper-scale/dpo_clinical_llama8b.yaml --dry-run\n"
                       "  alfa train recipes/tiny/dpo_specificity.yaml --ref-store runs/ref_logps.sqlite\n"
                       "  alfa train recipes/smollm2-135m/dpo_mixed_zero2.yaml      # DeepSpeed ZeRO-2 via accelerate\n"
                       "  alfa train recipes/minilm/reward_clarity.yaml             # a MiniLM reward model\n"
                       "Every shipped recipe and its figures: docs/training.md")
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

    s = sub.add_parser("merge", help="merge per-attribute models (mergekit) or LoRA adapters (peft) into one",
                       formatter_class=fmt, description="A merge YAML maps onto alfa.merge.MergeRecipe. Full models "
                       "merge through mergekit (method: linear = the paper's uniform average, task_arithmetic, ties, "
                       "dare_ties, model_stock), checked against each other first (model type, every tensor's shape, "
                       "tokenizer vocabulary). LoRA adapters merge through peft (method: lora_cat = the exact weighted "
                       "sum of the adapters' deltas, lora_svd, lora_linear, lora_ties, lora_dare_ties, "
                       "lora_dare_linear), checked first for base model, target modules and rank. leave_one_out: true "
                       "also writes one merge without each model.",
                       epilog="Examples:\n  alfa merge configs/merge/uniform.yaml\n"
                       "  alfa merge configs/merge/tiny_lora_cat.yaml   # two LoRA adapters -> one")
    s.add_argument("recipe", help="merge YAML (see configs/merge/)")
    s.set_defaults(func=_merge)

    s = sub.add_parser("review", help="human spot-checks in Argilla: push pairs, add reviewers, pull verdicts",
                       formatter_class=fmt, description="Blind A/B review of pairs by people (clinicians) in the "
                       "Argilla web UI, and their verdicts back in the data. The server address and an owner's API "
                       "key come from ARGILLA_API_URL and ARGILLA_API_KEY.",
                       epilog="Examples:\n  alfa review server up && eval \"$(alfa review server env)\"\n"
                       "  alfa review push runs/demo/pairs --sample 60 --stratify attribute,pair_type --min-submitted 2\n"
                       "  alfa review users add dr_lee dr_okafor --workspace alfa\n"
                       "  alfa review status\n"
                       "  alfa review pull runs/demo/pairs -o runs/demo/reviewed && alfa card runs/demo/reviewed")
    rsub = s.add_subparsers(dest="review_verb", required=True, metavar="ACTION")

    r = rsub.add_parser("server", help="a local Argilla server (SQLite + noida-db), for trying it out and tests",
                        formatter_class=fmt, description="Runs argilla-server 2.8.0 from its own virtualenv (created "
                        "once in ~/.cache/alfa) on 127.0.0.1, with the Elasticsearch API and Redis served by the "
                        "noida-db binary. For production use annotation/docker-compose.yaml.",
                        epilog="Examples:\n  alfa review server up\n  eval \"$(alfa review server env)\"\n"
                        "  alfa review server status\n  alfa review server down")
    r.add_argument("action", choices=["up", "down", "status", "env"],
                   help="up: start (idempotent); down: stop what up started; status; env: export lines for a shell")
    r.add_argument("--dir", default=".alfa-review", help="state folder: database, logs, pids, owner.json")
    r.add_argument("--port", type=int, help="port of the web UI and API (default: a free one)")
    r.add_argument("--venv", help="the server's virtualenv (default ~/.cache/alfa/argilla-server-venv)")
    r.set_defaults(func=_review_server)

    def connection(r):
        r.add_argument("--api-url", help="Argilla URL (default: $ARGILLA_API_URL)")
        r.add_argument("--api-key-env", default="ARGILLA_API_KEY", help="variable holding the API key")
        r.add_argument("--dataset", default="alfa-review", help="Argilla dataset name")
        r.add_argument("--workspace", default="alfa", help="Argilla workspace")
        r.set_defaults(func=_review)

    r = rsub.add_parser("push", help="push a stratified sample of pairs as blind A/B records",
                        formatter_class=fmt, description="Which side is the pipeline's choice is random per pair "
                        "(the same on every push) and kept in metadata reviewers cannot see. Record ids are pair "
                        "ids: pushing again adds only missing records, so an interrupted push resumes.")
    r.add_argument("pairs_dir")
    r.add_argument("--sample", type=int, help="number of pairs (default: all)")
    r.add_argument("--stratify", default="attribute,pair_type", help="columns whose cells share the sample evenly")
    r.add_argument("--min-submitted", type=int, default=1, help="answers needed per record (overlap); 2+ gives "
                   "agreement between annotators")
    r.add_argument("--suggestions", action="store_true", help="pre-fill the pipeline's choice (review is no longer blind)")
    r.add_argument("--attributes", help="attribute pack for the definitions shown (default: the one the pairs used)")
    r.add_argument("--seed", type=int, default=0)
    connection(r)

    r = rsub.add_parser("users", help="create annotator accounts and add them to the workspace")
    r.add_argument("add", choices=["add"])
    r.add_argument("usernames", nargs="+")
    r.add_argument("--credentials", default="reviewers.csv", help="where new passwords go (mode 600)")
    connection(r)

    r = rsub.add_parser("status", help="progress per annotator and per attribute x pair type")
    connection(r)

    r = rsub.add_parser("pull", help="verdicts, agreement figures and a reviewed copy of the pair dataset",
                        formatter_class=fmt, description="Per pair: the majority of submitted answers (a 'tie' answer "
                        "stays a tie; no majority is 'split'). Pairs with a problem ticked, or that differ in more than "
                        "the attribute, are dropped; reversed and tied pairs as the options say. Every row of the "
                        "reviewed dataset says who decided it (decided_by); dropped rows keep their reason.")
    r.add_argument("pairs_dir", help="the pairs dir that was pushed")
    r.add_argument("-o", "--output", required=True, help="folder for the reviewed dataset")
    r.add_argument("--on-reversed", choices=["drop", "flip"], default="drop")
    r.add_argument("--on-tie", choices=["drop", "keep"], default="drop")
    r.add_argument("--on-split", choices=["keep", "drop"], default="keep")
    r.add_argument("--keep-confounded", action="store_true", help="keep pairs reviewers said differ in more than "
                   "the attribute")
    r.add_argument("--flag-quorum", type=int, default=1, help="reviewers who must tick a problem to drop a pair")
    connection(r)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("argilla.sdk", "httpx", "sentence_transformers", "transformers", "datasets", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Libraries' own bars (weights loading, dataset saving) bury alfa's; alfa's bars stay on.
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    from alfa.yamlconfig import ConfigError

    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError, ValueError, RuntimeError) as e:  # ReviewError too
        print(f"alfa {args.verb}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
