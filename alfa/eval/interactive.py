"""Interactive diagnosis, MediQ's protocol with the question generator separate from the expert (as ALFA
evaluated it): the expert sees the initial info (the chief complaint) and the conversation, decides each turn
whether it can answer (its abstention module), and must answer by the question budget; when it cannot answer
yet, the questioner asks the patient one question, which the patient answers from the case's facts: the
fact-select patient (deterministic, no model) or an LLM patient shown only the facts.

Abstention modules (`abstain`): implicit (the expert either asks or answers in one reply), binary (yes/no: can
you answer now?), numeric (a confidence in [0, 1] against `threshold`), scale (1-5 against `threshold`, MediQ's
default 4) and fixed (exactly `max_questions` questions, then answer). A reply the module cannot read is a parse
failure: counted, and the episode goes on asking (it never turns into a random confidence).

In consult mode the model under test is the expert and the questioner in one, shown the case exactly as the
methods that train a questioner show it (alfa.dialogue.consult: the student prompt, then its questions and the
patient's answers as chat turns): each reply either answers ("Answer: C") or is its own question to the patient; at
the question budget it is asked for its answer in the same chat. SML, CollabLLM and GRPO models are tested in the
format they were trained on.

In implicit mode the expert only decides: its "Answer: C" ends the episode, its "Question: ..." means "ask", and the
questioner under test writes the question (the expert's own words never reach the patient). Replies are read by the
one reader training uses too (alfa.dialogue.consult.read_student_turn).

Cases with options answer with a letter; cases without (a word problem, `alfa tasks gsm8k`) answer with a number
after a short worked solution, and the expert's final call sees the initial info and the facts the patient told,
in case order (not the questions' wording), so questioners that drew the same facts share one cached call.

Scripted roles, no model: `ORACLE` as the questioner asks with the words of the case's decisive fact (the upper
bound of asking: the fact a good question retrieves), then of each fact not yet told; an expert of None (`--expert
none`, with `--abstain fixed`) never answers: the questioner and the patient run alone, for `asked_decisive`.

With a `planner` (alfa.dialogue.uot, `--questioner uot`) the questioner plans each question over the answer options
still open, one proposal call per tree node, and reads each patient answer as yes or no to prune them; the expert's
final answer is asked over the options still open.
"""

from __future__ import annotations

from dataclasses import replace

from alfa.dialogue.consult import answer_now, case_prompt_text, read_student_turn, student_prompt
from alfa.dialogue.engine import Episode, Turn
from alfa.dialogue.parsing import parse_answer, parse_confidence, parse_scale, parse_yes_no
from alfa.dialogue.patients import CANNOT_ANSWER, FactSelectPatient, llm_patient_messages
from alfa.dialogue.uot import UoTPlanner
from alfa.eval.case_prompts import (
    case_text,
    expert_system,
    final_messages,
    questioner_messages,
)
from alfa.eval.cases import Case

ABSTAIN = ("implicit", "binary", "numeric", "scale", "fixed", "consult")
ORACLE = "oracle"  # the scripted questioner that asks for the decisive fact
DEFAULT_THRESHOLD = {"numeric": 0.8, "scale": 4}
DECIDE = {
    "binary": "Can you answer the question correctly now, without asking the patient anything more? Reply Yes or No.",
    "numeric": "How confident are you that you can answer correctly now? Reply with a number between 0 and 1.",
    "scale": "How confident are you that you can answer correctly now, from 1 (not at all) to 5 (certain)? Reply with the number.",
    "implicit": "If you can answer now, reply 'Answer: ' and the letter; otherwise reply 'Question: ' and the one question you would ask the patient.",
}
IMPLICIT_NUMERIC = (
    "If you can answer now, reply 'Answer: ' and the number; otherwise reply 'Question: ' and the one question you "
    "would ask."
)


def consult_messages(case: Case, initial_info: str, conversation: list[tuple[str, str]]) -> list[dict]:
    """The consultation as training shows it: the student prompt, then each question and answer as chat turns."""
    messages = student_prompt(case_prompt_text(initial_info, case.question, case.options), case.options)
    for question, answer in conversation:
        messages += [{"role": "assistant", "content": question}, {"role": "user", "content": answer}]
    return messages


def oracle_question(case: Case, told: set[int]) -> str:
    """The scripted oracle's question: the decisive fact's words until it is told, then each fact not yet told."""
    if case.decisive_fact is None:
        raise ValueError(f"case {case.case_id}: --questioner oracle needs cases that mark their decisive_fact")
    untold = [i for i in range(len(case.facts)) if i not in told]
    i = case.decisive_fact if case.decisive_fact not in told else next(iter(untold), case.decisive_fact)
    return case.facts[i].strip().rstrip(".") + "?"


class InteractiveProtocol:
    """The turn logic of one interactive evaluation (alfa.dialogue.engine runs it). `questioner` may be ORACLE and
    `expert` None (scripted roles: no model call)."""

    def __init__(
        self,
        expert,  # a backend, or None: no expert (`abstain` must be "fixed"; the episode ends unanswered)
        questioner,  # a backend, or ORACLE
        patient,  # a FactSelectPatient, or a backend for an LLM patient restricted to the facts
        abstain: str = "scale",
        threshold: float | None = None,
        max_questions: int = 5,
        planner: UoTPlanner | None = None,  # UoT: the questioner backend proposes, this plans
        final_answer: bool = True,  # False: questions only, an episode ends once its questions are answered
    ):
        if abstain not in ABSTAIN:
            raise ValueError(f"--abstain must be one of {', '.join(ABSTAIN)}, got {abstain!r}")
        if expert is None and abstain != "fixed":
            raise ValueError("--expert none runs the questioner and the patient only: use it with --abstain fixed")
        if (abstain == "consult") != (questioner is None):
            raise ValueError(
                "--abstain consult: the expert asks its own questions, so give no questioner (and only then)"
            )
        self.roles = {}
        if expert is not None:
            self.roles["expert"] = expert
        if questioner not in (ORACLE, None):
            self.roles["questioner"] = questioner
        if not isinstance(patient, FactSelectPatient):
            self.roles["patient"] = patient
        if questioner == ORACLE and "patient" in self.roles:
            raise ValueError("--questioner oracle needs the fact-select patient (--patient fact)")
        self.expert, self.questioner, self.patient = expert, questioner, patient
        self.abstain, self.max_questions = abstain, max_questions
        self.threshold = threshold if threshold is not None else DEFAULT_THRESHOLD.get(abstain)
        self.planner = planner
        self.final_answer = final_answer
        if not final_answer and abstain != "consult":
            raise ValueError("--questions-only reads the model's own question: use it with --abstain consult")

    def episode(self, case: Case, initial_info: str) -> Episode:
        data = {"case": case, "initial_info": initial_info, "conversation": []}
        if self.planner is not None:
            data["uot"] = self.planner.start(case.options)
        return Episode(case.case_id, data, state="decide")

    def next_request(self, e: Episode) -> tuple[str, str, list[dict]] | None:
        """The next model call, or None when the episode ended without one (scripted roles)."""
        case, info, conv = e.data["case"], e.data["initial_info"], e.data["conversation"]
        while True:
            if e.state == "decide" and (len(conv) >= self.max_questions or self.abstain == "fixed"):
                e.state = "final" if len(conv) >= self.max_questions else "question"
            if e.state == "final" and (self.expert is None or not self.final_answer):
                self._finish(e, None)
                return None
            if e.state == "question" and self.questioner == ORACLE:
                question = oracle_question(case, self._told(e))
                e.turns.append(Turn("questioner", "question", question, question))
                self._ask_patient(e, question)
                continue
            break
        if self.abstain == "consult" and e.state in ("decide", "final"):
            final = [{"role": "user", "content": answer_now(case.options)}] if e.state == "final" else []
            return "expert", e.state if e.state == "final" else "consult", consult_messages(case, info, conv) + final
        if e.state == "final":
            open_options = {k: case.options[k] for k in e.data["uot"]["open"]} if self.planner else None
            shown = case if not open_options else replace(case, options=open_options)
            return "expert", "final", final_messages(shown, info, conv, sorted(self._told(e)))
        if e.state == "patient":
            return "patient", "answer", llm_patient_messages(case.facts, e.data["pending_question"])
        if self.planner is not None and e.state in ("question", "classify"):
            context = case_text(case, info, conv, with_options=False)
            kind, messages = self.planner.next_request(e.data["uot"], context, case.options)
            return "questioner", kind, messages
        if e.state == "question":
            return "questioner", "question", questioner_messages(case, info, conv)
        ask = DECIDE[self.abstain] if case.options or self.abstain != "implicit" else IMPLICIT_NUMERIC
        body = case_text(case, info, conv) + "\n" + ask
        return (
            "expert",
            "decide",
            [{"role": "system", "content": expert_system(case)}, {"role": "user", "content": body}],
        )

    def apply(self, e: Episode, role: str, kind: str, completion, key: str) -> None:
        text = completion.text if completion.error is None else None
        raw = text if text is not None else completion.error
        case = e.data["case"]
        if kind == "consult":  # the model under test answered, or asked its own question
            said, value = read_student_turn(text, case.options)
            e.turns.append(Turn(role, kind, raw, {"answer": value, "question": value}.get(said), key))
            if said == "answer":
                self._finish(e, value)
            else:
                self._ask_patient(e, value or "")  # an empty turn asks nothing: counted as a parse failure
            return
        if kind == "final":
            answer = parse_answer(text, case.options)
            e.turns.append(Turn(role, kind, raw, answer, key))
            self._finish(e, answer)
        elif kind in ("propose", "classify"):
            self._apply_planner(e, kind, text, completion, key)
        elif kind == "question":
            question = (text or "").strip()
            e.turns.append(Turn(role, kind, raw, question or None, key))
            self._ask_patient(e, question)
        elif kind == "answer":  # the LLM patient's reply; a failed call answers nothing
            answer = (text or "").strip() or CANNOT_ANSWER
            e.turns.append(Turn(role, kind, raw, answer, key))
            e.data["conversation"].append((e.data.pop("pending_question"), answer))
            self._answered(e)
        elif self.abstain == "implicit":  # the expert decides; the questioner under test writes any question
            said, answer = read_student_turn(text, case.options)
            e.turns.append(Turn(role, kind, raw, {"answer": True, "question": False}.get(said), key))
            if said == "answer":
                self._finish(e, answer)
            else:
                e.state = "question"
        else:
            ready = self._decision(text)
            e.turns.append(Turn(role, kind, raw, ready, key))
            e.state = "final" if ready else "question"

    def _told(self, e: Episode) -> set[int]:
        """The facts the fact-select patient has told in this episode (indices into the case's facts)."""
        return {i for t in e.turns if t.role == "patient" and isinstance(t.parsed, list) for i in t.parsed}

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

    def _decision(self, text: str | None) -> bool | None:
        """Ready to answer? (binary, numeric, scale). None = could not be read: keep asking."""
        if self.abstain == "binary":
            return parse_yes_no(text)
        value = parse_confidence(text) if self.abstain == "numeric" else parse_scale(text)
        return None if value is None else value >= self.threshold

    def _finish(self, e: Episode, answer: str | None) -> None:
        case = e.data["case"]
        decisions = [t for t in e.turns if t.kind in ("decide", "consult")]
        knows_told = case.decisive_fact is not None and "patient" not in self.roles  # fact-select: told is known
        told = self._told(e)
        scored = self.expert is not None and self.final_answer  # an answer is asked for at the end
        e.result = {
            "answer": answer,
            "correct": answer == case.answer if scored else None,
            "questions": len(e.data["conversation"]),
            "timed_out": len(e.data["conversation"]) >= self.max_questions and self.abstain != "fixed",
            "parse_failures": sum(t.parsed is None for t in decisions) + (scored and answer is None),
            # whether the answer came before the decisive fact was told / whether a question drew it out at all
            "before_decisive_fact": (case.decisive_fact not in told) if knows_told and scored else None,
            "asked_decisive": (case.decisive_fact in told) if knows_told else None,
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
    reference_cases: list[Case] | None = None,
    reference_name: str = "",
    cache_path=None,
) -> dict:
    """Run every case through `protocol`, then the baselines, and write DIR/episodes.jsonl, DIR/results.json,
    DIR/report.md and DIR/accuracy_vs_questions.png. Returns the results.

    `reference_cases`: cases of the same file this run does not score (the `--skip`ped ones, the rest of the
    file), `reference_name` says which; the majority-answer baseline takes its answer from them, so it is no post-hoc
    maximum over the scored cases. Without them it falls back to the scored cases and says so. `cache_path`: the call
    cache (default DIR/cache.sqlite); runs that share one pay once for a call they have in common (the expert's
    baselines, a final answer from the same facts)."""
    import json
    from collections import Counter
    from pathlib import Path

    from alfa.dialogue.engine import run_episodes
    from alfa.eval import interactive_report as figures
    from alfa.eval.baselines import baseline_accuracies, generic_question_floor
    from alfa.eval.cases import check_cases
    from alfa.llm.cache import CallCache
    from alfa.stats import rate

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache = CallCache(Path(cache_path) if cache_path else out_dir / "cache.sqlite")
    infos = [c.post if initial_info == "post" and c.post else c.initial_info for c in cases]
    episodes, stats = run_episodes(
        [protocol.episode(c, i) for c, i in zip(cases, infos)], protocol, cache, out_dir / "episodes.jsonl"
    )
    by_id = {e["episode_id"]: e for e in episodes}
    # every case counts, in case order: a loss or a failure is a 0
    results = [by_id[c.case_id]["result"] for c in cases]
    conversations = [by_id[c.case_id]["data"]["conversation"] for c in cases]
    reference = (reference_cases, reference_name) if reference_cases else (cases, "the scored cases (post hoc)")
    scored = protocol.expert is not None and protocol.final_answer  # questions only: no accuracy, no baselines
    baselines = baseline_accuracies(cases, infos, protocol.expert if scored else None, cache, stats, reference)
    cache.close()
    n = len(results)
    report = {
        "n": n,
        "abstain": protocol.abstain,
        "threshold": protocol.threshold,
        "max_questions": protocol.max_questions,
        "final_answer": protocol.final_answer,
        "initial_info": initial_info,
        "accuracy": rate([r["correct"] for r in results]) if scored else rate([]),
        "mean_questions": sum(r["questions"] for r in results) / n if n else None,
        # answered before asking anything: what SML / Q-priming should lower on underspecified cases
        "premature_answer_rate": rate([r["questions"] == 0 for r in results]) if protocol.expert else rate([]),
        "answered_before_decisive_fact": figures.decisive_fact_figure(results, "before_decisive_fact"),
        # a question drew out the decisive fact (the testbed's primary figure), and how often a generic one does
        "asked_decisive": figures.decisive_fact_figure(results, "asked_decisive"),
        "asked_decisive_floor": generic_question_floor(cases, protocol.patient),
        "timeout_rate": sum(r["timed_out"] for r in results) / n if n else None,
        "parse_failures": sum(r["parse_failures"] for r in results),
        "questions": figures.question_counts(conversations),
        "decisions": figures.decision_counts([by_id[c.case_id]["turns"] for c in cases]),
        "expert_answer_share": {k: v / n for k, v in sorted(Counter(r["answer"] for r in results).items(), key=str)},
        "baselines": baselines,
        "roles": {k: v.model_id for k, v in protocol.roles.items()}
        | ({"questioner": ORACLE} if protocol.questioner == ORACLE else {}),
        "case_checks": check_cases(cases),
        "calls": figures.call_counts(stats),
    }
    report["warnings"] = figures.run_warnings(report)
    (out_dir / "results.json").write_text(json.dumps(report, indent=2))
    figures.plot_accuracy_vs_questions(results, baselines, out_dir / "accuracy_vs_questions.png")
    (out_dir / "report.md").write_text(figures.report_markdown(report))
    return report
