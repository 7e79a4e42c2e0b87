"""`alfa eval interactive` (alfa.eval.interactive): its options and the glue that builds the roles."""

from __future__ import annotations

from pathlib import Path

from alfa.cli.arguments import positive_int
from alfa.eval.interactive import ABSTAIN


def add_eval_interactive(verbs, fmt) -> None:
    """alfa eval interactive"""
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
        "  alfa eval interactive runs/gsm8k/heldout.jsonl --expert none --abstain fixed --max-questions 1 "
        "--questioner smollm2 -o runs/eval/gsm8k   # asked_decisive on the GSM8K testbed (alfa tasks gsm8k)\n"
        "Backends: local (embedded Qwen on llama.cpp), smollm2, llamacpp:FILE.gguf, transformers:FOLDER, "
        "openai:MODEL@BASE_URL.",
    )
    i.add_argument("cases", help="case JSONL")
    i.add_argument("-o", "--output", required=True, help="folder for episodes.jsonl, results.json, report.md")
    i.add_argument(
        "--expert",
        default="local",
        help="backend of the expert (decides and answers); `none`: no expert, the questioner and the patient only "
        "(with --abstain fixed), for asked_decisive on cases that mark their decisive fact (default: local)",
    )
    i.add_argument(
        "--expert-max-tokens",
        type=int,
        help="the expert's reply budget (default: 64; 320 for cases without options, whose expert writes a short "
        "worked solution before 'Answer: N')",
    )
    i.add_argument(
        "--questioner",
        help="backend of the question generator; `uot`: the expert's backend plans each question (UoT); `oracle`: "
        "a script that asks with the words of the case's decisive fact, the upper bound of asking (default: local; "
        "none with --abstain consult, where the expert asks its own questions)",
    )
    add_patient_options(i)
    i.add_argument(
        "--abstain",
        choices=ABSTAIN,
        default="scale",
        help="how the expert decides to answer: implicit (it answers or says 'Question:', and the questioner then "
        "asks), binary (yes/no), numeric (a confidence against --threshold), scale (1-5), fixed (exactly "
        "--max-questions questions), consult (the expert is the model under test, shown the case and the "
        "conversation as SML, CollabLLM and GRPO train it: each reply answers or is its own question) (default: scale)",
    )
    i.add_argument("--threshold", type=float, help="numeric: confidence in [0,1] (0.8); scale: 1-5 (4)")
    i.add_argument("--max-questions", type=int, default=5, help="questions an episode may ask before it must answer")
    i.add_argument(
        "--questions-only",
        action="store_true",
        help="with --abstain consult: read what the model asks (asked_decisive, premature answers) and not its "
        "final answer; no accuracy and no expert baselines, a third of the calls. For an expert that cannot solve "
        "the cases even with every fact (its full-information baseline at the floor), whose accuracy reads nothing",
    )
    i.add_argument("--limit", type=positive_int, help="only the first N cases")
    i.add_argument(
        "--skip",
        type=int,
        default=0,
        help="leave out the first N readable cases, e.g. the ones `alfa collab build --limit N` or a "
        "STaR-GATE run trained on, so the evaluation sees held-out cases",
    )
    i.add_argument(
        "--initial-info",
        choices=["first-fact", "post"],
        default="first-fact",
        help="what the expert knows at first: the case's initial info, or its source post (default: first-fact)",
    )
    i.add_argument(
        "--cache",
        help="the call cache (default: OUTPUT/cache.sqlite); runs that compare questioners on one expert can share "
        "one, so the expert's baselines and its answers from the same facts are paid once",
    )
    i.add_argument("--uot-n", type=int, default=3, help="UoT: candidate questions per node (paper: 3)")
    i.add_argument("--uot-depth", type=int, default=3, help="UoT: questions deep the plan looks (paper: 3)")
    i.add_argument("--uot-lambda", type=float, default=0.4, help="UoT: lambda of the reward R(p) (paper: 0.4)")
    i.set_defaults(func=run_eval_interactive)


def add_patient_options(i) -> None:
    """The simulated patient's options."""
    i.add_argument(
        "--patient",
        default="fact",
        help="fact = MiniLM fact-select (deterministic, no model), or a backend for an LLM patient shown only the "
        "facts (default: fact)",
    )
    i.add_argument(
        "--patient-top-k",
        type=int,
        help="fact-select: facts told for one question, at most (default: 2; 1 for cases without options, where "
        "with 2 a question about a quantity the problem gives also told the removed premise in 46%% of 300 GSM8K "
        "train cases: bench/bench_gsm8k_patient.py)",
    )
    i.add_argument(
        "--patient-threshold",
        type=float,
        default=0.45,
        help="fact-select: the least cosine similarity of question and fact for the fact to be told (default: 0.45)",
    )


def run_eval_interactive(args) -> int:
    import logging

    from alfa.dialogue.patients import FactSelectPatient, default_top_k
    from alfa.eval.cases import check_cases, load_cases, no_case_message, warnings
    from alfa.eval.interactive import ORACLE, InteractiveProtocol, evaluate_interactive
    from alfa.llm.embedder import Embedder
    from alfa.llm.make import RoleBackends

    if args.skip < 0:
        raise ValueError(f"--skip must be 0 or more, got {args.skip}")
    every, rejects = load_cases(Path(args.cases))
    for r in rejects:
        logging.warning("case rejected: %s", r["reason"])
    end = args.skip + args.limit if args.limit else None
    cases, reference = every[args.skip : end], every[: args.skip] + (every[end:] if end else [])
    if not every:
        raise ValueError(no_case_message(Path(args.cases), rejects))
    if not cases:
        raise ValueError(f"{args.cases}: no readable case after the first {args.skip} (--skip {args.skip})")
    for w in warnings(check_cases(cases)):
        logging.warning("cases: %s", w)
    if args.questioner == "uot" and not all(c.options for c in cases):
        raise ValueError(
            f"{args.cases}: --questioner uot plans over each case's answer options, and "
            f"{sum(not c.options for c in cases)} of these cases have none (word problems: an open number is no "
            "finite set of hypotheses to split); UoT does not apply to them (docs/methods.md#uot-a-questioner-that-plans)"
        )
    budget = args.expert_max_tokens or (64 if all(c.options for c in cases) else 320)
    planner = None
    with RoleBackends() as roles:  # roles that name the same model share one backend
        expert = None if args.expert == "none" else roles.get(args.expert, budget)
        if args.abstain == "consult":
            if args.questioner is not None:
                raise ValueError("--abstain consult: the expert asks its own questions; leave out --questioner")
            if expert is None:
                raise ValueError("--abstain consult needs an --expert: the model under test")
            questioner = None
        elif args.questioner == "uot":  # the expert's model proposes the questions and their splits
            from alfa.dialogue.uot import UoTPlanner

            if expert is None:
                raise ValueError("--questioner uot plans with the expert's model: give an --expert")
            planner = UoTPlanner(args.uot_n, args.uot_depth, args.uot_lambda)
            questioner = roles.get(args.expert, 48 * args.uot_n + 32)
        else:
            questioner = ORACLE if args.questioner == ORACLE else roles.get(args.questioner or "local")
        if args.patient == "fact":
            top_k = args.patient_top_k or default_top_k(all(c.options for c in cases))
            patient = FactSelectPatient(Embedder(), args.patient_threshold, top_k)
        else:
            patient = roles.get(args.patient)
        protocol = InteractiveProtocol(
            expert, questioner, patient, args.abstain, args.threshold, args.max_questions, planner,
            final_answer=not args.questions_only,
        )  # fmt: skip
        unscored = "the other readable cases of the file (" + (f"the {args.skip} skipped" if args.skip else "")
        unscored += (" and " if args.skip and end else "") + ("those after the scored ones" if end else "") + ")"
        r = evaluate_interactive(
            cases, protocol, Path(args.output), args.initial_info, 0, reference, unscored, args.cache
        )
    print((Path(args.output) / "report.md").read_text())
    print(f"episodes, results.json, report.md, accuracy_vs_questions.png -> {args.output} ({r['n']} cases)")
    return 0
