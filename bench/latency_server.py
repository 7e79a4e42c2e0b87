"""Benchmark harness, not a model: an OpenAI-compatible chat endpoint on loopback that answers every
request with the same short completion after a fixed delay. It isolates what the benchmark measures:
how many requests per second a *client* sustains against an endpoint with a given latency.

    python bench/latency_server.py --latency-ms 50 --port-file /tmp/port
"""

import argparse
import asyncio
from pathlib import Path

from aiohttp import web

REPLY = {
    "id": "bench",
    "object": "chat.completion",
    "model": "bench",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Is the pain worse at night?"},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 50, "completion_tokens": 8, "total_tokens": 58},
}


def app(latency_s: float) -> web.Application:
    hits = {"n": 0}

    async def chat(request: web.Request) -> web.Response:
        await request.read()
        hits["n"] += 1
        await asyncio.sleep(latency_s)
        return web.json_response(REPLY)

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(hits)

    async def models(request: web.Request) -> web.Response:  # what alfa's call cache identifies the model by
        return web.json_response({"object": "list", "data": [{"id": "bench", "object": "model"}]})

    a = web.Application()
    a.router.add_post("/v1/chat/completions", chat)
    a.router.add_get("/stats", stats)
    a.router.add_get("/v1/models", models)
    return a


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--latency-ms", type=float, default=50)
    p.add_argument("--port-file", required=True)
    args = p.parse_args()

    async def run():
        runner = web.AppRunner(app(args.latency_ms / 1000), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
        await site.start()
        Path(args.port_file).write_text(str(site._server.sockets[0].getsockname()[1]))
        await asyncio.Event().wait()

    asyncio.run(run())


if __name__ == "__main__":
    main()
