"""Flawed problems (proactive critical thinking, Wang et al. 2025): a model must meet a problem with a missing
premise by asking for it, and still solve the intact ones.

`alfa flaws make PROBLEMS.jsonl -o DIR` writes DIR/items.jsonl from a problem set the user brings (one JSON object
a line: `id`, `problem`, `answer`; `examples/flaws_problems.jsonl` is a hand-written sample). Each problem gives:

- `intact`: the problem as it is (must be solved);
- `missing_premise`: one premise sentence removed (one that carries a number when any does, picked by a seeded
  hash), the removed sentence kept as `removed` (hindsight: what a good question asks for; the model never sees it);
- `contradiction`: a numbered premise stated twice with different numbers (its first number raised by 1-4, picked by
  a seeded hash), the altered copy right after the original; both kept as `conflict` (a good question asks which
  one holds);
- `distractor`: a premise sentence of another problem inserted before the question (irrelevant; must still be
  solved, as GSM-MCE adds distractors).

`missing_premise` and `contradiction` are the flawed kinds (`FLAWED`): they must be met with a question.

Deterministic: the same set and seed give the same items, so evaluations of different models compare item by item.
A problem without a premise sentence to remove (a lone question) is rejected with its line and reason.
`alfa eval flaws DIR/items.jsonl` scores a model on them (alfa.eval.flaws). Training data from them:
`alfa flaws pairs EVAL_DIR` (DPO: a question for the removed premise over the model's confident answer; the right
answer over a needless question on a sound problem) and `alfa flaws tasks ITEMS` (a tasks dir for `stage: grpo`
with the `handles_flaws` reward).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from alfa.eval.flaws import FLAWED, SOLVER_SYSTEM
from alfa.methods.tasks import read_jsonl

KINDS = ("intact", "missing_premise", "contradiction", "distractor")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def read_problems(path: Path) -> list[dict]:
    rows = []
    for n, obj in read_jsonl(Path(path), ("id", "problem", "answer")):
        for key in ("id", "problem", "answer"):
            if not str(obj[key]).strip():
                raise ValueError(f"{path}:{n}: field '{key}' is empty")
        rows.append({"id": str(obj["id"]), "problem": str(obj["problem"]), "answer": str(obj["answer"]), "line": n})
    return rows


def split_problem(text: str) -> tuple[list[str], str]:
    """(premise sentences, the question: the last sentence)."""
    sentences = [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]
    return sentences[:-1], sentences[-1]


def _pick(options: list[str], key: str) -> str:
    return min(options, key=lambda s: hashlib.sha256(f"{key}:{s}".encode()).hexdigest())


def contradict(sentence: str, key: str) -> str:
    """`sentence` with its first number raised by 1-4 (seeded by `key`): "It lasts 2 days." -> "It lasts 5 days."."""
    m = _NUMBER.search(sentence)
    delta = 1 + int(hashlib.sha256(key.encode()).hexdigest(), 16) % 4
    value = str(int(m.group(0)) + delta) if m.group(0).isdigit() else f"{float(m.group(0)) + delta:g}"
    return sentence[: m.start()] + value + sentence[m.end() :]


def make_items(problems: list[dict], seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(items, rejected problems with their reasons)."""
    items, rejects = [], []
    premises_of = {p["id"]: split_problem(p["problem"])[0] for p in problems}
    for i, p in enumerate(problems):
        premises, question = split_problem(p["problem"])
        if not premises:
            rejects.append({"id": p["id"], "line": p["line"], "reason": "no premise sentence before the question"})
            continue
        base = {"source_id": p["id"], "answer": p["answer"]}
        items.append(
            {**base, "item_id": f"{p['id']}/intact", "kind": "intact", "problem": p["problem"], "removed": None}
        )
        numbered = [s for s in premises if re.search(r"\d", s)] or premises
        removed = _pick(numbered, f"{seed}:{p['id']}")
        kept = [s for s in premises if s != removed]
        items.append(
            {
                **base,
                "item_id": f"{p['id']}/missing_premise",
                "kind": "missing_premise",
                "problem": " ".join(kept + [question]),
                "removed": removed,
            }
        )
        with_numbers = [s for s in premises if _NUMBER.search(s)]
        if with_numbers:
            original = _pick(with_numbers, f"{seed}:{p['id']}:contradiction")
            altered = contradict(original, f"{seed}:{p['id']}")
            at = premises.index(original) + 1
            items.append(
                {
                    **base,
                    "item_id": f"{p['id']}/contradiction",
                    "kind": "contradiction",
                    "problem": " ".join(premises[:at] + [altered] + premises[at:] + [question]),
                    "removed": None,
                    "conflict": [original, altered],
                }
            )
        others = [s for q in problems if q["id"] != p["id"] for s in premises_of[q["id"]] if re.search(r"\d", s)]
        if others:
            distractor = _pick(others, f"{seed}:{p['id']}:distractor")
            items.append(
                {
                    **base,
                    "item_id": f"{p['id']}/distractor",
                    "kind": "distractor",
                    "problem": " ".join(premises + [distractor, question]),
                    "removed": None,
                }
            )
    return items, rejects


def write_items(problems_path: Path, out: Path, seed: int = 0) -> dict:
    """DIR/items.jsonl, DIR/rejects.jsonl and DIR/README.md; returns the counts."""
    items, rejects = make_items(read_problems(Path(problems_path)), seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "items.jsonl", "w", encoding="utf-8") as f:
        for item in items:
            f.write(json.dumps(item, ensure_ascii=False) + "\n")
    with open(out / "rejects.jsonl", "w", encoding="utf-8") as f:
        for r in rejects:
            f.write(json.dumps({"file": str(problems_path), **r}) + "\n")
    counts = {k: sum(i["kind"] == k for i in items) for k in KINDS} | {"rejected": len(rejects)}
    (out / "README.md").write_text(
        f"# Flawed problems from `{problems_path}`\n\n{json.dumps(counts)}\n\nEach problem as it is (`intact`), with one "
        "premise sentence removed (`missing_premise`; the sentence kept as `removed`), with a premise stated twice with "
        "different numbers (`contradiction`; both kept as `conflict`), and with an irrelevant "
        "sentence of another problem added (`distractor`). Made by `alfa flaws make`; scored by `alfa eval flaws`. Problems drawn from clinical text carry whatever "
        "personal health information that text held: treat them as such.\n"
    )
    return counts


def ask_for(removed: str) -> str:
    """A question for the removed premise: its numbers become "how many" ("The treatment lasts 2 days." ->
    "The treatment lasts how many days?")."""
    sentence = removed.strip().rstrip(".!")
    blanked = re.sub(r"\d+(?:[.,]\d+)?", "how many", sentence)
    if blanked == sentence:
        return f"I cannot solve this as stated: is it the case that {sentence[0].lower() + sentence[1:]}?"
    return f"I cannot solve this as stated. {blanked}?"


def ask_which(conflict: list[str]) -> str:
    """A question about two premises that contradict each other."""
    first, second = (s.strip().rstrip(".!") for s in conflict)
    return f'The problem says both "{first}" and "{second}". Which one is right?'


def flaw_pairs(rows: list[dict], model: str) -> list[dict]:
    """DPO pairs from an `alfa eval flaws` run's replies (replies.jsonl rows)."""
    out = []
    for r in rows:
        if r["reply"] is None:
            continue
        if r["kind"] == "missing_premise" and not r["flagged"] and r["removed"]:
            pair_type, chosen = "ask_for_missing_premise", ask_for(r["removed"])
        elif r["kind"] == "contradiction" and not r["flagged"] and r.get("conflict"):
            pair_type, chosen = "ask_about_contradiction", ask_which(r["conflict"])
        elif r["kind"] not in FLAWED and r["flagged"]:
            pair_type, chosen = "solve_sound_problem", f"Answer: {r['answer']}"
        else:
            continue
        out.append(
            {
                "pair_id": hashlib.sha256(f"flaws:{r['item_id']}".encode()).hexdigest()[:16],
                "qid": r["item_id"],
                "group_id": r["source_id"],  # the variants of one problem stay in one split
                "attribute": "flaws",
                "pair_type": pair_type,
                "prompt": [{"role": "system", "content": SOLVER_SYSTEM}, {"role": "user", "content": r["problem"]}],
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": r["reply"]}],
                "chosen_similarity": None,
                "rejected_similarity": None,
                "rewriter": model,
                "prompt_template_hash": None,
                "attribute_pack": "flaws",
                "chosen_score": None,
                "rejected_score": None,
            }
        )
    return out


def write_flaw_pairs(eval_dir: Path, out: Path) -> dict:
    from alfa.methods.scored_pairs import write_scored_pairs

    eval_dir, out = Path(eval_dir), Path(out)
    replies = eval_dir / "replies.jsonl"
    if not replies.exists():
        raise FileNotFoundError(f"{replies}: run `alfa eval flaws ITEMS -o {eval_dir}` first")
    rows = [json.loads(line) for line in replies.read_text(encoding="utf-8").splitlines() if line.strip()]
    results = json.loads((eval_dir / "results.json").read_text())
    pairs = flaw_pairs(rows, results["model"])
    manifest = {
        "method": "flaws",
        "made_by": "alfa flaws pairs",
        "description": (
            f"{len(pairs)} pairs from the replies in `{eval_dir}`: on a problem that cannot be solved as stated (a "
            "premise removed, or two premises that contradict each other), a question for what is missing or "
            "conflicting is chosen over the model's answer; on a sound problem, the right answer over a needless "
            "question."
        ),
        "attribute_definitions": {
            "flaws": "Which reply handles the problem as it is: asks for what is missing or conflicting when the "
            "problem cannot be solved as stated, and solves it when it can?"
        },
        "roles": {"model": results["model"], "judge": results["judge"]},
        "settings": {},
        "source": f"the items scored in `{eval_dir}` (`alfa eval flaws`)",
    }
    splits = write_scored_pairs(pairs, out, manifest)
    return {"pairs": len(pairs), "splits": splits}


def write_flaw_tasks(items: list[dict], out: Path) -> int:
    """A tasks dir for `stage: grpo` (one policy turn: `rollout.turns: 1`, reward `handles_flaws`)."""
    import polars as pl

    from alfa.dialogue.asking import flaw_facts

    rows = []
    for i in items:
        # what the reward's patient holds (the intact problem's sentences) and the premises a question must draw
        facts, targets = flaw_facts(i["problem"], i.get("removed"), i.get("conflict"))
        rows.append(
            {
                "task_id": i["item_id"],
                "prompt": [{"role": "system", "content": SOLVER_SYSTEM}, {"role": "user", "content": i["problem"]}],
                "facts": facts,
                "targets": targets,
                "answer": i["answer"],
                "options": "{}",
                "kind": i["kind"],
            }
        )
    (Path(out) / "data").mkdir(parents=True, exist_ok=True)
    schema = {"facts": pl.List(pl.String), "targets": pl.List(pl.Int64)}
    pl.DataFrame(rows, schema_overrides=schema).write_parquet(Path(out) / "data" / "train.parquet")
    (Path(out) / "README.md").write_text(f"# Flawed-problem tasks ({len(rows)} items)\n\nMade by `alfa flaws tasks`.\n")
    return len(rows)
