"""`alfa eval report RUNS... -o DIR`: one Markdown page comparing evaluation runs (interactive accuracy and win
rates, each with its interval), with a plot. A run is a folder `alfa eval interactive` or `alfa eval winrate`
wrote; its name in the report is the folder's name."""

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
            interactive.append({"run": run.name, **json.loads((run / "results.json").read_text())})
        elif (run / "winrate.json").exists():
            winrates.append({"run": run.name, **json.loads((run / "winrate.json").read_text())})
        else:
            raise FileNotFoundError(
                f"{run}: neither results.json (alfa eval interactive) nor winrate.json (alfa eval winrate)"
            )
    return interactive, winrates


def plot(interactive: list[dict], winrates: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        (rows, key, title)
        for rows, key, title in ((interactive, "accuracy", "interactive accuracy"), (winrates, "win_rate", "win rate"))
        if rows
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.5), squeeze=False)
    for ax, (rows, key, title) in zip(axes[0], panels):
        values = [r[key]["value"] or 0 for r in rows]
        errors = [
            [v - (r[key]["ci_low"] or v) for v, r in zip(values, rows)],
            [(r[key]["ci_high"] or v) - v for v, r in zip(values, rows)],
        ]
        ax.bar([r["run"] for r in rows], values, yerr=errors, capsize=4, color="#4c72b0")
        ax.axhline(0.5 if key == "win_rate" else 0, color="grey", linestyle=":")
        ax.set_ylim(0, 1)
        ax.set_title(title + " (95% interval)")
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(runs: list[Path], out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    interactive, winrates = collect(runs)
    lines = ["# Evaluation report", ""]
    if interactive:
        names = list(dict.fromkeys(n for r in interactive for n in r["baselines"]))  # runs may differ (no expert)
        head = "| run | n | accuracy | asked_decisive (generic question) | mean questions | "
        lines += ["## Interactive diagnosis", "", head + " | ".join(names) + " |"]
        lines.append("|---" * (5 + len(names)) + "|")
        for r in interactive:
            base = " | ".join(_interval(r["baselines"][n]) if n in r["baselines"] else "-" for n in names)
            asked = r.get("asked_decisive") or {"value": None}  # runs before 2026-12-06 have none
            floor = r.get("asked_decisive_floor") or {"value": None}
            decisive = "-" if asked["value"] is None else f"{_interval(asked)} ({_interval(floor)})"
            lines.append(
                f"| {r['run']} | {r['n']} | **{_interval(r['accuracy'])}** | {decisive} | {r['mean_questions']:.2f} "
                f"| {base} |"
            )
        lines.append("")
        warned = [(r["run"], w) for r in interactive for w in r.get("warnings", [])]  # runs before 2026-12-03 have none
        if warned:
            lines += ["What makes these accuracies say little about the questioner (each run's own warnings):", ""]
            lines += [f"- {run}: {w}" for run, w in warned] + [""]
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
    plot(interactive, winrates, out_dir / "report.png")
    lines += ["![report](report.png)", ""]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines))
    return path
