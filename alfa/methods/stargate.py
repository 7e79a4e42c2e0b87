"""STaR-GATE (Andukuri et al. 2024): a questioner taught by its own best conversations.

Each iteration t:
1. the questioner m_t (m0 the first time) samples `samples` conversations per task, at `temperature`, each
   `turns` questions long, with a roleplayer that is shown the hidden information only (never the task or its
   options, which it could repeat) and answers from it;
2. an oracle that sees the hidden information and the task writes the gold response once per task (`oracle:
   case` takes a case's label "The answer is X" instead: cheaper, not the paper's);
3. a conversation's score is log p(gold | task, conversation) under the **initial** model m0 (alfa.llm.scorer:
   batched, masked to the gold's tokens, cached);
4. the `top_k` conversations of each task are kept among those that asked: a conversation with an answer turn
   where a question belongs ("C. Ceftriaxone", "Answer: C") or no question at all is scored and listed, never
   kept (it would teach answering in place of asking); each kept conversation gets a final answer as regulariser (`self`: m_t's own answer
   after the conversation, so the model keeps answering rather than only asking; `gold`: the oracle's; `none`);
5. m_{t+1} is fine-tuned **from m0** on the kept conversations with the loss on the questioner's turns only
   (the SFT recipe, with data.dialogues_dir: alfa.train.chat_templates).
With `alternate_halves`, iterations take the two halves of the tasks in turn.

Each iteration writes OUTPUT/iter_K/: conversations.jsonl (every turn), scores.parquet, kept/ (a dialogues dir
`alfa train` reads, with its card), model/ (the trained questioner) and summary.json. Every model call goes
through the call cache and the dialogue engine, so a killed run resumes and pays for no finished call twice; a
finished iteration (its summary.json) is not run again.
"""

from __future__ import annotations

import copy
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from alfa.dialogue.consult import answer_now, read_student_turn, student_system
from alfa.dialogue.engine import Episode, Turn, run_episodes
from alfa.dialogue.patients import FactSelectPatient, default_top_k
from alfa.llm.cache import CallCache
from alfa.llm.calls import CallStats, run_calls
from alfa.methods.tasks import Task
from alfa.yamlconfig import from_dict, load_yaml

log = logging.getLogger(__name__)

REGULARIZERS = ("self", "gold", "none")
# The questioner's instruction for an open task (a tasks JSONL with profiles). A case task is a consultation
# (alfa.dialogue.consult: the student prompt, its questions as chat turns, then "Now give your answer"), exactly
# what `alfa eval interactive --abstain consult` shows the trained model.
TASK_QUESTIONER_SYSTEM = (
    "Before you respond to the task below, find out what you need to know by asking the person questions, one at "
    "a time. Reply with your one next question only."
)
FINAL_PROMPT = "Now respond to the task, using what you have learned."
# A rule against answering the task ("You do not know the answer to the task: never answer it or name one of its
# options") was tried on 2026-12-06 and left out: on 200 MediQ conversations the embedded 1.5B named the gold option
# as often with it as without (26% both); most of those replies repeat an option the questioner named
# (bench/bench_stargate_roleplayer.py, docs/methods.md).
ROLEPLAYER_SYSTEM = (
    "You are the person described below, talking with an assistant who is helping you with a task. Answer its "
    "question in one or two sentences, in the first person, using only what is described. If the description "
    "does not say, reply exactly: I can't answer that."
)
ORACLE_SYSTEM = "You know everything below about the person. Write the best response to their task, in a few sentences."


@dataclass
class StarGateConfig:
    """`alfa stargate CONFIG.yaml`: every key of the YAML is a field here; unknown keys are refused.

    questioner: m0, a local model folder (`smollm2`: the embedded SmolLM2-135M-Instruct).
    roleplayer, oracle: backends (`local`, `smollm2`, `llamacpp:FILE.gguf`, `transformers:DIR`,
    `openai:MODEL@URL`); roleplayer `fact` is the fact-select patient of `alfa eval interactive` (the hidden
    facts most similar to the question, verbatim: no call); oracle `case` takes a case's own answer as the gold
    response.
    roleplayer_instruction: the roleplayer's system prompt (default ROLEPLAYER_SYSTEM: answer from the hidden
    information only, else "I can't answer that").
    recipe: an SFT recipe with `data: {dialogues_dir: ...}`; its model, data dir and output dir are set per
    iteration (m0, iter_K/kept, iter_K/model)."""

    output_dir: str
    recipe: str
    questioner: str = "smollm2"
    cases: str | None = None  # MediQ-style cases (alfa.eval.cases) ...
    tasks: str | None = None  # ... or a tasks JSONL crossed with a profiles JSONL (alfa.methods.tasks)
    profiles: str | None = None
    limit: int | None = None  # the first N tasks
    roleplayer: str = "local"
    roleplayer_instruction: str = ROLEPLAYER_SYSTEM  # the roleplayer's system prompt
    oracle: str = "local"
    samples: int = 10  # conversations per task per iteration (paper: 10)
    temperature: float = 0.9  # the questioner's sampling temperature (paper: 0.9)
    turns: int = 3  # questions per conversation
    top_k: int = 1  # conversations kept per task
    iterations: int = 2
    regularizer: str = "self"  # self | gold | none
    alternate_halves: bool = True
    max_new_tokens: int = 64
    seed: int = 0

    def __post_init__(self):
        if (self.cases is None) == (self.tasks is None):
            raise ValueError("cases or tasks: give exactly one (tasks also needs profiles)")
        if self.tasks is not None and self.profiles is None:
            raise ValueError("profiles must be given with tasks: the hidden information the roleplayer holds")
        if self.regularizer not in REGULARIZERS:
            raise ValueError(f"regularizer must be one of {', '.join(REGULARIZERS)}, got {self.regularizer!r}")
        if self.oracle == "case" and self.cases is None:
            raise ValueError("oracle 'case' takes the gold response from a case's answer: give cases")
        for name in ("samples", "turns", "top_k", "iterations"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.roleplayer_instruction.strip():
            raise ValueError("roleplayer_instruction is empty: leave the key out for the default instruction")
        if self.top_k > self.samples:
            raise ValueError(f"top_k ({self.top_k}) cannot exceed samples ({self.samples})")


def load_config(path: Path) -> StarGateConfig:
    data, lines = load_yaml(Path(path))
    return from_dict(StarGateConfig, data, Path(path), lines)


def task_messages(task: Task, conversation: list[tuple[str, str]]) -> list[dict]:
    """The questioner's view: the task and the conversation so far (its questions are its own turns). A spent turn
    (no question) is left out here, so sampling, scoring and training all see the same conversation."""
    system = student_system(task.options) if task.consultation else TASK_QUESTIONER_SYSTEM
    messages = [{"role": "system", "content": system}, {"role": "user", "content": task.task}]
    for question, answer in conversation:
        if not question:
            continue
        messages += [{"role": "assistant", "content": question}, {"role": "user", "content": answer}]
    return messages


def final_context(task: Task, conversation: list[tuple[str, str]]) -> list[dict]:
    """What the final answer (and the gold response's score) is conditioned on."""
    final = answer_now(task.options) if task.consultation else FINAL_PROMPT
    return task_messages(task, conversation) + [{"role": "user", "content": final}]


def roleplayer_messages(task: Task, question: str, instruction: str) -> list[dict]:
    """The roleplayer holds the hidden information only, as in the paper: shown the task with its options, the
    embedded 1.5B repeated the option the questioner named."""
    listing = "\n".join(f"- {h}" for h in task.hidden)
    body = f"About you:\n{listing}\n\nThe assistant asks: {question}"
    return [{"role": "system", "content": instruction}, {"role": "user", "content": body}]


def oracle_messages(task: Task) -> list[dict]:
    listing = "\n".join(f"- {h}" for h in task.hidden)
    body = f"What you know about the person:\n{listing}\n\nTheir task:\n{task.task}"
    return [{"role": "system", "content": ORACLE_SYSTEM}, {"role": "user", "content": body}]


def first_line(text: str | None) -> str:
    return (text or "").strip().split("\n")[0].strip()


class StarGateProtocol:
    """Sampled conversations, one per episode: `turns` questions and answers, then (regularizer `self`) the
    questioner's own final answer. Sample s speaks through its own seeded questioner and answerer
    (`questioners[s]`, `answerers[s]`); the roleplayer is shared. A question the questioner fails to give still
    takes its turn (the roleplayer is asked nothing: the answer is empty), so every conversation has the same
    length and nothing is dropped."""

    def __init__(
        self,
        questioners: list,
        answerers: list,
        roleplayer,
        turns: int,
        final_answer: bool,
        roleplayer_instruction: str,
    ):
        # The fact-select patient (`roleplayer: fact`) answers at once, no call: the evaluation's patient itself.
        self.patient = roleplayer if isinstance(roleplayer, FactSelectPatient) else None
        self.roles = {} if self.patient else {"roleplayer": roleplayer}
        self.roleplayer_instruction = roleplayer_instruction
        for s, (q, a) in enumerate(zip(questioners, answerers)):
            self.roles[f"questioner#{s}"], self.roles[f"answerer#{s}"] = q, a
        self.turns, self.final_answer = turns, final_answer

    def next_request(self, e: Episode) -> tuple[str, str, list[dict]]:
        task, conv, s = e.data["task"], e.data["conversation"], e.data["sample"]
        if e.state == "answer":
            return "roleplayer", "answer", roleplayer_messages(task, e.data["pending"], self.roleplayer_instruction)
        if e.state == "final":
            return f"answerer#{s}", "final", final_context(task, conv)
        return f"questioner#{s}", "question", task_messages(task, conv)

    def apply(self, e: Episode, role: str, kind: str, completion, key: str) -> None:
        role = role.split("#")[0]  # the turn records who spoke, not which sample's backend
        text = completion.text if completion.error is None else None
        raw = text if text is not None else completion.error
        conv = e.data["conversation"]
        if kind == "question":
            question = first_line(text)
            e.turns.append(Turn(role, kind, raw, question or None, key))
            if question and read_student_turn(question, e.data["task"].options)[0] == "answer":
                e.data["answer_turns"] = e.data.get("answer_turns", 0) + 1  # it answered where it should ask
            if question and self.patient is None:
                e.data["pending"], e.state = question, "answer"
                return
            if question:
                task = e.data["task"]
                answer, told = self.patient.answer(task.hidden, question, default_top_k(bool(task.options)))
                e.turns.append(Turn("roleplayer", "answer", answer, told))
                conv.append((question, answer))
            else:
                conv.append(("", ""))  # no question: the turn is spent
        elif kind == "answer":
            answer = (text or "").strip()
            e.turns.append(Turn(role, kind, raw, answer or None, key))
            conv.append((e.data.pop("pending"), answer))
        else:
            e.turns.append(Turn(role, kind, raw, (text or "").strip() or None, key))
            self._finish(e, (text or "").strip())
            return
        if len(conv) < self.turns:
            e.state = "question"
        elif self.final_answer:
            e.state = "final"
        else:
            self._finish(e, None)

    def _finish(self, e: Episode, final: str | None) -> None:
        e.done = True
        e.result = {"task_id": e.data["task"].task_id, "sample": e.data["sample"], "final": final}


def iteration_tasks(tasks: list[Task], iteration: int, alternate: bool) -> list[Task]:
    """All tasks, or with `alternate` one half of them, the halves taken in turn (a stable hash deals them)."""
    if not alternate or len(tasks) < 2:
        return tasks
    ranked = sorted(tasks, key=lambda t: hashlib.sha256(t.task_id.encode()).hexdigest())
    return ranked[iteration % 2 :: 2]


def sampled(backend, temperature: float, seed: int, stop: tuple[str, ...] | None = None):
    """The backend sampling at `temperature` with `seed` (its own cache keys); `stop` replaces its stop strings."""
    out = backend.with_sampling(temperature, seed)
    if stop is not None:
        out = copy.copy(out)
        out.sampling = {**out.sampling, "stop": list(stop)}
    return out


def gold_responses(tasks: list[Task], oracle, cache: CallCache, stats: CallStats) -> dict[str, str]:
    """The gold response of each task: its own (a case's answer) or the oracle's, one call per task, cached."""
    gold = {t.task_id: t.gold for t in tasks if oracle is None and t.gold}
    todo = [t for t in tasks if t.task_id not in gold]
    if todo:
        replies, _ = run_calls(oracle, cache, [oracle_messages(t) for t in todo], "oracle", stats)
        failed = [t.task_id for t, r in zip(todo, replies) if r.error is not None or not (r.text or "").strip()]
        if failed:
            raise RuntimeError(
                f"the oracle gave no gold response for {len(failed)} task(s) (e.g. {failed[:3]}); they are not cached, "
                "rerun to ask again"
            )
        gold.update({t.task_id: r.text.strip() for t, r in zip(todo, replies)})
    return gold


def sample_conversations(
    tasks: list[Task], policy, roleplayer, cfg: StarGateConfig, iteration: int, cache: CallCache, out: Path
) -> tuple[list[dict], CallStats]:
    """`samples` conversations per task, sample s with seed cfg.seed + 1000 * iteration + s. All samples run in
    one pass of the engine, task by task: the roleplayer's requests for one task's samples (its hidden information
    and the task, then one question each) come in a row, so llama.cpp's prompt cache processes that shared prefix
    once per task instead of once per sample (the requests and their cache keys are the same either way)."""
    seeds = [cfg.seed + 1000 * iteration + s for s in range(cfg.samples)]
    protocol = StarGateProtocol(
        [sampled(policy, cfg.temperature, seed) for seed in seeds],
        [sampled(policy, cfg.temperature, seed, stop=()) for seed in seeds],
        roleplayer,
        cfg.turns,
        final_answer=cfg.regularizer == "self",
        roleplayer_instruction=cfg.roleplayer_instruction,
    )
    episodes = [
        Episode(f"{t.task_id}#{s}", {"task": t, "conversation": [], "sample": s}, state="question")
        for t in tasks
        for s in range(cfg.samples)
    ]
    return run_episodes(episodes, protocol, cache, out)


def score_table(episodes: list[dict], tasks: dict[str, Task], gold: dict[str, str], scorer, top_k: int) -> pl.DataFrame:
    """One row per conversation: its score log p(gold | task, conversation) under m0, its rank in its task, kept."""
    items = [
        (final_context(tasks[e["result"]["task_id"]], e["data"]["conversation"]), gold[e["result"]["task_id"]])
        for e in episodes
    ]
    scores = scorer.score(items)
    df = pl.DataFrame(
        {
            "episode_id": [e["episode_id"] for e in episodes],
            "task_id": [e["result"]["task_id"] for e in episodes],
            "sample": [e["result"]["sample"] for e in episodes],
            "score": scores,
            "questions_asked": [sum(1 for q, _ in e["data"]["conversation"] if q) for e in episodes],
            "answer_turns": [e["data"].get("answer_turns", 0) for e in episodes],
            "failed_calls": [e.get("failed_calls", 0) for e in episodes],
        }
    )
    # Scored and listed, never kept: a conversation with a failed call (its turns are not the questioner's), one
    # that answered where it should ask, or one that asked nothing. The best of the rest are kept.
    keepable = (pl.col("failed_calls") == 0) & (pl.col("answer_turns") == 0) & (pl.col("questions_asked") > 0)
    df = df.with_columns(keepable=keepable)
    df = df.sort(["task_id", "keepable", "score", "sample"], descending=[False, True, True, False])
    df = df.with_columns(rank=pl.int_range(pl.len()).over("task_id") + 1)
    return df.with_columns(kept=(pl.col("rank") <= top_k) & pl.col("keepable")).sort(["task_id", "sample"])
