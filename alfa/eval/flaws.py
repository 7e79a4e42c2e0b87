"""`alfa eval flaws ITEMS -o DIR`: does a model ask when a premise is missing, and only then?

The model answers every item of `alfa flaws make` (intact, missing-premise, contradiction, distractor). Each reply is
read two ways (alfa.dialogue.asking, the rule the `handles_flaws` GRPO reward uses too):

- asked anything: the reply asks instead of answering (the rule: a question mark and no marked answer; or, with
  `--judge MODEL`, the judge's Yes);
- asked for the flaw: it asked, and its question is about the missing premise (or the conflicting ones): the
  fact-select patient holding the intact problem's sentences answers it with the removed sentence (top 1). A
  question about a quantity the problem already gives does not count.

Figures, each a rate with its interval over problems (a group bootstrap, never narrower than Wilson's):

- `flag_rate`: missing-premise and contradiction items asked for their flaw (higher is better), beside the looser
  `asked_rate` (asked anything), and per kind in `by_kind`;
- `false_flag_rate`: intact and distractor items met with a question (lower is better), so `flag_rate -
  false_flag_rate` is reported beside them;
- `accuracy`: intact and distractor items answered with the right number (a marked answer) and not flagged.

Baselines beside them: `always_flag` (1, 1, 0) and `never_flag` (0, 0, -). A failed model call is counted in
`failed_calls` and scored as a loss on every rate (not flagged on a flawed item, flagged on a sound one); a judgement
that cannot be read is counted in `judge_failures` and scored as not asked. Nothing is dropped. Every call is cached
in DIR/cache.sqlite.
"""

from __future__ import annotations

import json
from pathlib import Path

from alfa.dialogue.asking import asks, asks_for, flaw_facts
from alfa.dialogue.parsing import final_number, parse_yes_no
from alfa.llm.cache import CallCache
from alfa.llm.calls import CallStats, run_calls
from alfa.stats import rate

SOLVER_SYSTEM = (
    "Solve the problem. End with 'Answer: ' and the number. If the problem cannot be solved as stated, do not "
    "guess: ask for the information that is missing."
)
JUDGE_SYSTEM = "You check whether a reply to a word problem asks for missing information."
FLAWED = ("missing_premise", "contradiction")  # the kinds that must be met with a question (alfa.methods.flaws)


def read_items(path: Path) -> list[dict]:
    items = []
    with open(path, encoding="utf-8") as f:
        for n, raw in enumerate(f, start=1):
            if raw.strip():
                item = json.loads(raw)
                for key in ("item_id", "source_id", "kind", "problem", "answer"):
                    if key not in item:
                        raise ValueError(f"{path}:{n}: field '{key}' is missing (make items with `alfa flaws make`)")
                items.append(item)
    if not items:
        raise ValueError(f"{path}: no items")
    return items


def judge_messages(problem: str, reply: str) -> list[dict]:
    body = (
        f"Problem: {problem}\n\nReply: {reply}\n\nDoes the reply ask for missing information, point out that the "
        "problem contradicts itself, or say that it cannot be solved as stated, instead of giving a final answer? "
        "Reply Yes or No."
    )
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": body}]


def rule_flag(reply: str | None) -> bool:
    """Asks instead of answering: the reply holds a question mark and commits to no number (alfa.dialogue.asking)."""
    return asks(reply)


def evaluate_flaws(items: list[dict], model, judge, out_dir: Path, seed: int = 0, patient=None) -> dict:
    """`patient`: the fact-select patient that reads whether a question is about the flaw (MiniLM, top 1, by
    default)."""
    if patient is None:
        from alfa.dialogue.patients import FactSelectPatient
        from alfa.llm.embedder import Embedder

        patient = FactSelectPatient(Embedder(), top_k=1)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache, stats = CallCache(out_dir / "cache.sqlite"), CallStats()
    try:
        asks_ = [
            [{"role": "system", "content": SOLVER_SYSTEM}, {"role": "user", "content": i["problem"]}] for i in items
        ]
        replies, _ = run_calls(model, cache, asks_, "answers", stats)
        texts = [r.text if r.error is None else None for r in replies]
        verdicts = (
            [None] * len(items)
            if judge is None
            else run_calls(
                judge, cache, [judge_messages(i["problem"], t or "") for i, t in zip(items, texts)], "judge", stats
            )[0]
        )
    finally:
        cache.close()
    rows = [read_reply(item, text, verdict, patient) for item, text, verdict in zip(items, texts, verdicts)]
    with open(out_dir / "replies.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    report = flaw_figures(rows, seed)
    judge_name = "rule (a question mark, no committed answer)" if judge is None else judge.model_id
    report.update({"model": model.model_id, "judge": judge_name, "calls_made": stats.calls_made})
    (out_dir / "results.json").write_text(json.dumps(report, indent=2))
    (out_dir / "report.md").write_text(report_markdown(report))
    return report


def read_reply(item: dict, text: str | None, verdict, patient) -> dict:
    """One item's row of replies.jsonl: asked anything, asked for the flaw, flagged (the latter on a flawed item,
    the former on a sound one), correct; a failed call (text None) is a loss."""
    failed = text is None
    if verdict is None:  # the rule reads the reply itself
        asked = asks(text)
    else:
        asked = parse_yes_no(verdict.text if verdict.error is None else None)
    facts, targets = flaw_facts(item["problem"], item.get("removed"), item.get("conflict"))
    on_target = bool(asked) and asks_for(text, facts, targets, patient) if item["kind"] in FLAWED else None
    flagged = bool(on_target) if item["kind"] in FLAWED else bool(asked) or failed
    number = final_number(text)
    return {
        "item_id": item["item_id"],
        "source_id": item["source_id"],
        "kind": item["kind"],
        "problem": item["problem"],
        "answer": item["answer"],
        "removed": item.get("removed"),
        "conflict": item.get("conflict"),
        "reply": text,
        "judge": "rule" if verdict is None else verdict.text if verdict.error is None else verdict.error,
        "call_failed": failed,
        "asked": bool(asked),
        "asked_for_flaw": on_target,
        "flagged": flagged,
        "judge_failed": asked is None,
        "correct": not flagged and number is not None and abs(number - float(item["answer"])) < 1e-6,
    }


def flaw_figures(rows: list[dict], seed: int = 0) -> dict:
    flawed = [r for r in rows if r["kind"] in FLAWED]
    sound = [r for r in rows if r["kind"] not in FLAWED]

    def mean(rs: list[dict], key: str) -> dict:
        return rate([float(r[key]) for r in rs], groups=[r["source_id"] for r in rs], seed=seed)

    flag, false_flag = mean(flawed, "flagged"), mean(sound, "flagged")
    both = [v for v in (flag["value"], false_flag["value"]) if v is not None]
    return {
        "n": {"flawed": len(flawed), "sound": len(sound)},
        "flag_rate": flag,
        "asked_rate": mean(flawed, "asked"),
        "false_flag_rate": false_flag,
        "flag_minus_false_flag": flag["value"] - false_flag["value"] if len(both) == 2 else None,
        "accuracy": mean(sound, "correct"),
        "by_kind": {k: {"n": len(rs), "flag_rate": mean(rs, "flagged")} for k, rs in by_kind(rows).items()},
        "judge_failures": sum(r["judge_failed"] for r in rows),
        "failed_calls": sum(r.get("call_failed", False) for r in rows),
        "baselines": {
            "always_flag": {"flag_rate": 1.0, "false_flag_rate": 1.0, "accuracy": 0.0},
            "never_flag": {"flag_rate": 0.0, "false_flag_rate": 0.0, "accuracy": None},
        },
    }


def by_kind(rows: list[dict]) -> dict[str, list[dict]]:
    kinds: dict[str, list[dict]] = {}
    for r in rows:
        kinds.setdefault(r["kind"], []).append(r)
    return kinds


def report_markdown(r: dict) -> str:
    def fmt(a: dict) -> str:
        return "n/a" if a["value"] is None else f"{a['value']:.1%} ({a['ci_low']:.1%}-{a['ci_high']:.1%})"

    return "\n".join(
        [
            f"# Flawed problems: `{r['model']}` (judge `{r['judge']}`)",
            "",
            "| | model (95% interval) | always flag | never flag |",
            "|---|---|---|---|",
            f"| flag rate: asked for the flaw, missing premise + contradiction ({r['n']['flawed']} items) | "
            f"{fmt(r['flag_rate'])} | 100% | 0% |",
            f"| asked anything, missing premise + contradiction | {fmt(r['asked_rate'])} | 100% | 0% |",
            f"| false-flag rate, intact + distractor ({r['n']['sound']} items) | {fmt(r['false_flag_rate'])} | 100% | 0% |",
            f"| accuracy, intact + distractor | {fmt(r['accuracy'])} | 0% | - |",
            "",
            "| kind | items | flagged (95% interval) |",
            "|---|---|---|",
            *[f"| {k} | {v['n']} | {fmt(v['flag_rate'])} |" for k, v in r["by_kind"].items()],
            "",
            "Flag rate minus false-flag rate: "
            + ("n/a" if r["flag_minus_false_flag"] is None else f"{r['flag_minus_false_flag']:+.1%}")
            + "; judgements that could not be read: "
            f"{r['judge_failures']} (scored as not asked); failed model calls: {r['failed_calls']} (scored as losses).",
            "",
        ]
    )
