"""The baseline of bench/bench_train_vs_trl.py: DPO written the way a TRL user writes it.

Reads the pairs' train split with `datasets`, keeps prompt/chosen/rejected, builds `DPOConfig` from the
settings given as JSON (the bench passes the recipe's resolved `trl:` block, so both runs use the same
settings), trains with TRL's DPOTrainer and saves the model: no alfa code in any of that. Afterwards the
figures (losses, wall time, tokens, tokens/s, peak memory) are taken with `alfa.train.run.run_figures`, the
function alfa's own run summary uses, so both sides are measured the same way, and written to
OUTPUT_DIR/plain_trl.json. Run it alone, or under the same `accelerate launch --use_deepspeed ...`
command alfa uses:

    python bench/plain_trl_dpo.py --model PATH --pairs runs/demo/pairs --config '{"output_dir": "...", ...}'
"""

import argparse
import json
import sys
from pathlib import Path

import torch
from datasets import load_dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alfa.train.run import run_figures  # noqa: E402  (measuring only, after training)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a local model folder")
    ap.add_argument("--pairs", required=True, help="a pairs dir (reads PAIRS/data/train.parquet)")
    ap.add_argument("--config", required=True, help="DPOConfig keyword arguments as JSON")
    args = ap.parse_args()

    config = DPOConfig(**json.loads(args.config))
    train = load_dataset("parquet", data_files=str(Path(args.pairs) / "data" / "train.parquet"), split="train")
    train = train.select_columns(["prompt", "chosen", "rejected"])
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    trainer = DPOTrainer(model=model, args=config, train_dataset=train, processing_class=tokenizer)
    result = trainer.train()
    trainer.save_model(config.output_dir)  # as every TRL example script ends (alfa train does the same)

    plugin = trainer.accelerator.state.deepspeed_plugin
    out = {
        "global_steps": trainer.state.global_step,
        "train_rows": len(train),
        **run_figures(trainer.state.log_history, result.metrics),
        "deepspeed": {
            "enabled": bool(trainer.is_deepspeed_enabled),
            "zero_stage": plugin.zero_stage if plugin else None,
        },
    }
    if trainer.accelerator.is_main_process:
        Path(config.output_dir).mkdir(parents=True, exist_ok=True)
        Path(config.output_dir, "plain_trl.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
