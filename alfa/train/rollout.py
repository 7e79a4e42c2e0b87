"""`stage: grpo`'s multi-turn rollout: the policy talks with a simulated partner; only its own tokens learn.

TRL's GRPOTrainer (1.16) hands `rollout_func(prompts, trainer)` each prompt of a batch (already repeated
`num_generations` times) and takes back, per conversation, the prompt's token ids, the completion's token ids
and an `env_mask` (1 = written by the policy, 0 = written by the environment: excluded from the loss). Here a
completion is a whole consultation (alfa.dialogue.consult): the policy writes a turn (sampled at
`trl.temperature`, at most `rollout.max_turn_tokens` tokens); an answer turn ends it; a question goes to the
partner, whose reply is appended in the chat template's own format with mask 0; up to `rollout.turns` policy
turns. The ids are built up exactly as the policy read them while generating, so the training forward sees the
same sequence the samples came from.

Partners: `fact`, the fact-select patient (MiniLM, deterministic, no model call), or a backend
(`local`, `llamacpp:FILE.gguf`, `openai:MODEL@URL`, ...) playing a patient shown only the case's facts, its calls
cached in OUTPUT_DIR/rollout_cache.sqlite. The outcome of each conversation (`final_answer`,
`questions_asked`, `transcript`) goes to the reward functions (alfa.train.rewards) beside the tasks' columns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from alfa.dialogue.consult import read_student_turn
from alfa.dialogue.patients import CANNOT_ANSWER, FactSelectPatient, default_top_k, llm_patient_messages
from alfa.train.recipe import RolloutConfig

SENTINEL = "\x00alfa-turn\x00"


def tagged_prompt(prompt: list[dict], task_id: str) -> list[dict]:
    """The prompt with its task id on every message: TRL hands `rollout_func` the prompts only, and two tasks may
    share a prompt's text (one case shown alike, other facts), so the rollout finds its task by this id. Chat
    templates read `role` and `content` only."""
    return [{**m, "task_id": task_id} for m in prompt]


def task_id_of(prompt: list[dict]) -> str:
    return prompt[0]["task_id"]


def partner_segment(tokenizer, reply: str) -> str:
    """What the chat template writes between the end of a policy turn (after its end-of-turn token) and the start
    of the policy's next turn, around the partner's `reply`."""
    messages = [
        {"role": "user", "content": "."},
        {"role": "assistant", "content": SENTINEL},
        {"role": "user", "content": reply},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    tail = text.split(SENTINEL, 1)[1]
    eos = tokenizer.eos_token or ""
    return tail[len(eos) :] if eos and tail.startswith(eos) else tail


class FactPartner:
    """The fact-select patient: the case facts most similar to the question, verbatim, as many as the evaluation's
    patient quotes for the task's kind (alfa.dialogue.patients.default_top_k)."""

    def __init__(self):
        from alfa.llm.embedder import Embedder

        self.patient = FactSelectPatient(Embedder())

    def replies(self, asks: list[tuple[list[str], str, bool]]) -> list[str]:
        return [self.patient.answer(facts, q, default_top_k(has_options))[0] for facts, q, has_options in asks]


class LLMPartner:
    """A backend playing the patient, shown only the case's facts; calls cached (a resumed run pays once)."""

    def __init__(self, spec: str, cache_path: Path):
        from alfa.llm.cache import CallCache
        from alfa.llm.calls import CallStats
        from alfa.llm.make import backend_from_spec

        self.backend, self.stats = backend_from_spec(spec, 64), CallStats()
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        self.cache = CallCache(cache_path)

    def replies(self, asks: list[tuple[list[str], str, bool]]) -> list[str]:
        from alfa.llm.calls import run_calls

        requests = [llm_patient_messages(facts, question) for facts, question, _ in asks]
        done, _ = run_calls(self.backend, self.cache, requests, "partner", self.stats)
        return [(c.text or "").strip() or CANNOT_ANSWER for c in done]  # a failed call answers nothing


def make_partner(spec: str, output_dir: str):
    return FactPartner() if spec == "fact" else LLMPartner(spec, Path(output_dir) / "rollout_cache.sqlite")


@dataclass
class Conversation:
    task: dict
    ids: list[int]  # the completion's token ids so far
    mask: list[int]  # 1 where the policy wrote the token
    turns: list[dict] = field(default_factory=list)
    final_answer: str | None = None
    done: bool = False


class MultiTurnRollout:
    """`rollout_func` for TRL's GRPOTrainer over a tasks table (prompt, facts, answer, options)."""

    def __init__(self, tasks: list[dict], cfg: RolloutConfig, partner):
        self.tasks = {t["task_id"]: t for t in tasks}
        if len(self.tasks) < len(tasks):
            raise ValueError("task ids repeat in the tasks dir: each task needs its own task_id")
        self.cfg, self.partner = cfg, partner

    def __call__(self, prompts: list[list[dict]], trainer) -> dict:
        tok = trainer.processing_class
        prompt_ids = [
            list(tok.apply_chat_template(p, tokenize=True, add_generation_prompt=True, return_dict=True)["input_ids"])
            for p in prompts
        ]
        convs = [Conversation(self.tasks[task_id_of(p)], [], []) for p in prompts]
        # The loss sees at most max_completion_length tokens; the rewards must read that same conversation, so a
        # turn past the limit is cut there and read as cut, and a conversation that reaches the limit ends.
        limit = trainer.args.max_completion_length
        for turn in range(self.cfg.turns):
            active = [i for i, c in enumerate(convs) if not c.done]
            if not active:
                break
            written = self.generate(trainer, [prompt_ids[i] + convs[i].ids for i in active])
            asks = []
            for i, ids in zip(active, written):
                c = convs[i]
                ids = ids[: limit - len(c.ids)]
                c.ids += ids
                c.mask += [1] * len(ids)
                text = tok.decode(ids, skip_special_tokens=True)
                kind, value = read_student_turn(text, json.loads(c.task["options"]))
                c.turns.append({"role": "policy", "kind": kind, "text": text})
                if kind == "answer" or turn == self.cfg.turns - 1 or len(c.ids) >= limit:
                    c.final_answer, c.done = (value if kind == "answer" else None), True
                    continue
                if ids[-1] != tok.eos_token_id:  # cut at max_turn_tokens: the turn is closed for it (not its token)
                    c.ids.append(tok.eos_token_id)
                    c.mask.append(0)
                asks.append((i, value or ""))
            asked = [(list(convs[i].task["facts"]), q, bool(json.loads(convs[i].task["options"]))) for i, q in asks]
            replies = self.partner.replies(asked) if asks else []
            for (i, _), reply in zip(asks, replies):
                segment = tok(partner_segment(tok, reply), add_special_tokens=False)["input_ids"]
                segment = segment[: max(0, limit - len(convs[i].ids))]
                convs[i].ids += segment
                convs[i].mask += [0] * len(segment)
                if segment:  # the reply is in what the loss sees (in part, at the limit), so the rewards read it
                    convs[i].turns.append({"role": "partner", "kind": "answer", "text": reply})
                convs[i].done = len(convs[i].ids) >= limit  # no room left for the policy's next turn
        return {
            "prompt_ids": prompt_ids,
            "completion_ids": [c.ids[:limit] for c in convs],
            "logprobs": None,  # TRL recomputes the old log-probs itself (no vLLM importance correction here)
            "env_mask": [c.mask[:limit] for c in convs],
            "final_answer": [c.final_answer for c in convs],
            "questions_asked": [sum(t["kind"] == "question" for t in c.turns) for c in convs],
            "transcript": [json.dumps(c.turns, ensure_ascii=False) for c in convs],
        }

    def generate(self, trainer, inputs: list[list[int]]) -> list[list[int]]:
        """One sampled turn per input (left-padded batch), each cut after its first end-of-turn token."""
        import torch
        from trl.models.utils import unwrap_model_for_generation

        tok, args = trainer.processing_class, trainer.args
        width = max(len(x) for x in inputs)
        ids = torch.tensor([[tok.pad_token_id] * (width - len(x)) + x for x in inputs])
        attention = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in inputs])
        device = trainer.accelerator.device
        with unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator) as model, torch.no_grad():
            out = model.generate(
                input_ids=ids.to(device),
                attention_mask=attention.to(device),
                do_sample=True,
                temperature=args.temperature,
                top_p=args.top_p,
                max_new_tokens=self.cfg.max_turn_tokens,
                eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id,
            )
        written = []
        for row in out[:, width:].tolist():
            end = row.index(tok.eos_token_id) + 1 if tok.eos_token_id in row else len(row)
            turn = [t for t in row[:end] if t != tok.pad_token_id or t == tok.eos_token_id]
            written.append(turn or [tok.eos_token_id])
        return written


def rollout_checks(
    tasks_dir: Path, splits: list[str], cfg: RolloutConfig, built_by: str | None = None
) -> list[tuple[str, bool, str]]:
    """The dry run's checks of a GRPO recipe: the tasks dir's splits and columns, each reward, the partner word.
    `built_by`: the recipe's command for a missing tasks dir."""
    import polars as pl

    from alfa.train.rewards import reward_function

    out = []
    counts = []
    for split in splits:
        f = Path(tasks_dir) / "data" / f"{split}.parquet"
        if not f.exists():
            make = built_by or "alfa sml tasks CASES -o DIR` (or `alfa flaws tasks`, `alfa tasks gsm8k"
            out.append(("data", False, f"{f}: split {split!r} not found; make the tasks dir with `{make}`"))
            break
        df = pl.read_parquet(f)
        missing = [c for c in ("task_id", "prompt", "facts", "answer", "options") if c not in df.columns]
        if missing:
            out.append(("data", False, f"{f}: missing columns {missing} (a tasks dir from `alfa sml tasks`)"))
            break
        if "retrieved_premise" in cfg.rewards and (
            "decisive_fact" not in df.columns or df["decisive_fact"].null_count() == df.height
        ):
            why = "no task names its removed premise (decisive_fact), which reward 'retrieved_premise' reads"
            make = "make the tasks with `alfa sml tasks` from `alfa tasks gsm8k` cases"
            out.append(("data", False, f"{f}: {why}; {make}"))
            break
        counts.append(f"{split} {df.height}")
    else:
        out.append(("data", True, f"{tasks_dir}: " + ", ".join(counts) + " tasks"))
    for name in cfg.rewards:
        try:
            fn = reward_function(name, cfg.judge)
            out.append(("rollout.rewards", True, f"{name}: {fn.__module__}.{fn.__name__}"))
        except ValueError as e:
            out.append(("rollout.rewards", False, str(e)))
    from alfa.llm.make import parse_backend_spec

    try:
        if cfg.partner != "fact":  # the fact-select patient, or any backend word an evaluation role takes
            parse_backend_spec(cfg.partner)
        out.append(("rollout.partner", True, cfg.partner))
    except ValueError as e:
        out.append(("rollout.partner", False, f"{e}; or fact (the fact-select patient)"))
    return out
