"""Rewriter backends behind one small interface.

A rewriter turns chat requests into completions:

    rewriter.complete(requests, on_done)   # calls on_done(index, Completion) as each one finishes

plus `backend`, `model_id` (the name cards show), `sampling` and `cache_id` (what the call cache keys on,
with `sampling`: the model's identity, see weights_digest and endpoint_cache_id). Three backends:

- `TransformersRewriter`: any local causal LM folder, batched greedy generation, on the GPU when there is one.
- `local`: the same class on the embedded SmolLM2-135M-Instruct (see alfa.llm.embedded), fully offline.
- `OpenAIRewriter`: any OpenAI-compatible chat endpoint (OpenAI, vLLM, TGI, llama.cpp server),
  async with bounded concurrency and retries; the API key comes from an environment variable.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import os
import random
import re
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


def default_device() -> str:
    """Where local models run: $ALFA_DEVICE if set (cpu, cuda, cuda:1, mps), else the GPU when there is one."""
    import torch

    return os.environ.get("ALFA_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")
DIGEST_FILE = "alfa-weights.sha256.json"


def weights_digest(model_dir: Path) -> str:
    """Content digest of a model folder's weight files: sha256 over every weight file's bytes, computed once
    and kept beside them (DIGEST_FILE, or under $ALFA_CACHE when the folder is read-only). Recomputed when a
    file's size or modification time changes, so a model retrained into the same folder is another model."""
    model_dir = Path(model_dir).resolve()
    files = sorted(p for p in model_dir.iterdir() if p.name.endswith(WEIGHT_SUFFIXES))
    if not files:
        raise FileNotFoundError(f"{model_dir}: no weight files ({', '.join(WEIGHT_SUFFIXES)})")
    stamp = {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in files}
    cache = Path(os.environ.get("ALFA_CACHE", Path.home() / ".cache" / "alfa")) / "weights-digests"
    sidecars = [model_dir / DIGEST_FILE, cache / (hashlib.sha256(str(model_dir).encode()).hexdigest()[:16] + ".json")]
    for sidecar in sidecars:
        if sidecar.exists():
            kept = json.loads(sidecar.read_text())
            if kept.get("files") == stamp:
                return kept["sha256"]
    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode() + b"\0")
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 24), b""):
                h.update(block)
    digest = h.hexdigest()
    for sidecar in sidecars:
        try:
            sidecar.parent.mkdir(parents=True, exist_ok=True)
            sidecar.write_text(json.dumps({"sha256": digest, "files": stamp}, indent=1))
            break
        except OSError:  # a read-only model folder (site-packages, a shared mount): keep it in alfa's cache
            continue
    return digest


def endpoint_cache_id(model: str, listing: dict | None) -> str:
    """The identity of a served model for the call cache: its name plus what the server's /models reports
    for it (llama.cpp ignores the request's model name and reports its weights' metadata there)."""
    if listing is None:
        return f"{model}|served=unlisted"
    entries = listing.get("data") or listing.get("models") or []
    mine = [e for e in entries if isinstance(e, dict) and e.get("id") == model] or entries
    return f"{model}|served={hashlib.sha256(json.dumps(mine, sort_keys=True).encode()).hexdigest()[:16]}"


class TransformersRewriter:
    """Batched generation with a local transformers model (a folder with config + weights + tokenizer)."""

    backend = "transformers"

    def __init__(
        self,
        model_path: str | Path,
        batch_size: int = 16,
        max_new_tokens: int = 40,
        stop: tuple[str, ...] = ("?",),
        model_name: str | None = None,
    ):
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
        self.device = default_device()
        self.model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=torch.float32).to(self.device).eval()
        self.batch_size = batch_size
        # Generation stops at the first '?': we want one question, and a small model rambles on.
        self.sampling = {"do_sample": False, "max_new_tokens": max_new_tokens, "stop": list(stop)}
        digest = weights_digest(self.model_path)
        self.model_id = model_name or f"{self.model_path.name}@{digest[:12]}"
        # What the cache keys on: the weights' content and the chat template that renders every request.
        template = hashlib.sha256(self.tokenizer.chat_template.encode()).hexdigest()[:12]
        self.cache_id = f"{self.model_id}|weights={digest[:16]}|chat_template={template}"

    def close(self) -> None:
        """Nothing to release: the model lives as long as this object."""

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
        suffixes = [f[len(prefix) :] for f in full]
        prefix_ids = (
            tok(prefix, return_tensors="pt", add_special_tokens=False)["input_ids"].to(self.device) if prefix else None
        )
        prefix_cache = None
        if prefix_ids is not None and prefix_ids.shape[1]:
            with torch.inference_mode():
                prefix_cache = self.model(input_ids=prefix_ids, use_cache=True).past_key_values
        # Longest first, so each batch holds prompts of similar length (less padding).
        order = sorted(range(len(suffixes)), key=lambda i: -len(suffixes[i]))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            enc = tok([suffixes[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
            input_ids, mask = enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)
            kwargs = {}
            if prefix_cache is not None:
                # [prefix][left-padded suffix]: padding sits in the middle, masked out; positions
                # come from the mask's cumulative sum, so they match an unpadded prompt.
                n = len(idx)
                input_ids = torch.cat([prefix_ids.expand(n, -1), input_ids], dim=1)
                mask = torch.cat(
                    [torch.ones(n, prefix_ids.shape[1], dtype=mask.dtype, device=self.device), mask], dim=1
                )
                cache = copy.deepcopy(prefix_cache)
                cache.batch_repeat_interleave(n)
                kwargs["past_key_values"] = cache
            with torch.inference_mode():
                out = self.model.generate(
                    input_ids=input_ids,
                    attention_mask=mask,
                    do_sample=False,
                    max_new_tokens=self.sampling["max_new_tokens"],
                    stop_strings=self.sampling["stop"] or None,
                    tokenizer=tok,
                    pad_token_id=tok.pad_token_id,
                    **kwargs,
                )
            new = out[:, input_ids.shape[1] :]
            prompt_tokens = mask.sum(dim=1).tolist()
            for j, (i, row) in enumerate(zip(idx, new)):
                n_tokens = int((row != tok.pad_token_id).sum())
                on_done(
                    i,
                    Completion(
                        tok.decode(row, skip_special_tokens=True),
                        usage={"prompt_tokens": prompt_tokens[j], "completion_tokens": n_tokens},
                    ),
                )


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
                "%s/models: %s; the cache identifies the model by its name only",
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
                            text = (choices[0].get("message") or {}).get("content") if choices else None
                            if text and text.strip():
                                on_done(i, Completion(text, usage=data.get("usage")))
                                return
                            # a 200 without text is a failed call: retried, never cached as an answer
                            error = "endpoint returned no choices" if not choices else "endpoint returned empty content"
                        else:  # an error body may echo the request's headers: never keep the key
                            error = self._redact(f"HTTP {resp.status}: {(await resp.text())[:200]}")
                            if resp.status not in self.RETRY_STATUS:
                                break  # 400/401/404: retrying cannot help
                            retry_after = resp.headers.get("Retry-After")
                except (aiohttp.ClientError, asyncio.TimeoutError, json.JSONDecodeError, ValueError) as e:
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
        """Stop the llama.cpp server alfa started for this rewriter, if it did (alfa.llm.rewriters)."""
        if self.server is not None:
            self.server.stop()
