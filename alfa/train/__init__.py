"""Stages 8-9: recipe (the YAML a run is made of), model_options (its model block), checks (the dry run),
launch (the accelerate command, per node), run (SFT, DPO and reward models over TRL; resuming), ref_store
(reference log-probs shared by DPO runs), merge (mergekit and peft) and tiny (a config-built model for tests
and the tiny recipes)."""
