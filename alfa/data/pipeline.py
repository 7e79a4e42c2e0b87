"""`alfa build PIPELINE.yaml`: every data stage (ingest -> synthesize -> pairs -> lint -> card) from
one YAML that maps one-to-one onto `PipelineConfig` below. Unknown keys are rejected with the line.

Relative paths in the YAML are relative to the directory you run `alfa` from. Loading the YAML checks it whole
(keys, values, input files, pack, backends, licence) before any stage runs; `alfa build --dry-run` stops there.
Every key: docs/pipeline-reference.md. Outputs:
    OUTPUT_DIR/questions.parquet (+ questions.rejects.jsonl)
    OUTPUT_DIR/run/      the synthesis run dir
    OUTPUT_DIR/pairs/    the pair dataset, lint report, README.md card and plots
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from alfa.data.attributes import load_pack
from alfa.data.card import write_card
from alfa.data.filter import FilterConfig
from alfa.data.ingest import PRESETS, FieldMap, run_ingest
from alfa.data.lint import LintConfig, lint, report, write_report
from alfa.data.pairs import SplitConfig, make_pairs
from alfa.data.synthesize import SynthesisConfig, synthesize
from alfa.llm.make import BackendConfig, make_backend
from alfa.yamlconfig import ConfigError, from_dict, load_yaml, where

log = logging.getLogger(__name__)


@dataclass
class InputConfig:
    """What to ingest: files (JSONL/CSV/Parquet/saved HF dataset) and either a preset or a field map."""

    paths: list[str]  # input files; relative paths from the folder you run alfa in
    preset: str | None = None  # a shipped field map: askdocs
    map: FieldMap | None = None  # your columns (when not a preset)

    def __post_init__(self):
        if (self.preset is None) == (self.map is None):
            raise ValueError("give exactly one of `preset` (e.g. askdocs) or `map`")
        if self.preset is not None and self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; presets: {', '.join(PRESETS)}")


@dataclass
class RewriterConfig(BackendConfig):
    """`kind`: local (embedded Qwen2.5-Coder-1.5B on llama.cpp, offline), smollm2 (embedded SmolLM2-135M, fast
    and weak), transformers (local model folder), openai (endpoint), llamacpp (`model`: a GGUF file, served by
    llama.cpp's own server that alfa starts and stops)."""


@dataclass
class JudgeConfig(RewriterConfig):
    """The LLM verifier (alfa.data.judge): the rewriter's fields, plus how many pairs it judges and what it does
    with its verdicts. The default judges a seeded sample of 40 pairs with the embedded model and reports its
    agreement in the card; `pairs: null` and `keep: agreed` judge every pair and keep only the agreed ones.
    `judge: null` turns it off."""

    max_new_tokens: int = 16  # the judge answers 'Answer: A'
    pairs: int | None = 40  # a seeded sample of this many pairs; null: every pair
    keep: str = "all"  # "all": verdicts only measure agreement; "agreed": drop the pairs the judge disagrees with

    def __post_init__(self):
        if self.keep not in ("all", "agreed"):
            raise ValueError(f"judge keep must be 'all' or 'agreed', got {self.keep!r}")
        if self.keep == "agreed" and self.pairs is not None:
            raise ValueError(
                "judge keep: agreed drops the pairs the judge disagrees with, so it judges every pair: set pairs: null"
            )


@dataclass
class CardConfig:
    """The dataset card (alfa.data.card): PAIRS_DIR/README.md."""

    license: str = "cc-by-4.0"  # a licence id as the Hub spells it: follow your source data
    pretty_name: str | None = None  # the card's title (default: one from the pack)
    source_description: str | None = None  # where the questions come from (default: the input paths)


@dataclass
class PipelineConfig:
    input: InputConfig
    output_dir: str  # questions.parquet, run/ and pairs/ go here
    attributes: str = "core"  # shipped pack name or path to your own pack YAML
    select_attributes: list[str] | None = None  # only these attributes of the pack (default: all)
    rewriter: RewriterConfig = field(default_factory=RewriterConfig)
    synthesis: SynthesisConfig = field(default_factory=SynthesisConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    judge: JudgeConfig | None = field(default_factory=JudgeConfig)  # the LLM verifier; `judge: null` turns it off
    split: SplitConfig = field(default_factory=SplitConfig)
    lint: LintConfig = field(default_factory=LintConfig)
    card: CardConfig = field(default_factory=CardConfig)


def load_pipeline(path: Path) -> PipelineConfig:
    """Parse and check the whole pipeline YAML (keys, values, files, packs, backends) before any stage runs:
    every problem is named by file, line and key, and nothing is written."""
    data, lines = load_yaml(path)
    config = from_dict(PipelineConfig, data, Path(path), lines)
    problems = [f"{where(Path(path), lines, key)}: {why}" for key, why in pipeline_problems(config)]
    if problems:
        raise ConfigError("\n".join(problems))
    return config


def pipeline_problems(config: PipelineConfig) -> list[tuple[tuple, str]]:
    """(key path, why) for every setting that would stop the build once it ran: paths are read from the folder
    alfa runs in, as the stages will read them."""
    from alfa.data.card_common import check_license
    from alfa.llm.make import KINDS

    out = []
    for i, p in enumerate(config.input.paths):
        if not Path(p).exists():
            out.append((("input", "paths", i), f"{p}: no such file or folder (relative to {Path.cwd()})"))
    try:
        load_pack(config.attributes).select(config.select_attributes)
    except ConfigError as e:
        out.append((("select_attributes" if config.select_attributes else "attributes",), str(e)))
    for name, backend in (("rewriter", config.rewriter), ("judge", config.judge)):
        if backend is None:
            continue
        if backend.kind not in KINDS:
            out.append(((name, "kind"), f"{backend.kind!r} is not one of {', '.join(KINDS)}"))
        elif backend.kind in ("transformers", "llamacpp") and not (backend.model and Path(backend.model).exists()):
            what = "a local model folder" if backend.kind == "transformers" else "a GGUF file"
            out.append(((name, "model"), f"{backend.model!r}: kind {backend.kind} needs {what} that exists"))
        elif backend.kind == "openai" and not (backend.model and backend.base_url):
            out.append(((name,), "kind openai needs model (the served name) and base_url (http://HOST:PORT/v1)"))
    tokenizer = config.lint.tokenizer
    if tokenizer and tokenizer not in ("smollm2", "local") and not Path(tokenizer).is_dir():
        out.append((("lint", "tokenizer"), f"{tokenizer}: no such tokenizer folder (or 'smollm2' for SmolLM2's)"))
    try:
        check_license(config.card.license)
    except ValueError as e:
        out.append((("card", "license"), str(e).removeprefix("--license ")))
    return out


def dry_run(config: PipelineConfig, path: Path) -> str:
    """What `alfa build` would do, for `--dry-run` (the config passed every check to get here)."""
    judge = config.judge
    return "\n".join(
        [
            f"{path}: every key, file, pack and backend checked",
            f"  ingest {', '.join(config.input.paths)} ({config.input.preset or 'map'}) -> {config.output_dir}",
            f"  synthesize: pack {config.attributes}"
            + (f" ({', '.join(config.select_attributes)})" if config.select_attributes else "")
            + f", rewriter {config.rewriter.kind}"
            + (f" {config.rewriter.model}" if config.rewriter.model else "")
            + (f", first {config.synthesis.limit} questions" if config.synthesis.limit else ""),
            "  pairs: "
            + (
                "no judge"
                if judge is None
                else f"judge {judge.kind} on {judge.pairs or 'every'} pairs, keep {judge.keep}"
            ),
            f"  lint{'' if config.lint.tokenizer else ' (truncation checks skipped: no tokenizer)'}, "
            f"card (license {config.card.license})",
        ]
    )


def stop_if_every_call_failed(stats, rewriter, run_dir: Path) -> None:
    """A stage whose every call failed (an endpoint down, a wrong URL or key) stops the build: the later stages
    would only write an empty dataset and a card saying so."""
    if stats.calls_made == 0 or stats.failed < stats.calls_made:
        return
    errors = [json.loads(line)["error"] for line in (run_dir / "failed_calls.jsonl").read_text().splitlines()]
    served_by = ", ".join(rewriter.base_urls) if rewriter.backend == "openai" else rewriter.backend
    raise RuntimeError(
        f"synthesize: all {stats.failed} calls to {rewriter.model_id} ({served_by}) failed; the first: "
        f"{errors[0] if errors else 'see the log'} (every failure: {run_dir / 'failed_calls.jsonl'}). The build "
        "stops before pairs, lint and card: check the endpoint (is it up? its URL, its key), then run the same "
        "command again; answered calls are cached"
    )


def build(config: PipelineConfig) -> int:
    """Run every stage; returns the lint exit code (0 clean or warnings only, 1 blocking findings)."""
    t0 = time.perf_counter()
    out = Path(config.output_dir)
    fm = PRESETS[config.input.preset] if config.input.preset else config.input.map
    ingested = run_ingest([Path(p) for p in config.input.paths], fm, out / "questions.parquet")
    questions = ingested.questions
    if questions.height == 0:
        raise ConfigError(f"no questions left to synthesize; see {out / 'questions.rejects.jsonl'}")
    pack = load_pack(config.attributes).select(config.select_attributes)
    rewriter = make_backend(config.rewriter)
    try:
        stats = synthesize(
            questions,
            pack,
            rewriter,
            out / "run",
            config.synthesis,
            questions_source=", ".join(config.input.paths),
            groups="given" if ingested.groups_given else "none",
            max_words=config.filter.max_words,  # a reply the filter would reject as too long is sampled again
        )
    finally:
        rewriter.close()  # stops a llama.cpp server alfa started
    stop_if_every_call_failed(stats, rewriter, out / "run")
    judge = None
    if config.judge:
        judge = make_backend(config.judge, stop=())
    try:
        make_pairs(
            out / "run",
            out / "pairs",
            config.filter,
            config.split,
            judge=judge,
            judge_sample=config.judge.pairs if config.judge else None,
            judge_keep=config.judge.keep if config.judge else "agreed",
        )
    finally:
        if judge is not None:
            judge.close()
    findings = lint(out / "pairs", config.lint)
    write_report(findings, out / "pairs", config.lint)
    print(report(findings, out / "pairs", config.lint))
    card = write_card(out / "pairs", config.card.license, config.card.pretty_name, config.card.source_description)
    log.info("build: done in %.0f s; dataset %s, card %s", time.perf_counter() - t0, out / "pairs", card)
    return 1 if any(f.severity == "error" for f in findings) else 0
