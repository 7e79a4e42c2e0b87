"""UoT, uncertainty of thoughts (Hu et al. 2024), reimplemented from the paper: a questioner that plans.

Over the hypotheses still open (for a MediQ case, its answer options) the model proposes `n` yes/no questions and,
for each, which hypotheses would get a yes. Each side with more than one hypothesis is expanded the same way,
down to `depth` questions. A question that splits its hypotheses into a share p answering yes earns

    R(p) = H(p) / (1 + |2p - 1| / lambda)        (H the binary entropy in bits; R(0.5) = 1, R(0.25) = 0.361)

Rewards accumulate along a path; a leaf's expected reward is its accumulated reward; an answer node's is the mean
over its child questions; a question's is p E(yes side) + (1 - p) E(no side). The root question with the highest
expected reward is asked (the best one not yet asked in the same words, while there is one: the patient would
answer it the same way again); the patient's answer, read as yes or no, prunes the hypotheses to that side (an
answer that is neither prunes nothing).

`UoTPlanner` is the state machine the interactive protocol (alfa.eval.interactive) runs when `--questioner uot`:
each node's proposal is one model call, so every call goes through the engine's batches and the call cache.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from alfa.dialogue.parsing import parse_yes_no, same_words

PLANNER_SYSTEM = (
    "You are a doctor narrowing down the answer to a diagnostic question by asking the patient yes/no questions."
)
_CANDIDATE = re.compile(r"question\s*\d*\s*[:.)]\s*(.+?)\s*\|\s*yes\s*:\s*(.*)$", re.IGNORECASE)


def reward(p: float, lam: float = 0.4) -> float:
    """R(p) for a question that a share p of the open hypotheses would answer yes."""
    if p <= 0 or p >= 1:
        return 0.0
    entropy = -p * math.log2(p) - (1 - p) * math.log2(1 - p)
    return entropy / (1 + abs(2 * p - 1) / lam)


@dataclass
class Node:
    """A candidate question over `open` hypotheses, with the side that would answer yes."""

    question: str
    yes: list[str]
    no: list[str]
    acc: float  # reward accumulated along the path, this question's included
    children: dict[str, list[Node]] = field(default_factory=lambda: {"yes": [], "no": []})

    @property
    def p_yes(self) -> float:
        return len(self.yes) / (len(self.yes) + len(self.no))


def expected(node: Node) -> float:
    """The node's expected reward, bottom-up."""

    def side(name: str) -> float:
        kids = node.children[name]
        return sum(expected(k) for k in kids) / len(kids) if kids else node.acc

    return node.p_yes * side("yes") + (1 - node.p_yes) * side("no")


def parse_candidates(reply: str | None, open_: list[str], n: int) -> list[tuple[str, list[str]]]:
    """Up to n (question, yes letters) from lines `Question: ... | Yes: A, C`; letters not open are dropped."""
    out = []
    for line in (reply or "").splitlines():
        m = _CANDIDATE.search(line.strip())
        if m and m.group(1).strip():
            letters = sorted(set(re.findall(r"\b([A-Z])\b", m.group(2).upper())) & set(open_))
            out.append((m.group(1).strip(), letters))
    return out[:n]


def propose_messages(context: str, options: dict[str, str], open_: list[str], n: int) -> list[dict]:
    listing = "\n".join(f"{k}. {options[k]}" for k in open_)
    body = (
        f"{context}\n\nPossible answers still open:\n{listing}\n\nWrite {n} different yes/no questions you could ask "
        "the patient to tell these answers apart. For each, write one line:\n"
        "Question: <the question> | Yes: <the letters of the answers for which the patient would say yes>"
    )
    return [{"role": "system", "content": PLANNER_SYSTEM}, {"role": "user", "content": body}]


def classify_messages(question: str, answer: str) -> list[dict]:
    body = f"The doctor asked: {question}\nThe patient said: {answer}\nDoes the patient's answer mean yes or no? Reply Yes, No or Unknown."
    return [{"role": "user", "content": body}]


@dataclass
class UoTPlanner:
    """Plans one question at a time for an episode; its state lives in the episode (`state` dicts below)."""

    n: int = 3
    depth: int = 3
    lam: float = 0.4

    def start(self, options: dict[str, str]) -> dict:
        return {
            "open": sorted(options),
            "queue": [],
            "roots": [],
            "phase": "plan",
            "parse_failures": 0,
            "asked_before": [],
        }

    def next_request(self, state: dict, context: str, options: dict[str, str]) -> tuple[str, list[dict]]:
        """(kind, messages) of the planner's next call: a proposal for a node, or the reading of an answer."""
        if state["phase"] == "classify":
            return "classify", classify_messages(state["asked"], state["answer"])
        if not state["queue"]:  # a new plan: the root over the open hypotheses
            state["queue"] = [{"open": state["open"], "parent": None, "side": None, "acc": 0.0, "level": 1}]
        item = state["queue"][0]
        return "propose", propose_messages(context, options, item["open"], self.n)

    def apply_proposal(self, state: dict, reply: str | None) -> dict | None:
        """Read one node's proposals; returns the chosen root candidate when the plan is complete, else None."""
        item = state["queue"].pop(0)
        found = parse_candidates(reply, item["open"], self.n)
        if not found:
            state["parse_failures"] += 1
        for question, yes in found:
            no = [h for h in item["open"] if h not in yes]
            node = Node(question, yes, no, 0.0)
            node.acc = item["acc"] + reward(node.p_yes, self.lam)
            (state["roots"] if item["parent"] is None else item["parent"].children[item["side"]]).append(node)
            if item["level"] < self.depth:
                for side, subset in (("yes", yes), ("no", no)):
                    if len(subset) > 1:
                        state["queue"].append(
                            {"open": subset, "parent": node, "side": side, "acc": node.acc, "level": item["level"] + 1}
                        )
        if state["queue"]:
            return None
        if not state["roots"]:
            return {"question": None, "expected": None, "candidates": []}
        scored = sorted(((expected(r), i, r) for i, r in enumerate(state["roots"])), key=lambda x: (-x[0], x[1]))
        # a question already asked in these words gets the same answer again: take the best new one, if any
        asked = {same_words(q) for q in state["asked_before"]}
        fresh = [x for x in scored if same_words(x[2].question) not in asked]
        expected_reward, _, best = (fresh or scored)[0]
        plan = {
            "question": best.question,
            "yes": best.yes,
            "no": best.no,
            "expected": expected_reward,
            "candidates": [{"question": r.question, "yes": r.yes, "expected": e} for e, _, r in scored],
        }
        state["roots"], state["plan"] = [], plan
        return plan

    def after_answer(self, state: dict, question: str, answer: str) -> None:
        state["asked"], state["answer"], state["phase"] = question, answer, "classify"
        state["asked_before"].append(question)

    def apply_classification(self, state: dict, reply: str | None) -> None:
        """Prune the open hypotheses to the side the answer took (nothing is pruned on an unclear answer)."""
        said, plan = parse_yes_no(reply), state.get("plan") or {}
        side = plan.get("yes") if said is True else plan.get("no") if said is False else None
        if side:
            state["open"] = [h for h in state["open"] if h in side]
        state["phase"] = "plan"
