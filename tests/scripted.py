"""Scripted stand-ins for a model backend (not models): each answers by a rule of its test, so a test can assert
what the code under test does with the replies. They speak alfa's backend interface (`complete(requests,
on_done)`, `model_id`, `cache_id`, `sampling`, the `with_*` copies, `close`) and keep every request they answer.
Real models are tested elsewhere (tests/test_llamacpp.py, tests/test_qwen.py, the slow tests)."""

from __future__ import annotations

import copy

from alfa.llm.backends import Completion


class ScriptedBackend:
    """Subclass and define `reply(messages) -> str` (or a Completion, to set its usage), or pass `reply` (a function
    of messages and the sample's seed). `requests` holds every request answered, `calls` counts them."""

    backend = "script"

    def __init__(self, name: str = "scripted", reply=None):
        self.model_id = self.cache_id = name
        self.sampling: dict = {}
        self.requests: list[list[dict]] = []
        self._reply = reply

    @property
    def calls(self) -> int:
        return len(self.requests)

    def reply(self, messages: list[dict]) -> str:
        return self._reply(messages, self.sampling.get("seed"))

    def with_sampling(self, temperature, seed):
        out = copy.copy(self)
        out.sampling = {"temperature": temperature, "seed": seed}
        return out

    def with_max_tokens(self, n):
        return self

    def with_logprobs(self, top=10):
        return self

    def complete(self, requests, on_done):
        for i, messages in enumerate(requests):
            self.requests.append(messages)
            reply = self.reply(messages)
            if not isinstance(reply, Completion):
                reply = Completion(reply, usage={"prompt_tokens": 1, "completion_tokens": 1})
            on_done(i, reply)

    def close(self):
        pass
