"""The clients the synthesis benchmark compares, each sending N chat requests at concurrency C to an
OpenAI-compatible base URL and returning the wall time. Run one from the command line (used to run
distilabel from its own virtualenv):

    python bench/clients.py {minimal,alfa,openai_sdk,distilabel} BASE_URL N C
"""

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse


def messages(i: int) -> list[dict]:
    # Distinct requests: no client may answer one from a cache or merge duplicates.
    return [
        {"role": "system", "content": "Rewrite the doctor's question."},
        {"role": "user", "content": f"Patient post {i}: my knee hurts when I climb stairs. Question: Any pain?"},
    ]


def minimal(url: str, n: int, c: int) -> float:
    """The practical limit: C raw asyncio HTTP/1.1 keep-alive connections, no library, no parsing
    beyond Content-Length."""
    u = urlparse(url)
    path = u.path.rstrip("/") + "/chat/completions"

    async def worker(counter):
        reader, writer = await asyncio.open_connection(u.hostname, u.port)
        while counter[0] < n:
            i = counter[0]
            counter[0] += 1
            body = json.dumps({"model": "bench", "messages": messages(i), "max_tokens": 16}).encode()
            writer.write(
                f"POST {path} HTTP/1.1\r\nHost: {u.hostname}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(
                next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
            )
            json.loads(await reader.readexactly(length))
        writer.close()

    async def run():
        counter = [0]
        await asyncio.gather(*(worker(counter) for _ in range(c)))

    t = time.perf_counter()
    asyncio.run(run())
    return time.perf_counter() - t


def alfa(url: str, n: int, c: int) -> float:
    """alfa's whole synthesis call path: ChatEndpoint plus the disk cache (a fresh one)."""
    from alfa.llm.cache import CallCache
    from alfa.llm.calls import CallStats, run_calls
    from alfa.llm.endpoint import ChatEndpoint

    rw = ChatEndpoint("bench", url, concurrency=c, max_tokens=16, max_retries=0)
    with tempfile.TemporaryDirectory() as d:
        cache = CallCache(Path(d) / "cache.sqlite")
        reqs = [messages(i) for i in range(n)]
        stats = CallStats()
        t = time.perf_counter()
        out, _ = run_calls(rw, cache, reqs, f"alfa c={c}", stats)
        dt = time.perf_counter() - t
        assert stats.failed == 0 and len(out) == n and len(cache) == n, stats
        cache.close()
    return dt


def openai_sdk(url: str, n: int, c: int) -> float:
    """The openai SDK's AsyncOpenAI with a semaphore: what most hand-written scripts do."""
    from openai import AsyncOpenAI

    async def run():
        client = AsyncOpenAI(base_url=url, api_key="bench", max_retries=0)
        sem = asyncio.Semaphore(c)

        async def one(i):
            async with sem:
                r = await client.chat.completions.create(model="bench", messages=messages(i), max_tokens=16)
                return r.choices[0].message.content

        out = await asyncio.gather(*(one(i) for i in range(n)))
        await client.close()
        assert len(out) == n

    t = time.perf_counter()
    asyncio.run(run())
    return time.perf_counter() - t


def distilabel(url: str, n: int, c: int) -> float:
    """distilabel 1.5's OpenAILLM, the LLM its TextGeneration step calls, fed batches of C inputs as
    a step is (input_batch_size = C)."""
    from distilabel.models.llms import OpenAILLM

    llm = OpenAILLM(model="bench", base_url=url, api_key="bench", max_retries=0)
    llm.load()
    t = time.perf_counter()
    done = 0
    for start in range(0, n, c):
        batch = [messages(i) for i in range(start, min(n, start + c))]
        done += len(llm.generate_outputs(inputs=batch, max_new_tokens=16))
    dt = time.perf_counter() - t
    assert done == n
    return dt


CLIENTS = {"minimal": minimal, "alfa": alfa, "openai_sdk": openai_sdk, "distilabel": distilabel}

if __name__ == "__main__":
    name, url, n, c = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    print(json.dumps({"client": name, "n": n, "c": c, "seconds": CLIENTS[name](url, n, c)}))
