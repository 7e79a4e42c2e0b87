"""`alfa evaluate-rm` (the reward-model scorecard), `alfa evaluate-policy` (a DPO policy's own), `alfa generate` and `alfa eval cases | interactive | winrate`
(alfa.eval)."""

from __future__ import annotations

import argparse
from pathlib import Path

from alfa.cli.arguments import positive_int
from alfa.cli.evaluate_interactive import add_eval_interactive
from alfa.cli.evaluate_winrate import add_eval_winrate


def add_evaluate_rm(sub) -> None:
    """alfa evaluate-rm"""
    fmt = argparse.RawDescriptionHelpFormatter
    s = sub.add_parser(
        "evaluate-rm",
        help="reward-model accuracy per attribute: a scorecard table and heatmap",
        formatter_class=fmt,
        description="Each reward model is scored on every attribute's pairs of a "
        "split (right when chosen scores above rejected). Writes scorecard.csv/.md/.png.",
        epilog="Example:\n  alfa evaluate-rm --model clarity=runs/train/rm-clarity "
        "--model focus=runs/train/rm-focus --pairs runs/pairs --split test -o runs/eval",
    )
    s.add_argument("--model", action="append", required=True, metavar="NAME=PATH", help="a reward model (repeat)")
    s.add_argument("--pairs", required=True, help="pairs dir")
    s.add_argument("--split", default="test", help="which split of the pairs to score: train, validation or test")
    s.add_argument("-o", "--output", required=True, help="folder for the scorecard")
    s.set_defaults(func=_evaluate_rm)


def named_paths(specs: list[str], flag: str, example: str) -> dict[str, Path]:
    """Repeated NAME=PATH options as {name: path}."""
    out = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            raise ValueError(f"{flag} {spec!r}: expected NAME=PATH, e.g. {example}")
        out[name] = Path(path)
    return out


def _evaluate_rm(args) -> int:
    from alfa.eval.reward_scorecard import scorecard

    models = named_paths(args.model, "--model", "clarity=runs/train/rm-clarity")
    table = scorecard(models, Path(args.pairs), args.split, Path(args.output))
    print((Path(args.output) / "scorecard.md").read_text())
    print(f"table, CSV and heatmap -> {args.output}")
    return 0 if table.height else 1


def add_evaluate_policy(sub) -> None:
    """alfa evaluate-policy"""
    s = sub.add_parser(
        "evaluate-policy",
        help="what DPO policies learnt: preference accuracy on held-out pairs per attribute, no judge",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Each DPO policy scores every held-out pair by its implicit reward against the reference "
        "model it was trained from ([log p(chosen) - log p_ref(chosen)] - [the same for rejected], by TRL's own "
        "DPO scoring); it is right when that is above 0. Per attribute, with 95% intervals over posts, beside "
        "two trivial baselines (prefer the shorter question, prefer the longer). This says whether a policy "
        "learnt the pairs' preference on posts it never saw, not whether its questions are better (that is "
        "`alfa eval winrate` with a fit judge). Writes margins.parquet and scorecard.csv/.md/.png.",
        epilog="Example (ALFA's arms on askdocs, docs/results.md):\n"
        "  alfa evaluate-policy --reference runs/train/smollm2-sft-askdocs \\\n"
        "    --policy clarity=runs/train/smollm2-dpo-askdocs-clarity --policy mixed=runs/train/smollm2-dpo-askdocs-mixed \\\n"
        "    --pairs runs/askdocs-core-120/pairs --base mixed -o runs/eval/askdocs-policy",
    )
    s.add_argument("--policy", action="append", required=True, metavar="NAME=PATH", help="a DPO policy (repeat)")
    s.add_argument("--reference", required=True, help="the model the policies were trained from (their DPO reference)")
    s.add_argument("--pairs", required=True, help="pairs dir")
    s.add_argument(
        "--split", default="validation,test", help="comma-separated splits to score (held out: validation,test)"
    )
    s.add_argument(
        "--max-length",
        type=positive_int,
        default=512,
        help="as the recipes' max_length; longer pairs are left out and counted",
    )
    s.add_argument("--base", help="a --policy NAME: every other policy's paired difference from it, same pairs")
    s.add_argument("--store", help="SQLite file keeping each model's log-probs (a rerun pays only for new pairs)")
    s.add_argument("-o", "--output", required=True, help="folder for the scorecard")
    s.set_defaults(func=_evaluate_policy)


def _evaluate_policy(args) -> int:
    from alfa.train.policy_scorecard import scorecard

    scorecard(
        named_paths(args.policy, "--policy", "clarity=runs/train/dpo-clarity"),
        Path(args.reference),
        Path(args.pairs),
        args.split.split(","),
        Path(args.output),
        max_length=args.max_length,
        base=args.base,
        store=Path(args.store) if args.store else None,
    )
    print((Path(args.output) / "scorecard.md").read_text())
    print(f"table, margins and plot -> {args.output}")
    return 0


def add_eval(sub) -> None:
    """alfa eval cases | interactive | winrate | flaws | report"""
    fmt = argparse.RawDescriptionHelpFormatter
    e = sub.add_parser(
        "eval", help="evaluate a questioner: case checks, interactive diagnosis, win rates, flawed problems"
    )
    verbs = e.add_subparsers(dest="eval_verb", required=True, metavar="WHAT")
    c = verbs.add_parser(
        "cases",
        help="check a case file: answer-letter and longest-option shares, ungrounded initial infos",
        description="Prints one JSON object: n, answer_letter_share, longest_option_share and, for cases that "
        "carry their source post, ungrounded_initial_info. Unreadable lines are listed with file, line and field.",
    )
    c.add_argument("cases", help="case JSONL (MediQ, CRAFT-MD or ALFA-style AskDocs)")
    c.set_defaults(func=_eval_cases)
    add_eval_interactive(verbs, fmt)
    add_eval_winrate(verbs, fmt)
    _add_eval_flaws(verbs, fmt)
    r = verbs.add_parser(
        "report",
        help="one Markdown page with plots comparing evaluation runs",
        description="Reads each RUN folder (alfa eval interactive or winrate output) and writes DIR/report.md and "
        "DIR/report.png: accuracy, asked_decisive on the missing-premise testbed, and win rates overall and per "
        "attribute, with their intervals and the baselines beside.",
        epilog="Example (the testbed table of docs/results.md):\n  alfa eval report runs/eval/premise-oracle "
        "runs/eval/premise-base runs/eval/premise-dpo --base runs/eval/premise-base -o runs/report",
        formatter_class=fmt,
    )
    r.add_argument("runs", nargs="+", metavar="RUN", help="output folders of alfa eval interactive or winrate")
    r.add_argument("-o", "--output", required=True, help="folder for report.md and report.png")
    r.add_argument(
        "--base",
        metavar="RUN",
        help="an interactive run to compare each testbed run with, case by case (paired difference in "
        "asked_decisive with its interval; default: none)",
    )
    r.set_defaults(func=_eval_report)


def _add_eval_flaws(verbs, fmt) -> None:
    """alfa eval flaws"""
    f = verbs.add_parser(
        "flaws",
        help="flawed problems: flag rate on missing premises, false-flag rate and accuracy on sound problems",
        formatter_class=fmt,
        description="The model answers every item of `alfa flaws make`; the judge says whether each reply asks for "
        "missing information instead of answering. Writes DIR/replies.jsonl, DIR/results.json (flag_rate, "
        "false_flag_rate, accuracy, each with a bootstrap interval over problems; always-flag and never-flag "
        "baselines) and DIR/report.md. Every call is cached.",
        epilog="Example:\n  alfa flaws make examples/flaws_problems.jsonl -o runs/flaws\n"
        "  alfa eval flaws runs/flaws/items.jsonl --model transformers:runs/train/dpo -o runs/eval/flaws-dpo",
    )
    f.add_argument("items", help="items.jsonl from alfa flaws make")
    f.add_argument("-o", "--output", required=True, help="folder for replies.jsonl, results.json and report.md")
    f.add_argument("--model", default="local", help="backend of the model under test")
    f.add_argument(
        "--judge",
        default="rule",
        help="`rule` (default: a reply with a question mark that commits to no answer asks; no model call) or a "
        "backend that answers Yes/No (local, openai:MODEL@URL...; the embedded 1.5B said Yes to every reply)",
    )
    f.set_defaults(func=_eval_flaws)


def add_generate(sub) -> None:
    """alfa generate"""
    g = sub.add_parser(
        "generate",
        help="a policy asks its follow-up question for each post of a questions table",
        description="One JSON object a line: qid, group_id, question, model. The policy sees the post and earlier "
        "turns as chat messages, as in the preference pairs' prompt. Every call is cached.",
        epilog="Example: alfa generate transformers:runs/train/smollm2-dpo q.parquet -o runs/gen/dpo.jsonl",
    )
    g.add_argument("policy", help="backend: transformers:FOLDER, local, smollm2, llamacpp:FILE.gguf, openai:MODEL@URL")
    g.add_argument("questions", help="questions Parquet from alfa ingest")
    g.add_argument("-o", "--output", required=True, help="JSONL to write")
    g.add_argument(
        "--held-out-from",
        metavar="PAIRS_DIR",
        help="leave out the questions on posts in this pairs dir's train split (what the policy trained on)",
    )
    g.add_argument("--limit", type=positive_int, help="only the first N questions (after --held-out-from)")
    g.add_argument("--max-new-tokens", type=int, default=48, help="longest question per post, in tokens")
    g.set_defaults(func=_generate)


def _eval_cases(args) -> int:
    import json

    from alfa.eval.cases import check_cases, load_cases, no_case_message

    cases, rejects = load_cases(Path(args.cases))
    if not cases:
        raise ValueError(no_case_message(Path(args.cases), rejects))
    report = check_cases(cases)
    report["rejected_lines"] = rejects
    print(json.dumps(report, indent=2))
    return 0


def _generate(args) -> int:
    import polars as pl

    from alfa.data.ingest import read_questions
    from alfa.eval.generate import generate_questions, generation_figures
    from alfa.llm.make import backend_from_spec

    questions = read_questions(args.questions)
    if args.held_out_from:
        trained = train_posts(Path(args.held_out_from))
        held = questions.filter(~pl.col("group_id").is_in(sorted(trained)))
        print(
            f"left out {questions.height - held.height} questions on the {len(trained)} posts {args.held_out_from} trains on"
        )
        questions = held
    if args.limit:
        questions = questions.head(args.limit)
    if questions.height == 0:  # before any model loads
        raise ValueError(f"{args.questions}: no questions to generate for (after --held-out-from and --limit)")
    policy = backend_from_spec(args.policy, max_new_tokens=args.max_new_tokens)
    try:
        stats = generate_questions(questions, policy, Path(args.output))
    finally:
        policy.close()
    figures = generation_figures(Path(args.output))
    q, w = figures["one_question"], figures["words"]
    print(
        f"{questions.height} questions: {stats.calls_made} model calls, {stats.cache_hits} from cache -> {args.output}\n"
        f"one question: {q['value']:.1%} ({q['ci_low']:.1%}-{q['ci_high']:.1%}); mean words {w['value']:.1f} "
        f"({w['ci_low']:.1f}-{w['ci_high']:.1f}); failed calls {figures['failed']}"
    )
    return 0


def train_posts(pairs_dir: Path) -> set[str]:
    """The group ids (posts) of a pairs dir's train split."""
    import polars as pl

    path = pairs_dir / "data" / "train.parquet"
    if not path.exists():
        raise FileNotFoundError(
            f"--held-out-from {pairs_dir}: no {path} (give a pairs dir from alfa pairs or alfa build)"
        )
    return set(pl.read_parquet(path, columns=["group_id"])["group_id"])


def _eval_flaws(args) -> int:
    from alfa.eval.flaws import evaluate_flaws, read_items
    from alfa.llm.make import RoleBackends

    items = read_items(Path(args.items))  # a bad file stops here, before any model loads
    with RoleBackends() as roles:
        judge = None if args.judge == "rule" else roles.get(args.judge, 4)
        evaluate_flaws(items, roles.get(args.model, 160), judge, Path(args.output))
    print((Path(args.output) / "report.md").read_text())
    return 0


def _eval_report(args) -> int:
    from alfa.eval.report import write_report

    path = write_report([Path(r) for r in args.runs], Path(args.output), Path(args.base) if args.base else None)
    print(path.read_text())
    return 0
