"""The call cache never hands one model's answers to another: local weights are identified by their
content (and the chat template), an endpoint by what its /models reports; cached answers keep their cost."""

from __future__ import annotations

import json
import os
import shutil
import time

from chat_server import ChatServer, serve_in_thread
from conftest import SAMPLE, SAMPLE_MAP

from alfa.data.attributes import load_pack
from alfa.data.ingest import ingest, parse_map
from alfa.data.synthesize import SynthesisConfig, synthesize
from alfa.llm.backends import DIGEST_FILE, TransformersBackend, weights_digest
from alfa.llm.endpoint import ChatEndpoint


def _copy(src, dst):
    shutil.copytree(src, dst)
    (dst / DIGEST_FILE).unlink(missing_ok=True)
    return dst


def test_a_model_retrained_into_the_same_folder_is_another_model(tmp_path, tiny_model_dir):
    folder = _copy(tiny_model_dir, tmp_path / "model")
    before = TransformersBackend(folder).cache_id
    assert (folder / DIGEST_FILE).exists()  # computed once, kept beside the weights
    assert TransformersBackend(folder).cache_id == before  # and reused while the files are unchanged
    weights = next(folder.glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # one byte of the weights changes, the file size does not
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert TransformersBackend(folder).cache_id != before
    assert weights_digest(folder) == json.loads((folder / DIGEST_FILE).read_text())["sha256"]


def test_another_chat_template_is_another_cache_identity(tmp_path, tiny_model_dir):
    folder = _copy(tiny_model_dir, tmp_path / "model")
    before = TransformersBackend(folder).cache_id
    config = json.loads((folder / "tokenizer_config.json").read_text())
    template = folder / "chat_template.jinja"
    if template.exists():
        template.write_text(template.read_text() + "{# another template #}")
    else:
        config["chat_template"] += "{# another template #}"
        (folder / "tokenizer_config.json").write_text(json.dumps(config))
    assert TransformersBackend(folder).cache_id != before


def test_an_endpoint_serving_other_weights_under_the_same_name_gets_no_old_answer(tmp_path, tiny_model_dir):
    """Like llama.cpp, the test server ignores the model name; its /models reports the weights it serves."""
    questions = ingest(SAMPLE, parse_map(SAMPLE_MAP)).questions.head(2)
    pack = load_pack("core").select(["clarity"])
    run, cache = tmp_path / "run", tmp_path / "cache.sqlite"
    other = _copy(tiny_model_dir, tmp_path / "other")
    data = bytearray(next(other.glob("*.safetensors")).read_bytes())
    data[-1] ^= 0x01
    next(other.glob("*.safetensors")).write_bytes(bytes(data))
    for folder, expect_calls in ((tiny_model_dir, 4), (tiny_model_dir, 0), (other, 4)):
        chat = ChatServer(TransformersBackend(folder, batch_size=1, max_new_tokens=8))
        chat.url, stop = serve_in_thread(chat)
        try:
            stats = synthesize(
                questions,
                pack,
                ChatEndpoint("tiny", chat.url, max_tokens=8),
                run,
                SynthesisConfig(cache=cache, samples=1),
            )
        finally:
            stop()
        assert chat.hits == stats.calls_made == expect_calls


def test_cached_answers_keep_their_token_usage(tmp_path, tiny_model_dir):
    questions = ingest(SAMPLE, parse_map(SAMPLE_MAP)).questions.head(2)
    pack = load_pack("core").select(["clarity"])
    rewriter = TransformersBackend(tiny_model_dir, batch_size=4, max_new_tokens=8)
    first = synthesize(questions, pack, rewriter, tmp_path / "run", SynthesisConfig(samples=1))
    again = synthesize(questions, pack, rewriter, tmp_path / "run", SynthesisConfig(samples=1))
    assert first.prompt_tokens > 0 and again.calls_made == 0 and again.prompt_tokens == 0
    assert (again.cached_prompt_tokens, again.cached_completion_tokens) == (
        first.prompt_tokens,
        first.completion_tokens,
    )
    stats = json.loads((tmp_path / "run" / "run.json").read_text())["stats"]
    assert stats["cached_prompt_tokens"] == first.prompt_tokens
