"""Reading an input file of `alfa ingest` row by row: JSONL, CSV/TSV, Parquet, or a folder `datasets` saved. Each
row comes with its line number (a CSV row by its first physical line); a row that cannot be read (bad bytes,
malformed JSON, a quote left open, more cells than the header) becomes a `Reject` with file, line and reason and
never stops the others."""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import polars as pl

log = logging.getLogger(__name__)


@dataclass
class Reject:
    file: str
    line: int
    field: str
    reason: str
    raw: str


def decode_line(path: Path, n: int, raw: bytes, rejects: list[Reject]) -> str | None:
    """One line as text, or None with a reject when it is not UTF-8. The first line may start with a
    byte-order mark (Excel and many Windows tools write one)."""
    try:
        return raw.decode("utf-8-sig" if n == 1 else "utf-8")
    except UnicodeDecodeError as e:
        rejects.append(
            Reject(str(path), n, "*", f"not UTF-8: {e.reason} at byte {e.start}", raw[:200].decode("utf-8", "replace"))
        )
        return None


def jsonl_rows(path: Path, rejects: list[Reject]):
    """JSON Lines: one object per line; a line that is not one becomes a reject with its reason."""
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            text = decode_line(path, n, raw, rejects)
            if text is None:
                continue
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as e:
                rejects.append(
                    Reject(
                        str(path),
                        n,
                        "*",
                        f"malformed JSON: {e.msg.removesuffix(' at')} at character {e.pos}",
                        text[:200],
                    )
                )
                continue
            if not isinstance(row, dict):
                rejects.append(
                    Reject(str(path), n, "*", f"a line must be a JSON object, got {type(row).__name__}", text[:200])
                )
                continue
            yield n, row


def read_rows(path: Path, rejects: list[Reject]):
    """Yield (line_number, dict) for each record; unreadable records become rejects."""
    suffix = path.suffix.lower()
    if path.is_dir():  # a dataset saved with datasets' save_to_disk
        import datasets

        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            parts = list(ds.items())
        else:
            parts = [("", ds)]
        n = 0
        for _, part in parts:
            for row in part:
                n += 1
                yield n, row
        return
    if suffix in (".jsonl", ".json", ".ndjson"):
        yield from jsonl_rows(path, rejects)
    elif suffix in (".csv", ".tsv"):
        yield from csv_rows(path, "\t" if suffix == ".tsv" else ",", rejects)
    elif suffix == ".parquet":
        for n, row in enumerate(pl.read_parquet(path).iter_rows(named=True), start=1):
            yield n, row
    else:
        raise ValueError(
            f"{path}: unsupported input type {suffix!r}; give .jsonl, .csv, .tsv, .parquet or a folder "
            "written by datasets' save_to_disk"
        )


def csv_rows(path: Path, delimiter: str, rejects: list[Reject]):
    """CSV/TSV rows by their first physical line. A quoted field may hold line breaks (a post's paragraphs); a quote
    left open swallows the rows after it, which the odd count of quote characters in its lines gives away: that
    record is rejected naming its lines, never kept as one long question."""
    with open(path, "rb") as f:
        data = f.read()
    # Decode line by line so one bad byte sequence rejects one line, not the file.
    lines = []
    for n, raw in enumerate(data.splitlines(keepends=True), start=1):
        text = decode_line(path, n, raw, rejects)
        lines.append("\n" if text is None else text)  # a rejected line keeps the line numbers aligned
    reader = csv.DictReader(lines, delimiter=delimiter)
    if reader.fieldnames is None:  # an empty file
        return
    end, spanning = reader.line_num, []
    for row in reader:
        start, end = end + 1, reader.line_num
        while start < end and not lines[start - 1].strip():  # blank lines before a record are skipped
            start += 1
        if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            continue
        if end > start:
            if sum(line.count('"') for line in lines[start - 1 : end]) % 2:
                reason = f'a quote (") opened on line {start} is not closed: lines {start}-{end} would be one row'
                rejects.append(Reject(str(path), start, "*", reason, "".join(lines[start - 1 : end])[:200]))
                continue
            spanning.append(f"{start}-{end}")
        if None in row:
            rejects.append(Reject(str(path), start, "*", "more cells than header columns", json.dumps(row[None])[:200]))
            continue
        yield start, row
    if spanning:
        log.warning(
            "%s: %d rows span several lines (a quoted field with line breaks), lines %s%s",
            path,
            len(spanning),
            ", ".join(spanning[:5]),
            "" if len(spanning) <= 5 else ", ...",
        )
