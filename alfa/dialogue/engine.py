"""The turn loop every multi-turn evaluation and dialogue method runs on.

An *episode* is one conversation; a *protocol* says, for an episode, which role speaks next and with which
messages (`next_request`), and what the reply does to the episode (`apply`). The engine does the rest:

- every active episode's current turn goes to its role's backend in one batch (`run_calls`: cached, so a
  killed run resumes and pays for no finished call twice; identical requests are called once);
- a role is a backend plus what it may see: the protocol builds each role's messages from the episode, so
  what a role must not see (a patient's facts, for the questioner) never reaches its prompt;
- each episode is appended to the output JSONL as it ends, with every turn's raw reply and parsed value; on a
  rerun, episodes already in the file are not run again;
- a failed call (an HTTP error, a timeout; not an empty reply, which is the model's own answer) is not cached and
  is counted in its episode (`failed_calls`): the episode still ends and is written (an evaluation counts it,
  nothing is dropped), and a rerun plays it again, paying only for the calls that failed; the file's last line
  for an episode is the one that counts.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from tqdm.auto import tqdm

from alfa.llm.cache import CallCache
from alfa.llm.calls import EMPTY_REPLY, QUIET, CallStats, run_calls


@dataclass
class Turn:
    role: str  # who spoke: a role name of the protocol ("expert", "questioner", "patient", ...)
    kind: str  # what the turn was for ("decide", "question", "answer", "final", ...)
    text: str | None  # the raw reply (or the error of a failed call)
    parsed: object = None  # what the protocol read from it; None where it could not (a parse failure)
    call_key: str | None = None  # the call cache key (None for a role that is no model, e.g. fact-select)


@dataclass
class Episode:
    episode_id: str
    data: dict  # what the protocol needs: the case, the initial info, ...
    turns: list[Turn] = field(default_factory=list)
    state: str = "start"  # the protocol's own state machine
    done: bool = False
    result: dict = field(default_factory=dict)  # the protocol's outcome (answer, correct, questions, ...)
    failed_calls: int = 0  # calls of this episode that failed (a rerun plays it again)


class DialogueProtocol(Protocol):
    roles: dict  # role name -> backend (anything alfa.llm.calls.run_calls takes)

    def next_request(self, episode: Episode) -> tuple[str, str, list[dict]] | None:
        """(role name, turn kind, messages) of the episode's next model call; None when the protocol ended the
        episode without one (a scripted role, e.g. an oracle questioner with no expert)."""

    def apply(self, episode: Episode, role: str, kind: str, completion, key: str) -> None:
        """Record the reply as a turn and move the episode on (set `done` and `result` when it ends)."""


def written_episodes(path: Path, repair: bool = False) -> dict[str, dict]:
    """Episodes written to `path` by earlier runs, the last line of each id. A line cut short by a kill is
    not read; with `repair` it is also cut off the file (in place), so the next append starts a line of its own."""
    if not path.exists():
        return {}
    data = path.read_bytes()
    whole = data.rfind(b"\n") + 1  # a kill can cut a line, even inside a multi-byte character
    if repair and whole < len(data):
        with open(path, "r+b") as f:
            f.truncate(whole)
    lines = data[:whole].decode("utf-8").splitlines()
    return {ep["episode_id"]: ep for ep in map(json.loads, filter(str.strip, lines))}


def done_ids(path: Path) -> set[str]:
    """Episodes an earlier run finished with no failed call (the others are played again)."""
    return {i for i, ep in written_episodes(path, repair=True).items() if not ep.get("failed_calls")}


def run_episodes(
    episodes: list[Episode], protocol: DialogueProtocol, cache: CallCache, out_path: Path, max_rounds: int = 200
) -> tuple[list[dict], CallStats]:
    """Run every episode to its end; returns every finished episode (this run's and earlier ones', read back from
    `out_path`) and this run's call stats."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    ids = [e.episode_id for e in episodes]
    if len(set(ids)) < len(ids):  # the file is keyed by id: a second episode under one id would be lost
        raise ValueError(f"episode ids repeat: {sorted({i for i in ids if ids.count(i) > 1})[:5]}")
    finished = done_ids(out_path)
    active = [e for e in episodes if e.episode_id not in finished]
    stats = CallStats()
    bar = tqdm(total=len(active), desc="episodes", unit="episode", disable=not active or QUIET in os.environ)
    with open(out_path, "a", encoding="utf-8") as out:
        for _ in range(max_rounds):
            if not active:
                break
            by_role: dict[str, list[tuple[Episode, str, list[dict]]]] = {}
            for e in active:
                request = protocol.next_request(e)
                if request is None:  # the episode ended without a call (a scripted role): written below
                    continue
                role, kind, messages = request
                by_role.setdefault(role, []).append((e, kind, messages))
            for role, batch in by_role.items():
                replies, keys = run_calls(protocol.roles[role], cache, [m for _, _, m in batch], role, stats)
                for (e, kind, _), completion, key in zip(batch, replies, keys):
                    # an empty reply is the model's own (it comes back the same): the protocol reads it, no replay
                    e.failed_calls += completion.error not in (None, EMPTY_REPLY)
                    protocol.apply(e, role, kind, completion, key)
            for e in [e for e in active if e.done]:
                out.write(json.dumps(asdict(e), ensure_ascii=False, default=str) + "\n")
                out.flush()
                bar.update(1)
            active = [e for e in active if not e.done]
        cache.flush()
    bar.close()
    if active:
        raise RuntimeError(
            f"{len(active)} episodes did not end within {max_rounds} rounds: the protocol never ends them"
        )
    written = written_episodes(out_path)
    return [written[e.episode_id] for e in episodes], stats
