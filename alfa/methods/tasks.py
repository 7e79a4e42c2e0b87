"""Tasks with hidden information: what the dialogue methods (STaR-GATE, SML) train a questioner on.

A task is what the questioner is asked to do; the hidden information is what only its partner (the roleplayer,
the patient, the teacher) knows and the questioner must ask for. Two sources:

- MediQ-style cases (alfa.eval.cases): the task is the initial info with the diagnostic question and its options;
  the hidden information is the case's facts. The gold response is the oracle's, written from the facts (as in
  the paper); `answer_as_gold` takes the case's label instead ("The answer is X: ...", or "Answer: N" for a word
  problem of the GSM8K testbed; STaR-GATE's `oracle: case`, a cheaper departure from the paper).
- A tasks JSONL (`{"task_id", "task"}` a line) crossed with a profiles JSONL (`{"profile_id", "hidden"}`, the
  hidden information as a string or a list of facts): every task with every profile, as STaR-GATE pairs
  instructions with personas.

A line that cannot be read stops the run with its file, line and field.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from alfa.dialogue.case_view import render_case
from alfa.eval.cases import Case, load_cases, no_case_message

log = logging.getLogger(__name__)


@dataclass
class Task:
    task_id: str
    task: str  # what the questioner sees
    hidden: list[str]  # what only the partner knows
    gold: str | None = None  # a known best response (from the tasks file), else written by the oracle
    options: dict[str, str] = field(default_factory=dict)  # a case's answer options: what an answer turn names
    # A case (a diagnosis, or a word problem without options): the questioner works it in the consultation format
    # it is evaluated in (alfa.dialogue.consult); a tasks-file task keeps the generic task format.
    consultation: bool = False


def case_task_text(initial_info: str, question: str, options: dict[str, str]) -> str:
    """A case as a task: the one case renderer training and evaluation share (alfa.dialogue.case_view)."""
    return render_case(initial_info, question, options)


def read_cases(path: Path, limit: int | None = None) -> list[Case]:
    """The readable cases of a file; a file with none stops the run, naming the first reasons."""
    cases, rejects = load_cases(Path(path), limit)
    if not cases:
        raise ValueError(no_case_message(Path(path), rejects))
    if rejects:  # `alfa eval cases FILE` lists them all
        log.warning(
            "%s: %d line(s) are not readable cases and are left out, e.g. line %d: %s",
            path,
            len(rejects),
            rejects[0]["line"],
            rejects[0]["reason"],
        )
    return cases


def case_gold(case: Case) -> str:
    """A case's label as the gold response: "The answer is X: ..." for a diagnosis, the consultation's answer turn
    "Answer: N" for a word problem."""
    return f"The answer is {case.answer}: {case.options[case.answer]}" if case.options else f"Answer: {case.answer}"


def tasks_from_cases(path: Path, limit: int | None = None, answer_as_gold: bool = False) -> list[Task]:
    return [
        Task(
            task_id=c.case_id,
            task=case_task_text(c.initial_info, c.question, c.options),
            hidden=c.facts,
            gold=case_gold(c) if answer_as_gold else None,
            options=c.options,
            consultation=True,
        )
        for c in read_cases(path, limit)
    ]


def read_jsonl(path: Path, fields: tuple[str, ...]) -> list[tuple[int, dict]]:
    """(line number, object) of every non-blank line; a line that is not JSON or lacks a field stops the run."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not JSON: {e.msg}") from None
            for key in fields:
                if not isinstance(obj, dict) or key not in obj:
                    raise ValueError(f"{path}:{n}: field '{key}' is missing")
            rows.append((n, obj))
    if not rows:
        raise ValueError(f"{path}: no rows")
    return rows


def tasks_from_profiles(tasks_path: Path, profiles_path: Path, limit: int | None = None) -> list[Task]:
    """Every task crossed with every profile; task ids are TASK_ID/PROFILE_ID."""
    tasks = read_jsonl(Path(tasks_path), ("task_id", "task"))
    profiles = read_jsonl(Path(profiles_path), ("profile_id", "hidden"))
    out = []
    for _, t in tasks:
        for n, p in profiles:
            hidden = p["hidden"]
            if isinstance(hidden, str):
                hidden = [hidden]
            if not isinstance(hidden, list) or not all(isinstance(h, str) for h in hidden) or not hidden:
                raise ValueError(f"{profiles_path}:{n}: field 'hidden' must be a non-empty string or list of strings")
            out.append(Task(f"{t['task_id']}/{p['profile_id']}", str(t["task"]), hidden, t.get("gold")))
    return out[:limit] if limit else out
