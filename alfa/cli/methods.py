"""`alfa stargate`, `alfa sml`, `alfa uot`, `alfa flaws` and `alfa collab`: the other ways to teach asking (alfa.methods)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from alfa.cli.arguments import positive_int


def add_stargate(sub) -> None:
    """alfa stargate"""
    s = sub.add_parser(
        "stargate",
        help="STaR-GATE: train a questioner on its own best sampled conversations with a roleplayer",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Each iteration: the questioner samples conversations with a roleplayer who holds each task's "
        "hidden information; each conversation is scored by the log-probability of the gold response (an "
        "oracle's, or a case's answer) under the initial model; the best per task are kept, with a final answer as "
        "regulariser; the initial model is fine-tuned on them (the loss on the questioner's turns only) and the "
        "result is the next iteration's questioner. CONFIG maps onto alfa.methods.stargate.StarGateConfig; a "
        "rerun resumes from what is done (OUTPUT/iter_K/summary.json, the call cache).",
        epilog="Examples:\n"
        "  alfa stargate configs/stargate/mediq_smollm2.yaml    # MediQ dev cases, SmolLM2 questioner, embedded roleplayer\n"
        "  alfa stargate configs/stargate/tiny.yaml             # seconds: the tiny model, examples/stargate_*.jsonl\n"
        "Then: alfa eval interactive CASES --questioner transformers:OUTPUT/iter_0/model ...\n"
        "Method and figures: docs/methods.md",
    )
    s.add_argument("config", help="STaR-GATE YAML (see configs/stargate/)")
    s.set_defaults(func=_stargate)


def _stargate(args) -> int:
    from alfa.methods.stargate import load_config
    from alfa.methods.stargate_run import run_stargate

    summaries = run_stargate(load_config(Path(args.config)))
    for summary in summaries:
        print(json.dumps({k: v for k, v in summary.items() if k not in ("calls", "oracle_calls")}))
    return 0


def add_sml(sub) -> None:
    """alfa sml tasks | dialogues"""
    fmt = argparse.RawDescriptionHelpFormatter
    s = sub.add_parser(
        "sml",
        help="SML with Q-priming: student-teacher dialogues on cases, and the tasks dir a GRPO recipe trains on",
    )
    verbs = s.add_subparsers(dest="sml_verb", required=True, metavar="WHAT")
    d = verbs.add_parser(
        "dialogues",
        help="a student works each case out with a teacher who knows the answer; the successes become an SFT set",
        formatter_class=fmt,
        description="Each turn the student asks the teacher one question or answers ('Answer: C'); the teacher answers "
        "from the case's facts without giving the answer away and meets a wrong answer with a hint. A dialogue "
        "succeeds when the student gives the case's answer within --turns turns. With --q-prime the student is told "
        "to ask before answering, and the saved SFT copy is written without that instruction. Writes "
        "DIR/dialogues.jsonl, DIR/sft/ (a dialogues dir for `alfa train`) and DIR/summary.json; every call is cached, "
        "so a rerun resumes.",
        epilog="Examples:\n"
        "  alfa sml dialogues ../shared/data/mediq/medqa_dev_interactive.jsonl --limit 40 --q-prime -o runs/sml/qprime\n"
        "  alfa train recipes/smollm2-135m/sft_dialogues_cpu.yaml --set data.dialogues_dir=runs/sml/qprime/sft\n"
        "Backends: local (embedded Qwen on llama.cpp), smollm2, llamacpp:FILE.gguf, transformers:FOLDER, "
        "openai:MODEL@BASE_URL. Method and figures: docs/methods.md",
    )
    d.add_argument("cases", help="case JSONL (MediQ, CRAFT-MD or ALFA-style AskDocs)")
    d.add_argument("-o", "--output", required=True, help="folder for dialogues.jsonl, sft/, summary.json")
    d.add_argument("--student", default="smollm2", help="backend of the student (the model being taught)")
    d.add_argument("--teacher", default="local", help="backend of the teacher (sees the facts and the answer)")
    d.add_argument("--q-prime", action="store_true", help="tell the student to ask first (removed from the SFT copy)")
    d.add_argument("--turns", type=int, default=4, help="student turns per dialogue (default 4)")
    d.add_argument("--samples", type=int, default=1, help="dialogues per case, each with its own seed (default 1)")
    d.add_argument("--temperature", type=float, default=0.7, help="the student's sampling temperature")
    d.add_argument(
        "--view",
        choices=["initial", "full"],
        default="initial",
        help="initial: the case's first fact, the rest to ask the teacher for; full: every fact (nothing left to ask)",
    )
    d.add_argument("--limit", type=positive_int, help="only the first N cases")
    d.set_defaults(func=_sml_dialogues)
    t = verbs.add_parser(
        "tasks",
        help="cases as chat prompts with their facts and answer: the tasks dir a `stage: grpo` recipe reads",
        description="Writes DIR/data/train.parquet (task_id, prompt, facts, answer, options) and DIR/README.md.",
        epilog="Example: alfa sml tasks ../shared/data/mediq/medqa_dev_interactive.jsonl --limit 64 -o runs/tasks/medqa",
    )
    t.add_argument("cases", help="case JSONL")
    t.add_argument("-o", "--output", required=True, help="tasks dir to write")
    t.add_argument("--view", choices=["initial", "full"], default="initial", help="what the policy is shown first")
    t.add_argument("--limit", type=positive_int, help="only the first N cases")
    t.set_defaults(func=_sml_tasks)


def _sml_tasks(args) -> int:
    from alfa.methods.sml import write_tasks_dir
    from alfa.methods.tasks import read_cases

    n = write_tasks_dir(read_cases(Path(args.cases), args.limit), Path(args.output), args.view)
    print(f"{n} tasks -> {args.output}/data/train.parquet (a GRPO recipe reads it as data.tasks_dir)")
    return 0


def _sml_dialogues(args) -> int:
    from alfa.llm.make import RoleBackends
    from alfa.methods.sml import run_sml_dialogues
    from alfa.methods.tasks import read_cases

    if args.turns < 1 or args.samples < 1:
        raise ValueError("--turns and --samples must be at least 1")
    cases = read_cases(Path(args.cases), args.limit)  # a bad file stops here, before any model loads
    with RoleBackends() as roles:  # a teacher naming the student's model shares its backend
        student, teacher = roles.get(args.student, 64), roles.get(args.teacher, 96)
        summary = run_sml_dialogues(
            cases,
            student,
            teacher,
            Path(args.output),
            args.turns,
            args.samples,
            args.q_prime,
            args.view,
            args.temperature,
        )
    print(json.dumps(summary, indent=2))
    return 0


def add_uot(sub) -> None:
    """alfa uot pairs"""
    s = sub.add_parser("uot", help="UoT: its planning choices as DPO pairs")
    verbs = s.add_subparsers(dest="uot_verb", required=True, metavar="WHAT")
    p = verbs.add_parser(
        "pairs",
        help="the highest against the lowest expected-reward candidate of every planned question, as DPO pairs",
        description="Reads EVAL_DIR/episodes.jsonl of `alfa eval interactive --questioner uot` and writes a pairs dir "
        "(split by case; chosen_score / rejected_score are the expected rewards) that alfa lint, card and train read.",
        epilog="Example:\n  alfa eval interactive CASES --questioner uot --uot-depth 2 --limit 30 -o runs/eval/uot\n"
        "  alfa uot pairs runs/eval/uot -o runs/uot-pairs && alfa lint runs/uot-pairs",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("eval_dir", help="an `alfa eval interactive --questioner uot` output folder")
    p.add_argument("-o", "--output", required=True, help="pairs dir to write")
    p.add_argument("--min-gap", type=float, default=0.0, help="least expected-reward gap between chosen and rejected")
    p.set_defaults(func=_uot_pairs)


def _uot_pairs(args) -> int:
    from alfa.methods.uot_pairs import write_uot_pairs

    summary = write_uot_pairs(Path(args.eval_dir), Path(args.output), args.min_gap)
    print(json.dumps(summary))
    return 0 if summary["pairs"] else 1


def add_flaws(sub) -> None:
    """alfa flaws make | pairs | tasks"""
    s = sub.add_parser("flaws", help="flawed problems: make missing-premise and distractor variants of a problem set")
    verbs = s.add_subparsers(dest="flaws_verb", required=True, metavar="WHAT")
    m = verbs.add_parser(
        "make",
        help="each problem intact, with one premise removed (kept as hindsight), and with a distractor added",
        description="PROBLEMS: one JSON object a line with id, problem, answer (the question is the last sentence). "
        "Writes DIR/items.jsonl, DIR/rejects.jsonl and DIR/README.md. Deterministic for a seed.",
        epilog="Example: alfa flaws make examples/flaws_problems.jsonl -o runs/flaws && "
        "alfa eval flaws runs/flaws/items.jsonl -o runs/eval/flaws",
    )
    m.add_argument("problems", help="problems JSONL (id, problem, answer)")
    m.add_argument("-o", "--output", required=True, help="folder for items.jsonl")
    m.add_argument("--seed", type=int, default=0, help="which premise and distractor are picked")
    m.set_defaults(func=_flaws_make)
    pairs = verbs.add_parser(
        "pairs",
        help="DPO pairs from an `alfa eval flaws` run: ask for the missing premise; answer the sound problem",
        description="A question for the removed premise over the model's answer to a problem that cannot be solved as "
        "stated, and the right answer over a needless question on a sound problem; split by problem.",
    )
    pairs.add_argument("eval_dir", help="an `alfa eval flaws` output folder")
    pairs.add_argument("-o", "--output", required=True, help="pairs dir to write")
    pairs.set_defaults(func=_flaws_pairs)
    tasks = verbs.add_parser(
        "tasks",
        help="the items as a tasks dir for `stage: grpo` (reward handles_flaws, rollout.turns 1)",
        epilog="Example: alfa flaws tasks runs/flaws/items.jsonl -o runs/flaws-tasks && alfa train recipes/tiny/grpo.yaml "
        "--set data.tasks_dir=runs/flaws-tasks --set rollout.turns=1 --set rollout.rewards=[handles_flaws]",
    )
    tasks.add_argument("items", help="items.jsonl from alfa flaws make")
    tasks.add_argument("-o", "--output", required=True, help="tasks dir to write")
    tasks.set_defaults(func=_flaws_tasks)


def _flaws_pairs(args) -> int:
    from alfa.methods.flaws import write_flaw_pairs

    summary = write_flaw_pairs(Path(args.eval_dir), Path(args.output))
    print(json.dumps(summary))
    return 0 if summary["pairs"] else 1


def _flaws_tasks(args) -> int:
    from alfa.eval.flaws import read_items
    from alfa.methods.flaws import write_flaw_tasks

    print(f"{write_flaw_tasks(read_items(Path(args.items)), Path(args.output))} tasks -> {args.output}")
    return 0


def _flaws_make(args) -> int:
    from alfa.methods.flaws import write_items

    print(json.dumps(write_items(Path(args.problems), Path(args.output), args.seed)))
    return 0


def add_collab(sub) -> None:
    """alfa collab build"""
    s = sub.add_parser("collab", help="CollabLLM: DPO pairs of replies scored by the conversation they lead to")
    verbs = s.add_subparsers(dest="collab_verb", required=True, metavar="WHAT")
    b = verbs.add_parser(
        "build",
        help="score candidate replies by sampled futures with a simulated patient; best vs worst as DPO pairs",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="At each assistant turn of a consultation the policy samples --candidates replies; each is scored "
        "by its multiturn-aware reward, the mean over --futures sampled continuations of --window turns with the "
        "simulated patient of task_weight x (answer right) + interactivity_weight x (judge's rating) - min(1, "
        "token_cost x tokens). The best continues; best vs worst is a pair when their MR differ by --min-gap. Writes a "
        "pairs dir (split by case) with conversations.jsonl and summary.json; every call is cached, a rerun resumes. "
        "Options come from --config YAML (keys of alfa.methods.collab.CollabConfig) and then the flags.",
        epilog="Example:\n  alfa collab build ../shared/data/mediq/medqa_dev_interactive.jsonl --limit 40 -o runs/collab\n"
        "  alfa lint runs/collab && alfa train recipes/smollm2-135m/dpo_specificity_cpu.yaml "
        "--set data.pairs_dir=runs/collab --set data.attributes=[multiturn_reward]",
    )
    b.add_argument("cases", help="case JSONL (MediQ, CRAFT-MD or ALFA-style AskDocs)")
    b.add_argument("-o", "--output", required=True, help="pairs dir to write")
    b.add_argument("--config", help="YAML with CollabConfig keys (flags given here override it)")
    b.add_argument("--policy", default="smollm2", help="backend whose replies are scored (the model to train)")
    b.add_argument(
        "--user",
        default="local",
        help="backend of the simulated patient (shown only the case's facts), or 'fact': the fact-select patient of "
        "`alfa eval interactive` (the facts most similar to the question, verbatim; no model)",
    )
    b.add_argument("--judge", default="local", help="backend rating interactivity (unused at interactivity_weight 0)")
    b.add_argument("--limit", type=positive_int, help="only the first N cases")
    for name, kind, text in (
        ("candidates", int, "replies scored per turn (2)"),
        ("futures", int, "S, continuations sampled per candidate (3)"),
        ("window", int, "w, assistant turns per continuation (2)"),
        ("turns", int, "assistant turns per conversation (3)"),
        ("task_weight", float, "weight of the right answer (1.0)"),
        ("interactivity_weight", float, "weight of the judge's rating (0.5; 0 = no judge calls)"),
        ("token_cost", float, "penalty per assistant token, capped at 1 (0.001)"),
        ("cost_weight", float, "weight of the capped token penalty (1.0, the paper; CollabLLM's package: 0.5)"),
        ("min_gap", float, "least MR difference for a pair (0.02)"),
    ):
        b.add_argument("--" + name.replace("_", "-"), type=kind, help=text)
    b.set_defaults(func=_collab_build)


def _collab_build(args) -> int:
    import dataclasses

    from alfa.llm.make import RoleBackends
    from alfa.methods.collab import FACT_USER, CollabConfig, build_collab, fact_select_patient, load_config
    from alfa.methods.tasks import read_cases

    cfg = load_config(Path(args.config)) if args.config else CollabConfig()
    flags = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(CollabConfig)
        if getattr(args, f.name, None) is not None
    }
    cfg = dataclasses.replace(cfg, **flags)
    cases = read_cases(Path(args.cases), args.limit)  # a bad file stops here, before any model loads
    with RoleBackends() as roles:  # roles naming the same model share one backend (one server)
        policy, judge = roles.get(args.policy, 64), roles.get(args.judge, 4)
        user = fact_select_patient() if args.user == FACT_USER else roles.get(args.user, 64)
        summary = build_collab(cases, policy, user, judge, cfg, Path(args.output))
    print(json.dumps({k: summary[k] for k in ("cases", "pairs", "splits", "calls", "failures")}))
    return 0 if summary["pairs"] else 1
