"""Model backends every stage shares: an OpenAI-compatible HTTP client, local transformers generation,
the on-disk call cache, `run_calls` (answer a batch from the cache where possible) and the embedded models
that ship on PyPI. Imports nothing else of alfa's."""
