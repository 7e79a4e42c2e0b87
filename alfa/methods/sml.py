"""SML, social meta-learning (Cook et al. 2026), with Q-priming, on clinical cases.

A student works a case out in conversation with a teacher who holds privileged knowledge (the case's facts and
its answer): each turn the student asks the teacher one question or answers ("Answer: C",
alfa.dialogue.consult); the teacher answers questions from the facts without giving the answer away. The
student's first answer ends the dialogue: it succeeds when that answer is the case's (read from the student's
own reply, not from the teacher's say-so) within `turns` turns. Guessing through the options after a "no" is not
success, and a wrong "Answer: X" never enters a training copy. By default (`view: initial`) the student sees
the case's first fact only and must ask for the rest. Offline SML is SFT on the successful dialogues (the loss
on the student's turns); online SML is `stage: grpo` over a tasks dir (`write_tasks_dir`).

**Q-priming**: the student is told to ask before answering while the dialogues are sampled (consult.Q_PRIMING);
the training copy of each dialogue is written without that instruction, so the model trained on it asks
without being told; the Q-primed SFT set keeps only the successes in which the student asked before answering.

`alfa sml dialogues CASES -o DIR` writes DIR/dialogues.jsonl (every dialogue, every turn, its success flag),
DIR/sft/ (a dialogues dir of the successes that `alfa train` reads, with its card) and DIR/summary.json.
`alfa sml tasks CASES -o DIR` writes the tasks dir a GRPO recipe trains on.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from alfa.data.card_common import PHI_STATEMENT
from alfa.dialogue.consult import case_prompt_text, read_student_turn, student_prompt, unprimed
from alfa.dialogue.engine import Episode, Turn, run_episodes
from alfa.eval.cases import Case
from alfa.llm.cache import CallCache

VIEWS = ("initial", "full")  # initial: the first fact, the rest to ask for; full: every fact (nothing to ask)
TEACHER_SYSTEM = (
    "You are a teacher helping a student work out the case below. You know the case's facts and the correct answer; "
    "the student does not. Answer the student's question in one or two sentences from the facts, without giving "
    "away the answer."
)


def case_text(case: Case, view: str) -> str:
    if view not in VIEWS:
        raise ValueError(f"view must be one of {', '.join(VIEWS)}, got {view!r}")
    info = " ".join(case.context) if view == "full" else case.initial_info
    return case_prompt_text(info, case.question, case.options)


def write_tasks_dir(cases: list[Case], out: Path, view: str = "initial") -> int:
    """DIR/data/train.parquet (task_id, prompt, facts, answer, options as JSON, decisive_fact: the index of the
    fact the answer hinges on where the case file names one, else null) and DIR/README.md."""
    rows = [
        {
            "task_id": c.case_id,
            "prompt": student_prompt(case_text(c, view), c.options),
            "facts": c.facts,
            "answer": c.answer,
            "options": json.dumps(c.options, ensure_ascii=False),
            "decisive_fact": c.decisive_fact,  # the removed premise (GSM8K testbed), for the `retrieved_premise` reward
        }
        for c in cases
    ]
    (out / "data").mkdir(parents=True, exist_ok=True)
    pl.DataFrame(rows, schema_overrides={"decisive_fact": pl.Int64}).write_parquet(out / "data" / "train.parquet")
    (out / "README.md").write_text(
        f"# Consultation tasks ({len(rows)} cases, view: {view})\n\nEach row is a case as the policy's chat prompt, "
        "with the facts the partner may reveal and the answer the rewards check. Made by `alfa sml tasks`; a "
        "`stage: grpo` recipe reads it as `data: {tasks_dir: ...}`.\n\n" + PHI_STATEMENT + "\n"
    )
    return len(rows)


def teacher_messages(case: Case, conversation: list[dict], student_said: str) -> list[dict]:
    facts = "\n".join(f"- {f}" for f in case.facts)
    lines = [f"{'Student' if m['role'] == 'assistant' else 'You'}: {m['content']}" for m in conversation]
    asked = f"Diagnostic question: {case.question}" if case.options else f"Question: {case.question}"
    answer = f"{case.answer}. {case.options[case.answer]}" if case.options else case.answer  # a word problem: N
    body = (
        f"Case facts:\n{facts}\n\n{asked}\nCorrect answer: {answer}\n\nConversation so far:\n"
        + "\n".join(lines)
        + f"\n\nThe student says: {student_said}"
    )
    return [{"role": "system", "content": TEACHER_SYSTEM}, {"role": "user", "content": body}]


class SMLProtocol:
    """Student and teacher turns of one dialogue (alfa.dialogue.engine runs it)."""

    def __init__(self, student, teacher, turns: int, q_priming: bool, view: str):
        self.roles = {"student": student, "teacher": teacher}
        self.turns, self.q_priming, self.view = turns, q_priming, view

    def episode(self, case: Case, sample: int) -> Episode:
        prompt = student_prompt(case_text(case, self.view), case.options, self.q_priming)
        return Episode(
            f"{case.case_id}#{sample}", {"case": case, "prompt": prompt, "conversation": []}, state="student"
        )

    def next_request(self, e: Episode) -> tuple[str, str, list[dict]]:
        conv = e.data["conversation"]
        if e.state == "teacher":
            return "teacher", "reply", teacher_messages(e.data["case"], conv[:-1], conv[-1]["content"])
        return "student", "turn", e.data["prompt"] + conv

    def apply(self, e: Episode, role: str, kind: str, completion, key: str) -> None:
        text = completion.text if completion.error is None else None
        raw = text if text is not None else completion.error
        conv, case = e.data["conversation"], e.data["case"]
        if role == "teacher":
            reply = (text or "").strip() or "(no reply)"
            e.turns.append(Turn(role, kind, raw, reply, key))
            conv.append({"role": "user", "content": reply})
            e.state = "student"
            return
        said, value = read_student_turn(text, case.options)
        e.turns.append(Turn(role, said, raw, value, key))
        conv.append({"role": "assistant", "content": (text or "").strip()})
        if said == "answer":  # the first committed answer decides: right or wrong, the dialogue ends here
            return self._finish(e, value)
        if sum(m["role"] == "assistant" for m in conv) >= self.turns:
            return self._finish(e, None)
        e.state = "teacher"

    def _finish(self, e: Episode, answer: str | None) -> None:
        kinds = [t.kind for t in e.turns if t.role == "student"]
        e.result = {
            "case_id": e.data["case"].case_id,
            "success": answer == e.data["case"].answer,
            "answer": answer,
            "student_turns": len(kinds),
            "questions": kinds.count("question"),
            "answered_first": kinds[0] == "answer",  # answered before asking anything
        }
        e.state, e.done = "done", True


def run_sml_dialogues(
    cases: list[Case],
    student,
    teacher,
    out: Path,
    turns: int = 4,
    samples: int = 1,
    q_priming: bool = False,
    view: str = "initial",
    temperature: float = 0.7,
    seed: int = 0,
) -> dict:
    """`samples` dialogues per case (sample s seeded `seed + s`; every call cached in DIR/cache.sqlite); writes
    DIR/dialogues.jsonl, DIR/sft/ and DIR/summary.json, and returns the summary."""
    from alfa.stats import rate

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache = CallCache(out / "cache.sqlite")
    episodes = []
    try:
        for s in range(samples):
            protocol = SMLProtocol(student.with_sampling(temperature, seed + s), teacher, turns, q_priming, view)
            done, _ = run_episodes([protocol.episode(c, s) for c in cases], protocol, cache, out / "dialogues.jsonl")
            episodes += done
    finally:
        cache.close()
    by_case = [e["result"]["case_id"] for e in episodes]
    # a dialogue with a failed call counts in the rates (as what it was) but is not trained on; a rerun plays it again
    successes = [e for e in episodes if e["result"]["success"] and not e.get("failed_calls")]
    if q_priming:  # the point of priming is a model that asks: a primed success that answered at once teaches not
        successes = [e for e in successes if not e["result"]["answered_first"]]
    rows = [
        {
            "episode_id": e["episode_id"],
            "case_id": e["result"]["case_id"],
            "messages": unprimed(e["data"]["prompt"] + e["data"]["conversation"]),
        }
        for e in successes
    ]
    sft = out / "sft"
    (sft / "data").mkdir(parents=True, exist_ok=True)
    schema = {
        "episode_id": pl.String,
        "case_id": pl.String,
        "messages": pl.List(pl.Struct({"role": pl.String, "content": pl.String})),
    }
    pl.DataFrame(rows, schema=schema).write_parquet(sft / "data" / "train.parquet")
    summary = {
        "dialogues": len(episodes),
        "cases": len(cases),
        "q_priming": q_priming,
        "view": view,
        "turns": turns,
        "success_rate": rate([float(e["result"]["success"]) for e in episodes], groups=by_case, seed=seed),
        "answered_first_rate": rate(
            [float(e["result"]["answered_first"]) for e in episodes], groups=by_case, seed=seed
        ),
        "mean_questions": sum(e["result"]["questions"] for e in episodes) / max(1, len(episodes)),
        "sft_dialogues": len(rows),
        "dialogues_with_failed_calls": sum(bool(e.get("failed_calls")) for e in episodes),
        "student": student.model_id,
        "teacher": teacher.model_id,
    }
    (sft / "README.md").write_text(
        f"# SML {'Q-priming ' if q_priming else ''}dialogues: the successes\n\n{len(rows)} of {len(episodes)} dialogues "
        f"in which the student (`{student.model_id}`) gave the case's answer as its first answer within {turns} turns"
        + (", having asked first" if q_priming else "")
        + f", talking with the teacher `{teacher.model_id}`"
        + (" (the priming instruction removed from this copy)" if q_priming else "")
        + ". Made by `alfa sml dialogues`; `alfa train` reads it as a dialogues dir (the loss on the student's turns "
        "only).\n\n" + PHI_STATEMENT + "\n"
    )
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
