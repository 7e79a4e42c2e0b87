"""Stage 7, review: push a stratified sample of pairs to Argilla as blind A/B records, resuming after a
lost server or a killed push (record ids are pair ids, so only what is missing is sent)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import requests

from alfa.data.pairs import load_pairs
from alfa.review.connection import DEFAULT_DATASET, DEFAULT_WORKSPACE, Connection, ReviewError, open_dataset
from alfa.review.records import (
    attribute_definitions,
    review_settings,
    sample_pairs,
    schema_diff,
    settings_schema,
    to_record,
)


@dataclass
class PushResult:
    dataset: str
    workspace: str
    sampled: int
    already_there: int
    pushed: int
    url: str


def push(
    conn: Connection,
    pairs_dir: Path,
    sample: int | None = None,
    stratify: tuple[str, ...] = ("attribute", "pair_type"),
    dataset: str = DEFAULT_DATASET,
    workspace: str = DEFAULT_WORKSPACE,
    min_submitted: int = 1,
    suggestions: bool = False,
    pack: str | None = None,
    seed: int = 0,
    batch_size: int = 64,
    retry_for_s: float = 120.0,
) -> PushResult:
    """Push a stratified sample of the pairs as blind A/B records. Record ids are the pair ids, so pushing
    again adds only what is missing: when the server goes away (a restart) the push waits up to `retry_for_s`
    seconds and sends what it does not have yet; a rerun resumes where a killed push stopped."""
    import argilla as rg

    pairs = load_pairs(pairs_dir)
    definitions = attribute_definitions(pairs_dir, pack)
    settings = review_settings(definitions, min_submitted)
    chosen = sample_pairs(pairs, sample, list(stratify), seed)
    first_look: list[set[str]] = []

    def attempt():  # asks the server what it has each time, so a retry or a rerun sends only what is missing
        client = conn.client
        if workspace not in {w.name for w in client.workspaces}:
            if conn.role == "annotator":
                raise ReviewError(f"user {conn.username!r} is an annotator and cannot push; use an owner or admin key")
            rg.Workspace(name=workspace, client=client).create()
        ds = open_dataset(conn, dataset, workspace, must_exist=False)
        if ds is None:
            ds = rg.Dataset(name=dataset, workspace=workspace, settings=settings, client=client).create()
        else:
            diff = schema_diff(settings_schema(settings), settings_schema(ds.settings))
            if diff:
                raise ReviewError(
                    f"dataset {dataset!r} in workspace {workspace!r} exists with another schema ("
                    + "; ".join(diff)
                    + "). Push to a new name with --dataset, or delete the old one "
                    "in the Argilla UI (dataset settings > delete) if its answers are not needed"
                )
        there = {r.id for r in ds.records(with_responses=False, with_suggestions=False)}
        first_look.append(there)
        todo = [to_record(row, definitions, suggestions) for row in chosen.to_dicts() if row["pair_id"] not in there]
        if todo:
            ds.records.log(todo, batch_size=min(batch_size, len(todo)))

    deadline, delay = time.time() + retry_for_s, 0.5
    while True:
        try:
            attempt()
            break
        except ReviewError:
            raise
        except Exception as e:  # noqa: BLE001 - the SDK wraps transport errors in several ways
            if not server_gone(e) or time.time() > deadline:
                raise ReviewError(
                    f"push to {conn.url} failed: {e}. Records already pushed stay there; rerun the "
                    "same command to push the rest"
                ) from e
            time.sleep(delay)
            delay = min(delay * 2, 5)
    already = len(first_look[0] & set(chosen["pair_id"])) if first_look else 0
    return PushResult(dataset, workspace, chosen.height, already, chosen.height - already, conn.url)


def server_gone(error: BaseException) -> bool:
    """True when the error (or what caused it) is a lost connection or a 5xx: worth waiting for a restart."""
    import httpx

    while error is not None:
        if isinstance(error, (httpx.TransportError, requests.ConnectionError, ConnectionError)):
            return True
        if isinstance(error, httpx.HTTPStatusError) and error.response.status_code >= 500:
            return True
        error = error.__cause__ or error.__context__
    return False
