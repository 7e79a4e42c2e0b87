"""Disk cache of model calls, keyed by a content hash of (model identity, messages, sampling params).

The model identity is a backend's `cache_id`: for local weights their content digest and chat template, for
an endpoint the model name and what its /models listing reports (alfa.llm.backends), so other weights under
the same name never get an earlier model's answers.

SQLite in WAL mode, one row per successful call, committed as soon as the call returns: a run killed
at any moment keeps every answer it had received, and a rerun pays for no call twice. Inside an
asyncio loop (the HTTP backend), the answers that arrive in one loop iteration are committed together
at the end of that iteration, before the loop does any more I/O: one transaction instead of dozens
(~75 us each) keeps the cache off the critical path at ~1,000 requests/s. Several
processes (shards) may share one cache file on a local disk. Failed calls are never cached, so a
rerun retries them. Nothing secret goes in: the key hashes the model id and the request, never an
API key or URL.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import time
from pathlib import Path


def call_key(model_id: str, messages: list[dict], sampling: dict) -> str:
    payload = json.dumps(
        {"model": model_id, "messages": messages, "sampling": sampling}, sort_keys=True, ensure_ascii=False
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class CallCache:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None)  # autocommit
        self.pending: list[tuple] = []
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # durable across a killed process
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, model TEXT, text TEXT, usage TEXT, created REAL)"
        )

    def get_many(self, keys: list[str]) -> dict[str, tuple[str, dict]]:
        """{key: (text, usage)} for the keys in the cache; usage is what the call cost when it was made."""
        found: dict[str, tuple[str, dict]] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            q = f"SELECT key, text, usage FROM calls WHERE key IN ({','.join('?' * len(chunk))})"
            found.update((k, (text, json.loads(usage or "{}"))) for k, text, usage in self.db.execute(q, chunk))
        return found

    def put(self, key: str, model_id: str, text: str, usage: dict | None = None) -> None:
        self.pending.append((key, model_id, text, json.dumps(usage or {}), time.time()))
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()  # no event loop: commit now
            return
        if len(self.pending) == 1:
            loop.call_soon(self.flush)  # runs at the end of this loop iteration

    def flush(self) -> None:
        if self.pending:
            rows, self.pending = self.pending, []
            self.db.execute("BEGIN")  # one transaction for the batch (the connection is in autocommit)
            self.db.executemany("INSERT OR REPLACE INTO calls VALUES (?, ?, ?, ?, ?)", rows)
            self.db.execute("COMMIT")

    def __len__(self) -> int:
        self.flush()
        return self.db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]

    def close(self) -> None:
        self.flush()
        self.db.close()
