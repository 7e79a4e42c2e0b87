"""Are alfa's offline judges fit to read win rates from? Each judge's own controls on held-out askdocs posts.

The posts are those `alfa pairs` puts in the validation and test splits of the askdocs set (the same split rule,
`alfa.data.pairs.split_groups`): a reward model trained on the pairs' train split never saw them, and the
embedded judges saw no askdocs post at all. On each of their questions, every judge compares:

- A = the base SmolLM2-135M's question (alfa generate smollm2) against B = the human question (the model gap);
- control: "What is your favourite colour?" against the human question (known bad: a fit judge puts it near 0);
- known difference: the human question against the one written for another post (known better: near 1);

overall only (`--attributes none`), and prints one row per judge with the `judge_fit` verdict. With `--rm`, the
questions on posts a reward model trained on (its alfa_train.json) are left out for every judge, so all rows read
the same questions
(alfa.eval.winrate: control upper bound <= 0.15, known difference lower bound >= 0.75).

    .venv/bin/python bench/judge_fitness.py -o runs/bench/judges                          # pairwise + pointwise
    .venv/bin/python bench/judge_fitness.py -o runs/bench/judges --rm runs/train/minilm-rm-clarity,...

Every call is cached under OUTPUT/, so a stopped run resumes. ~45 min on 2 cores for the two embedded judges.
"""

import argparse
import json
import sys
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alfa.data.ingest import PRESETS, ingest  # noqa: E402
from alfa.data.pairs import SplitConfig, split_groups  # noqa: E402
from alfa.eval.generate import generate_questions  # noqa: E402
from alfa.eval.judges import PointwiseJudge, RewardModelJudge  # noqa: E402
from alfa.eval.winrate import judge_winrate  # noqa: E402
from alfa.llm.make import backend_from_spec, smollm2_backend  # noqa: E402

ASKDOCS = ROOT.parent / "shared" / "data" / "askdocs" / "questions_dev.jsonl"


def held_out_questions(path: Path, limit: int | None) -> pl.DataFrame:
    questions = ingest(path, PRESETS["askdocs"]).questions
    sizes = questions.group_by("group_id").len()
    split = split_groups(sizes["group_id"].to_list(), dict(zip(sizes["group_id"], sizes["len"])), SplitConfig())
    held = questions.filter(pl.col("group_id").is_in([g for g, s in split.items() if s != "train"]))
    return held.sort("qid").head(limit) if limit else held.sort("qid")


def fmt(r: dict) -> str:
    w = r["win_rate"]
    return "n/a" if w["value"] is None else f"{w['value']:.1%} ({w['ci_low']:.1%}-{w['ci_high']:.1%})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--askdocs", type=Path, default=ASKDOCS)
    p.add_argument("--limit", type=int, help="only the first N held-out questions (by qid)")
    p.add_argument("--judges", default="local,pointwise", help="comma-separated: local (pairwise), pointwise")
    p.add_argument("--rm", help="reward-model dirs (comma-separated) for an rm: judge as well")
    args = p.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    questions = held_out_questions(args.askdocs, args.limit)
    rm_judge = RewardModelJudge([Path(d) for d in args.rm.split(",")]) if args.rm else None
    if rm_judge is not None:  # every judge reads the same questions: none from a post the reward models saw
        seen = pl.col("group_id").is_in(sorted(rm_judge.seen))
        print(f"left out {questions.filter(seen).height} questions on posts the reward models trained on")
        questions = questions.filter(~seen)
    print(f"{questions.height} held-out questions from {questions['group_id'].n_unique()} posts")
    gen = args.output / "smollm2.jsonl"
    policy = smollm2_backend(max_new_tokens=48)
    generate_questions(questions, policy, gen, args.output / "smollm2.cache.sqlite")
    policy.close()
    a = {r["qid"]: r.get("question") for r in map(json.loads, gen.read_text().splitlines())}
    b = dict(zip(questions["qid"], questions["question"]))
    rows = []
    for name in [j for j in args.judges.split(",") if j] + (["rm"] if args.rm else []):
        backend = None
        if name == "rm":
            judge = rm_judge
        elif name == "pointwise":
            backend = backend_from_spec("local", max_new_tokens=1)
            judge = PointwiseJudge(backend)
        else:
            backend = judge = backend_from_spec(name, max_new_tokens=4)
        try:
            r = judge_winrate(a, b, questions, judge, {}, args.output / name)
        finally:
            if backend is not None:
                backend.close()
        rows.append((name, r))
    print("\n| judge | reading | SmolLM2 over human | control (fit: <= 15%) | known difference (fit: >= 75%) | fit |")
    print("|---|---|---|---|---|---|")
    for name, r in rows:
        fit = r["judge_fit"]
        print(
            f"| {r['judge']} | {r['reading']} | {fmt(r)} | {fmt(r['control'])} | {fmt(r['known_difference'])} | "
            f"{'yes' if fit['fit'] else 'no'} |"
        )


if __name__ == "__main__":
    main()
