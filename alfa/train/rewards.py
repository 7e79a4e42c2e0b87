"""Reward functions a `stage: grpo` recipe names in `rollout.rewards`.

Each takes TRL's reward-function arguments: lists with one entry per conversation, from the tasks table
(`answer`, `facts`, `options`, ...) and from the rollout (`final_answer`, `questions_asked`, `transcript`), and
returns one float per conversation. Weights go in `trl.reward_weights`.

    correct               1 when the conversation ended with the case's answer letter, else 0 (no answer: 0)
    asked_before_answer   1 when the policy asked at least one question and then answered, else 0
    answered              1 when the policy gave an answer letter within its turns (a format reward)
    token_cost            -min(1, 0.001 x the policy's words in the conversation): CollabLLM's cost term; with
                          `correct` (and trl.reward_weights) it is CollabLLM's multiturn-aware reward of the whole
                          played-out conversation, without its judged interactivity term
    retrieved_premise     the missing-premise testbed (`alfa tasks gsm8k`, then `alfa sml tasks`): 1 when the partner's
                          reply quoted the removed premise (the task's `decisive_fact`), else 0: verifiable, no expert
                          call, with the fact-select partner (it quotes facts verbatim); None for a task without one
    handles_flaws         flawed problems (`alfa flaws tasks`): on a missing-premise or contradiction item 1 for
                          asking about the flaw instead of answering (the rule of `alfa eval flaws`); on an intact or
                          distractor item 1 for the right answer
    interactivity         CollabLLM's judged term: a judge (the recipe's `rollout.judge`, a backend word) rates how
                          well the policy engaged in the conversation, 1-5 scaled to 0..1 (alfa.dialogue.interactivity,
                          the question `alfa collab build` asks); an unreadable rating scores 0 and is counted.
                          `rewards: [correct, interactivity, token_cost]` with `reward_weights: [1, 0.5, 1]` is
                          CollabLLM's multiturn-aware reward of each played-out conversation

Your own: `path/to/file.py:function` or `package.module:function` in `rollout.rewards`, a function with the
same arguments (take `**kwargs` for the ones you do not use).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
from pathlib import Path
from typing import Callable

from alfa.dialogue.interactivity import interactivity_score, judge_request

log = logging.getLogger(__name__)


def correct(completions, final_answer, answer, **kwargs) -> list[float]:
    return [float(f is not None and f == a) for f, a in zip(final_answer, answer)]


def asked_before_answer(completions, final_answer, questions_asked, **kwargs) -> list[float]:
    return [float(f is not None and q > 0) for f, q in zip(final_answer, questions_asked)]


def answered(completions, final_answer, **kwargs) -> list[float]:
    return [float(f is not None) for f in final_answer]


def token_cost(completions, transcript, **kwargs) -> list[float]:
    words = [sum(len(t["text"].split()) for t in json.loads(x) if t["role"] == "policy") for x in transcript]
    return [-min(1.0, 0.001 * w) for w in words]


def retrieved_premise(completions, facts, decisive_fact, transcript, **kwargs) -> list[float | None]:
    """1 when a partner turn of the conversation holds the removed premise's text, else 0; None (TRL leaves it out
    of the sum) for a task whose case names no decisive fact."""
    out = []
    for fs, d, tr in zip(facts, decisive_fact, transcript):
        if d is None:
            out.append(None)
            continue
        premise = fs[d].strip().rstrip(".")
        heard = " ".join(t["text"] for t in json.loads(tr) if t["role"] == "partner")
        out.append(float(premise in heard))
    return out


FLAWED = ("missing_premise", "contradiction")  # as alfa.eval.flaws.FLAWED (train and eval are siblings: no import)
_FLAW_PATIENT = []  # the fact-select patient (MiniLM, top 1) that reads a question's target, loaded at first use


def handles_flaws(completions, final_answer, answer, kind, facts, targets, transcript, **kwargs) -> list[float]:
    """1 for a question about the flaw (and no answer) on a flawed item, 1 for the right answer on a sound one,
    else 0. "About the flaw" is the rule `alfa eval flaws` reads by (alfa.dialogue.asking.asks_for): the policy's
    first turn asks, and the patient holding the intact problem answers it with the removed (or a conflicting)
    premise. `facts` and `targets` are the tasks' columns (`alfa flaws tasks` writes them)."""
    from alfa.dialogue.asking import asks_for

    if not _FLAW_PATIENT:
        from alfa.dialogue.patients import FactSelectPatient
        from alfa.llm.embedder import Embedder

        _FLAW_PATIENT.append(FactSelectPatient(Embedder(), top_k=1))
    out = []
    for f, a, k, fs, ts, tr in zip(final_answer, answer, kind, facts, targets, transcript):
        if k in FLAWED:
            first = next((t["text"] for t in json.loads(tr) if t["role"] == "policy"), "")
            out.append(float(f is None and asks_for(first, list(fs), list(ts), _FLAW_PATIENT[0])))
        else:
            out.append(float(f is not None and f == a))
    return out


class JudgedInteractivity:
    """The `interactivity` reward: one judge call per conversation, cached in `cache_path` (a resumed run pays once).
    The backend starts at the first call, so a dry run checks the judge's word without loading a model."""

    ROLE = {"policy": "assistant", "partner": "user"}  # the rollout's turns as the judge's doctor and patient

    def __init__(self, spec: str, cache_path: Path, backend=None):
        from alfa.llm.calls import CallStats
        from alfa.llm.make import parse_backend_spec

        parse_backend_spec(spec)  # a wrong word fails here, in the dry run
        self.__name__ = "interactivity"  # TRL logs a reward under its function's name
        self.spec, self.cache_path, self.backend, self.cache = spec, cache_path, backend, None
        self.stats, self.failures = CallStats(), 0

    def __call__(self, prompts, completions, transcript, **kwargs) -> list[float]:
        from alfa.llm.cache import CallCache
        from alfa.llm.calls import run_calls
        from alfa.llm.make import backend_from_spec

        if self.backend is None:
            self.backend = backend_from_spec(self.spec, 4)
        if self.cache is None:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            self.cache = CallCache(self.cache_path)
        requests = [
            judge_request(prompt[-1]["content"], [(self.ROLE[t["role"]], t["text"]) for t in json.loads(x)])
            for prompt, x in zip(prompts, transcript)
        ]
        done, _ = run_calls(self.backend, self.cache, requests, "judge", self.stats)
        scores = [interactivity_score(c.text or "") if c.error is None else None for c in done]
        unreadable = sum(s is None for s in scores)
        if unreadable:
            log.warning("interactivity: %d of %d ratings unreadable or failed, scored 0", unreadable, len(scores))
        self.failures += unreadable
        return [0.0 if s is None else s for s in scores]


def judge_figures(reward_funcs) -> dict | None:
    """The judge's calls and its unreadable or failed ratings (scored 0) for alfa_train.json; None without a judge.
    Under several processes each rank has its own judge: these are the main process's."""
    judged = [f for f in reward_funcs if isinstance(f, JudgedInteractivity)]
    if not judged:
        return None
    f = judged[0]
    return {
        "judge": f.spec,
        "calls_made": f.stats.calls_made,
        "from_cache": f.stats.cache_hits,
        "unreadable_or_failed": f.failures,
    }


BUILT_IN = {
    f.__name__: f for f in (correct, asked_before_answer, answered, token_cost, retrieved_premise, handles_flaws)
}


def reward_function(name: str, judge: str | None = None, cache_dir: str | Path = ".") -> Callable:
    """A built-in reward by name, `interactivity` (rated by the backend `judge`, its calls cached in
    CACHE_DIR/judge_cache.sqlite), or your own as `FILE.py:FUNCTION` / `MODULE:FUNCTION`."""
    if name in BUILT_IN:
        return BUILT_IN[name]
    if name == "interactivity":
        if judge is None:
            raise ValueError(
                "reward 'interactivity' is rated by a judge: set rollout.judge to a backend word (local, "
                "llamacpp:FILE.gguf, openai:MODEL@BASE_URL, ...)"
            )
        return JudgedInteractivity(judge, Path(cache_dir) / "judge_cache.sqlite")
    where, sep, attr = name.rpartition(":")
    if not sep:
        raise ValueError(
            f"reward {name!r}: not a built-in ({', '.join(BUILT_IN)}, interactivity); give your own as "
            "FILE.py:FUNCTION or MODULE:FUNCTION"
        )
    if where.endswith(".py"):
        if not Path(where).is_file():
            raise ValueError(f"reward {name!r}: {where}: no such file")
        spec = importlib.util.spec_from_file_location(Path(where).stem, where)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as e:
            raise ValueError(f"reward {name!r}: cannot import {where}: {e}") from None
    if not callable(getattr(module, attr, None)):
        raise ValueError(f"reward {name!r}: {where} has no function {attr!r}")
    return getattr(module, attr)
