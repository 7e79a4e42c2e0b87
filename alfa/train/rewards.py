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
    handles_flaws         flawed problems (`alfa flaws tasks`): on a missing-premise item 1 for asking instead of
                          answering; on an intact or distractor item 1 for the right answer

Your own: `path/to/file.py:function` or `package.module:function` in `rollout.rewards`, a function with the
same arguments (take `**kwargs` for the ones you do not use).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path
from typing import Callable


def correct(completions, final_answer, answer, **kwargs) -> list[float]:
    return [float(f is not None and f == a) for f, a in zip(final_answer, answer)]


def asked_before_answer(completions, final_answer, questions_asked, **kwargs) -> list[float]:
    return [float(f is not None and q > 0) for f, q in zip(final_answer, questions_asked)]


def answered(completions, final_answer, **kwargs) -> list[float]:
    return [float(f is not None) for f in final_answer]


def token_cost(completions, transcript, **kwargs) -> list[float]:
    words = [sum(len(t["text"].split()) for t in json.loads(x) if t["role"] == "policy") for x in transcript]
    return [-min(1.0, 0.001 * w) for w in words]


FLAWED = ("missing_premise", "contradiction")  # as alfa.eval.flaws.FLAWED (train and eval are siblings: no import)


def handles_flaws(completions, final_answer, questions_asked, answer, kind, **kwargs) -> list[float]:
    """1 for a question (and no answer) on a flawed item, 1 for the right answer on a sound one, else 0."""
    return [
        float(q > 0 and f is None) if k in FLAWED else float(f is not None and f == a)
        for f, q, a, k in zip(final_answer, questions_asked, answer, kind)
    ]


BUILT_IN = {f.__name__: f for f in (correct, asked_before_answer, answered, token_cost, handles_flaws)}


def reward_function(name: str) -> Callable:
    """A built-in reward by name, or `FILE.py:FUNCTION` / `MODULE:FUNCTION`."""
    if name in BUILT_IN:
        return BUILT_IN[name]
    where, sep, attr = name.rpartition(":")
    if not sep:
        raise ValueError(
            f"reward {name!r}: not a built-in ({', '.join(BUILT_IN)}); give your own as FILE.py:FUNCTION or "
            "MODULE:FUNCTION"
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
