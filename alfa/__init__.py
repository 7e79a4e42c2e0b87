"""alfa: teach language models to ask good clarifying questions.

The folders follow the flow, and imports only run downward (checked by import-linter, see pyproject.toml):

    llm/       model backends every stage shares: OpenAI-compatible HTTP, transformers, the call cache,
               the embedded models
    data/      stages 1-6: ingest, synthesize, verify & filter, pairs, lint, card (and `build` for all of them)
    dialogue/  multi-turn conversations between simulated roles (room for the dialogue engine)
    review/    stage 7: human review in Argilla
    train/     stages 8-9: recipes over TRL, the reference log-prob store, merging
    eval/      stage 10: how good the trained models are
    methods/   other ways to teach asking, built on the layers below (room for STaR-GATE, CollabLLM, ...)
    cli/       the `alfa` command: thin glue over the functions above
"""
