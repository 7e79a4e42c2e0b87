"""`alfa evaluate-policy`: a DPO policy's preference accuracy read off its implicit reward, with the tiny Llama
trained by real TRL DPO on the synthetic pairs (chosen specific and long, rejected vague and short)."""

import math

import polars as pl
import pytest

from alfa.cli import main
from alfa.train.policy_scorecard import pair_logps, scorecard
from alfa.train.run import run_recipe
from tests.test_train import _recipe


@pytest.fixture(scope="module")
def trained_policy(tmp_path_factory, tiny_model_dir, pairs_dir):
    tmp = tmp_path_factory.mktemp("policy")
    run_recipe(_recipe(tmp, "mixed", tiny_model_dir, pairs_dir, beta=0.1))
    return tmp / "mixed"


def _explicit_logp(model_dir, prompt, completion) -> float:
    """log p(completion | prompt) summed over the completion's tokens, by hand: the chat template, one forward."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    head = tokenizer(tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False))["input_ids"]
    full = tokenizer(tokenizer.apply_chat_template(prompt + completion, tokenize=False))["input_ids"]
    assert full[: len(head)] == head
    with torch.no_grad():
        logits = model(torch.tensor([full])).logits[0]
    logps = torch.log_softmax(logits[:-1], dim=-1).gather(1, torch.tensor(full[1:]).unsqueeze(1)).squeeze(1)
    return float(logps[len(head) - 1 :].sum())


def test_pair_logps_are_the_completions_summed_log_probs(tiny_model_dir, trained_policy, pairs_dir):
    pairs = pl.read_parquet(pairs_dir / "data" / "test.parquet")
    scored = pair_logps(trained_policy, pairs, max_length=256)
    row = pairs.row(0, named=True)
    got = scored.filter(pl.col("pair_id") == row["pair_id"]).row(0, named=True)
    assert got["chosen_logp"] == pytest.approx(_explicit_logp(trained_policy, row["prompt"], row["chosen"]), abs=1e-3)
    assert got["rejected_logp"] == pytest.approx(
        _explicit_logp(trained_policy, row["prompt"], row["rejected"]), abs=1e-3
    )


def test_a_trained_policy_prefers_chosen_the_reference_ties_and_a_rerun_reads_the_store(
    tmp_path, tiny_model_dir, trained_policy, pairs_dir, capsys, monkeypatch
):
    store = tmp_path / "logps.sqlite"
    args = ["evaluate-policy", "--reference", str(tiny_model_dir), "--policy", f"mixed={trained_policy}"]
    args += ["--policy", f"itself={tiny_model_dir}", "--pairs", str(pairs_dir), "--split", "train"]
    args += ["--max-length", "256", "--base", "itself", "--store", str(store), "-o", str(tmp_path / "card")]
    assert main(args) == 0
    table = pl.read_csv(tmp_path / "card" / "scorecard.csv")
    acc = {(r["model"], r["attribute"]): r for r in table.iter_rows(named=True)}
    n_train = pl.read_parquet(pairs_dir / "data" / "train.parquet").height
    assert acc[("mixed", "all")]["n"] == n_train
    # DPO on these pairs (loss below 0.6 in test_train) ranks chosen first on nearly all of them
    assert acc[("mixed", "all")]["accuracy"] >= 0.9
    assert acc[("mixed", "all")]["vs_itself"] >= 0.4
    # the reference against itself: every margin 0, every pair a tie, 50% with an interval around it
    assert acc[("itself", "all")]["accuracy"] == 0.5
    assert acc[("itself", "all")]["ci_low"] < 0.5 < acc[("itself", "all")]["ci_high"]
    # the trivial baselines: chosen is the longer question on every pair
    assert acc[("longer question", "all")]["accuracy"] == 1.0
    assert acc[("shorter question", "clarity")]["accuracy"] == 0.0
    margins = pl.read_parquet(tmp_path / "card" / "margins.parquet")
    mixed = margins.filter(pl.col("model") == "mixed")
    assert mixed.height == n_train and all(math.isfinite(m) for m in mixed["margin"])
    md = (tmp_path / "card" / "scorecard.md").read_text()
    assert "| mixed |" in md and "Paired difference from itself" in md and "0 longer than max_length 256 left out" in md
    assert (tmp_path / "card" / "scorecard.png").read_bytes()[:4] == b"\x89PNG"

    # a rerun on the same store computes no log-prob: TRL's own precompute would raise
    from trl import DPOTrainer

    def no_compute(self, dataset, name, batch_size):  # the signature alfa's store hooks
        raise AssertionError("a log-prob was computed again")

    monkeypatch.setattr(DPOTrainer, "_precompute_ref_logps", no_compute)
    assert main(args[:-1] + [str(tmp_path / "again")]) == 0
    again = pl.read_csv(tmp_path / "again" / "scorecard.csv")
    assert again["accuracy"].to_list() == table["accuracy"].to_list()


def test_pairs_over_max_length_are_left_out_and_counted(tmp_path, tiny_model_dir, pairs_dir):
    pairs = pl.read_parquet(pairs_dir / "data" / "train.parquet")
    table = scorecard({"itself": tiny_model_dir}, tiny_model_dir, pairs_dir, ["train"], tmp_path, max_length=63)
    kept = table.filter((pl.col("model") == "itself") & (pl.col("attribute") == "all"))["n"][0]
    assert 0 < kept < pairs.height
    assert f"{pairs.height - kept} longer than max_length 63 left out" in (tmp_path / "scorecard.md").read_text()


def test_bad_arguments_name_what_to_fix(tmp_path, tiny_model_dir, pairs_dir):
    with pytest.raises(ValueError, match="--base 'mixed' is none of the policies: itself"):
        scorecard({"itself": tiny_model_dir}, tiny_model_dir, pairs_dir, ["test"], tmp_path, base="mixed")
    with pytest.raises(FileNotFoundError, match="heldout.parquet: no such split"):
        scorecard({"itself": tiny_model_dir}, tiny_model_dir, pairs_dir, ["heldout"], tmp_path)
    broken = tmp_path / "broken" / "data"
    broken.mkdir(parents=True)
    (broken / "test.parquet").write_text("not parquet")
    with pytest.raises(ValueError, match="test.parquet: not a readable Parquet file"):
        scorecard({"itself": tiny_model_dir}, tiny_model_dir, broken.parent, ["test"], tmp_path)
    pl.read_parquet(pairs_dir / "data" / "test.parquet").drop("group_id").write_parquet(broken / "test.parquet")
    with pytest.raises(ValueError, match="test.parquet: no column group_id"):
        scorecard({"itself": tiny_model_dir}, tiny_model_dir, broken.parent, ["test"], tmp_path)
    pl.read_parquet(pairs_dir / "data" / "test.parquet").head(0).write_parquet(broken / "test.parquet")
    with pytest.raises(ValueError, match="splits test hold no pairs to score"):
        scorecard({"itself": tiny_model_dir}, tiny_model_dir, broken.parent, ["test"], tmp_path)


def test_bench_policy_claims_prints_paired_differences_and_names_missing_arms(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    rows = [
        {"pair_id": f"p{i}", "attribute": "clarity", "group_id": f"g{i % 3}", "model": model, "right": right}
        for i in range(6)
        for model, right in (("clarity", 1.0), ("mixed", 0.0 if i < 3 else 0.5))
    ]
    pl.DataFrame(rows).write_parquet(tmp_path / "margins.parquet")
    bench = Path(__file__).resolve().parents[1] / "bench" / "policy_claims.py"
    out = subprocess.run(
        [sys.executable, str(bench), str(tmp_path / "margins.parquet")], capture_output=True, text=True, check=True
    ).stdout
    assert "clarity vs mixed, clarity (n=6): 100.0% vs 25.0%, +75.0 points" in out
    assert "clarity vs relevance: not in this run (relevance missing)" in out
    assert "mixed vs unfiltered: not in this run (unfiltered missing)" in out
