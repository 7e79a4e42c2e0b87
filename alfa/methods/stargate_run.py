"""The STaR-GATE loop over iterations (the steps are in alfa.methods.stargate): `alfa stargate CONFIG.yaml`
calls `run_stargate`. Files per iteration are listed there; OUTPUT/cache.sqlite holds every model call and
every score."""

from __future__ import annotations

import json
import logging
from dataclasses import MISSING, asdict, fields
from pathlib import Path

import polars as pl

from alfa.data.card_common import PHI_STATEMENT
from alfa.llm.cache import CallCache
from alfa.llm.calls import CallStats
from alfa.methods.stargate import (
    StarGateConfig,
    final_context,
    gold_responses,
    iteration_tasks,
    sample_conversations,
    score_table,
    task_messages,
)
from alfa.methods.tasks import Task, tasks_from_cases, tasks_from_profiles

log = logging.getLogger(__name__)


def load_tasks(cfg: StarGateConfig) -> list[Task]:
    if cfg.cases is not None:
        return tasks_from_cases(Path(cfg.cases), cfg.limit, answer_as_gold=cfg.oracle == "case")
    return tasks_from_profiles(Path(cfg.tasks), Path(cfg.profiles), cfg.limit)


def kept_messages(episode: dict, task: Task, regularizer: str, gold: str) -> list[dict]:
    """A kept conversation as training messages, as it was scored: the questioner's questions are the assistant's
    turns (a spent turn is left out, alfa.methods.stargate.task_messages); the regulariser's final answer is the
    last assistant turn (none when the questioner's own was empty: an empty turn would teach it to stop)."""
    conversation = episode["data"]["conversation"]
    final = episode["result"]["final"] if regularizer == "self" else gold if regularizer == "gold" else None
    if not final:
        return task_messages(task, conversation)
    return final_context(task, conversation) + [{"role": "assistant", "content": final}]


def write_kept(
    out: Path, episodes: list[dict], kept: pl.DataFrame, tasks: dict[str, Task], gold: dict, cfg, iteration: int
) -> int:
    """OUTPUT/iter_K/kept: data/train.parquet (messages, task_id, episode_id, score) of the `kept` score rows,
    and its card."""
    by_id = {e["episode_id"]: e for e in episodes}
    rows = [
        {
            "episode_id": r["episode_id"],
            "task_id": r["task_id"],
            "score": r["score"],
            "messages": kept_messages(by_id[r["episode_id"]], tasks[r["task_id"]], cfg.regularizer, gold[r["task_id"]]),
        }
        for r in kept.iter_rows(named=True)
    ]
    (out / "data").mkdir(parents=True, exist_ok=True)
    pl.DataFrame(rows).write_parquet(out / "data" / "train.parquet")
    (out / "README.md").write_text(
        f"# STaR-GATE kept conversations, iteration {iteration}\n\n"
        f"The {cfg.top_k} best of {cfg.samples} sampled conversations for each of {kept['task_id'].n_unique()} "
        f"tasks ({len(rows)} conversations), scored by the log-probability of the gold response under the initial "
        f"model `{cfg.questioner}`; final answer as regulariser: `{cfg.regularizer}`. Made by `alfa stargate`; "
        "`alfa train` reads it as a dialogues dir (the loss on the questioner's turns only).\n\n"
        f"{PHI_STATEMENT}\n"
    )
    return len(rows)


def run_iteration(
    cfg: StarGateConfig,
    iteration: int,
    all_tasks: list[Task],
    policy,
    roleplayer,
    oracle,
    scorer,
    train,
    cache: CallCache,
) -> dict:
    """One iteration with the questioner `policy` on its share of `all_tasks`; `train(kept_dir, model_dir)`
    fine-tunes m0 on the kept set."""
    out = Path(cfg.output_dir) / f"iter_{iteration}"
    done = out / "summary.json"
    if done.exists():
        log.info("iteration %d: done (%s)", iteration, done)
        return json.loads(done.read_text())
    out.mkdir(parents=True, exist_ok=True)
    tasks = iteration_tasks(all_tasks, iteration, cfg.alternate_halves)
    by_id = {t.task_id: t for t in tasks}
    oracle_stats = CallStats()
    gold = gold_responses(tasks, oracle, cache, oracle_stats)
    episodes, stats = sample_conversations(
        tasks, policy, roleplayer, cfg, iteration, cache, out / "conversations.jsonl"
    )
    failed = [e for e in episodes if e.get("failed_calls")]
    if failed:  # their failed calls are not cached: a rerun plays only those conversations again
        reason = next(t["text"] for t in failed[0]["turns"] if t["parsed"] is None)
        raise RuntimeError(
            f"iteration {iteration}: {len(failed)} conversation(s) had a failed call (e.g. {failed[0]['episode_id']}: "
            f"{reason}); rerun the same command to ask those calls again"
        )
    scores = score_table(episodes, by_id, gold, scorer, cfg.top_k)
    scores.write_parquet(out / "scores.parquet")
    kept = scores.filter(pl.col("kept"))
    if kept.height == 0:
        raise RuntimeError(
            f"iteration {iteration}: no conversation asked without answering ({scores.height} scored, "
            f"{int((scores['answer_turns'] > 0).sum())} with an answer turn, "
            f"{int((scores['questions_asked'] == 0).sum())} with no question; {out / 'scores.parquet'}): nothing to "
            "train on. More samples, a questioner that asks, or more turns"
        )
    n_kept = write_kept(out / "kept", episodes, kept, by_id, gold, cfg, iteration)
    train(out / "kept", out / "model")
    summary = {
        "iteration": iteration,
        "questioner": str(policy.model_path),
        "tasks": len(tasks),
        "conversations": scores.height,
        "kept": n_kept,
        "mean_score": scores["score"].mean(),
        "kept_mean_score": kept["score"].mean(),
        "mean_questions_asked": scores["questions_asked"].mean(),
        "conversations_with_failed_calls": int((scores["failed_calls"] > 0).sum()),  # scored, never kept
        "conversations_with_answer_turns": int((scores["answer_turns"] > 0).sum()),  # scored, never kept
        "conversations_without_questions": int((scores["questions_asked"] == 0).sum()),  # scored, never kept
        "calls": asdict(stats),
        "oracle_calls": asdict(oracle_stats),
        "model": str(out / "model"),
    }
    done.write_text(json.dumps(summary, indent=2))
    return summary


def recipe_trainer(recipe: Path, m0: Path):
    """`train(kept_dir, model_dir)`: the SFT recipe from m0 on the kept set (under accelerate when it says so)."""
    from alfa.train.run import train_command

    def train(kept_dir: Path, model_dir: Path) -> None:
        if (model_dir / "alfa_train.json").exists():
            return
        overrides = [
            f"model.name_or_path={m0}",
            f"data.dialogues_dir={kept_dir}",
            "data.eval_split=null",
            f"trl.output_dir={model_dir}",
            "trl.assistant_only_loss=true",  # the roleplayer's words are never trained on, whatever the recipe says
        ]
        if train_command(recipe, overrides=overrides) != 0:
            raise RuntimeError(
                f"training on {kept_dir} failed: rerun `alfa train {recipe}` with {overrides} to see why"
            )

    return train


def _short(value, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 4] + "..." + text[-1]  # keeps the closing quote


def check_same_config(cfg: StarGateConfig, path: Path) -> None:
    """A rerun resumes what an earlier run wrote, so it must be the same run: every key but `iterations` (more
    iterations continue a run) must match the one saved at the first run. A key the saved run lacks was added to
    alfa after it, with a default that does what alfa did before: the saved run had that default."""
    now = asdict(cfg)
    if path.exists():
        defaults = {f.name: f.default for f in fields(StarGateConfig) if f.default is not MISSING}
        before = {**defaults, **json.loads(path.read_text())}
        changed = sorted(k for k in now if k != "iterations" and before.get(k) != now[k])
        if changed:
            said = ", ".join(f"{k}: {_short(before.get(k))} -> {_short(now[k])}" for k in changed)
            raise ValueError(
                f"{path.parent} was made with other settings ({said}): give a new output_dir, or restore them to resume"
            )
    path.write_text(json.dumps(now, indent=2))


def run_stargate(cfg: StarGateConfig, roleplayer=None, oracle=None) -> list[dict]:
    """Every iteration of the config; `roleplayer` / `oracle` backends replace the config's when given."""
    from alfa.llm.backends import TransformersBackend
    from alfa.llm.embedded import smollm2_path
    from alfa.llm.make import backend_from_spec
    from alfa.llm.scorer import LogProbScorer

    tasks = load_tasks(cfg)  # a bad line stops the run here, before any model loads or server starts
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    check_same_config(cfg, out / "config.json")
    m0 = smollm2_path() if cfg.questioner == "smollm2" else Path(cfg.questioner).expanduser()
    if roleplayer is None and cfg.roleplayer == "fact":
        from alfa.dialogue.patients import FactSelectPatient
        from alfa.llm.embedder import Embedder

        roleplayer = FactSelectPatient(Embedder())
    roleplayer = roleplayer or backend_from_spec(cfg.roleplayer, cfg.max_new_tokens)
    if oracle is None and cfg.oracle != "case":
        oracle = backend_from_spec(cfg.oracle, 4 * cfg.max_new_tokens)
    summaries = []
    cache = CallCache(out / "cache.sqlite")
    try:
        scorer = LogProbScorer(m0, cache=cache)
        train = recipe_trainer(Path(cfg.recipe), m0)
        policy_path = m0
        for iteration in range(cfg.iterations):
            policy = TransformersBackend(policy_path, max_new_tokens=cfg.max_new_tokens, stop=("?",))
            summary = run_iteration(cfg, iteration, tasks, policy, roleplayer, oracle, scorer, train, cache)
            summaries.append(summary)
            policy_path = Path(summary["model"])
            log.info(
                "iteration %d: %d conversations, kept %d, mean log p(gold) %.2f (kept %.2f)",
                iteration,
                summary["conversations"],
                summary["kept"],
                summary["mean_score"],
                summary["kept_mean_score"],
            )
    finally:
        cache.close()
    return summaries
