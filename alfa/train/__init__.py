"""Stages 8-9: recipe (the YAML a run is made of, and its dry run), run (SFT, DPO and reward models over
TRL), ref_store (reference log-probs shared by DPO runs), merge (mergekit and peft) and tiny (a config-built
model for tests and the tiny recipes)."""
