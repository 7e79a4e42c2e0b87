"""Rewriter backends behind one small interface.

A rewriter turns chat requests into completions:

    rewriter.complete(requests, on_done)   # calls on_done(index, Completion) as each one finishes

plus `backend`, `model_id` (the name cards show), `sampling` and `cache_id` (what the call cache keys on,
with `sampling`: the model's identity, see weights_digest and alfa.llm.endpoint.endpoint_cache_id). Two backends:

- `TransformersBackend` (here): any local causal LM folder, batched generation, on the GPU when there is one
  (the embedded SmolLM2-135M-Instruct, `smollm2`, runs on it).
- `ChatEndpoint` (alfa.llm.endpoint): any OpenAI-compatible chat endpoint (OpenAI, vLLM, TGI, llama.cpp's
  server), async with bounded concurrency and retries. The embedded default (`local`: Qwen2.5-Coder-1.5B-Instruct
  on llama.cpp's server, alfa.llm.make) runs on it.

Both are greedy by default; `rewriter.with_sampling(temperature, seed)` gives a copy that samples, whose
`sampling` (and so every cache key) carries the temperature and seed: each sample is its own cached call.
`rewriter.with_max_tokens(n)` gives a copy whose replies may be longer (a UoT proposal lists several questions).
`rewriter.with_logprobs()` gives a copy whose replies carry their first token's log-probabilities (a judge's
A-versus-B probability) where the backend reports them.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

log = logging.getLogger(__name__)


@dataclass
class Completion:
    text: str | None
    error: str | None = None
    usage: dict | None = None
    timings: dict | None = None  # the server's own timings when it reports them (llama.cpp: prompt_ms, predicted_ms)


OnDone = Callable[[int, Completion], None]


@runtime_checkable
class Backend(Protocol):
    """What every model backend provides: the one interface alfa's stages, judges, patients and experts call.
    A new serving stack implements these members (tests/test_backends.py checks each shipped backend has them
    with these signatures) and gets a branch in alfa.llm.make.make_backend; run_calls then caches it."""

    backend: str  # the kind, as cards and cache rows show it: transformers, openai
    model_id: str  # the model's name in cards and logs
    sampling: dict  # generation settings (temperature, seed, max tokens): part of every cache key
    cache_id: str  # the model's identity for the call cache (weights digest, or the endpoint's stable listing)

    def complete(self, requests: list[list[dict]], on_done: OnDone) -> None:
        """Answer each chat request; call on_done(index, Completion) as each finishes (errors in Completion.error)."""

    def with_sampling(self, temperature: float, seed: int) -> Backend:
        """A copy that samples with this temperature and seed (each sample its own cached call)."""

    def with_max_tokens(self, n: int) -> Backend:
        """A copy whose replies may be up to n tokens long."""

    def with_logprobs(self, top: int = 10) -> Backend:
        """A copy whose replies carry their first token's top log-probabilities where the backend reports them."""

    def close(self) -> None:
        """Release what the backend holds (a server alfa started, a model in memory)."""


def default_device() -> str:
    """Where local models run: $ALFA_DEVICE if set (cpu, cuda, cuda:1, mps), else the GPU when there is one."""
    import torch

    return os.environ.get("ALFA_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")
DIGEST_FILE = "alfa-weights.sha256.json"


def tokenizer_digest(tokenizer) -> str:
    """The tokenizer's identity: its vocabulary, special tokens and chat template (a cache keyed on weights
    alone would hand a retemplated model the scores of the old template)."""
    payload = json.dumps(
        [sorted(tokenizer.get_vocab().items()), tokenizer.all_special_tokens, tokenizer.chat_template], default=str
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


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


class TransformersBackend:
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

    def with_sampling(self, temperature: float, seed: int) -> TransformersBackend:
        """A copy sharing the loaded model that samples at `temperature`, seeding torch with `seed` before each
        group of requests (a group's samples are reproducible for the same requests)."""
        sampled = copy.copy(self)
        sampled.sampling = {**self.sampling, "do_sample": True, "temperature": temperature, "seed": seed}
        return sampled

    def with_max_tokens(self, n: int) -> TransformersBackend:
        """A copy sharing the loaded model whose replies may run to `n` new tokens."""
        longer = copy.copy(self)
        longer.sampling = {**self.sampling, "max_new_tokens": n}
        return longer

    def with_logprobs(self, top: int = 10) -> TransformersBackend:
        """Itself: this backend reports no log-probabilities, so a judge on it is read by its answers."""
        return self

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
        import torch

        sampling = {"do_sample": False}
        if self.sampling["do_sample"]:
            torch.manual_seed(self.sampling["seed"])
            sampling = {"do_sample": True, "temperature": self.sampling["temperature"], "top_k": 0}

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
                    **sampling,
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
