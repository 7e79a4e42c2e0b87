"""`alfa stargate`: the dialogue methods that train a questioner (alfa.methods)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_stargate(sub) -> None:
    """alfa stargate"""
    s = sub.add_parser(
        "stargate",
        help="STaR-GATE: train a questioner on its own best sampled conversations with a roleplayer",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Each iteration: the questioner samples conversations with a roleplayer who holds each task's "
        "hidden information; each conversation is scored by the log-probability of the gold response (an "
        "oracle's, or a case's answer) under the initial model; the best per task are kept, with a final answer as "
        "regulariser; the initial model is fine-tuned on them (the loss on the questioner's turns only) and the "
        "result is the next iteration's questioner. CONFIG maps onto alfa.methods.stargate.StarGateConfig; a "
        "rerun resumes from what is done (OUTPUT/iter_K/summary.json, the call cache).",
        epilog="Examples:\n"
        "  alfa stargate configs/stargate/mediq_smollm2.yaml    # MediQ dev cases, SmolLM2 questioner, embedded roleplayer\n"
        "  alfa stargate configs/stargate/tiny.yaml             # seconds: the tiny model, examples/stargate_*.jsonl\n"
        "Then: alfa eval interactive CASES --questioner transformers:OUTPUT/iter_0/model ...\n"
        "Method and figures: docs/methods.md",
    )
    s.add_argument("config", help="STaR-GATE YAML (see configs/stargate/)")
    s.set_defaults(func=_stargate)


def _stargate(args) -> int:
    from alfa.methods.stargate import load_config
    from alfa.methods.stargate_run import run_stargate

    summaries = run_stargate(load_config(Path(args.config)))
    for summary in summaries:
        print(json.dumps({k: v for k, v in summary.items() if k not in ("calls", "oracle_calls")}))
    return 0
