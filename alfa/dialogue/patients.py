"""Simulated patients: they answer an expert's question from a case's facts only.

`FactSelectPatient` (MediQ's fact-select patient, made deterministic): the facts most similar to the question
(MiniLM cosine similarity), verbatim, or CANNOT_ANSWER when none is similar enough. No model call, no sampling:
the same question gets the same answer on every run, so an evaluation's differences come from the expert.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI imports this module to parse arguments: numpy and MiniLM load only when used
    from alfa.llm.embedder import Embedder

CANNOT_ANSWER = "I can't answer that."


def default_top_k(has_options: bool) -> int:
    """How many facts the fact-select patient quotes by default: 2 for a diagnosis (a symptom often spans two
    facts), 1 for a word problem (each premise is one sentence, and quoting a second would hand out a premise the
    question did not ask for). Training partners and evaluation patients share it, so a reward means the same."""
    return 2 if has_options else 1


class FactSelectPatient:
    def __init__(self, embedder: Embedder, threshold: float = 0.45, top_k: int = 2):
        self.embedder, self.threshold, self.top_k = embedder, threshold, top_k
        self._facts: dict[tuple[str, ...], object] = {}  # each case's fact embeddings, computed once

    def answer(self, facts: list[str], question: str, top_k: int | None = None) -> tuple[str, list[int]]:
        """(answer, indices of the facts it quotes): up to `top_k` (default: the patient's) facts at or above
        `threshold`, in case order."""
        if not facts:
            return CANNOT_ANSWER, []
        key = tuple(facts)
        if key not in self._facts:
            self._facts[key] = self.embedder.encode(list(facts))
        similarity = self._facts[key] @ self.embedder.encode([question])[0]
        ranked = sorted(range(len(facts)), key=lambda i: -similarity[i])[: top_k or self.top_k]
        chosen = sorted(i for i in ranked if similarity[i] >= self.threshold)
        if not chosen:
            return CANNOT_ANSWER, []
        return " ".join(facts[i].rstrip(".") + "." for i in chosen), chosen


LLM_PATIENT_SYSTEM = (
    "You are the patient. Answer the doctor's question in one or two sentences using only the facts about you "
    f"listed below, in the first person. If the facts do not answer it, reply exactly: {CANNOT_ANSWER}"
)


def llm_patient_messages(facts: list[str], question: str) -> list[dict]:
    """An LLM patient restricted to the case's facts: they are all it is shown."""
    listing = "\n".join(f"- {f}" for f in facts)
    return [
        {"role": "system", "content": LLM_PATIENT_SYSTEM},
        {"role": "user", "content": f"Facts about you:\n{listing}\n\nThe doctor asks: {question}"},
    ]
