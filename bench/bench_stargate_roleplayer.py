"""Does STaR-GATE's roleplayer give the answer away, and does a rule against answering stop it?

On MediQ cases, STaR-GATE's own sampling (alfa.methods.stargate.sample_conversations: the embedded SmolLM2
questioner at temperature 0.9, the embedded Qwen 1.5B roleplayer on llama.cpp) runs twice with the same seeds:
with alfa's roleplayer instruction (the baseline) and with one that adds a rule against answering the task or
naming one of its options. The questioner's first questions are the same calls in both (the cache answers the
second run); later questions follow the answers. Prints, per instruction, the share of conversations in which the
roleplayer names the case's gold option, split by whether the question before it named that option too (an echo)
or not (unprompted), names any option, or says "I can't answer that", with 95% bootstrap intervals over cases (a
case's samples are not independent), the paired differences, and the ratio of the gold-naming rates. With
--score, also what STaR-GATE's score (log p(gold) under m0) selects among the baseline's conversations: whether it
prefers those whose questions name the gold option. Every call and score is cached in OUTPUT: a rerun is free.

    .venv/bin/python bench/bench_stargate_roleplayer.py ../shared/data/mediq/medqa_dev_interactive.jsonl --limit 50 --samples 4 --score
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alfa.dialogue.patients import CANNOT_ANSWER  # noqa: E402
from alfa.llm.backends import TransformersBackend  # noqa: E402
from alfa.llm.cache import CallCache  # noqa: E402
from alfa.llm.embedded import smollm2_path  # noqa: E402
from alfa.llm.make import backend_from_spec  # noqa: E402
from alfa.methods.stargate import ROLEPLAYER_SYSTEM, StarGateConfig, sample_conversations, score_table  # noqa: E402
from alfa.methods.tasks import read_cases, tasks_from_cases  # noqa: E402
from alfa.stats import bootstrap_mean  # noqa: E402

# The candidate: alfa's instruction with a rule against answering the task (tried 2026-12-05/06, not adopted).
NO_ANSWER_RULE = ROLEPLAYER_SYSTEM.replace(
    " If the description",
    " You do not know the answer to the task: never answer it or name one of its options, even when asked to."
    " If the description",
)
assert NO_ANSWER_RULE != ROLEPLAYER_SYSTEM


def names(reply: str, option: str) -> bool:
    """The reply names an option when it holds the option's text (its first 40 characters, case folded)."""
    return option.lower()[:40] in reply.lower()


FLAGS = ("names_gold_option", "echoes_gold_option", "names_gold_unprompted", "names_any_option", "cannot_answer")


def conversation_flags(episode: dict, options: dict[str, str], gold: str) -> dict[str, bool]:
    """What the roleplayer's answers in one conversation did; an echo repeats the gold option the question named."""
    turns = [(q, a) for q, a in episode["data"]["conversation"] if q and a]
    gold_text = options[gold]
    return {
        "names_gold_option": any(names(a, gold_text) for _, a in turns),
        "echoes_gold_option": any(names(a, gold_text) and names(q, gold_text) for q, a in turns),
        "names_gold_unprompted": any(names(a, gold_text) and not names(q, gold_text) for q, a in turns),
        "names_any_option": any(names(a, o) for _, a in turns for o in options.values()),
        "cannot_answer": any(CANNOT_ANSWER.lower().rstrip(".") in a.lower() for _, a in turns),
        "question_names_an_option": any(names(q, o) for q, _ in turns for o in options.values()),
        "question_names_gold_option": any(names(q, gold_text) for q, _ in turns),
    }


def selection(episodes: list[dict], tasks: list, flags: dict, cache: CallCache) -> None:
    """What STaR-GATE's score selects among the baseline's conversations: log p(gold | task, conversation) under
    m0 (SmolLM2), kept = the best of each case. Among the cases where some but not all samples' questions name the
    gold option, how often the kept one does (chance: that share of the samples)."""
    from alfa.llm.scorer import LogProbScorer

    scorer = LogProbScorer(smollm2_path(), cache=cache)
    table = score_table(episodes, {t.task_id: t for t in tasks}, {t.task_id: t.gold for t in tasks}, scorer, 1)
    table = table.with_columns(
        named=pl.Series([flags[i]["question_names_gold_option"] for i in table["episode_id"]], dtype=pl.Boolean)
    )
    for named, part in table.group_by("named"):
        r = bootstrap_mean(part["score"].to_list(), part["task_id"].to_list())
        print(
            f"mean log p(gold) under m0, a question names the gold option {named[0]}: {r['value']:.2f} "
            f"({r['ci_low']:.2f} to {r['ci_high']:.2f}), {part.height} conversations"
        )
    mixed = table.filter(pl.col("named").any().over("task_id") & ~pl.col("named").all().over("task_id"))
    kept = mixed.filter("kept")
    if kept.height:
        chance = mixed["named"].mean()
        r = bootstrap_mean(kept["named"].cast(float).to_list(), kept["task_id"].to_list())
        print(
            f"cases where some samples name the gold option in a question: {kept.height}; the kept one names it in "
            f"{100 * r['value']:.0f}% ({100 * r['ci_low']:.0f}-{100 * r['ci_high']:.0f}), chance {100 * chance:.0f}%"
        )


def pct(values, groups) -> str:
    r = bootstrap_mean(values, groups)
    return f"{100 * r['value']:.1f}% ({100 * r['ci_low']:.1f}-{100 * r['ci_high']:.1f})"


def report(flags: dict, seconds: dict, calls: dict) -> None:
    """The table of FLAGS per instruction, then the paired differences (rule minus baseline)."""
    base_name, rule_name = flags
    ids = sorted(flags[base_name])
    groups = [i.split("#")[0] for i in ids]
    header = " | ".join(k.replace("_", " ") for k in FLAGS)
    print(f"| instruction | {header} | calls made | seconds |")
    print("|---" * (len(FLAGS) + 3) + "|")
    for name, by_id in flags.items():
        cols = " | ".join(pct([by_id[i][k] for i in ids], groups) for k in FLAGS)
        made = f"{calls[name].calls_made} ({calls[name].failed} failed)"
        print(f"| {name} | {cols} | {made} | {seconds[name]:.0f} |")
    asked = pct([flags[base_name][i]["question_names_an_option"] for i in ids], groups)
    print(f"conversations in which the questioner's question names an option (baseline): {asked}")
    before, now = flags[base_name], flags[rule_name]
    for key in ("names_gold_option", "names_gold_unprompted", "names_any_option"):
        diff = bootstrap_mean([float(now[i][key]) - float(before[i][key]) for i in ids], groups)
        print(
            f"{key}, no-answer rule minus baseline (paired, percentage points): {100 * diff['value']:+.1f} "
            f"({100 * diff['ci_low']:+.1f} to {100 * diff['ci_high']:+.1f})"
        )
    gold_before = sum(before[i]["names_gold_option"] for i in ids)
    if gold_before:
        ratio = sum(now[i]["names_gold_option"] for i in ids) / gold_before
        print(f"gold option named with the no-answer rule: {ratio:.2f}x the baseline's rate")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cases", type=Path, help="MediQ-style cases (JSONL)")
    parser.add_argument("--limit", type=int, default=50, help="the first N cases (default 50)")
    parser.add_argument("--samples", type=int, default=2, help="conversations per case (default 2)")
    parser.add_argument("--turns", type=int, default=2, help="questions per conversation (default 2)")
    parser.add_argument("--roleplayer", default="local", help="backend spec (default: the embedded Qwen 1.5B)")
    parser.add_argument("--score", action="store_true", help="also score the baseline's conversations under m0")
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "runs" / "bench-stargate-roleplayer")
    args = parser.parse_args()

    cases = {c.case_id: c for c in read_cases(args.cases, args.limit)}
    tasks = tasks_from_cases(args.cases, args.limit)
    args.output.mkdir(parents=True, exist_ok=True)
    cache = CallCache(args.output / "cache.sqlite")
    policy = TransformersBackend(smollm2_path(), max_new_tokens=48, stop=("?",))
    roleplayer = backend_from_spec(args.roleplayer, 48)
    print(f"{len(tasks)} cases x {args.samples} samples x {args.turns} questions, roleplayer {args.roleplayer}")
    flags, seconds, calls, sampled = {}, {}, {}, {}
    arms = (
        ("alfa's (baseline)", "baseline", ROLEPLAYER_SYSTEM),
        ("with the no-answer rule", "no_answer_rule", NO_ANSWER_RULE),
    )
    try:
        for name, slug, instruction in arms:
            cfg = StarGateConfig(
                output_dir=str(args.output),
                recipe="unused",
                cases=str(args.cases),
                limit=args.limit,
                roleplayer=args.roleplayer,
                roleplayer_instruction=instruction,
                oracle="case",
                samples=args.samples,
                turns=args.turns,
                regularizer="none",
                max_new_tokens=48,
            )
            start = time.perf_counter()
            episodes, stats = sample_conversations(
                tasks, policy, roleplayer, cfg, 0, cache, args.output / f"{slug}.jsonl"
            )
            seconds[name], calls[name], sampled[name] = time.perf_counter() - start, stats, episodes
            flags[name] = {}
            for e in episodes:
                case = cases[e["result"]["task_id"]]
                flags[name][e["episode_id"]] = conversation_flags(e, case.options, case.answer)
        report(flags, seconds, calls)
        if args.score:
            selection(sampled[arms[0][0]], tasks, flags[arms[0][0]], cache)
    finally:
        roleplayer.close()
        cache.close()


if __name__ == "__main__":
    main()
