"""Stage 5, lint: the gate before training. Each check returns findings; `error` findings block.

Checks:
    identical_pair      chosen == rejected (after normalizing case/punctuation)            error
    near_identical      chosen and rejected differ by almost nothing (character ratio)     warning
    length_bias         within an attribute, chosen is almost always longer (or shorter)   warning
    truncated_diff      under tokenizer + max_length, the tokens that differ are cut off   error
    truncated           prompt + completion longer than max_length, difference still seen  warning
    group_leakage       a group (post) appears in two splits                                error
    empty_split         a split with no pairs                                               warning
    tiny_split          a split whose pairs come from one question: its figures say nothing  warning
    balance             an attribute x pair-type cell far below the others                  warning
    no_pairs            the dataset has no pairs at all                                      error

The two truncation checks run only with a tokenizer and max_length; the report, lint_report.json and the card
say when they were skipped, so "passed" never covers a check that did not run.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import polars as pl

from alfa.data.filter import normalize
from alfa.data.pairs import PAIR_TYPES, SPLITS, data_digest, load_pairs


@dataclass
class Finding:
    check: str
    severity: str  # "error" blocks training; "warning" is for a person to look at
    message: str
    count: int = 0
    examples: list[str] = field(default_factory=list)  # pair_ids


@dataclass
class LintConfig:
    """The gate before training (alfa.data.lint): thresholds of the warnings, and the truncation checks' tokenizer."""

    near_identical_ratio: float = 0.95  # chosen and rejected this alike (character ratio) is a warning
    length_bias_share: float = 0.85  # warn when chosen is longer in more than this share (or less than 1-share)
    length_bias_min_pairs: int = 10  # fewer pairs in an attribute: no length-bias verdict
    balance_min_ratio: float = 0.25  # smallest cell / largest cell
    tokenizer: str | None = None  # a local tokenizer/model folder, or "smollm2" for the embedded SmolLM2's
    max_length: int | None = None  # the trainer's max_length (prompt + completion)

    def __post_init__(self):
        if (self.tokenizer is None) != (self.max_length is None):
            raise ValueError("the truncation check needs both tokenizer and max_length (or neither)")


def _content(messages) -> str:
    return messages[-1]["content"] if messages else ""


def check_identical(pairs: pl.DataFrame, config: LintConfig) -> list[Finding]:
    identical, near = [], []
    for r in pairs.select("pair_id", "chosen", "rejected").iter_rows(named=True):
        c, rj = _content(r["chosen"]), _content(r["rejected"])
        if normalize(c) == normalize(rj):
            identical.append(r["pair_id"])
        elif difflib.SequenceMatcher(None, c.lower(), rj.lower()).ratio() >= config.near_identical_ratio:
            near.append(r["pair_id"])
    out = []
    if identical:
        out.append(
            Finding(
                "identical_pair",
                "error",
                f"{len(identical)} pairs whose chosen and rejected are the same "
                "question: they teach nothing and add noise",
                len(identical),
                identical[:5],
            )
        )
    if near:
        out.append(
            Finding(
                "near_identical",
                "warning",
                f"{len(near)} pairs whose chosen and rejected differ by a few "
                f"characters (ratio >= {config.near_identical_ratio})",
                len(near),
                near[:5],
            )
        )
    return out


def check_length_bias(pairs: pl.DataFrame, config: LintConfig) -> list[Finding]:
    out = []
    lengths = pairs.with_columns(
        pl.col("chosen").list.last().struct.field("content").str.len_chars().alias("lc"),
        pl.col("rejected").list.last().struct.field("content").str.len_chars().alias("lr"),
    )
    for (attribute,), g in lengths.group_by(["attribute"]):
        if g.height < config.length_bias_min_pairs:
            continue
        share = float((g["lc"] > g["lr"]).mean())
        if share > config.length_bias_share or share < 1 - config.length_bias_share:
            out.append(
                Finding(
                    "length_bias",
                    "warning",
                    f"{attribute}: chosen is longer than rejected in {share:.0%} of {g.height} pairs "
                    f"(mean {g['lc'].mean():.0f} vs {g['lr'].mean():.0f} chars); a model may learn length, not "
                    "the attribute",
                    g.height,
                )
            )
    return out


def check_truncation(pairs: pl.DataFrame, config: LintConfig) -> list[Finding]:
    """Tokenize like a DPO trainer (chat template on prompt, completion appended) and see whether the
    first token where chosen and rejected differ survives `max_length` (prompt + completion)."""
    if skipped_checks(config):
        return []
    from transformers import AutoTokenizer

    if config.tokenizer in ("smollm2", "local"):  # "local" was its name before; --rewriter local is Qwen
        from alfa.llm.embedded import smollm2_path

        tok = AutoTokenizer.from_pretrained(smollm2_path())
    else:
        tok = AutoTokenizer.from_pretrained(config.tokenizer)
    if tok.chat_template is None:
        raise ValueError(
            f"{config.tokenizer}: the tokenizer has no chat template, so conversational pairs "
            "cannot be tokenized the way the trainer will"
        )
    hidden, cut = [], []
    for r in pairs.select("pair_id", "prompt", "chosen", "rejected").iter_rows(named=True):
        prompt_ids = tok.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=True, return_dict=True)[
            "input_ids"
        ]
        c = tok(_content(r["chosen"]), add_special_tokens=False)["input_ids"]
        rj = tok(_content(r["rejected"]), add_special_tokens=False)["input_ids"]
        first_diff = next((i for i, (a, b) in enumerate(zip(c, rj)) if a != b), min(len(c), len(rj)))
        room = config.max_length - len(prompt_ids)
        if room <= first_diff:
            hidden.append(r["pair_id"])
        elif len(prompt_ids) + max(len(c), len(rj)) > config.max_length:
            cut.append(r["pair_id"])
    out = []
    if hidden:
        out.append(
            Finding(
                "truncated_diff",
                "error",
                f"{len(hidden)} pairs lose the tokens where chosen and rejected differ under "
                f"max_length={config.max_length} with {config.tokenizer}: raise max_length or shorten "
                "the context",
                len(hidden),
                hidden[:5],
            )
        )
    if cut:
        out.append(
            Finding(
                "truncated",
                "warning",
                f"{len(cut)} pairs are truncated under max_length={config.max_length}; the difference is still visible",
                len(cut),
                cut[:5],
            )
        )
    return out


def check_splits(pairs: pl.DataFrame, config: LintConfig) -> list[Finding]:
    out = []
    leaked = pairs.group_by("group_id").agg(pl.col("split").n_unique().alias("n")).filter(pl.col("n") > 1)
    if leaked.height:
        out.append(
            Finding(
                "group_leakage",
                "error",
                f"{leaked.height} groups (posts) appear in more than one split: test scores would be inflated",
                leaked.height,
                leaked["group_id"].head(5).to_list(),
            )
        )
    for s in SPLITS:
        n = pairs.filter(pl.col("split") == s).height
        if n == 0:
            out.append(Finding("empty_split", "warning", f"split {s!r} has no pairs (too few groups or questions)"))
        elif pairs.filter(pl.col("split") == s)["qid"].n_unique() == 1:
            out.append(
                Finding(
                    "tiny_split",
                    "warning",
                    f"split {s!r} holds the pairs of one question only: any figure measured on it says nothing "
                    "(more data, or other split fractions)",
                )
            )
    return out


def check_balance(pairs: pl.DataFrame, config: LintConfig) -> list[Finding]:
    counts = {(a, t): 0 for a in pairs["attribute"].unique().to_list() for t in PAIR_TYPES}
    for (a, t), g in pairs.filter(pl.col("pair_type").is_in(PAIR_TYPES)).group_by(["attribute", "pair_type"]):
        counts[(a, t)] = g.height
    if not counts:
        return [Finding("no_pairs", "error", "the dataset has no pairs")]
    top = max(counts.values())
    low = {k: v for k, v in counts.items() if v < config.balance_min_ratio * top}
    if not low:
        return []
    cells = ", ".join(f"{a}/{t}={v}" for (a, t), v in sorted(low.items()))
    return [
        Finding(
            "balance",
            "warning",
            f"attribute x pair-type cells below {config.balance_min_ratio:.0%} of the largest ({top}): {cells}",
            len(low),
        )
    ]


CHECKS = [check_identical, check_length_bias, check_truncation, check_splits, check_balance]


def lint(pairs_dir: Path, config: LintConfig | None = None) -> list[Finding]:
    config = config or LintConfig()
    pairs = load_pairs(pairs_dir)
    if pairs.height == 0:
        return [
            Finding(
                "no_pairs",
                "error",
                "the dataset has no pairs: every variant was rejected (see rejected_variants.parquet for the reasons)",
            )
        ]
    return [f for check in CHECKS for f in check(pairs, config)]


def skipped_checks(config: LintConfig | None = None) -> dict[str, str]:
    """The checks `config` leaves out, each with why and how to run it."""
    config = config or LintConfig()
    if config.tokenizer and config.max_length:
        return {}
    why = "no tokenizer and max_length given (`alfa lint DIR --tokenizer smollm2 --max-length N`, or a pipeline's lint: block)"
    return {"truncated_diff": why, "truncated": why}


def report(findings: list[Finding], pairs_dir: Path, config: LintConfig | None = None) -> str:
    errors = [f for f in findings if f.severity == "error"]
    skipped = skipped_checks(config)
    lines = [f"alfa lint {pairs_dir}: {len(errors)} error(s), {len(findings) - len(errors)} warning(s)"]
    for f in sorted(findings, key=lambda f: f.severity):
        lines.append(f"  [{f.severity.upper()}] {f.check}: {f.message}")
        if f.examples:
            lines.append(f"      e.g. {', '.join(f.examples)}")
    if not findings:
        lines.append("  every check that ran passed" if skipped else "  all checks passed")
    if skipped:
        lines.append(f"  skipped: {', '.join(skipped)}: {next(iter(skipped.values()))}")
    return "\n".join(lines)


def write_report(findings: list[Finding], pairs_dir: Path, config: LintConfig | None = None) -> Path:
    """PAIRS_DIR/lint_report.json, stamped with the digest of the data it describes: the card includes a
    report only while the data is still the data that was linted. `skipped` names the checks that did not run."""
    path = Path(pairs_dir) / "lint_report.json"
    payload = {
        "data_digest": data_digest(pairs_dir),
        "findings": [asdict(f) for f in findings],
        "skipped": skipped_checks(config),
    }
    path.write_text(json.dumps(payload, indent=2))
    return path
