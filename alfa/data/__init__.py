"""Stages 1-6 of the flow, each a plain function and a CLI verb:
ingest -> synthesize -> filter (inside pairs; optional LLM judge) -> pairs -> lint -> card,
and pipeline (`alfa build`) for all of them from one YAML. Attribute packs live in attribute_packs/."""
