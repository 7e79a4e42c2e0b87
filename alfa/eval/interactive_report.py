"""The figures and the page of an interactive evaluation (alfa.eval.interactive): how the questions fared, what
makes a run's accuracy uninformative, accuracy against questions asked, and report.md."""

from __future__ import annotations

from alfa.dialogue.parsing import same_words
from alfa.dialogue.patients import CANNOT_ANSWER


def question_counts(conversations: list[list]) -> dict:
    """How the questioner's questions fared: asked, asked again in the same case (the same words), left
    unanswered by the patient, and how many hold a question mark at all (in consult mode any turn that gives no
    answer goes to the patient, so an unfinished worked solution counts as asked)."""
    repeated = 0
    for conv in conversations:
        seen = set()
        for question, _ in conv:
            repeated += same_words(question) in seen
            seen.add(same_words(question))
    return {
        "asked": sum(len(c) for c in conversations),
        "repeated": repeated,
        "patient_could_not_answer": sum(answer == CANNOT_ANSWER for c in conversations for _, answer in c),
        "with_question_mark": sum("?" in question for c in conversations for question, _ in c),
    }


def call_counts(stats) -> dict:
    """A run's model calls (alfa.llm.calls.CallStats): made, answered from the cache, failed, and seconds spent."""
    return {
        "made": stats.calls_made,
        "from_cache": stats.cache_hits,
        "failed": stats.failed,
        "seconds": round(stats.seconds, 1),
    }


def decision_counts(turn_lists: list[list[dict]]) -> dict:
    """The expert's replies to the readiness question (binary, numeric, scale): how many, how many different
    (case, spaces and a final full stop ignored), and the most frequent."""
    from collections import Counter

    replies = Counter(
        (t["text"] or "").strip().rstrip(".").lower() for turns in turn_lists for t in turns if t["kind"] == "decide"
    )
    top = replies.most_common(1)
    return {"n": sum(replies.values()), "distinct": len(replies), "most_common": list(top[0]) if top else None}


def run_warnings(r: dict) -> list[str]:
    """What makes a run's accuracy say little about the questioner (written in results.json and report.md)."""
    out = []
    if r["n"] and r["mean_questions"] == 0 and r["abstain"] != "fixed":
        out.append(
            "the expert was ready to answer at its first turn in every case: the questioner was never used, so the "
            "accuracy is the no_questions baseline's; raise --threshold or use --abstain fixed to measure a questioner"
        )
    if r["n"] and r["timeout_rate"] == 1 and r.get("final_answer", True):  # questions only: the budget by design
        out.append(
            "the expert was never ready to answer before the budget: the abstention module acted as a fixed budget"
        )
    d = r["decisions"]
    if r["abstain"] in ("binary", "numeric", "scale") and d["n"] >= 10 and d["distinct"] == 1:
        out.append(
            f"the expert gave the same reply, {d['most_common'][0]!r}, to all {d['n']} readiness questions: its "
            "decision to ask or answer does not depend on the case"
        )
    full = r["baselines"].get("full_information", {"value": None})
    majority = r["baselines"].get("majority_letter") or r["baselines"]["majority_answer"]
    if full["value"] is not None and majority["value"] is not None and full["value"] <= majority["value"]:
        out.append(
            f"with every fact of the case the expert is right on {full['value']:.0%}, no better than always answering "
            f"the most frequent answer ({majority['value']:.0%}): no questioner can raise this expert's accuracy "
            "much; use a stronger expert (--expert openai:MODEL@BASE_URL)"
        )
    asked, floor = r["asked_decisive"], r["asked_decisive_floor"]
    if asked["value"] is not None and floor["value"] is not None and asked["ci_low"] <= floor["ci_high"]:
        out.append(
            f"the questions drew out the decisive fact in {asked['value']:.0%} of cases, not clearly above the "
            f"{floor['value']:.0%} a generic question ({floor['question']!r}) draws"
        )
    q = r["questions"]
    if q["asked"] and q.get("with_question_mark", q["asked"]) < q["asked"] / 2:  # runs before 2026-12-07 lack it
        out.append(
            f"only {q['with_question_mark']} of the {q['asked']} turns sent to the patient hold a question mark: the "
            "model mostly writes something else (e.g. the start of a worked solution), so asked_decisive reads text "
            "that resembles the missing fact, not questions that ask for it"
        )
    if q["repeated"] > q["asked"] / 2:
        out.append(f"{q['repeated']} of {q['asked']} questions repeat an earlier one of the same case word for word")
    letter, share = max(r["expert_answer_share"].items(), key=lambda kv: kv[1], default=(None, 0))
    if share > 0.5 and "expert" in r["roles"] and letter is not None:  # None: no answer (a question-only run)
        out.append(f"the expert answered {letter} in {share:.0%} of cases: a letter preference, not a reading")
    return out


def decisive_fact_figure(results: list[dict], key: str) -> dict:
    """Over the cases that mark their decisive fact (with the fact-select patient), the share whose `key` is true
    (`before_decisive_fact`: answered before the patient told it; `asked_decisive`: a question drew it out), with
    its interval and how many cases that is."""
    from alfa.stats import rate

    return rate([float(r[key]) for r in results if r.get(key) is not None])


def plot_accuracy_vs_questions(results: list[dict], baselines: dict, path) -> None:
    """Accuracy of the episodes by how many questions they asked, with the baselines as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = sorted({r["questions"] for r in results})
    acc = [
        sum(bool(r["correct"]) for r in results if r["questions"] == q) / sum(r["questions"] == q for r in results)
        for q in counts
    ]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(counts, acc, marker="o", label="episodes ending after q questions")
    for (name, b), style in zip(baselines.items(), [":", "--", "-.", (0, (1, 3))]):
        if b["value"] is not None:
            ax.axhline(b["value"], linestyle=style, color="grey", label=name)
    ax.set_xlabel("questions asked")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report_markdown(r: dict) -> str:
    def acc(a: dict) -> str:
        return "n/a" if a["value"] is None else f"{a['value']:.1%} ({a['ci_low']:.1%}-{a['ci_high']:.1%})"

    lines = [
        f"# Interactive evaluation ({r['n']} cases, abstain={r['abstain']}, threshold={r['threshold']}, "
        f"at most {r['max_questions']} questions, initial info: {r['initial_info']})",
        "",
        f"Roles: {', '.join(f'{k} `{v}`' for k, v in r['roles'].items())}"
        + ("" if "patient" in r["roles"] else "; patient: fact-select (no model).")
        + ("" if "expert" in r["roles"] else " No expert (`--expert none`): questions only, no accuracy."),
        "",
        "| | accuracy (95% interval) |",
        "|---|---|",
        f"| **interactive** | **{acc(r['accuracy'])}** |",
    ]
    for k, v in r["baselines"].items():
        source = f" (answer {v['answer']}, taken from {v['from']})" if "from" in v else ""
        lines.append(f"| baseline: {k}{source} | {acc(v)} |")
    decisive = r["answered_before_decisive_fact"]
    lines += [
        "",
        f"Answered before asking anything (premature answers): {acc(r['premature_answer_rate'])}; answered before the "
        f"decisive fact was told: {acc(decisive)} of the {decisive['n']} cases that mark one.",
    ]
    if r["asked_decisive"]["n"]:
        floor = r["asked_decisive_floor"]
        lines.append(
            f"A question drew out the decisive fact (asked_decisive): **{acc(r['asked_decisive'])}** of "
            f"{r['asked_decisive']['n']} cases; a generic question ({floor['question']!r}) draws it in {acc(floor)}."
        )
    lines += [
        "",
        f"Mean questions asked: {r['mean_questions']:.2f}; reached the budget: {r['timeout_rate']:.0%}; "
        f"replies that could not be read: {r['parse_failures']} (counted as not ready, or a wrong answer).",
        f"Questions asked: {r['questions']['asked']}; repeating an earlier one of the same case: "
        f"{r['questions']['repeated']}; the patient could not answer: {r['questions']['patient_could_not_answer']}.",
        "Intervals: Wilson's 95% interval over cases.",
        "",
        "![accuracy vs questions](accuracy_vs_questions.png)",
        "",
    ]
    lines += [f"**Warning:** {w}." for w in r.get("warnings", [])]
    return "\n".join(lines) + ("\n" if r.get("warnings") else "")
