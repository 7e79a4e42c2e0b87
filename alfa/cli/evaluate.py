"""`alfa evaluate-rm` (the reward-model scorecard) and `alfa eval cases | interactive` (alfa.eval)."""

from __future__ import annotations

import argparse
from pathlib import Path


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
    s.add_argument("--split", default="test")
    s.add_argument("-o", "--output", required=True, help="folder for the scorecard")
    s.set_defaults(func=_evaluate_rm)


def _evaluate_rm(args) -> int:
    from alfa.eval.reward_scorecard import scorecard

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


def add_eval(sub) -> None:
    """alfa eval cases | interactive"""
    fmt = argparse.RawDescriptionHelpFormatter
    e = sub.add_parser("eval", help="evaluate a questioner: case checks, interactive diagnosis")
    verbs = e.add_subparsers(dest="eval_verb", required=True, metavar="WHAT")
    c = verbs.add_parser(
        "cases",
        help="check a case file: answer-letter and longest-option shares, ungrounded initial infos",
        description="Prints one JSON object: n, answer_letter_share, longest_option_share and, for cases that "
        "carry their source post, ungrounded_initial_info. Unreadable lines are listed with file, line and field.",
    )
    c.add_argument("cases", help="case JSONL (MediQ, CRAFT-MD or ALFA-style AskDocs)")
    c.set_defaults(func=_eval_cases)
    i = verbs.add_parser(
        "interactive",
        help="MediQ's interactive diagnosis with a separate questioner; accuracy with intervals and baselines",
        formatter_class=fmt,
        description="The expert sees the initial info and the conversation, decides each turn whether it can "
        "answer (--abstain), and must answer by --max-questions; otherwise the questioner asks the fact-select "
        "patient one question. Every call is cached: a killed run resumes and pays for no finished call twice.",
        epilog="Examples:\n  alfa eval interactive ../shared/data/mediq/medqa_dev_interactive.jsonl --limit 30 -o runs/eval/i1\n"
        "  alfa eval interactive CASES --questioner transformers:runs/train/dpo-mixed --abstain fixed "
        "--max-questions 3 -o runs/eval/dpo\n"
        "Backends: local (embedded Qwen on llama.cpp), smollm2, llamacpp:FILE.gguf, transformers:FOLDER, "
        "openai:MODEL@BASE_URL.",
    )
    i.add_argument("cases", help="case JSONL")
    i.add_argument("-o", "--output", required=True, help="folder for episodes.jsonl, results.json, report.md")
    i.add_argument("--expert", default="local", help="backend of the expert (decides and answers)")
    i.add_argument("--questioner", default="local", help="backend of the question generator")
    i.add_argument("--patient", choices=["fact"], default="fact", help="fact = MiniLM fact-select, deterministic")
    i.add_argument("--abstain", choices=["implicit", "binary", "numeric", "scale", "fixed"], default="scale")
    i.add_argument("--threshold", type=float, help="numeric: confidence in [0,1] (0.8); scale: 1-5 (4)")
    i.add_argument("--max-questions", type=int, default=5)
    i.add_argument("--limit", type=int, help="only the first N cases")
    i.add_argument("--initial-info", choices=["first-fact", "post"], default="first-fact")
    i.set_defaults(func=_eval_interactive)


def _eval_cases(args) -> int:
    import json

    from alfa.eval.cases import check_cases, load_cases

    cases, rejects = load_cases(Path(args.cases))
    report = check_cases(cases)
    report["rejected_lines"] = rejects
    print(json.dumps(report, indent=2))
    return 0


def _eval_interactive(args) -> int:
    import logging

    from alfa.dialogue.patients import FactSelectPatient
    from alfa.eval.cases import check_cases, load_cases, warnings
    from alfa.eval.interactive import InteractiveProtocol, evaluate_interactive
    from alfa.llm.embedder import Embedder
    from alfa.llm.rewriters import backend_from_spec

    cases, rejects = load_cases(Path(args.cases), args.limit)
    for r in rejects:
        logging.warning("case rejected: %s", r["reason"])
    for w in warnings(check_cases(cases)):
        logging.warning("cases: %s", w)
    expert = backend_from_spec(args.expert)
    questioner = expert if args.questioner == args.expert else backend_from_spec(args.questioner)
    try:
        protocol = InteractiveProtocol(
            expert, questioner, FactSelectPatient(Embedder()), args.abstain, args.threshold, args.max_questions
        )
        r = evaluate_interactive(cases, protocol, Path(args.output), args.initial_info)
    finally:
        for backend in {id(expert): expert, id(questioner): questioner}.values():
            backend.close()
    print((Path(args.output) / "report.md").read_text())
    print(f"episodes, results.json, report.md, accuracy_vs_questions.png -> {args.output} ({r['n']} cases)")
    return 0
