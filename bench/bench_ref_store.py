"""Reference log-prob store: 6 per-attribute DPO runs + 1 mixed run from the same model, with alfa's
shared store against plain TRL (precompute_ref_log_probs=True, which recomputes per dataset), side by
side in one process. Prints wall times, reference forward passes and the ratio.

    .venv/bin/python bench/bench_ref_store.py [--model PATH] [--pairs-per-attribute 48] [--steps 5]

Without --model it builds a small Llama from a config (alfa.train.tiny, hidden 256, 4 layers):
CPU-sized, so the reference pass is a realistic share of each short run.
"""

import argparse
import json
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alfa.data.pairs import PAIR_SCHEMA, write_split_files  # noqa: E402
from alfa.train.run import run_recipe  # noqa: E402

ATTRIBUTES = [
    "clarity",
    "focus",
    "answerability",
    "medical_accuracy",
    "diagnostic_relevance",
    "avoiding_diagnostic_bias",
]
POST = (
    "I'm 45M and for two weeks I have had a dull ache in my lower back that gets worse after sitting and "
    "better when I walk. No injury that I remember. Ibuprofen helps a little. Should I worry?"
)


def make_model(root: Path) -> Path:
    from alfa.train.tiny import build_tiny_llama

    return build_tiny_llama(root / "model", hidden_size=256, num_layers=4)


def make_pairs(root: Path, per_attribute: int) -> Path:
    rows = []
    for a in ATTRIBUTES:
        for i in range(per_attribute):
            rows.append(
                {
                    "pair_id": f"{a}-{i}",
                    "qid": f"{a}-q{i}",
                    "group_id": f"g{i}",
                    "split": "train",
                    "attribute": a,
                    "pair_type": "enhanced_vs_corrupted",
                    "prompt": [{"role": "user", "content": POST}],
                    "chosen": [
                        {
                            "role": "assistant",
                            "content": f"Does the ache spread down a leg, or cause numbness, case {i}?",
                        }
                    ],
                    "rejected": [{"role": "assistant", "content": f"Anything else about your back, case {i}?"}],
                    "chosen_similarity": 0.8,
                    "rejected_similarity": 0.7,
                    "rewriter": "bench",
                    "prompt_template_hash": "t",
                    "attribute_pack": "clinical@bench",
                }
            )
    d = root / "pairs"
    write_split_files(pl.DataFrame(rows, schema=PAIR_SCHEMA), d)
    return d


def recipe(root: Path, name: str, model: Path, pairs: Path, attributes, steps: int, precompute: bool) -> Path:
    path = root / f"{name}.yaml"
    path.write_text(
        textwrap.dedent(f"""\
        stage: dpo
        model: {{name_or_path: {model}}}
        data: {{pairs_dir: {pairs}, attributes: {json.dumps(attributes)}, eval_split: null}}
        trl: {{output_dir: {root / name}, per_device_train_batch_size: 8, max_steps: {steps}, max_length: 256,
              learning_rate: 1.0e-5, beta: 0.1, bf16: false, report_to: [], save_strategy: "no",
              logging_steps: 1, precompute_ref_log_probs: {str(precompute).lower()}, disable_tqdm: true}}
        """)
    )
    return path


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model")
    p.add_argument("--pairs-per-attribute", type=int, default=48)
    p.add_argument("--steps", type=int, default=5)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = Path(args.model) if args.model else make_model(root)
        pairs = make_pairs(root, args.pairs_per_attribute)
        runs = [[a] for a in ATTRIBUTES] + [None]
        run_recipe(recipe(root, "warm-up", model, pairs, [ATTRIBUTES[0]], 1, True))  # untimed: imports, first loads
        times, passes = {}, {}
        for mode in ("plain TRL", "alfa store"):
            t = time.perf_counter()
            ref_pairs = 0
            for k, attrs in enumerate(runs):
                name = f"{mode.split()[0]}-{k}"
                summary = run_recipe(
                    recipe(root, name, model, pairs, attrs, args.steps, True),
                    root / "store.sqlite" if mode == "alfa store" else None,
                )
                ref_pairs += summary["ref_logps"]["computed"] if mode == "alfa store" else summary["train_rows"]
            times[mode], passes[mode] = time.perf_counter() - t, ref_pairs
    n = args.pairs_per_attribute * len(ATTRIBUTES)
    print(
        f"\n6 per-attribute + 1 mixed DPO runs, {n} pairs in all, {args.steps} steps each, model "
        f"{args.model or 'Llama hidden 256 x 4 layers'}:"
    )
    print("| | wall time (s) | pairs given a reference forward pass |")
    print("|---|---|---|")
    for mode in times:
        print(f"| {mode} | {times[mode]:.1f} | {passes[mode]} |")
    print(
        f"\nratio plain / store: {times['plain TRL'] / times['alfa store']:.2f}x wall time, "
        f"{passes['plain TRL'] / max(1, passes['alfa store']):.2f}x reference passes"
    )


if __name__ == "__main__":
    main()
