"""A DPO recipe through `alfa train` beside the same run as a plain TRL script, in one go: tokens/s and
peak memory side by side, with ratios against plain TRL under the same launcher.

Three runs, each in a fresh process, on the same model, pairs and settings (the recipe's `trl:` block
after --set overrides, passed verbatim to the plain script's DPOConfig):

  alfa                  `alfa train RECIPE` (re-launches itself under `accelerate launch --use_deepspeed ...`)
  TRL, same launcher    bench/plain_trl_dpo.py under the very same `accelerate launch` command
  TRL, no DeepSpeed     bench/plain_trl_dpo.py in one plain process

    # on a CPU (the figures in docs/training.md): SmolLM2-135M-Instruct, ZeRO-2, fp32, demo pairs, 2 steps
    python bench/bench_train_vs_trl.py --set trl.max_steps=2
    # on a GPU: bf16, enough steps that start-up is a small share of train_runtime
    python bench/bench_train_vs_trl.py --set trl.bf16=true --set launch.mixed_precision=bf16 \
        --set trl.num_train_epochs=20

Tokens are TRL's `num_tokens` (non-padding tokens read, prompt counted with each side), logged every
step; tokens/s = tokens / TRL's train_runtime (model loading and DeepSpeed start-up excluded, the first
steps included). Peak memory, in the training process: the peak resident set (RSS) everywhere, and
PyTorch's max_memory_allocated / max_memory_reserved on a GPU. "wall s" is the whole command, start-up
included; on a CPU the first DeepSpeed launch after an install JIT-builds a shared-memory op (~1 min),
and the run that pays it (alfa's, the first) shows it in its wall time, not in tokens/s. Writes
OUTPUT/results.json and OUTPUT/results.md, and prints the table.
"""

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alfa.train.checks import check_recipe  # noqa: E402
from alfa.train.launch import launcher  # noqa: E402
from alfa.train.recipe import load_recipe  # noqa: E402

DEFAULT_RECIPE = ROOT / "recipes" / "smollm2-135m" / "dpo_mixed_zero2.yaml"


def apply_overrides(data: dict, sets: list[str]) -> dict:
    """--set trl.bf16=true --set launch.mixed_precision=bf16: dotted keys, YAML values."""
    for item in sets:
        key, _, value = item.partition("=")
        if not _:
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE, e.g. trl.bf16=true")
        *parents, leaf = key.split(".")
        node = data
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(value)
    return data


def run(name: str, cmd: list[str], log: Path) -> float | None:
    """Run one command, its output to `log`; the wall seconds, or None when it failed."""
    print(f"[{name}] {shlex.join(cmd)}", flush=True)
    env = {
        **os.environ,
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
    }
    t0 = time.perf_counter()
    with log.open("w") as f:
        rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    if rc != 0:
        print(
            f"[{name}] failed (exit {rc}); the last lines of {log}:\n" + "".join(log.read_text().splitlines(True)[-30:])
        )
        return None
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", type=Path, default=DEFAULT_RECIPE, help="a DPO recipe (default: %(default)s)")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe key, dotted (trl.bf16=true, launch.mixed_precision=bf16); repeatable",
    )
    ap.add_argument(
        "--model", help="model folder (default: the recipe's; the embedded SmolLM2 is converted if missing)"
    )
    ap.add_argument("--pairs", help="pairs dir (default: the recipe's)")
    ap.add_argument(
        "--only", default="alfa,trl-launcher,trl-plain", help="which runs, comma-separated (default: all three)"
    )
    ap.add_argument("-o", "--output", type=Path, default=Path("runs/bench/train-vs-trl"))
    args = ap.parse_args()

    data = apply_overrides(yaml.safe_load(args.recipe.read_text()), args.set)
    if args.model:
        data["model"]["name_or_path"] = args.model
    if args.pairs:
        data["data"]["pairs_dir"] = args.pairs
    model = Path(os.path.expanduser(data["model"]["name_or_path"]))
    if not model.exists() and "SmolLM2-135M-Instruct" in model.name:
        from alfa.llm.embedded import smollm2_path

        data["model"]["name_or_path"] = str(smollm2_path())
    if data["data"].get("attributes") or data["data"].get("exclude_pair_types"):
        raise SystemExit(
            "the plain TRL baseline trains on the whole train split: use a mixed recipe "
            "(no data.attributes, no exclude_pair_types)"
        )
    out = args.output.resolve()
    out.mkdir(parents=True, exist_ok=True)
    data["trl"]["output_dir"] = str(out / "alfa")
    data["trl"].setdefault("logging_steps", 1)
    recipe_path = out / "recipe.yaml"
    recipe_path.write_text(yaml.safe_dump(data, sort_keys=False))
    recipe = load_recipe(recipe_path)
    failed = [c for c in check_recipe(recipe) if not c.ok]
    if failed:
        raise SystemExit("the recipe fails its checks: " + "; ".join(f"{c.name}: {c.message}" for c in failed))

    def trl_config(run_name: str) -> str:
        return json.dumps({**recipe.trl, "output_dir": str(out / run_name)})

    plain = [
        str(ROOT / "bench" / "plain_trl_dpo.py"),
        "--model",
        recipe.model.name_or_path,
        "--pairs",
        recipe.data.pairs_dir,
    ]
    accelerate = launcher(recipe)  # the very command alfa train re-launches itself under
    runs = {
        "alfa": ([sys.executable, "-m", "alfa.cli", "train", str(recipe_path)], out / "alfa" / "alfa_train.json"),
        "trl-launcher": (
            accelerate + plain + ["--config", trl_config("trl-launcher")],
            out / "trl-launcher" / "plain_trl.json",
        ),
        "trl-plain": (
            [sys.executable] + plain + ["--config", trl_config("trl-plain")],
            out / "trl-plain" / "plain_trl.json",
        ),
    }
    labels = {
        "alfa": "alfa train",
        "trl-launcher": "TRL script, same launcher",
        "trl-plain": "TRL script, no DeepSpeed",
    }
    results = {}
    for name in args.only.split(","):
        cmd, summary_file = runs[name]
        # a fresh output dir: alfa train would resume from a checkpoint an earlier bench run left there
        shutil.rmtree(summary_file.parent, ignore_errors=True)
        wall = run(name, cmd, out / f"{name}.log")
        summary = json.loads(summary_file.read_text()) if wall is not None else {}
        summary.pop("log_history", None)
        results[name] = {"command": shlex.join(cmd), "wall_s": wall, **summary}

    try:
        import torch

        device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    except Exception as e:  # noqa: BLE001 - the device name is a label only
        device = f"unknown ({e})"
    base = results.get("trl-launcher", {})

    def ratio(r: dict, key: str) -> str:
        return f"{r[key] / base[key]:.2f}" if r.get(key) and base.get(key) else "-"

    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    def zero(r: dict) -> str:
        ds = r.get("deepspeed", {})
        return f"ZeRO-{ds['zero_stage']}" if ds.get("zero_stage") else ("yes" if ds.get("enabled") else "no")

    lines = [
        f"device: {device}; recipe {args.recipe.name} with {' '.join(args.set) or 'no overrides'}; "
        f"launcher: {shlex.join(accelerate)}",
        "",
        "| run | DeepSpeed | train pairs | steps | tokens | train s | tokens/s | x TRL same launcher | "
        "peak GPU alloc GiB | peak GPU reserved GiB | x TRL (GPU alloc) | peak RSS GiB | x TRL (RSS) | "
        "loss first -> last | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {labels[name]} | {zero(r)} "
            f"| {r.get('train_rows', '-')} | {r.get('global_steps', '-')} | {num(r.get('num_tokens'), ',.0f')} "
            f"| {num(r.get('train_runtime_s'), '.1f')} | {num(r.get('tokens_per_second'), ',.0f')} "
            f"| {ratio(r, 'tokens_per_second')} | {num(r.get('peak_gpu_allocated_gib'), '.2f')} "
            f"| {num(r.get('peak_gpu_reserved_gib'), '.2f')} | {ratio(r, 'peak_gpu_allocated_gib')} "
            f"| {num(r.get('peak_rss_gib'), '.2f')} | {ratio(r, 'peak_rss_gib')} "
            f"| {num(r.get('first_loss'), '.4f')} -> {num(r.get('last_loss'), '.4f')} | {num(r['wall_s'], '.0f')} |"
        )
    table = "\n".join(lines)
    print(table)
    (out / "results.md").write_text(table + "\n")
    (out / "results.json").write_text(
        json.dumps({"device": device, "overrides": args.set, "runs": results}, indent=2, default=str)
    )
    print(f"-> {out}")
    return 0 if all(r.get("global_steps") for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
