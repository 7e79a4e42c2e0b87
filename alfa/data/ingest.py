"""Stage 1, ingest: any table of follow-up questions -> the normalized *questions* table.

Output columns (one row per follow-up question):
    qid        str   unique question id
    group_id   str   the post / thread the question belongs to; splits never cut a group
    context    list[{role, content}]  chat messages the question answers: the patient's post,
                     then earlier (doctor question, patient answer) turns
    question   str   the original follow-up question (the thing the rewriter rewrites)
    hindsight  str   JSON object of outcome fields (e.g. final diagnosis) a rewriter may see
    meta       str   JSON object of any other fields the user asked to keep

Bad rows never stop the others: each one goes to a reject file with file, line, field and reason.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from alfa.data.input_files import Reject, read_rows

log = logging.getLogger(__name__)

QUESTION_COLUMNS = ["qid", "group_id", "context", "question", "hindsight", "meta"]


@dataclass
class FieldMap:
    """Which input column feeds which output field.

    `context` is a list: each named column becomes one paragraph of the patient's message, in order
    (e.g. title then post). `turns` names a column holding earlier Q/A turns: a list of objects with
    `question` and `patient_answer` keys. `hindsight` and `meta` list columns copied into those JSON
    objects. `qid` may be omitted: the ids are then `<file stem>-<line>`, or with several inputs named alike,
    `<folder>/<file stem>-<line>` with as many folders as make the names differ (`id_prefixes`).
    """

    question: str = "question"  # the column holding the follow-up question
    context: list[str] = field(default_factory=lambda: ["context"])  # columns joined into the patient's message
    group: str | None = None  # the post/thread id: a group never spans two splits (no leakage)
    qid: str | None = None  # a unique row id (default: FILESTEM-LINE)
    turns: str | None = None  # earlier Q/A turns: a list of {question, patient_answer}
    hindsight: list[str] = field(default_factory=list)  # columns known after the fact (e.g. the diagnosis)
    meta: list[str] = field(default_factory=list)  # columns carried along untouched


# The shipped real data (r/AskDocs threads, ../shared/data/askdocs): context is title + post + earlier
# Q/A turns, the group is the post, hindsight is the thread's outcome.
PRESETS: dict[str, FieldMap] = {
    "askdocs": FieldMap(
        question="question",
        context=["title", "post"],
        group="id_post",
        qid="qid",
        turns="prev_additional_contexts",
        hindsight=["final_diagnosis", "conclusion"],
        meta=["thread_id", "question_type"],
    ),
}


def parse_map(spec: str) -> FieldMap:
    """Parse `--map question=COL,context=COL+COL,group=COL,qid=COL,hindsight=COL+COL,...`."""
    fm = FieldMap()
    for item in filter(None, (s.strip() for s in spec.split(","))):
        if "=" not in item:
            raise ValueError(f"--map item {item!r} is not KEY=COLUMN (e.g. question=comment_body)")
        key, value = (s.strip() for s in item.split("=", 1))
        if key in ("context", "hindsight", "meta"):
            setattr(fm, key, [c for c in value.split("+") if c])
        elif key in ("question", "group", "qid", "turns"):
            setattr(fm, key, value)
        else:
            raise ValueError(f"--map key {key!r} is unknown; use question, context, group, qid, turns, hindsight, meta")
    return fm


@dataclass
class IngestResult:
    questions: pl.DataFrame
    rejects: list[Reject]
    read: int
    groups_given: bool = True  # False: no group column mapped, every question is its own group


# Key of the questions table's Parquet metadata that says whether groups (posts) were given: "given" or
# "none". With none, questions of one post can land in two splits, and the card says so.
GROUPS_KEY = "alfa.groups"


def groups_of(questions_path: Path) -> str:
    """ "given", "none", or "unknown" (a table not written by `alfa ingest`)."""
    return pl.read_parquet_metadata(questions_path).get(GROUPS_KEY, "unknown")


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    return str(value).strip()


def _turns(value) -> list[dict]:
    """Earlier (doctor question, patient answer) turns -> alternating chat messages."""
    if value in (None, ""):
        return []
    if isinstance(value, str):
        value = json.loads(value)
    messages = []
    for turn in value:
        q, a = _text(turn.get("question")), _text(turn.get("patient_answer"))
        if q:
            messages.append({"role": "assistant", "content": q})
            messages.append({"role": "user", "content": a or "(no answer)"})
    return messages


def id_prefixes(paths: list[Path]) -> dict[Path, str]:
    """Each input's prefix for default ids: its stem, widened by parent folders only where another input ends
    alike (a/q.jsonl and b/q.jsonl give a/q and b/q; a lone z.csv stays z), so two files never collide."""
    tails = {f: [*f.parent.parts[1:], f.stem] for f in {Path(p).resolve() for p in paths}}

    def tail(f: Path, depth: int) -> str:
        return "/".join(tails[f][-depth:])

    prefix = {}
    for f in tails:
        depth = 1
        while any(tail(g, depth) == tail(f, depth) for g in tails if g != f):
            depth += 1  # distinct files differ somewhere in their full paths, so this ends
        prefix[f] = tail(f, depth)
    return {Path(p): prefix[Path(p).resolve()] for p in paths}


def normalize_row(row: dict, fm: FieldMap, id_prefix: str, line: int) -> dict:
    """One input record -> one questions-table row. Raises KeyError/ValueError naming the field."""
    if fm.question not in row:
        raise KeyError(fm.question)
    if row[fm.question] is not None and not isinstance(row[fm.question], str):
        raise ValueError(
            f"{fm.question}: a question must be text, got {type(row[fm.question]).__name__} "
            f"{json.dumps(row[fm.question], default=str)[:80]}"
        )
    question = _text(row[fm.question])
    if not question:
        raise ValueError(f"{fm.question}: empty question")
    paragraphs = []
    for col in fm.context:
        if col not in row:
            raise KeyError(col)
        paragraphs.append(_text(row[col]))
    post = "\n\n".join(p for p in paragraphs if p)
    if not post:
        raise ValueError(f"{'+'.join(fm.context)}: empty context")
    context = [{"role": "user", "content": post}]
    if fm.turns:
        try:
            context += _turns(row.get(fm.turns))
        except (TypeError, AttributeError, json.JSONDecodeError) as e:
            raise ValueError(f"{fm.turns}: earlier turns must be a list of objects with question/patient_answer ({e})")
    qid = _text(row.get(fm.qid)) if fm.qid else f"{id_prefix}-{line}"
    if not qid:
        raise ValueError(f"{fm.qid}: empty id")
    group = _text(row.get(fm.group)) if fm.group else qid
    if not group:
        raise ValueError(f"{fm.group}: empty group id")
    hindsight = {c: row.get(c) for c in fm.hindsight if _text(row.get(c))}
    meta = {c: row.get(c) for c in fm.meta if c in row}
    return {
        "qid": qid,
        "group_id": group,
        "context": context,
        "question": question,
        "hindsight": json.dumps(hindsight, ensure_ascii=False, default=str),
        "meta": json.dumps(meta, ensure_ascii=False, default=str),
    }


def check_mapped_columns(path: Path, fm: FieldMap, columns: set[str]) -> None:
    """A mapped column that no row of the file has is a typo in --map, not a bad row: say so once, with the file's
    real columns (rather than one reject per row)."""
    mapped = {fm.question: "question", **{c: "context" for c in fm.context}}
    mapped |= {c: key for key, c in (("group", fm.group), ("qid", fm.qid), ("turns", fm.turns)) if c}
    absent = [f"{key}={column}" for column, key in mapped.items() if column not in columns]
    if columns and absent:
        raise ValueError(
            f"{path}: no row has the column(s) that --map {', '.join(absent)} names; its columns: "
            f"{', '.join(sorted(columns))}"
        )


def ingest(paths: list[Path] | Path, fm: FieldMap) -> IngestResult:
    """Read every input file and normalize it. Never raises for a bad row: it becomes a reject."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    rows, rejects, seen, read = [], [], {}, 0
    prefixes = id_prefixes([Path(p) for p in paths]) if not fm.qid else {}
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or folder")
        columns: set[str] = set()
        for line, raw in read_rows(path, rejects):
            read += 1
            columns |= set(raw)
            try:
                out = normalize_row(raw, fm, prefixes.get(path, path.stem), line)
            except KeyError as e:
                rejects.append(
                    Reject(
                        str(path), line, e.args[0], f"missing field {e.args[0]!r}", json.dumps(raw, default=str)[:200]
                    )
                )
                continue
            except ValueError as e:
                fld, _, reason = str(e).partition(": ")
                rejects.append(Reject(str(path), line, fld, reason or str(e), json.dumps(raw, default=str)[:200]))
                continue
            if out["qid"] in seen:
                rejects.append(
                    Reject(
                        str(path),
                        line,
                        fm.qid or "qid",
                        f"duplicate qid {out['qid']!r} (first at {seen[out['qid']]})",
                        json.dumps(raw, default=str)[:200],
                    )
                )
                continue
            seen[out["qid"]] = f"{path}:{line}"
            rows.append(out)
        check_mapped_columns(path, fm, columns)
    schema = {
        "qid": pl.String,
        "group_id": pl.String,
        "context": pl.List(pl.Struct({"role": pl.String, "content": pl.String})),
        "question": pl.String,
        "hindsight": pl.String,
        "meta": pl.String,
    }
    return IngestResult(pl.DataFrame(rows, schema=schema), rejects, read, groups_given=fm.group is not None)


def write_rejects(rejects: list[Reject], path: Path) -> None:
    """Rejects as JSONL: one object per rejected record with file, line, field, reason, raw excerpt."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in rejects:
            f.write(json.dumps(r.__dict__, ensure_ascii=False) + "\n")


def read_questions(path: Path) -> pl.DataFrame:
    """A questions table `alfa ingest` wrote, or a ValueError saying what the file is and what to run instead."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; make the questions table with `alfa ingest INPUT -o {path}`")
    if path.suffix.lower() != ".parquet":
        raise ValueError(
            f"{path} is not a questions table (the Parquet file `alfa ingest` writes): run "
            f"`alfa ingest {path} --map question=COL,context=COL,group=COL -o q.parquet` and give q.parquet"
        )
    try:
        columns = pl.read_parquet_schema(path)
    except pl.exceptions.PolarsError as e:
        raise ValueError(f"{path}: not a readable Parquet file ({e})") from None
    missing = [c for c in ("qid", "group_id", "context", "question") if c not in columns]
    if missing:
        what = " It looks like a pairs file (prompt/chosen/rejected)." if "chosen" in columns else ""
        raise ValueError(
            f"{path} is not a questions table: it lacks {', '.join(missing)} (its columns: {', '.join(columns)}).{what} "
            "Give the questions table `alfa ingest` wrote (a run dir holds its own copy: RUN_DIR/questions.parquet)"
        )
    return pl.read_parquet(path)


def run_ingest(inputs: list[Path], fm: FieldMap, output: Path) -> IngestResult:
    """Ingest and write `output` (Parquet) plus `<output stem>.rejects.jsonl` beside it."""
    if output.is_dir():
        raise ValueError(
            f"-o {output} is a folder: give the questions file to write, e.g. {output / 'questions.parquet'}"
        )
    result = ingest(inputs, fm)
    output.parent.mkdir(parents=True, exist_ok=True)
    result.questions.write_parquet(output, metadata={GROUPS_KEY: "given" if result.groups_given else "none"})
    if not result.groups_given:
        log.warning(
            "ingest: no group column mapped (--map group=COL): every question is its own group, so "
            "questions of one post can land in different splits; the card will say so"
        )
    reject_path = output.with_name(output.stem + ".rejects.jsonl")
    write_rejects(result.rejects, reject_path)
    log.info(
        "ingest: %d records read, %d questions kept in %s, %d rejected -> %s",
        result.read,
        result.questions.height,
        output,
        len(result.rejects),
        reject_path,
    )
    return result
