"""`alfa evaluate-rm` (the reward-model scorecard), `alfa generate` and `alfa eval cases | interactive | winrate`
(alfa.eval)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alfa.eval.interactive import ABSTAIN


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
        "  alfa eval interactive CASES --skip 240 --limit 30 ...   # 30 cases after the 240 a method trained on\n"
        "Backends: local (embedded Qwen on llama.cpp), smollm2, llamacpp:FILE.gguf, transformers:FOLDER, "
        "openai:MODEL@BASE_URL.",
    )
    i.add_argument("cases", help="case JSONL")
    i.add_argument("-o", "--output", required=True, help="folder for episodes.jsonl, results.json, report.md")
    i.add_argument("--expert", default="local", help="backend of the expert (decides and answers)")
    i.add_argument(
        "--questioner",
        default="local",
        help="backend of the question generator, or `uot`: the expert's backend plans each question (UoT)",
    )
    i.add_argument(
        "--patient",
        default="fact",
        help="fact = MiniLM fact-select (deterministic, no model), or a backend for an LLM patient shown only the facts",
    )
    i.add_argument("--abstain", choices=ABSTAIN, default="scale")
    i.add_argument("--threshold", type=float, help="numeric: confidence in [0,1] (0.8); scale: 1-5 (4)")
    i.add_argument("--max-questions", type=int, default=5)
    i.add_argument("--limit", type=int, help="only the first N cases")
    i.add_argument(
        "--skip",
        type=int,
        default=0,
        help="leave out the first N readable cases, e.g. the ones `alfa collab build --limit N` or a "
        "STaR-GATE run trained on, so the evaluation sees held-out cases",
    )
    i.add_argument("--initial-info", choices=["first-fact", "post"], default="first-fact")
    i.add_argument("--uot-n", type=int, default=3, help="UoT: candidate questions per node (paper: 3)")
    i.add_argument("--uot-depth", type=int, default=3, help="UoT: questions deep the plan looks (paper: 3)")
    i.add_argument("--uot-lambda", type=float, default=0.4, help="UoT: lambda of the reward R(p) (paper: 0.4)")
    i.set_defaults(func=_eval_interactive)
    _add_eval_winrate(verbs, fmt)
    _add_eval_flaws(verbs, fmt)
    r = verbs.add_parser(
        "report",
        help="one Markdown page with plots comparing evaluation runs",
        description="Reads each RUN folder (alfa eval interactive or winrate output) and writes DIR/report.md and "
        "DIR/report.png: accuracy and win rates with their intervals, the baselines beside.",
    )
    r.add_argument("runs", nargs="+", metavar="RUN")
    r.add_argument("-o", "--output", required=True)
    r.set_defaults(func=_eval_report)


def _add_eval_winrate(verbs, fmt) -> None:
    """alfa eval winrate"""
    w = verbs.add_parser(
        "winrate",
        help="win rate of A's questions over B's (or the human ones), judged in both orders",
        formatter_class=fmt,
        description="The judge compares A's and B's question for each post, overall and per attribute, in both "
        "orders always. A win counts 1, a tie 0.5, a loss 0; failed judgements are counted apart, never dropped. "
        "Writes DIR/winrate.json (win_rate with a bootstrap interval over posts, wins, ties, losses, failures, "
        "position_bias) and DIR/verdicts.jsonl. The rate is read from the judge's first-token probabilities of A "
        "and B where its backend reports them (llama.cpp does), the two orders averaged: a small judge that always "
        "writes the first letter still leans towards the better question. --reading text counts written verdicts.",
        epilog="Example:\n  alfa generate transformers:runs/train/dpo q.parquet -o runs/gen/dpo.jsonl\n"
        "  alfa eval winrate --a runs/gen/dpo.jsonl --b human --questions q.parquet -o runs/eval/dpo-vs-human",
    )
    w.add_argument("--a", required=True, help="questions JSONL of model A (from alfa generate)")
    w.add_argument("--b", required=True, help="questions JSONL of model B, or `human` (the original questions)")
    w.add_argument("--questions", required=True, help="the questions table both were generated for")
    w.add_argument("-o", "--output", required=True)
    w.add_argument("--judge", default="local", help="judge backend (see alfa eval interactive --help)")
    w.add_argument(
        "--attributes",
        default="core",
        help="attribute pack whose definitions give the per-attribute judgements; `none`: the overall judgement "
        "only (with core's three attributes that is 2 of every 5 calls)",
    )
    w.add_argument(
        "--reading",
        choices=["probability", "text"],
        default="probability",
        help="probability: P(A better) from first-token log-probs, both orders averaged (text where the backend "
        "has none); text: the written verdict, win 1 / tie 0.5 / loss 0",
    )
    w.add_argument(
        "--no-control",
        action="store_true",
        help="skip the known-bad baseline (an irrelevant question judged against B, overall): saves a fifth of "
        "the calls, and leaves you without the check that the judge can rank questions at all",
    )
    w.set_defaults(func=_eval_winrate)


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
    f.add_argument("-o", "--output", required=True)
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
    g.add_argument("--limit", type=int, help="only the first N questions")
    g.add_argument("--max-new-tokens", type=int, default=48)
    g.set_defaults(func=_generate)


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
    from alfa.llm.rewriters import RoleBackends

    if args.skip < 0:
        raise ValueError(f"--skip must be 0 or more, got {args.skip}")
    cases, rejects = load_cases(Path(args.cases), args.limit, args.skip)
    for r in rejects:
        logging.warning("case rejected: %s", r["reason"])
    if not cases:
        after = f" after the first {args.skip} readable ones (--skip {args.skip})" if args.skip else ""
        raise ValueError(
            f"{args.cases}: no readable case{after} ({len(rejects)} lines rejected, listed above); "
            "`alfa eval cases` shows why"
        )
    for w in warnings(check_cases(cases)):
        logging.warning("cases: %s", w)
    planner = None
    with RoleBackends() as roles:  # roles that name the same model share one backend
        expert = roles.get(args.expert)
        if args.questioner == "uot":  # the expert's model proposes the questions and their splits
            from alfa.dialogue.uot import UoTPlanner

            planner = UoTPlanner(args.uot_n, args.uot_depth, args.uot_lambda)
            questioner = roles.get(args.expert, 48 * args.uot_n + 32)
        else:
            questioner = roles.get(args.questioner)
        patient = FactSelectPatient(Embedder()) if args.patient == "fact" else roles.get(args.patient)
        protocol = InteractiveProtocol(
            expert, questioner, patient, args.abstain, args.threshold, args.max_questions, planner
        )
        r = evaluate_interactive(cases, protocol, Path(args.output), args.initial_info)
    print((Path(args.output) / "report.md").read_text())
    print(f"episodes, results.json, report.md, accuracy_vs_questions.png -> {args.output} ({r['n']} cases)")
    return 0


def _read_questions_jsonl(path: str) -> dict[str, str]:
    import json

    with open(path, encoding="utf-8") as f:
        return {r["qid"]: r["question"] for r in map(json.loads, f) if r.get("question")}


def _eval_winrate(args) -> int:
    import json

    import polars as pl

    from alfa.data.attributes import load_pack
    from alfa.eval.winrate import CONTROL_FIT, judge_winrate
    from alfa.llm.rewriters import backend_from_spec

    questions = pl.read_parquet(args.questions)
    a = _read_questions_jsonl(args.a)
    b = dict(zip(questions["qid"], questions["question"])) if args.b == "human" else _read_questions_jsonl(args.b)
    judge = backend_from_spec(args.judge, max_new_tokens=4)
    try:
        attributes = {} if args.attributes == "none" else load_pack(args.attributes).attributes
        report = judge_winrate(
            a, b, questions, judge, attributes, Path(args.output), reading=args.reading, control=not args.no_control
        )
    finally:
        judge.close()
    print(
        json.dumps(
            {k: report[k] for k in ("n", "reading", "win_rate", "wins", "ties", "losses", "failures", "position_bias")}
            | ({"control_win_rate": report["control"]["win_rate"]} if "control" in report else {}),
            indent=2,
        )
    )
    control = report.get("control", {}).get("win_rate", {})
    if control.get("ci_high") is not None and control["ci_high"] > CONTROL_FIT:
        print(
            f"warning: the judge hardly ranks an irrelevant question ({report['control']['question']!r}) below "
            f"B's questions (control win rate {control['value']:.2f}, interval up to {control['ci_high']:.2f}; a "
            f"judge fit to rank questions puts it near 0, alfa warns above {CONTROL_FIT}): it barely tells a better "
            "question from a worse one, so win rates near 0.5 say little about the models. Use a stronger judge "
            "(--judge openai:MODEL@BASE_URL).",
            file=sys.stderr,
        )
    return 0


def _generate(args) -> int:
    import polars as pl

    from alfa.eval.generate import generate_questions
    from alfa.llm.rewriters import backend_from_spec

    questions = pl.read_parquet(args.questions)
    if args.limit:
        questions = questions.head(args.limit)
    policy = backend_from_spec(args.policy, max_new_tokens=args.max_new_tokens)
    try:
        stats = generate_questions(questions, policy, Path(args.output))
    finally:
        policy.close()
    print(
        f"{questions.height} questions: {stats.calls_made} model calls, {stats.cache_hits} from cache -> {args.output}"
    )
    return 0


def _eval_flaws(args) -> int:
    from alfa.eval.flaws import evaluate_flaws, read_items
    from alfa.llm.rewriters import RoleBackends

    items = read_items(Path(args.items))  # a bad file stops here, before any model loads
    with RoleBackends() as roles:
        judge = None if args.judge == "rule" else roles.get(args.judge, 4)
        evaluate_flaws(items, roles.get(args.model, 160), judge, Path(args.output))
    print((Path(args.output) / "report.md").read_text())
    return 0


def _eval_report(args) -> int:
    from alfa.eval.report import write_report

    path = write_report([Path(r) for r in args.runs], Path(args.output))
    print(path.read_text())
    return 0
