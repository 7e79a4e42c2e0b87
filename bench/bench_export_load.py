"""The exported 1.5B policy on the CPU: load time, peak memory and greedy generation speed of
Qwen2.5-Coder-1.5B-Instruct exported from its GGUF (`alfa models export qwen1.5b`) in bfloat16 and float32,
side by side with ratios against float32. Each load runs in a fresh process, so peak RSS is that load's.

    .venv/bin/python bench/bench_export_load.py [--out runs/bench/export] [--tokens 16]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

MEASURE = r"""
import json, resource, sys, time
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
folder, tokens = sys.argv[1], int(sys.argv[2])
t0 = time.perf_counter()
model = AutoModelForCausalLM.from_pretrained(folder, dtype="auto")
load_s = time.perf_counter() - t0
tok = AutoTokenizer.from_pretrained(folder)
ids = tok.apply_chat_template([{"role": "user", "content": "My knee hurts when I climb stairs. Ask me one "
                               "follow-up question."}], add_generation_prompt=True, return_tensors="pt", return_dict=True)
t0 = time.perf_counter()
with torch.inference_mode():
    out = model.generate(**ids, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)
gen_s = time.perf_counter() - t0
print(json.dumps({"dtype": str(model.dtype), "load_s": load_s, "tokens_per_s": tokens / gen_s,
                  "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                  "first_tokens": tok.decode(out[0, ids["input_ids"].shape[1]:][:8])}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/bench/export")
    ap.add_argument("--tokens", type=int, default=16)
    args = ap.parse_args()
    alfa = Path(sys.executable).with_name("alfa")
    rows = {}
    for dtype in ("float32", "bfloat16"):
        folder = Path(args.out) / f"qwen1.5b-{dtype}"
        if not (folder / "config.json").exists():
            subprocess.run([str(alfa), "models", "export", "qwen1.5b", "-o", str(folder), "--dtype", dtype], check=True)
        result = subprocess.run(
            [sys.executable, "-c", MEASURE, str(folder), str(args.tokens)], check=True, capture_output=True, text=True
        )
        rows[dtype] = json.loads(result.stdout.strip().splitlines()[-1])
        rows[dtype]["disk_gib"] = sum(f.stat().st_size for f in folder.glob("*.safetensors")) / 2**30
    base = rows["float32"]
    print("| dtype | disk GiB | load s | x fp32 | peak RSS GiB | x fp32 | tokens/s | x fp32 | first tokens |")
    print("|---|---|---|---|---|---|---|---|---|")
    for dtype, r in rows.items():
        print(
            f"| {dtype} | {r['disk_gib']:.2f} | {r['load_s']:.1f} | {r['load_s'] / base['load_s']:.2f} | "
            f"{r['peak_rss_gib']:.2f} | {r['peak_rss_gib'] / base['peak_rss_gib']:.2f} | {r['tokens_per_s']:.2f} | "
            f"{r['tokens_per_s'] / base['tokens_per_s']:.2f} | {r['first_tokens']!r} |"
        )


if __name__ == "__main__":
    main()
