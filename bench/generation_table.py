"""The judge-free columns of ALFA's table: for each policy's generations on the same held-out posts, the share of
replies that are one question and their mean length in words, each with its interval, and the paired difference
against a base policy (a bootstrap over posts of the per-question differences).

Each file is what `alfa generate ... --held-out-from PAIRS_DIR` writes (alfa.eval.generate). Every file must cover
the same questions, or the paired differences would compare different posts: the script stops where they differ.

    .venv/bin/python bench/generation_table.py runs/eval/askdocs-gen --base sft

Prints one Markdown row per file, in the order of --order (default: by name).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from alfa.eval.generate import generation_figures, is_one_question, read_generations, reply_words
from alfa.stats import bootstrap_mean


def read_rows(path: Path) -> dict[str, dict]:
    return {r["qid"]: r for r in read_generations(path)}


def per_question(row: dict) -> tuple[float, float]:
    return float(is_one_question(row)), float(reply_words(row))


def paired(rows: dict[str, dict], base: dict[str, dict], index: int) -> dict:
    qids = sorted(base)
    diffs = [per_question(rows[q])[index] - per_question(base[q])[index] for q in qids]
    return bootstrap_mean(diffs, [base[q]["group_id"] for q in qids])


def fmt(x: dict, scale: float = 1.0, unit: str = "", sign: bool = False) -> str:
    v, lo, hi = (x[k] * scale for k in ("value", "ci_low", "ci_high"))
    if sign:
        return f"{v:+.1f} ({lo:+.1f} to {hi:+.1f})"
    return f"{v:.1f}{unit} ({lo:.1f}-{hi:.1f})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path, help="a folder of NAME.jsonl generation files")
    p.add_argument("--base", required=True, help="the NAME whose generations the others are paired against")
    p.add_argument("--order", help="comma-separated NAMEs, in the order to print (default: every file, by name)")
    args = p.parse_args()
    names = args.order.split(",") if args.order else sorted(f.stem for f in args.folder.glob("*.jsonl"))
    files = {n: args.folder / f"{n}.jsonl" for n in [args.base, *names]}
    missing = [str(f) for f in files.values() if not f.exists()]
    if missing:
        raise SystemExit(f"no generations file: {', '.join(missing)} (write it with alfa generate ... -o FILE)")
    rows = {n: read_rows(f) for n, f in files.items()}
    for n, r in rows.items():
        if set(r) != set(rows[args.base]):
            raise SystemExit(
                f"{files[n]}: {len(set(r) ^ set(rows[args.base]))} questions differ from {files[args.base]}'s; "
                "generate every policy on the same questions (the same --held-out-from and --limit)"
            )
    n_posts = len({r["group_id"] for r in rows[args.base].values()})
    print(f"{len(rows[args.base])} questions on {n_posts} posts; paired against {args.base}\n")
    print("| policy | one question | mean words | one question, paired (points) | mean words, paired | failed |")
    print("|---|---|---|---|---|---|")
    for n in names:
        f = generation_figures(files[n])
        one, words = f["one_question"], f["words"]
        if n == args.base:
            one_d = words_d = "-"
        else:
            one_d, words_d = (fmt(paired(rows[n], rows[args.base], 0), 100, sign=True),
                              fmt(paired(rows[n], rows[args.base], 1), sign=True))  # fmt: skip
        print(f"| {n} | {fmt(one, 100, '%')} | {fmt(words)} | {one_d} | {words_d} | {f['failed']} |")


if __name__ == "__main__":
    main()
