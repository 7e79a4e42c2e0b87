"""`alfa tasks gsm8k`: interactive case sets made from problem files (alfa.eval.gsm8k)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alfa.cli.arguments import positive_int


def add_tasks(sub) -> None:
    """alfa tasks gsm8k | premise-questions"""
    t = sub.add_parser("tasks", help="make interactive case sets: a GSM8K missing-premise testbed")
    verbs = t.add_subparsers(dest="tasks_verb", required=True, metavar="WHAT")
    g = verbs.add_parser(
        "gsm8k",
        help="GSM8K-format problems -> missing-premise cases for `alfa eval interactive`",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Each problem becomes an interactive case: its premise sentences are the facts the simulated "
        "patient holds, one premise whose number the reference solution computes with is removed (the case's "
        "decisive fact), the expert starts from the rest, and the answer is the number after '####'. Writes "
        "DIR/train.jsonl, DIR/heldout.jsonl (split by a seeded hash of each problem), DIR/rejects.jsonl (every "
        "problem left out, with its line and reason) and DIR/README.md (the card).",
        epilog="Example:\n  alfa tasks gsm8k ../shared/data/gsm8k/train.jsonl -o runs/gsm8k-cases\n"
        "  alfa eval interactive runs/gsm8k-cases/heldout.jsonl --limit 200 --expert none --abstain fixed \\\n"
        "      --max-questions 1 --questioner smollm2 -o runs/eval/gsm8k-smollm2",
    )
    g.add_argument("file", help="JSONL with GSM8K's fields: question, answer (a worked solution ending '#### N')")
    g.add_argument("-o", "--output", required=True, help="folder for the case files and the card")
    g.add_argument("--heldout-share", type=float, default=0.2, help="share of problems in heldout.jsonl (default: 0.2)")
    g.add_argument("--seed", type=int, default=0, help="seeds the removed premise and the split (default: 0)")
    g.add_argument(
        "--max-steps",
        type=int,
        help="keep only problems whose solution takes at most N annotated calculations (default: all); short "
        "ones suit a small expert on a CPU",
    )
    g.set_defaults(func=_gsm8k)
    q = verbs.add_parser(
        "premise-questions",
        help="testbed cases -> one question per case asking for its removed premise, as input for `alfa build`",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="ALFA on the missing-premise testbed: each case's removed premise asked back as an echo "
        "question ('He buys 3 pizzas.' -> 'He buys how many pizzas?'), beside the case as the consultation shows "
        "it. These are the original questions the attribute decomposer rewrites (configs/pipelines/"
        "gsm8k_premise.yaml). A question the fact-select patient does not answer with the removed premise is left "
        "out, kept in FILE's .rejects.jsonl with its reason.",
        epilog="Example:\n  alfa tasks premise-questions runs/gsm8k/train.jsonl --limit 64 -o runs/gsm8k/premise_questions.jsonl\n"
        "  alfa build configs/pipelines/gsm8k_premise.yaml",
    )
    q.add_argument("cases", help="a case file of `alfa tasks gsm8k` (its train.jsonl)")
    q.add_argument("-o", "--output", required=True, help="the JSONL to write (qid, group_id, context, question)")
    q.add_argument("--limit", type=positive_int, help="the first N cases only (default: all)")
    q.set_defaults(func=_premise_questions)


def _premise_questions(args) -> int:
    from alfa.dialogue.patients import FactSelectPatient, default_top_k
    from alfa.eval.gsm8k import write_premise_questions
    from alfa.llm.embedder import Embedder

    patient = FactSelectPatient(Embedder(), top_k=default_top_k(False))
    counts = write_premise_questions(Path(args.cases), Path(args.output), patient, args.limit)
    print(
        f"{counts['kept']} questions -> {args.output}; {counts['rejected']} left out (the patient did not tell "
        "the removed premise for them: the .rejects.jsonl beside it)"
    )
    return 0 if counts["kept"] else 1


def _gsm8k(args) -> int:
    from alfa.eval.gsm8k import write_gsm8k_cases

    counts = write_gsm8k_cases(Path(args.file), Path(args.output), args.heldout_share, args.seed, args.max_steps)
    print(
        f"{counts['train']} train + {counts['heldout']} held-out cases, {counts['rejected']} problems rejected "
        f"(rejects.jsonl) -> {args.output}"
    )
    if not counts["train"] + counts["heldout"]:
        print(
            f"alfa tasks: error: {args.file} gave no case (an empty file, or every problem rejected: "
            f"{args.output}/rejects.jsonl says why, line by line)",
            file=sys.stderr,
        )
        return 1
    return 0
