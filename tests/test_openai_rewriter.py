"""The openai backend against a real HTTP server on loopback that speaks the OpenAI chat API and
serves a real (tiny) transformers model, with faults injected on chosen requests."""

import asyncio
import json
import threading

import pytest
from aiohttp import web

from alfa.attributes import load_pack
from alfa.ingest import ingest, parse_map
from alfa.rewriters import OpenAIRewriter, TransformersRewriter
from alfa.synthesize import synthesize
from conftest import SAMPLE, SAMPLE_MAP


class ChatServer:
    """/v1/chat/completions backed by a TransformersRewriter. `faults` maps hit number -> fault."""

    def __init__(self, model: TransformersRewriter):
        self.model = model
        self.hits = 0
        self.faults: dict[int, str] = {}
        self.auth_headers: list[str | None] = []
        self.lock = threading.Lock()

    async def chat(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        hit = self.hits
        self.auth_headers.append(request.headers.get("Authorization"))
        body = await request.json()
        fault = self.faults.get(hit)
        if fault == "429":
            return web.Response(status=429, text="slow down", headers={"Retry-After": "0"})
        if fault == "500":
            return web.Response(status=500, text="boom")
        if fault == "empty_choices":
            return web.json_response({"choices": []})
        if fault == "bad_json":
            return web.Response(status=200, text="{not json", content_type="application/json")
        if fault == "401":
            return web.Response(status=401, text="bad key")
        out = {}

        def generate():
            with self.lock:
                self.model.complete([body["messages"]], lambda i, c: out.update(text=c.text, usage=c.usage))

        await asyncio.get_running_loop().run_in_executor(None, generate)
        return web.json_response({"id": f"c{hit}", "object": "chat.completion", "model": body["model"],
                                  "choices": [{"index": 0, "message": {"role": "assistant", "content": out["text"]},
                                               "finish_reason": "stop"}],
                                  "usage": out["usage"]})


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    chat = ChatServer(TransformersRewriter(tiny_model_dir, batch_size=1, max_new_tokens=8))
    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat.chat)
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = site._server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    chat.url = f"http://127.0.0.1:{port}/v1"
    yield chat
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


@pytest.fixture
def questions():
    return ingest(SAMPLE, parse_map(SAMPLE_MAP)).questions.head(3)


def test_synthesis_over_http_retries_faults_and_caches(tmp_path, server, questions, monkeypatch):
    monkeypatch.setenv("ALFA_TEST_KEY", "sk-secret-value")
    server.hits, server.auth_headers = 0, []
    server.faults = {1: "429", 2: "500", 3: "empty_choices", 4: "bad_json"}
    rw = OpenAIRewriter("tiny", server.url, concurrency=4, max_tokens=8, max_retries=5, api_key_env="ALFA_TEST_KEY")
    stats = synthesize(questions, load_pack("core"), rw, tmp_path / "run")
    assert stats.requests == 18 and stats.failed == 0
    assert server.hits == 18 + 4  # each injected fault cost exactly one extra request
    assert set(server.auth_headers) == {"Bearer sk-secret-value"}
    # the key is never written anywhere in the run dir
    for f in (tmp_path / "run").iterdir():
        assert b"sk-secret-value" not in f.read_bytes(), f
    # a rerun makes no request at all
    server.hits = 0
    stats = synthesize(questions, load_pack("core"), rw, tmp_path / "run")
    assert server.hits == 0 and stats.cache_hits == 18


def test_failed_calls_are_recorded_and_retried_next_run(tmp_path, server, questions):
    server.hits = 0
    server.faults = {i: "401" for i in range(1, 4)}  # not retryable: fail at once
    rw = OpenAIRewriter("tiny", server.url, concurrency=1, max_tokens=8, max_retries=2)
    pack = load_pack("core").select(["clarity"])
    stats = synthesize(questions, pack, rw, tmp_path / "run")
    assert stats.failed == 3 and server.hits == 6
    failed = [json.loads(x) for x in (tmp_path / "run" / "failed_calls.jsonl").read_text().splitlines()]
    assert len(failed) == 3 and all("HTTP 401" in f["error"] for f in failed)
    server.hits, server.faults = 0, {}
    stats = synthesize(questions, pack, rw, tmp_path / "run")
    assert server.hits == 3 and stats.failed == 0 and stats.cache_hits == 3  # only the failed ones again
    assert (tmp_path / "run" / "failed_calls.jsonl").read_text() == ""


def test_unreachable_endpoint_fails_with_reasons_not_a_crash(tmp_path, questions):
    rw = OpenAIRewriter("tiny", "http://127.0.0.1:9/v1", concurrency=2, max_retries=1, timeout_s=5)
    stats = synthesize(questions.head(1), load_pack("core").select(["clarity"]), rw, tmp_path / "run")
    assert stats.failed == 2
    failed = [json.loads(x) for x in (tmp_path / "run" / "failed_calls.jsonl").read_text().splitlines()]
    assert all("Connect" in f["error"] or "connect" in f["error"] for f in failed)
