"""The backend protocol (alfa.llm.backends.Backend): every shipped backend, and the scripted stand-in the tests
use, provides each member with the protocol's signature, so a stage written against the protocol runs on any."""

from __future__ import annotations

import inspect

from scripted import ScriptedBackend

from alfa.llm.backends import Backend, TransformersBackend
from alfa.llm.endpoint import ChatEndpoint
from alfa.llm.llamacpp import free_port

METHODS = ["complete", "with_sampling", "with_max_tokens", "with_logprobs", "close"]
ATTRIBUTES = ["backend", "model_id", "sampling", "cache_id"]


def _parameters(fn) -> list[str]:
    return [p for p in inspect.signature(fn).parameters if p != "self"]


def test_every_backend_provides_the_protocol_with_its_signatures(tiny_model_dir):
    backends = [
        TransformersBackend(tiny_model_dir, batch_size=1, max_new_tokens=2),
        ChatEndpoint("m", f"http://127.0.0.1:{free_port()}/v1"),  # nothing listens: its listing is "unlisted"
        ScriptedBackend("scripted", reply=lambda messages, seed: "A?"),
    ]
    for b in backends:
        assert isinstance(b, Backend), type(b).__name__
        for name in ATTRIBUTES:
            assert isinstance(getattr(b, name), (str, dict)), (type(b).__name__, name)
        for name in METHODS:
            assert _parameters(getattr(type(b), name)) == _parameters(getattr(Backend, name)), (type(b).__name__, name)
        for copy in (b.with_sampling(0.7, 1), b.with_max_tokens(8), b.with_logprobs()):
            assert isinstance(copy, Backend)
        b.close()


def test_the_protocol_lists_what_the_docs_list():
    from pathlib import Path

    text = (Path(__file__).parents[1] / "docs" / "architecture.md").read_text()
    section = text[text.index("**A backend**") :].split("\n- **")[0]
    for name in ATTRIBUTES + METHODS:
        assert f"`{name}" in section, name
