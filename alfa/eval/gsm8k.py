"""`alfa tasks gsm8k FILE -o DIR`: a missing-premise testbed for interactive evaluation, from GSM8K-format problems.

MedQA is beyond a small expert: with every fact the embedded 1.5B is at chance, so no questioner can move its
accuracy. Grade-school maths is not. Each problem becomes one interactive case (alfa.eval.cases reads it):

- the facts are the problem's premise sentences (all but the last, the question); the simulated patient holds
  them all, so a question about a quantity the problem already gives retrieves that sentence and gains nothing;
- one premise is removed: one whose number the reference solution uses (its `<<48/2=24>>` annotations say which
  numbers it computes with), picked by a seeded hash; it is the case's `decisive_fact`;
- the initial info is the problem without it; the answer is the number after `####`.

A question that makes the fact-select patient tell the removed sentence has asked for the missing premise
(`asked_decisive` in `alfa eval interactive`); no expert call is needed to read that.

Problems are split into DIR/train.jsonl and DIR/heldout.jsonl by a seeded hash of each problem's text, so a
problem's split never depends on the others; DIR/rejects.jsonl keeps every problem left out with its line and
reason, and DIR/README.md is the set's card. Any JSONL with GSM8K's `question` and `answer` fields works.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from alfa.dialogue.asking import sentences
from alfa.dialogue.parsing import number_text

# A quantity as the premise states it: money, a percentage or a plain number; an echo question asks each back.
_NUM = r"\d+(?:,\d{3})*(?:\.\d+)?"
_QUANTITY = re.compile(rf"\$\s?{_NUM}|{_NUM}\s?(?:%|percent\b)|{_NUM}(?!\w)")
_ANNOTATION = re.compile(r"<<([^=<>]*)=([^<>]*)>>")
_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")


def numbers_in(text: str) -> set[str]:
    return {n for n in (number_text(m) for m in _NUMBER.findall(text)) if n is not None}


def solution_operands(solution: str) -> tuple[set[str], int]:
    """(the numbers the solution's annotated calculations compute with, how many calculations there are)."""
    found = _ANNOTATION.findall(solution)
    return set().union(*(numbers_in(expr) for expr, _ in found)) if found else set(), len(found)


def _bucket(key: str) -> float:
    return int(hashlib.sha256(key.encode()).hexdigest()[:12], 16) / 16**12


def make_case(problem: str, solution: str, case_id: str, seed: int = 0) -> dict:
    """One interactive case (alfa.eval.cases' layout) from a GSM8K problem; ValueError says why it cannot be one."""
    if "####" not in solution:
        raise ValueError("field 'answer' has no '#### <number>' final answer")
    answer = number_text(solution.rsplit("####", 1)[1])
    if answer is None:
        raise ValueError(f"the final answer after '####' is no number: {solution.rsplit('####', 1)[1].strip()!r}")
    parts = sentences(problem)
    premises, question = parts[:-1], parts[-1] if parts else ""
    if len(premises) < 2:
        raise ValueError("fewer than two premise sentences before the question: nothing to ask for and keep")
    operands, steps = solution_operands(solution)
    used = [i for i, s in enumerate(premises) if numbers_in(s) & operands]
    if not used:
        raise ValueError("no premise sentence holds a number the solution's annotations compute with")
    removed = min(used, key=lambda i: hashlib.sha256(f"{seed}:{case_id}:{premises[i]}".encode()).hexdigest())
    return {
        "id": case_id,
        "question": question,
        "answer": answer,
        "context": premises,
        "facts": premises,
        "initial_info": " ".join(s for i, s in enumerate(premises) if i != removed),
        "decisive_fact": removed,
        "steps": steps,
    }


def premise_question(premise: str) -> str:
    """The removed premise asked back as an echo question, each quantity replaced by what asks for it: 'Betty has
    $15 and 3 coins.' -> 'Betty has how much and how many coins?'. It names what is missing without its value, so
    a model trained to ask it cannot learn to make the number up."""

    def asked(m: re.Match) -> str:
        q = m.group(0)
        return "how much" if q.startswith("$") else "what percent" if q.endswith(("%", "percent")) else "how many"

    return _QUANTITY.sub(asked, premise.strip()).rstrip(".!?") + "?"


def write_gsm8k_cases(
    path: Path, out: Path, heldout_share: float = 0.2, seed: int = 0, max_steps: int | None = None
) -> dict:
    """DIR/train.jsonl, DIR/heldout.jsonl, DIR/rejects.jsonl and DIR/README.md; returns the counts."""
    path, out = Path(path), Path(out)
    if not 0 <= heldout_share <= 1:
        raise ValueError(f"--heldout-share must be between 0 and 1, got {heldout_share}")
    splits: dict[str, list[dict]] = {"train": [], "heldout": []}
    rejects = []
    with open(path, encoding="utf-8") as f:
        for n, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            where = f"{path}:{n}"
            try:
                obj = json.loads(raw)
                for key in ("question", "answer"):
                    if not isinstance(obj.get(key), str) or not obj[key].strip():
                        raise ValueError(f"field '{key}' is missing or empty")
                case = make_case(obj["question"], obj["answer"], f"{path.stem}-{n}", seed)
                if max_steps is not None and case["steps"] > max_steps:
                    raise ValueError(f"the solution takes {case['steps']} steps, more than --max-steps {max_steps}")
            except json.JSONDecodeError as e:
                rejects.append({"file": str(path), "line": n, "reason": f"not JSON: {e.msg}"})
                continue
            except ValueError as e:
                rejects.append({"file": str(path), "line": n, "reason": f"{where}: {e}"})
                continue
            split = "heldout" if _bucket(f"{seed}:{obj['question']}") < heldout_share else "train"
            splits[split].append(case | {"source": {"file": path.name, "line": n}})
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in [*splits.items(), ("rejects", rejects)]:
        with open(out / f"{name}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    counts = {"train": len(splits["train"]), "heldout": len(splits["heldout"]), "rejected": len(rejects)}
    (out / "README.md").write_text(card(path, counts, rejects, heldout_share, seed, max_steps), encoding="utf-8")
    return counts


def write_premise_questions(cases_path: Path, out: Path, patient, limit: int | None = None) -> dict:
    """ALFA's input from the testbed: for each case (the first `limit`), one follow-up question that asks for its
    removed premise (`premise_question`), in alfa's ingest layout (qid, group_id = the case, context = the case as
    the consultation shows it, alfa.dialogue.case_view). A question the fact-select `patient` does not answer with
    the removed premise is not one that retrieves it: it goes to OUT's `.rejects.jsonl` with its reason. Returns
    the counts."""
    from alfa.dialogue.case_view import render_case
    from alfa.eval.cases import load_cases, no_case_message

    cases_path, out = Path(cases_path), Path(out)
    cases, unreadable = load_cases(cases_path, limit)  # a bad line is named with its file, line and reason
    if not cases:
        raise ValueError(no_case_message(cases_path, unreadable))
    kept, rejects = [], list(unreadable)
    for case in cases:
        if case.decisive_fact is None:
            rejects.append({**case.source, "reason": "the case marks no decisive_fact (not an alfa tasks gsm8k case)"})
            continue
        question = premise_question(case.facts[case.decisive_fact])
        told = patient.answer(case.facts, question)[1]
        row = {
            "qid": case.case_id,
            "group_id": case.case_id,
            "context": render_case(case.initial_info, case.question, {}),
            "question": question,
        }
        if told != [case.decisive_fact]:
            rejects.append({**case.source, "reason": f"the patient told facts {told}", **row})
        else:
            kept.append(row)
    out.parent.mkdir(parents=True, exist_ok=True)
    for path, written in ((out, kept), (out.with_suffix(".rejects.jsonl"), rejects)):
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in written)
    return {"kept": len(kept), "rejected": len(rejects)}


def card(path: Path, counts: dict, rejects: list[dict], heldout_share: float, seed: int, max_steps) -> str:
    from collections import Counter

    reasons = Counter(re.sub(r"^[^:]+:\d+: ", "", r["reason"]).split(",")[0] for r in rejects).most_common(5)
    return "\n".join(
        [
            f"# Missing-premise cases from `{path.name}`",
            "",
            f"Made by `alfa tasks gsm8k {path.name} --heldout-share {heldout_share} --seed {seed}"
            + (f" --max-steps {max_steps}`." if max_steps is not None else "`."),
            "",
            "| split | cases |",
            "|---|---|",
            f"| train | {counts['train']} |",
            f"| heldout | {counts['heldout']} |",
            f"| rejected (rejects.jsonl, with line and reason) | {counts['rejected']} |",
            "",
            "Each case is one problem with one premise sentence removed: one whose number the reference solution "
            "computes with (its `<<...>>` annotations), picked by a seeded hash. `facts` are all the premise sentences "
            "(what the simulated patient may tell), `decisive_fact` the index of the removed one, `initial_info` the "
            "premises without it, `question` the problem's last sentence, `answer` the number after `####`, `steps` "
            "the solution's annotated calculations. Splits by a seeded hash of each problem's text: a problem's split "
            "never depends on the others.",
            "",
            "Read it with `alfa eval interactive DIR/heldout.jsonl --expert none --abstain fixed --max-questions 1 "
            "--questioner MODEL`: `asked_decisive` is the share of cases whose question drew the removed sentence out "
            "of the patient, beside the floor a generic question reaches. With an expert (`--expert local`), accuracy "
            "against the no-questions and full-information baselines.",
            "",
            "Most frequent reasons for rejection: " + ("; ".join(f"{r} ({k})" for r, k in reasons) or "none") + ".",
            "",
            "Source licence: GSM8K is MIT-licensed (OpenAI); a set made from other problems carries theirs. The "
            "problems are grade-school maths and hold no personal health information; a set made from clinical "
            "text would carry whatever that text held.",
            "",
        ]
    )
