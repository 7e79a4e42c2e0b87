"""A real OpenAI-compatible chat server on loopback for tests: `/v1/chat/completions` answered by a
real transformers model (the tiny test Llama), with faults injected on chosen or random requests.

Faults: 429 (with Retry-After), 500, slow (sleeps past the client's timeout), drop (closes the
connection without answering), bad_json, empty_choices, 401. Every hit is counted; `/stats` returns
the counts and the cache keys of the requests answered successfully.

Run in-process with `serve_in_thread(...)`, or as its own process:
    python tests/chat_server.py --model DIR --fault-rate 0.2 --port-file PORT_FILE
"""

from __future__ import annotations

import argparse
import asyncio
import random
import threading
from pathlib import Path

from aiohttp import web

from alfa.llm.cache import call_key
from alfa.llm.endpoint import endpoint_cache_id

FAULTS = ("429", "500", "slow", "drop", "bad_json", "empty_choices")


class ChatServer:
    def __init__(self, model, fault_rate: float = 0.0, seed: int = 0, slow_s: float = 3.0):
        self.model = model
        self.hits = 0
        self.faults: dict[int, str] = {}  # hit number -> fault, for exact scenarios
        self.fault_rate = fault_rate
        self.rng = random.Random(seed)
        self.slow_s = slow_s
        self.answered: list[str] = []  # cache keys of requests answered with 200 + a completion
        self.fault_log: list[str] = []
        self.auth_headers: list[str | None] = []
        self.lock = threading.Lock()

    def reset(self):
        self.hits, self.faults, self.answered, self.fault_log, self.auth_headers = 0, {}, [], [], []

    async def chat(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        hit = self.hits
        self.auth_headers.append(request.headers.get("Authorization"))
        body = await request.json()
        fault = self.faults.get(hit)
        if fault is None and self.fault_rate and self.rng.random() < self.fault_rate:
            fault = self.rng.choice(FAULTS)
        if fault:
            self.fault_log.append(fault)
        if fault == "429":
            return web.Response(status=429, text="slow down", headers={"Retry-After": "0"})
        if fault == "500":
            return web.Response(status=500, text="boom")
        if fault == "401":
            return web.Response(status=401, text="bad key")
        if fault == "echo_headers":  # some gateways echo the request back in their error body
            return web.Response(status=400, text=f"bad request; headers were {dict(request.headers)}")
        if fault == "slow":
            await asyncio.sleep(self.slow_s)
        if fault == "drop":
            request.transport.close()
            return web.Response(status=200)
        if fault == "empty_choices":
            return web.json_response({"choices": []})
        if fault in ("empty_content", "null_content"):  # a 200 with a choice but no text
            return web.json_response(
                {
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": "" if fault == "empty_content" else None},
                        }
                    ]
                }
            )
        if fault == "bad_json":
            return web.Response(status=200, text="{not json", content_type="application/json")
        out = {}

        def generate():
            with self.lock:
                self.model.complete([body["messages"]], lambda i, c: out.update(text=c.text, usage=c.usage))

        await asyncio.get_running_loop().run_in_executor(None, generate)
        # Recorded under the key alfa's cache uses for this request, so tests can match the two.
        self.answered.append(
            call_key(
                endpoint_cache_id(body["model"], self.listing()),
                body["messages"],
                {"temperature": body["temperature"], "max_tokens": body["max_tokens"]},
            )
        )
        return web.json_response(
            {
                "id": f"c{hit}",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": out["text"]}, "finish_reason": "stop"}
                ],
                "usage": out["usage"],
            }
        )

    def listing(self) -> dict:
        """What /v1/models reports: like llama.cpp, whatever name is asked for, the one model it serves,
        with the identity of its weights."""
        return {
            "object": "list",
            "data": [
                {"id": "tiny", "object": "model", "owned_by": "alfa-tests", "meta": {"weights": self.model.cache_id}}
            ],
        }

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response(self.listing())

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response({"hits": self.hits, "answered": self.answered, "faults": self.fault_log})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/stats", self.stats)
        return app


def serve_in_thread(server: ChatServer):
    """Start on a free loopback port in a daemon thread; returns (base_url, stop)."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(server.app(), shutdown_timeout=0.1)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = site._server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def stop():
        """Close the listening socket and every connection (clients see refused / dropped connections: a
        server that died), then end the thread."""
        if not loop.is_running():
            return
        try:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)

    return f"http://127.0.0.1:{port}/v1", stop


def main():
    from alfa.llm.backends import TransformersBackend

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", required=True)
    p.add_argument("--fault-rate", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--port-file", required=True)
    args = p.parse_args()
    server = ChatServer(TransformersBackend(args.model, batch_size=1, max_new_tokens=8), args.fault_rate, args.seed)
    url, _ = serve_in_thread(server)
    Path(args.port_file).write_text(url)
    threading.Event().wait()


if __name__ == "__main__":
    main()
