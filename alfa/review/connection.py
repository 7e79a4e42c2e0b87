"""Stage 7, review: the connection to an Argilla 2.x server, and the errors every review verb can raise.

Works against any Argilla 2.x server: the local one (`alfa review server up`) or a production one. The
server address and API key come from the environment (ARGILLA_API_URL, ARGILLA_API_KEY), never from a file.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field

import requests

DEFAULT_DATASET = "alfa-review"
DEFAULT_WORKSPACE = "alfa"


class ReviewError(RuntimeError):
    """A problem the user can fix; the message says how."""


@dataclass
class Connection:
    url: str
    api_key: str = field(repr=False)  # a repr lands in logs and tracebacks: never the key
    username: str
    role: str

    @property
    def headers(self) -> dict:
        return {"X-Argilla-Api-Key": self.api_key}

    @functools.cached_property
    def client(self):
        import argilla as rg

        return rg.Argilla(api_url=self.url, api_key=self.api_key, timeout=120)


def connect(api_url: str | None = None, api_key_env: str = "ARGILLA_API_KEY") -> Connection:
    """Check the server answers and accepts the key before anything else, with a message that says what to do."""
    url = (api_url or os.environ.get("ARGILLA_API_URL") or "").rstrip("/")
    if not url:
        raise ReviewError(
            "no Argilla server given: set ARGILLA_API_URL (or --api-url). For a local server run "
            '`alfa review server up`, then `eval "$(alfa review server env)"`'
        )
    key = os.environ.get(api_key_env)
    if not key:
        raise ReviewError(
            f"${api_key_env} is not set: export the API key of an Argilla owner or admin "
            '(local server: `eval "$(alfa review server env)"`)'
        )
    try:
        r = requests.get(f"{url}/api/v1/me", headers={"X-Argilla-Api-Key": key}, timeout=15)
    except requests.ConnectionError:
        raise ReviewError(
            f"cannot reach the Argilla server at {url}: is it running? "
            "(local server: `alfa review server status` / `alfa review server up`)"
        ) from None
    if r.status_code == 401:
        raise ReviewError(
            f"the Argilla server at {url} refused the API key in ${api_key_env} (HTTP 401): "
            "check the key (Argilla UI: your avatar > My settings > API key)"
        )
    if r.status_code != 200:
        raise ReviewError(f"{url}/api/v1/me answered HTTP {r.status_code}: is {url} an Argilla 2.x server?")
    me = r.json()
    return Connection(url, key, me["username"], me["role"])


def open_dataset(conn: Connection, name: str, workspace: str, must_exist: bool = True):
    """The dataset, or a clear error: missing, or not readable with this key."""
    r = requests.get(f"{conn.url}/api/v1/me/datasets", headers=conn.headers, timeout=30)
    r.raise_for_status()
    workspaces = {
        w["id"]: w["name"]
        for w in requests.get(f"{conn.url}/api/v1/me/workspaces", headers=conn.headers, timeout=30).json()["items"]
    }
    if workspace not in workspaces.values():
        raise ReviewError(
            f"user {conn.username!r} ({conn.role}) has no access to workspace {workspace!r}"
            + (
                f"; an owner can add them: `alfa review users add {conn.username} --workspace {workspace}`"
                if conn.role == "annotator"
                else "; check --workspace"
            )
        )
    for d in r.json()["items"]:
        if d["name"] == name and workspaces.get(d["workspace_id"]) == workspace:
            return conn.client.datasets(name=name, workspace=workspace)
    if must_exist:
        raise ReviewError(
            f"no dataset {name!r} in workspace {workspace!r} on {conn.url}; push pairs first with "
            f"`alfa review push PAIRS_DIR --dataset {name} --workspace {workspace}`"
        )
    return None
