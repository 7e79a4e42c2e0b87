"""`alfa uot pairs EVAL_DIR -o PAIRS_DIR`: UoT's planning choices as DPO pairs in alfa's pairs schema.

Every question UoT planned in an `alfa eval interactive --questioner uot` run (EVAL_DIR/episodes.jsonl) had
candidates with expected rewards; the candidate with the highest expected reward is `chosen`, the one with the
lowest `rejected` (when they differ, and by at least `min_gap`). The prompt is what a plain questioner sees at that
point of the conversation (alfa.eval.interactive's questioner prompt), so a policy trained on the pairs learns to
ask the more informative question without planning. Pairs are split by case (a case never spans two splits);
`chosen_score` / `rejected_score` keep the expected rewards. `alfa lint`, `alfa card` and `alfa train` read the dir.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from alfa.data.pairs import SplitConfig
from alfa.dialogue.engine import written_episodes
from alfa.eval.case_prompts import questioner_messages
from alfa.eval.cases import Case
from alfa.methods.scored_pairs import write_scored_pairs

PAIR_TYPE = "uot_high_vs_low_expected_reward"
ATTRIBUTE = "information_gain"


def questioner_prompt(case: Case, initial_info: str, conversation: list) -> list[dict]:
    return questioner_messages(case, initial_info, [tuple(x) for x in conversation])


def complete_plans(turns: list[dict]) -> list[tuple[int, dict]]:
    """(questions answered before it, plan) for each complete plan of an episode. The count comes from the
    patient's answers before the plan, not from the plan's rank: an episode's questions need not all be planned."""
    out, answered = [], 0
    for t in turns:
        if t["role"] == "patient" and t["kind"] == "answer":
            answered += 1
        elif t["kind"] == "propose" and t["parsed"] is not None:
            out.append((answered, t["parsed"]))
    return out


def plans_to_pairs(episodes: list[dict], model: str, min_gap: float = 0.0) -> list[dict]:
    """One pair per planned question whose best and worst candidates differ by at least `min_gap`."""
    rows = []
    for e in episodes:
        case, conversation = Case(**e["data"]["case"]), e["data"]["conversation"]
        for k, plan in complete_plans(e["turns"]):  # k: the questions answered before the plan was made
            candidates = plan["candidates"]
            if len(candidates) < 2 or candidates[-1]["expected"] is None:  # no readable choice: no preference
                continue
            gap = candidates[0]["expected"] - candidates[-1]["expected"]
            if gap <= 0 or gap < min_gap:  # equally good candidates make no preference
                continue
            best, worst = candidates[0], candidates[-1]
            if best["question"].strip() == worst["question"].strip():
                continue
            rows.append(
                {
                    "pair_id": hashlib.sha256(f"uot:{e['episode_id']}:{k}".encode()).hexdigest()[:16],
                    "qid": f"{e['episode_id']}#q{k}",
                    "group_id": str(case.case_id),
                    "attribute": ATTRIBUTE,
                    "pair_type": PAIR_TYPE,
                    "prompt": questioner_prompt(case, e["data"]["initial_info"], conversation[:k]),
                    "chosen": [{"role": "assistant", "content": best["question"]}],
                    "rejected": [{"role": "assistant", "content": worst["question"]}],
                    "chosen_similarity": None,
                    "rejected_similarity": None,
                    "rewriter": model,
                    "prompt_template_hash": None,
                    "attribute_pack": "uot",
                    "chosen_score": best["expected"],
                    "rejected_score": worst["expected"],
                }
            )
    return rows


def write_uot_pairs(eval_dir: Path, out: Path, min_gap: float = 0.0, split: SplitConfig | None = None) -> dict:
    eval_dir, out = Path(eval_dir), Path(out)
    episodes_path, results_path = eval_dir / "episodes.jsonl", eval_dir / "results.json"
    if not episodes_path.exists():
        raise FileNotFoundError(
            f"{episodes_path}: run `alfa eval interactive CASES --questioner uot -o {eval_dir}` first"
        )
    episodes = list(written_episodes(episodes_path).values())  # the last line of each episode (a rerun appends)
    if not any("uot" in e["data"] for e in episodes):
        raise ValueError(f"{episodes_path}: no UoT episodes (made without --questioner uot)")
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    roles = results.get("roles", {"questioner": "unknown"})
    rows = plans_to_pairs(episodes, roles["questioner"], min_gap)
    manifest = {
        "method": "uot",
        "made_by": "alfa uot pairs",
        "description": (
            f"{len(rows)} pairs from {len(episodes)} UoT episodes of `{eval_dir}`: for each question UoT planned, the "
            "candidate with the highest expected information reward (chosen) over the one with the lowest."
        ),
        "attribute_definitions": {
            ATTRIBUTE: "Which question, answered yes or no, would rule out more of the remaining diagnoses (splits "
            "them most evenly)?"
        },
        "roles": roles,
        "settings": {"min_gap": min_gap, **{k: results[k] for k in ("abstain", "max_questions") if k in results}},
        "source": f"the cases of the evaluation in `{eval_dir}`",
    }
    splits = write_scored_pairs(rows, out, manifest, split)
    return {"pairs": len(rows), "episodes": len(episodes), "splits": splits}
