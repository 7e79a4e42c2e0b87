"""The `alfa` command: thin glue over the stage functions (each importable on its own).

alfa ingest INPUT... [--preset askdocs | --map question=COL,...] -o questions.parquet
alfa synthesize questions.parquet --attributes core -o RUN_DIR
alfa pairs RUN_DIR -o PAIRS_DIR
alfa lint PAIRS_DIR [--tokenizer PATH --max-length N]
alfa card PAIRS_DIR
alfa build PIPELINE.yaml
alfa stargate CONFIG.yaml
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from alfa.cli import data, evaluate, methods, models, review, tasks, train

EPILOG = """\
The flow: ingest -> synthesize -> pairs -> lint -> card (or all of them: alfa build PIPELINE.yaml).
Example, offline with the embedded model:
  alfa ingest examples/clinical_sample.jsonl --map question=question,context=title+post,group=post_id,qid=row_id -o q.parquet
  alfa synthesize q.parquet --attributes core --limit 5 -o runs/try
  alfa pairs runs/try -o runs/try-pairs && alfa lint runs/try-pairs && alfa card runs/try-pairs
Run `alfa VERB --help` for each verb's options.
"""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every `alfa` parser's: descriptions and epilogs as written, and each option's help ending with its default
    (unless the help already says it). Set on every parser by `parser()`, so no verb can forget it."""

    def _get_help_string(self, action):
        text = action.help or ""
        unset = any(action.default is v for v in (None, False, argparse.SUPPRESS)) or action.default == []
        quiet = unset or "default" in text
        return text if quiet or not action.option_strings else f"{text} (default: %(default)s)"


def all_parsers(p: argparse.ArgumentParser):
    """`p` and every sub-parser under it."""
    yield p
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from all_parsers(sub)


# `alfa --help` lists the verbs by the step of the flow they belong to (tests/test_cli_help.py: each verb in one).
VERB_GROUPS = {
    "data": ["ingest", "synthesize", "pairs", "lint", "card", "build"],
    "review": ["review"],
    "train": ["train", "merge"],
    "evaluate": ["eval", "evaluate-rm", "evaluate-policy", "generate", "tasks"],
    "methods": ["stargate", "sml", "uot", "flaws", "collab"],
    "models": ["models"],
}


def grouped_verbs(sub: argparse._SubParsersAction) -> str:
    """The verbs and their one-line help, under their group's name."""
    helps = {a.dest: a.help for a in sub._choices_actions}
    blocks = [f"{group}:\n" + "\n".join(f"  {v:<12} {helps[v]}" for v in verbs) for group, verbs in VERB_GROUPS.items()]
    return "verbs:\n\n" + "\n\n".join(blocks)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="alfa",
        description="Build preference data that teaches language models to "
        "ask good follow-up questions (the ALFA method).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors in the log, no progress bars")
    p.add_argument("--debug", action="store_true", help="show the full traceback of every error (or ALFA_DEBUG=1)")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    data.add_ingest(sub)
    data.add_synthesize(sub)
    data.add_pairs(sub)
    data.add_lint(sub)
    data.add_card(sub)
    data.add_build(sub)
    train.add_train(sub)
    evaluate.add_evaluate_rm(sub)
    evaluate.add_evaluate_policy(sub)
    evaluate.add_eval(sub)
    tasks.add_tasks(sub)
    evaluate.add_generate(sub)
    train.add_merge(sub)
    methods.add_stargate(sub)
    methods.add_sml(sub)
    methods.add_uot(sub)
    methods.add_flaws(sub)
    methods.add_collab(sub)
    review.add_review(sub)
    models.add_models(sub)
    for each in all_parsers(p):
        each.formatter_class = HelpFormatter
    p.description = f"{p.description}\n\n{grouped_verbs(sub)}"
    sub._choices_actions = []  # listed by group in the description instead of once more, flat
    return p


# The optional extras of pyproject.toml and the modules that tell one is missing.
EXTRAS = {
    "train": {"trl", "peft", "deepspeed", "mergekit", "tensorboard"},
    "review": {"argilla", "requests", "krippendorff", "sklearn"},
}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.quiet:  # progress bars too: tqdm's own switch, which alfa's bars also read (alfa.llm.calls.QUIET)
        os.environ["TQDM_DISABLE"] = "1"
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("argilla.sdk", "httpx", "sentence_transformers", "transformers", "datasets", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Libraries' own bars (weights loading, dataset saving) bury alfa's; alfa's bars stay on.
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    from alfa.yamlconfig import ConfigError

    debug = args.debug or os.environ.get("ALFA_DEBUG") == "1"
    try:
        return args.func(args)
    except ModuleNotFoundError as e:
        package = (e.name or "").split(".")[0]  # trl.chat_template_utils missing means trl is
        extra = next((x for x, modules in EXTRAS.items() if package in modules), None)
        if extra is None or debug:
            raise  # not one of an extra's modules: a real bug, keep its traceback
        print(
            f"alfa {args.verb}: error: this needs alfa's `{extra}` extra (module {package!r} is not installed): "
            f"pip install -e '.[{extra}]' (or `make install-dev` for every extra)",
            file=sys.stderr,
        )
        return 2
    except (ConfigError, FileNotFoundError, ValueError, RuntimeError) as e:  # ReviewError too
        if debug:
            raise
        print(f"alfa {args.verb}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
