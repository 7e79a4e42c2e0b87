"""`alfa eval report RUNS... -o DIR [--base RUN]`: one Markdown page comparing evaluation runs (interactive
accuracy, the missing-premise testbed's `asked_decisive`, win rates overall and per attribute, each with its
interval), with a plot. A run is a folder `alfa eval interactive` or `alfa eval winrate` wrote; its name in the
report is the folder's name. With `--base`, each interactive run's paired difference from the base run on the cases
both ran (their episodes.jsonl): the comparison docs/results.md reports."""

from __future__ import annotations

import json
from pathlib import Path


def _interval(x: dict) -> str:
    return "n/a" if x["value"] is None else f"{x['value']:.1%} ({x['ci_low']:.1%}-{x['ci_high']:.1%})"


def collect(runs: list[Path]) -> tuple[list[dict], list[dict]]:
    """(interactive rows, win-rate rows) from the runs' results.json / winrate.json."""
    interactive, winrates = [], []
    for run in map(Path, runs):
        if (run / "results.json").exists():
            interactive.append({"run": run.name, "path": run, **json.loads((run / "results.json").read_text())})
        elif (run / "winrate.json").exists():
            winrates.append({"run": run.name, **json.loads((run / "winrate.json").read_text())})
        else:
            raise FileNotFoundError(
                f"{run}: neither results.json (alfa eval interactive) nor winrate.json (alfa eval winrate)"
            )
    return interactive, winrates


def paired_difference(run: Path, base: Path, key: str) -> dict:
    """The mean per-case difference run - base of an episode result (`asked_decisive`, `correct`) over the cases
    both runs hold, with a 95% bootstrap interval; every shared case counts, a failed one as 0."""
    from alfa.stats import bootstrap_mean

    def outcomes(folder: Path) -> dict[str, float]:
        with open(folder / "episodes.jsonl", encoding="utf-8") as f:
            episodes = [json.loads(line) for line in f if line.strip()]
        return {e["episode_id"]: float(bool((e.get("result") or {}).get(key))) for e in episodes}

    a, b = outcomes(run), outcomes(base)
    shared = [c for c in a if c in b]
    return {**bootstrap_mean([a[c] - b[c] for c in shared]), "n": len(shared)}


def _points(x: dict) -> str:
    if x["value"] is None:
        return "n/a (no shared case)"
    return f"{100 * x['value']:+.1f} points ({100 * x['ci_low']:+.1f} to {100 * x['ci_high']:+.1f}), {x['n']} cases"


def testbed_table(interactive: list[dict], base: Path | None) -> list[str]:
    """The missing-premise testbed's rows as docs/results.md shows them (runs without `asked_decisive` left out)."""
    rows = [r for r in interactive if (r.get("asked_decisive") or {}).get("value") is not None]
    if not rows:
        return []
    paired = f" | asked_decisive minus {base.name}'s, same cases" if base else ""
    lines = [
        "## Missing-premise testbed",
        "",
        "`asked_decisive`: the share of cases whose question drew the removed premise out of the patient (the "
        "floor: a generic question); answered first: the model answered before asking anything; turns with a '?': "
        "of the turns sent to the patient, those that hold a question at all. Accuracy is the "
        "expert's (n/a: a run with `--questions-only`, or with no expert).",
        "",
        f"| run | cases | asked_decisive | floor | answered first | turns with a '?' | accuracy | answered before the "
        f"premise was told{paired} |",
        "|---" * (8 + bool(base)) + "|",
    ]
    for r in rows:
        before = r.get("answered_before_decisive_fact") or {"value": None}
        cells = [r["run"], str(r["n"]), f"**{_interval(r['asked_decisive'])}**", _interval(r["asked_decisive_floor"])]
        premature = r.get("premature_answer_rate") or {"value": None}
        q = r.get("questions") or {}  # runs before 2026-12-07 have no question-mark count
        marked = f"{q['with_question_mark']} of {q['asked']}" if "with_question_mark" in q else "-"
        cells += [_interval(premature), marked, _interval(r["accuracy"]), _interval(before)]
        if base:
            cells.append("-" if r["path"] == base else _points(paired_difference(r["path"], base, "asked_decisive")))
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def plot(interactive: list[dict], winrates: list[dict], path: Path) -> bool:
    """report.png, one panel per kind of figure the runs hold; False when none holds one (no plot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    testbed = [r for r in interactive if (r.get("asked_decisive") or {}).get("value") is not None]
    attributes = list(dict.fromkeys(a for r in winrates for a in r.get("by_attribute", {})))
    per_attribute = [  # one bar per (run, attribute): the win rate on each attribute the judge reads
        {"run": f"{r['run']}: {a}", "win_rate": r["by_attribute"][a]}
        for r in winrates
        for a in attributes
        if r.get("by_attribute", {}).get(a, {}).get("value") is not None
    ]
    panels = [
        (shown, key, title)
        for rows, key, title in (
            (interactive, "accuracy", "interactive accuracy"),
            (testbed, "asked_decisive", "asked for the missing premise"),
            (winrates, "win_rate", "win rate"),
            (per_attribute, "win_rate", "win rate per attribute"),
        )
        if (shown := [r for r in rows if r[key]["value"] is not None])  # no bar for a run that has no figure
    ]
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.5), squeeze=False)
    for ax, (rows, key, title) in zip(axes[0], panels):
        values = [r[key]["value"] or 0 for r in rows]
        errors = [  # clipped at 0: a Wilson bound can sit a rounding error inside its rate
            [max(0.0, v - (r[key]["ci_low"] or v)) for v, r in zip(values, rows)],
            [max(0.0, (r[key]["ci_high"] or v) - v) for v, r in zip(values, rows)],
        ]
        ax.bar([r["run"] for r in rows], values, yerr=errors, capsize=4, color="#4c72b0")
        ax.axhline(0.5 if key == "win_rate" else 0, color="grey", linestyle=":")
        ax.set_ylim(0, 1)
        ax.set_title(title + " (95% interval)")
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_report(runs: list[Path], out_dir: Path, base: Path | None = None) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    interactive, winrates = collect(runs)
    if base is not None and not (Path(base) / "episodes.jsonl").exists():
        raise FileNotFoundError(f"--base {base}: no episodes.jsonl (give an `alfa eval interactive` output folder)")
    lines = ["# Evaluation report", ""]
    if interactive:
        names = list(dict.fromkeys(n for r in interactive for n in r["baselines"]))  # runs may differ (no expert)
        head = "| run | n | accuracy | asked_decisive (generic question) | mean questions | "
        lines += ["## Interactive diagnosis", "", head + " | ".join(names) + " |"]
        lines.append("|---" * (5 + len(names)) + "|")
        for r in interactive:
            trivial = " | ".join(_interval(r["baselines"][n]) if n in r["baselines"] else "-" for n in names)
            asked = r.get("asked_decisive") or {"value": None}  # runs before 2026-12-06 have none
            floor = r.get("asked_decisive_floor") or {"value": None}
            decisive = "-" if asked["value"] is None else f"{_interval(asked)} ({_interval(floor)})"
            lines.append(
                f"| {r['run']} | {r['n']} | **{_interval(r['accuracy'])}** | {decisive} | {r['mean_questions']:.2f} "
                f"| {trivial} |"
            )
        lines.append("")
        warned = [(r["run"], w) for r in interactive for w in r.get("warnings", [])]  # runs before 2026-12-03 have none
        if warned:
            lines += ["What makes these accuracies say little about the questioner (each run's own warnings):", ""]
            lines += [f"- {run}: {w}" for run, w in warned] + [""]
    lines += testbed_table(interactive, Path(base) if base else None)
    if winrates:
        lines += [
            "## Win rates (0.5 is no difference)",
            "",
            "Reading `probability`: P(A better) from the judge's first-token probabilities, the two orders averaged; "
            "`text`: its written verdicts, a tie 0.5. Wins / ties / losses count written verdicts either way. The "
            "control is the known-bad check (a fit judge puts it near 0%), the known difference the known-better one "
            "(a post's human question against another post's: near 100%); judge fit needs both (docs/evaluation.md).",
            "",
            "| run | n | reading | win rate | wins / ties / losses | failures | position bias | control | known difference "
            "| judge fit |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in winrates:
            bias = "n/a" if r["position_bias"] is None else f"{r['position_bias']:.2f}"
            fit = (r.get("judge_fit") or {}).get("fit")  # runs before 2026-12-06 have no verdict
            lines.append(
                f"| {r['run']} | {r['n']} | {r.get('reading', 'text')} | **{_interval(r['win_rate'])}** "
                f"| {r['wins']} / {r['ties']} / {r['losses']} | {r['failures']} | {bias} "
                f"| {_interval(r['control']['win_rate']) if 'control' in r else 'not run'} "
                f"| {_interval(r['known_difference']['win_rate']) if 'known_difference' in r else 'not run'} "
                f"| {'yes' if fit else 'no' if fit is False else 'not checked'} |"
            )
        lines.append("")
    if plot(interactive, winrates, out_dir / "report.png"):
        lines += ["![report](report.png)", ""]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines))
    return path
