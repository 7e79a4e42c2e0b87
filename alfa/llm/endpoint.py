"""The OpenAI-compatible backend: any `/v1/chat/completions` endpoint (OpenAI, vLLM, TGI, llama.cpp's own
server), called concurrently over aiohttp with retries, rate limits and replicas. See alfa.llm.backends for the
interface every backend keeps."""

from __future__ import annotations

import asyncio
import copy
import functools
import hashlib
import json
import logging
import os
import random
import re

from alfa.llm.backends import Completion, OnDone

log = logging.getLogger(__name__)


# The fields of a /models entry that say which weights are served. Not `created`: llama.cpp's server (and vLLM,
# SGLang) fills it with the time of the request, so an identity hashed from it changed on every run and a resumed
# run paid for every call again.
STABLE_MODEL_FIELDS = ("id", "root", "parent", "max_model_len", "meta")


def endpoint_cache_id(model: str, listing: dict | None) -> str:
    """The identity of a served model for the call cache: its name plus the stable fields (STABLE_MODEL_FIELDS) of
    what the server's /models reports for it (llama.cpp ignores the request's model name and reports its weights'
    metadata in `meta`)."""
    if listing is None:
        return f"{model}|served=unlisted"
    entries = listing.get("data") or listing.get("models") or []
    mine = [e for e in entries if isinstance(e, dict) and e.get("id") == model] or entries
    stable = [{k: e[k] for k in STABLE_MODEL_FIELDS if k in e} for e in mine if isinstance(e, dict)]
    return f"{model}|served={hashlib.sha256(json.dumps(stable, sort_keys=True).encode()).hexdigest()[:16]}"


class RateLimiter:
    """Requests-per-minute and tokens-per-minute budgets, refilled continuously (token buckets).

    Tokens are estimated before the call (prompt characters / 4 + max_tokens): providers count the
    same way when they admit a request."""

    def __init__(self, requests_per_minute: float | None, tokens_per_minute: float | None):
        self.limits = {"requests": requests_per_minute, "tokens": tokens_per_minute}
        self.level = {k: v for k, v in self.limits.items() if v}
        self.stamp = None

    async def acquire(self, tokens: int) -> None:
        import time

        if not self.level:
            return
        cost = {"requests": 1, "tokens": tokens}
        while True:
            now = time.monotonic()
            if self.stamp is not None:
                for k, cap in self.limits.items():
                    if cap:
                        self.level[k] = min(cap, self.level[k] + (now - self.stamp) * cap / 60)
            self.stamp = now
            short = max(
                (
                    (cost[k] - self.level[k]) * 60 / cap
                    for k, cap in self.limits.items()
                    if cap and self.level[k] < min(cost[k], cap)
                ),
                default=0.0,
            )
            if short <= 0:
                for k, cap in self.limits.items():
                    if cap:
                        self.level[k] -= min(cost[k], cap)
                return
            await asyncio.sleep(short)


def first_token_logprobs(choice: dict) -> dict[str, float]:
    """{token: logprob} of the reply's first token's top alternatives (a request with logprobs and top_logprobs):
    what a judge reads its A-versus-B probability from. Kept in the call's usage, so the cache keeps it too."""
    content = (choice.get("logprobs") or {}).get("content") or []
    if not content:
        return {}
    return {t["token"]: t["logprob"] for t in content[0].get("top_logprobs") or []}


class ChatEndpoint:
    """Any OpenAI-compatible `/v1/chat/completions` endpoint, called concurrently over aiohttp: OpenAI, vLLM,
    SGLang, and llama.cpp's own server (the embedded default, alfa.llm.make.llamacpp_backend).

    aiohttp, because the HTTP client is the bottleneck at scale (see DESIGN: ~1,050 req/s at
    concurrency 64 against ~250 for the openai SDK's default client on the same 2 cores). With several
    base URLs each request goes to the replica with the fewest requests in flight, and a retry prefers
    another replica. Retries: 408/409/429/5xx, timeouts, dropped connections, malformed or empty
    replies, with exponential backoff and jitter, honouring Retry-After. The API key is read from the
    environment variable named by `api_key_env` when a run starts and is never logged or cached.
    """

    backend = "openai"
    RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}

    def __init__(
        self,
        model: str,
        base_urls: list[str] | str,
        concurrency: int = 16,
        max_tokens: int = 64,
        temperature: float = 0.0,
        timeout_s: float = 60.0,
        max_retries: int = 5,
        api_key_env: str = "OPENAI_API_KEY",
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        identity: str | None = None,
    ):
        self.identity = identity  # when the caller knows the served weights (alfa's own llama.cpp server)
        self.server = None  # that server, when alfa started one for this rewriter
        if isinstance(base_urls, str):
            base_urls = [u for u in base_urls.split(",") if u]
        if not base_urls:
            raise ValueError("--base-url is required for the openai rewriter (e.g. http://localhost:8000/v1)")
        self.base_urls = [u.rstrip("/") for u in base_urls]
        self.model_id = model  # the name cards show (alfa's own llama.cpp server gives a friendlier one)
        self.request_model = model  # the name each request carries
        self.sampling = {"temperature": temperature, "max_tokens": max_tokens}
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.api_key_env = api_key_env
        self.rpm, self.tpm = requests_per_minute, tokens_per_minute
        self.in_flight = [0] * len(self.base_urls)

    def with_logprobs(self, top: int = 10) -> ChatEndpoint:
        """A copy whose replies carry their first token's `top` log-probabilities (in usage, see first_token_logprobs)."""
        scoring = copy.copy(self)
        scoring.sampling = {**self.sampling, "logprobs": True, "top_logprobs": top}
        return scoring

    def with_sampling(self, temperature: float, seed: int) -> ChatEndpoint:
        """A copy (same endpoint, same server) whose requests sample at `temperature` with `seed`: servers that
        honour `seed` (llama.cpp, vLLM, OpenAI's best effort) answer the same request the same way."""
        sampled = copy.copy(self)
        sampled.sampling = {**self.sampling, "temperature": temperature, "seed": seed}
        return sampled

    def with_max_tokens(self, n: int) -> ChatEndpoint:
        """A copy (same endpoint) whose replies may run to `n` tokens."""
        longer = copy.copy(self)
        longer.sampling = {**self.sampling, "max_tokens": n}
        return longer

    def _headers(self) -> dict:
        key = os.environ.get(self.api_key_env)
        return {"Authorization": f"Bearer {key}"} if key else {}

    @functools.cached_property
    def cache_id(self) -> str:
        """The model name plus the first replica's /models listing, fetched once (unlisted if it has none)."""
        import urllib.error
        import urllib.request

        if self.identity:
            return self.identity
        request = urllib.request.Request(self.base_urls[0] + "/models", headers=self._headers())
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as resp:
                listing = json.loads(resp.read())
        except (urllib.error.URLError, OSError, ValueError) as e:
            log.warning(
                "%s/models: %s; the cache identifies the model by its name only (a run against a listing server "
                "keys its calls differently: it will not reuse these answers)",
                self.base_urls[0],
                self._redact(str(e)),
            )
            listing = None
        return endpoint_cache_id(self.model_id, listing)

    def _redact(self, text: str) -> str:
        key = os.environ.get(self.api_key_env)
        text = text.replace(key, "<redacted>") if key else text
        return re.sub(r"(?i)(bearer\s+)\S+", r"\1<redacted>", text)

    def _pick(self, avoid: int | None) -> int:
        """The replica with the fewest requests in flight, other than `avoid` when there is a choice."""
        choices = [u for u in range(len(self.base_urls)) if u != avoid] or [0]
        return min(choices, key=lambda u: self.in_flight[u])

    async def _one(self, session, sem, limiter, i: int, messages: list[dict], on_done: OnDone) -> None:
        import aiohttp

        body = {"model": self.request_model, "messages": messages, **self.sampling}
        estimate = sum(len(m["content"]) for m in messages) // 4 + self.sampling["max_tokens"]
        error, last = "not attempted", None
        async with sem:
            for attempt in range(self.max_retries + 1):
                await limiter.acquire(estimate)
                u = self._pick(last)
                last = u
                self.in_flight[u] += 1
                retry_after = None
                try:
                    async with session.post(self.base_urls[u] + "/chat/completions", json=body) as resp:
                        if resp.status == 200:
                            data = await resp.json(content_type=None)
                            choices = data.get("choices") if isinstance(data, dict) else None
                            text = (choices[0].get("message") or {}).get("content") if choices else None
                            if text and text.strip():
                                usage = dict(data.get("usage") or {})
                                if self.sampling.get("logprobs"):
                                    usage["first_token_logprobs"] = first_token_logprobs(choices[0])
                                on_done(i, Completion(text, usage=usage, timings=data.get("timings")))
                                return
                            # a 200 without text is a failed call: retried, never cached as an answer
                            error = "endpoint returned no choices" if not choices else "endpoint returned empty content"
                        else:  # an error body may echo the request's headers: never keep the key
                            error = self._redact(f"HTTP {resp.status}: {(await resp.text())[:200]}")
                            if resp.status not in self.RETRY_STATUS:
                                break  # 400/401/404: retrying cannot help
                            retry_after = resp.headers.get("Retry-After")
                except (aiohttp.ClientError, asyncio.TimeoutError, json.JSONDecodeError, ValueError) as e:
                    if self.server is not None and isinstance(e, aiohttp.ClientConnectorError):
                        # alfa's own server refusing connections is gone, not busy: stop the run rather than
                        # fail every remaining call after its retries; what was answered stays cached
                        raise RuntimeError(self.server.stopped_message()) from e
                    error = self._redact(f"{type(e).__name__}: {e}"[:300]) if str(e) else type(e).__name__
                finally:
                    self.in_flight[u] -= 1
                if attempt < self.max_retries:
                    try:
                        delay = float(retry_after)
                    except (TypeError, ValueError):
                        delay = min(30.0, 0.25 * 2**attempt) * (0.5 + random.random())
                    await asyncio.sleep(delay)
        on_done(i, Completion(None, error=error))

    async def _run(self, requests: list[list[dict]], on_done: OnDone) -> None:
        import aiohttp

        sem = asyncio.Semaphore(self.concurrency)
        limiter = RateLimiter(self.rpm, self.tpm)
        connector = aiohttp.TCPConnector(limit=self.concurrency, limit_per_host=self.concurrency)
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)  # per request
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=self._headers()) as s:
            await asyncio.gather(*(self._one(s, sem, limiter, i, m, on_done) for i, m in enumerate(requests)))

    def complete(self, requests: list[list[dict]], on_done: OnDone) -> None:
        asyncio.run(self._run(requests, on_done))

    def close(self) -> None:
        """Stop the llama.cpp server alfa started for this rewriter, if it did (alfa.llm.make)."""
        if self.server is not None:
            self.server.stop()
