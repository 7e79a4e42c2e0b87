"""Interactive diagnosis, MediQ's protocol with the question generator separate from the expert (as ALFA
evaluated it): the expert sees the initial info (the chief complaint) and the conversation, decides each turn
whether it can answer (its abstention module), and must answer by the question budget; when it cannot answer
yet, the questioner asks the patient one question, which the patient answers from the case's facts: the
fact-select patient (deterministic, no model) or an LLM patient shown only the facts.

Abstention modules (`abstain`): implicit (the expert either asks or answers in one reply), binary (yes/no: can
you answer now?), numeric (a confidence in [0, 1] against `threshold`), scale (1-5 against `threshold`, MediQ's
default 4) and fixed (exactly `max_questions` questions, then answer). A reply the module cannot read is a parse
failure: counted, and the episode goes on asking (it never turns into a random confidence).

With a `planner` (alfa.dialogue.uot, `--questioner uot`) the questioner plans each question over the answer options
still open, one proposal call per tree node, and reads each patient answer as yes or no to prune them.
"""

from __future__ import annotations

from alfa.dialogue.engine import Episode, Turn
from alfa.dialogue.parsing import parse_answer_letter, parse_confidence, parse_scale, parse_yes_no
from alfa.dialogue.patients import CANNOT_ANSWER, FactSelectPatient, llm_patient_messages
from alfa.dialogue.uot import UoTPlanner
from alfa.eval.cases import Case

ABSTAIN = ("implicit", "binary", "numeric", "scale", "fixed")
DEFAULT_THRESHOLD = {"numeric": 0.8, "scale": 4}
EXPERT_SYSTEM = (
    "You are a doctor working out a patient's case from what you have been told so far. You know only what is "
    "written below; ask nothing you were already told."
)
QUESTIONER_SYSTEM = (
    "You are a doctor interviewing a patient. Ask the one follow-up question whose answer would help most with "
    "the diagnostic question. Reply with the question only."
)
DECIDE = {
    "binary": "Can you answer the question correctly now, without asking the patient anything more? Reply Yes or No.",
    "numeric": "How confident are you that you can answer correctly now? Reply with a number between 0 and 1.",
    "scale": "How confident are you that you can answer correctly now, from 1 (not at all) to 5 (certain)? Reply with the number.",
    "implicit": "If you can answer now, reply 'Answer: ' and the letter; otherwise reply 'Question: ' and the one question you would ask the patient.",
}


def case_text(case: Case, initial_info: str, conversation: list[tuple[str, str]], with_options: bool = True) -> str:
    lines = [f"What you know: {initial_info}"]
    lines += [f"You asked: {q}\nThe patient said: {a}" for q, a in conversation]
    lines.append(f"Diagnostic question: {case.question}")
    if with_options:
        lines += [f"{k}. {v}" for k, v in sorted(case.options.items())]
    return "\n".join(lines)


def final_messages(case: Case, initial_info: str, conversation) -> list[dict]:
    body = case_text(case, initial_info, conversation) + "\nReply with the letter of the answer."
    return [{"role": "system", "content": EXPERT_SYSTEM}, {"role": "user", "content": body}]


class InteractiveProtocol:
    """The turn logic of one interactive evaluation (alfa.dialogue.engine runs it)."""

    def __init__(
        self,
        expert,
        questioner,
        patient,  # a FactSelectPatient, or a backend for an LLM patient restricted to the facts
        abstain: str = "scale",
        threshold: float | None = None,
        max_questions: int = 5,
        planner: UoTPlanner | None = None,  # UoT: the questioner backend proposes, this plans
    ):
        if abstain not in ABSTAIN:
            raise ValueError(f"--abstain must be one of {', '.join(ABSTAIN)}, got {abstain!r}")
        self.roles = {"expert": expert, "questioner": questioner}
        self.patient, self.abstain, self.max_questions = patient, abstain, max_questions
        if not isinstance(patient, FactSelectPatient):
            self.roles["patient"] = patient
        self.threshold = threshold if threshold is not None else DEFAULT_THRESHOLD.get(abstain)
        self.planner = planner

    def episode(self, case: Case, initial_info: str) -> Episode:
        data = {"case": case, "initial_info": initial_info, "conversation": []}
        if self.planner is not None:
            data["uot"] = self.planner.start(case.options)
        return Episode(case.case_id, data, state="decide")

    def next_request(self, e: Episode) -> tuple[str, str, list[dict]]:
        case, info, conv = e.data["case"], e.data["initial_info"], e.data["conversation"]
        must_answer = len(conv) >= self.max_questions
        if e.state == "decide" and (must_answer or self.abstain == "fixed"):
            e.state = "final" if must_answer else "question"
        if e.state == "final":
            return "expert", "final", final_messages(case, info, conv)
        if e.state == "patient":
            return "patient", "answer", llm_patient_messages(case.facts, e.data["pending_question"])
        if self.planner is not None and e.state in ("question", "classify"):
            context = case_text(case, info, conv, with_options=False)
            kind, messages = self.planner.next_request(e.data["uot"], context, case.options)
            return "questioner", kind, messages
        if e.state == "question":
            body = case_text(case, info, conv, with_options=False) + "\nYour one question to the patient:"
            return (
                "questioner",
                "question",
                [{"role": "system", "content": QUESTIONER_SYSTEM}, {"role": "user", "content": body}],
            )
        body = case_text(case, info, conv) + "\n" + DECIDE[self.abstain]
        return "expert", "decide", [{"role": "system", "content": EXPERT_SYSTEM}, {"role": "user", "content": body}]

    def apply(self, e: Episode, role: str, kind: str, completion, key: str) -> None:
        text = completion.text if completion.error is None else None
        case = e.data["case"]
        if kind == "final":
            letter = parse_answer_letter(text, case.options)
            e.turns.append(Turn(role, kind, text if text is not None else completion.error, letter, key))
            self._finish(e, letter)
        elif kind in ("propose", "classify"):
            self._apply_planner(e, kind, text, completion, key)
        elif kind == "question":
            question = (text or "").strip()
            e.turns.append(Turn(role, kind, text if text is not None else completion.error, question or None, key))
            self._ask_patient(e, question)
        elif kind == "answer":  # the LLM patient's reply; a failed call answers nothing
            answer = (text or "").strip() or CANNOT_ANSWER
            e.turns.append(Turn(role, kind, text if text is not None else completion.error, answer, key))
            e.data["conversation"].append((e.data.pop("pending_question"), answer))
            self._answered(e)
        else:
            ready, asked = self._decision(text, case)
            e.turns.append(Turn(role, kind, text if text is not None else completion.error, ready, key))
            if ready is True and asked is None and self.abstain == "implicit":
                self._finish(e, parse_answer_letter(text, case.options))
            elif asked is not None:  # implicit: the expert asked its own question; the questioner is skipped
                self._ask_patient(e, asked)
            else:
                e.state = "final" if ready else "question"

    def _ask_patient(self, e: Episode, question: str) -> None:
        """The fact-select patient answers at once; an LLM patient's answer is the episode's next call."""
        if "patient" in self.roles and question:
            e.data["pending_question"], e.state = question, "patient"
            return
        answer, used = self.patient.answer(e.data["case"].facts, question) if question else (CANNOT_ANSWER, [])
        e.turns.append(Turn("patient", "answer", answer, used))
        e.data["conversation"].append((question, answer))
        self._answered(e)

    def _answered(self, e: Episode) -> None:
        """After the patient's answer: UoT reads it as yes or no (a non-answer prunes nothing), then decide."""
        question, answer = e.data["conversation"][-1]
        if self.planner is not None and question and answer != CANNOT_ANSWER:
            self.planner.after_answer(e.data["uot"], question, answer)
            e.state = "classify"
        else:
            e.state = "decide"

    def _apply_planner(self, e: Episode, kind: str, text: str | None, completion, key: str) -> None:
        raw = text if text is not None else completion.error
        state = e.data["uot"]
        if kind == "classify":
            self.planner.apply_classification(state, text)
            e.turns.append(Turn("questioner", kind, raw, list(state["open"]), key))
            e.state = "decide"
            return
        plan = self.planner.apply_proposal(state, text)
        e.turns.append(Turn("questioner", kind, raw, plan, key))
        if plan is not None:  # the plan is complete: ask its best root question
            self._ask_patient(e, plan["question"] or "")

    def _decision(self, text: str | None, case: Case) -> tuple[bool | None, str | None]:
        """(ready to answer?, the question an implicit expert asked). None = could not be read: keep asking."""
        if self.abstain == "binary":
            return parse_yes_no(text), None
        if self.abstain == "numeric":
            value = parse_confidence(text)
            return (None if value is None else value >= self.threshold), None
        if self.abstain == "scale":
            value = parse_scale(text)
            return (None if value is None else value >= self.threshold), None
        reply = (text or "").strip()
        if reply.lower().startswith("question:"):
            return False, reply.split(":", 1)[1].strip() or None
        return (True if parse_answer_letter(reply, case.options) else None), None

    def _before_decisive(self, e: Episode) -> bool | None:
        """Whether the answer came before the case's decisive fact was told; None where the case marks none or the
        patient is an LLM (which facts it told is not known)."""
        decisive = e.data["case"].decisive_fact
        if decisive is None or "patient" in self.roles:
            return None
        told = {i for t in e.turns if t.role == "patient" and isinstance(t.parsed, list) for i in t.parsed}
        return decisive not in told

    def _finish(self, e: Episode, letter: str | None) -> None:
        case = e.data["case"]
        decisions = [t for t in e.turns if t.kind == "decide"]
        e.result = {
            "answer": letter,
            "correct": letter == case.answer,
            "questions": len(e.data["conversation"]),
            "timed_out": len(e.data["conversation"]) >= self.max_questions and self.abstain != "fixed",
            "parse_failures": sum(t.parsed is None for t in decisions) + (letter is None),
            "before_decisive_fact": self._before_decisive(e),
        }
        if self.planner is not None:  # proposals with no readable candidate line
            e.result["uot_parse_failures"] = e.data["uot"]["parse_failures"]
        e.state, e.done = "done", True


def evaluate_interactive(
    cases: list[Case],
    protocol: InteractiveProtocol,
    out_dir,
    initial_info: str = "first-fact",
    seed: int = 0,
) -> dict:
    """Run every case through `protocol`, then the four baselines, and write DIR/episodes.jsonl,
    DIR/results.json, DIR/report.md and DIR/accuracy_vs_questions.png. Returns the results."""
    import json
    from collections import Counter
    from pathlib import Path

    from alfa.dialogue.engine import run_episodes
    from alfa.eval.cases import check_cases
    from alfa.eval.interactive_report import (
        decision_counts,
        decisive_fact_figure,
        plot_accuracy_vs_questions,
        question_counts,
        report_markdown,
        run_warnings,
    )
    from alfa.llm.cache import CallCache
    from alfa.stats import bootstrap_mean

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache = CallCache(out_dir / "cache.sqlite")

    def info_of(c: Case) -> str:
        return c.post if initial_info == "post" and c.post else c.initial_info

    infos = [info_of(c) for c in cases]
    episodes, stats = run_episodes(
        [protocol.episode(c, i) for c, i in zip(cases, infos)], protocol, cache, out_dir / "episodes.jsonl"
    )
    by_id = {e["episode_id"]: e for e in episodes}
    # every case counts, in case order: a loss or a failure is a 0
    results = [by_id[c.case_id]["result"] for c in cases]
    conversations = [by_id[c.case_id]["data"]["conversation"] for c in cases]

    def accuracy(correct: list[bool]) -> dict:
        return bootstrap_mean([float(x) for x in correct], seed=seed)

    baselines = baseline_accuracies(cases, infos, protocol.roles["expert"], cache, stats, seed)
    cache.close()
    n = len(results)
    report = {
        "n": n,
        "abstain": protocol.abstain,
        "threshold": protocol.threshold,
        "max_questions": protocol.max_questions,
        "initial_info": initial_info,
        "accuracy": accuracy([r["correct"] for r in results]),
        "mean_questions": sum(r["questions"] for r in results) / n if n else None,
        # answered before asking anything: what SML / Q-priming should lower on underspecified cases
        "premature_answer_rate": accuracy([r["questions"] == 0 for r in results]),
        "answered_before_decisive_fact": decisive_fact_figure(results, seed),
        "timeout_rate": sum(r["timed_out"] for r in results) / n if n else None,
        "parse_failures": sum(r["parse_failures"] for r in results),
        "questions": question_counts(conversations),
        "decisions": decision_counts([by_id[c.case_id]["turns"] for c in cases]),
        "expert_answer_share": {k: v / n for k, v in sorted(Counter(r["answer"] for r in results).items(), key=str)},
        "baselines": baselines,
        "roles": {k: v.model_id for k, v in protocol.roles.items()},
        "case_checks": check_cases(cases),
        "calls": {
            "made": stats.calls_made,
            "from_cache": stats.cache_hits,
            "failed": stats.failed,
            "seconds": round(stats.seconds, 1),
        },
    }
    report["warnings"] = run_warnings(report)
    (out_dir / "results.json").write_text(json.dumps(report, indent=2))
    plot_accuracy_vs_questions(results, baselines, out_dir / "accuracy_vs_questions.png")
    (out_dir / "report.md").write_text(report_markdown(report))
    return report


def baseline_accuracies(cases: list[Case], infos: list[str], expert, cache, stats, seed: int) -> dict:
    """Beside every run: always the most frequent answer letter, always the longest option, the expert answering
    from the initial info alone, and from every fact of the case (the upper bound)."""
    from collections import Counter

    from alfa.llm.calls import run_calls
    from alfa.stats import bootstrap_mean

    def accuracy(correct: list[bool]) -> dict:
        return bootstrap_mean([float(x) for x in correct], seed=seed)

    def one_call(known: list[str], desc: str) -> list[bool]:
        requests = [final_messages(c, i, []) for c, i in zip(cases, known)]
        replies, _ = run_calls(expert, cache, requests, desc, stats)
        return [parse_answer_letter(r.text, c.options) == c.answer for r, c in zip(replies, cases)]

    majority = Counter(c.answer for c in cases).most_common(1)[0][0] if cases else None
    return {
        "majority_letter": accuracy([c.answer == majority for c in cases]),
        "longest_option": accuracy([max(c.options, key=lambda k: len(c.options[k])) == c.answer for c in cases]),
        "no_questions": accuracy(one_call(infos, "no questions")),
        "full_information": accuracy(one_call([" ".join(c.context) for c in cases], "full information")),
    }
