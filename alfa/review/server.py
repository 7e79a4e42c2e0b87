"""A real Argilla server on this machine, started by one command: `alfa review server up|down|status|env`.

What runs (all bound to 127.0.0.1, all in the state folder, default `.alfa-review/`):
- `argilla-server==2.8.0` under uvicorn, with SQLite, in its own virtualenv (it hard-pins pydantic,
  fastapi and httpx versions that must not touch the project's environment);
- the Elasticsearch-8 API and Redis it needs, served by the single binary of the PyPI wheel
  `noida-db==0.2.3` (started directly, not through its wrapper script, so the pid we hold is the server).

`server.json` records ports and pids; `down` stops exactly those pids (after checking they are still
the processes we started). The owner's password and API key are generated once and kept in
`owner.json`, readable by you only; they are never printed by `up`. For production, run the official
Argilla stack with real Elasticsearch (annotation/docker-compose.yaml): the client side is the same.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from alfa.llm.llamacpp import free_port  # one free-port helper for every local server alfa starts

SERVER_REQUIREMENTS = ["argilla-server==2.8.0", "noida-db==0.2.3"]
OWNER_USERNAME = "argilla"  # argilla-server's DEFAULT_USERNAME; its default workspace has the same name
DEFAULT_STATE_DIR = Path(".alfa-review")


def default_venv() -> Path:
    """Shared by every project on this machine: the install takes ~40 s, once."""
    cache = Path(os.environ.get("ALFA_CACHE", Path.home() / ".cache" / "alfa"))
    return cache / "argilla-server-venv"


def install_server(venv: Path | None = None) -> Path:
    """Create the server's own virtualenv with the pinned packages; a no-op when it is already there."""
    venv = Path(venv or default_venv())
    marker = venv / "alfa-installed.txt"
    if marker.exists() and marker.read_text().split() == SERVER_REQUIREMENTS:
        return venv
    print(f"installing {' '.join(SERVER_REQUIREMENTS)} into {venv} (once, ~1 min)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    result = subprocess.run([*pip, *SERVER_REQUIREMENTS], capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"installing the Argilla server into {venv} failed:\n{result.stderr[-2000:]}")
    marker.write_text("\n".join(SERVER_REQUIREMENTS))
    return venv


def _noida_binary(venv: Path) -> Path:
    found = sorted((venv / "lib").glob("python3*/site-packages/noida_db/noida-db"))
    if not found:
        raise RuntimeError(f"no noida-db binary in {venv}; reinstall with `rm -rf {venv}` and `alfa review server up`")
    found[0].chmod(0o755)
    return found[0]


@dataclass
class ServerState:
    """What `up` started, saved as STATE_DIR/server.json."""

    url: str
    port: int
    elasticsearch_port: int
    redis_port: int
    venv: str
    pids: dict[str, int]

    @staticmethod
    def load(state_dir: Path) -> ServerState | None:
        path = Path(state_dir) / "server.json"
        return ServerState(**json.loads(path.read_text())) if path.exists() else None

    def save(self, state_dir: Path) -> None:
        (Path(state_dir) / "server.json").write_text(json.dumps(self.__dict__, indent=2))


def _alive(pid: int, expect: str) -> bool:
    """True when pid runs and its command line contains `expect` (a recycled pid is not ours)."""
    try:
        return expect in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False


PROCESS_MARKERS = {"search": "noida-db", "argilla": "uvicorn"}


def owner_credentials(state_dir: Path) -> dict:
    path = Path(state_dir) / "owner.json"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        creds = {
            "username": OWNER_USERNAME,
            "password": secrets.token_urlsafe(12),
            "api_key": "alfa.owner." + secrets.token_urlsafe(24),
        }
        path.touch(mode=0o600)
        path.chmod(0o600)  # also when the file was there before with other permissions
        path.write_text(json.dumps(creds, indent=2))
    return json.loads(path.read_text())


SERVER_ENV_PASSED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")


def _server_env(state_dir: Path, es_port: int, redis_port: int) -> dict:
    home = (Path(state_dir) / "argilla").resolve()
    home.mkdir(parents=True, exist_ok=True)
    # Only what the server needs: never the user's whole environment (API keys, tokens) in its processes.
    passed = {k: os.environ[k] for k in SERVER_ENV_PASSED if k in os.environ}
    return {
        **passed,
        "ARGILLA_HOME_PATH": str(home),
        "ARGILLA_DATABASE_URL": f"sqlite+aiosqlite:///{home / 'argilla.db'}",
        "ARGILLA_ELASTICSEARCH": f"http://127.0.0.1:{es_port}",
        "ARGILLA_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "ARGILLA_ENABLE_TELEMETRY": "0",
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }


def _wait(check, what: str, log: Path, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if check():
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    tail = log.read_text()[-2000:] if log.exists() else ""
    raise RuntimeError(f"{what} did not come up within {timeout:.0f} s; its log ({log}):\n{tail}")


def ready(url: str, api_key: str) -> bool:
    # /api/v1/status answers 422 with this search engine; /api/v1/me proves the database and the key.
    return requests.get(f"{url}/api/v1/me", headers={"X-Argilla-Api-Key": api_key}, timeout=5).status_code == 200


def server_up(state_dir: Path = DEFAULT_STATE_DIR, port: int | None = None, venv: Path | None = None) -> ServerState:
    """Start whatever is not running yet (idempotent) and wait until the API answers."""
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    logs = state_dir / "logs"
    logs.mkdir(exist_ok=True)
    creds = owner_credentials(state_dir)
    state = ServerState.load(state_dir)
    if state is None:
        venv = install_server(venv)
        port = port or free_port()
        state = ServerState(
            url=f"http://127.0.0.1:{port}",
            port=port,
            elasticsearch_port=free_port(),
            redis_port=free_port(),
            venv=str(venv),
            pids={},
        )
    venv = Path(state.venv)
    env = _server_env(state_dir, state.elasticsearch_port, state.redis_port)

    if not _alive(state.pids.get("search", -1), PROCESS_MARKERS["search"]):
        _start_search(state, state_dir, venv, env, logs)
    if not _alive(state.pids.get("argilla", -1), PROCESS_MARKERS["argilla"]):
        _start_argilla(state, state_dir, venv, env, logs, creds)
    return state


def _start_search(state: ServerState, state_dir: Path, venv: Path, env: dict, logs: Path) -> None:
    """noida-db: the Elasticsearch-8 API and Redis the Argilla server needs, on their own free ports."""
    log = logs / "noida-db.log"
    proc = subprocess.Popen(
        [
            str(_noida_binary(venv)),
            "start",
            "--only",
            "elasticsearch,redis",
            "--host",
            "127.0.0.1",
            "--data-dir",
            str((state_dir / "search").resolve()),
            "--elasticsearch-port",
            str(state.elasticsearch_port),
            "--redis-port",
            str(state.redis_port),
        ],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    state.pids["search"] = proc.pid
    state.save(state_dir)
    _wait(
        lambda: requests.get(f"http://127.0.0.1:{state.elasticsearch_port}", timeout=2).ok,
        "the Elasticsearch API (noida-db)",
        log,
        timeout=30,
    )


def _start_argilla(state: ServerState, state_dir: Path, venv: Path, env: dict, logs: Path, creds: dict) -> None:
    """argilla-server under uvicorn, after migrating its database and creating the owner."""
    python = str(venv / "bin" / "python")
    log = logs / "argilla-server.log"
    # The `python -m argilla_server` CLI crashes with today's click: call its functions directly.
    for step in (
        ["-m", "argilla_server.cli.database.migrate"],
        [
            "-c",
            "import asyncio, os\n"
            "from argilla_server.cli.database.users.create_default import _create_default\n"
            "asyncio.run(_create_default(api_key=os.environ['ALFA_OWNER_API_KEY'], "
            "password=os.environ['ALFA_OWNER_PASSWORD'], quiet=True))",
        ],
    ):
        # Secrets travel in the environment, never on a command line another user could read in `ps`.
        result = subprocess.run(
            [python, *step],
            env={**env, "ALFA_OWNER_API_KEY": creds["api_key"], "ALFA_OWNER_PASSWORD": creds["password"]},
            capture_output=True,
            text=True,
        )
        if result.returncode:
            raise RuntimeError(f"preparing Argilla's database failed:\n{result.stderr[-2000:]}")
    proc = subprocess.Popen(
        [python, "-m", "uvicorn", "argilla_server:app", "--host", "127.0.0.1", "--port", str(state.port)],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    state.pids["argilla"] = proc.pid
    state.save(state_dir)
    _wait(lambda: ready(state.url, creds["api_key"]), "the Argilla server", log)


def server_down(state_dir: Path = DEFAULT_STATE_DIR, only: str | None = None) -> list[str]:
    """Stop the processes `up` started (all, or only "argilla" / "search"); data stays on disk."""
    state = ServerState.load(state_dir)
    if state is None:
        return []
    stopped = []
    for name, pid in list(state.pids.items()):
        if only and name != only:
            continue
        if _alive(pid, PROCESS_MARKERS[name]):
            os.kill(pid, signal.SIGTERM)
            for _ in range(50):
                if not _alive(pid, PROCESS_MARKERS[name]):
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)
            stopped.append(f"{name} (pid {pid})")
        del state.pids[name]
    state.save(state_dir)
    return stopped


def server_status(state_dir: Path = DEFAULT_STATE_DIR) -> dict:
    state = ServerState.load(state_dir)
    if state is None:
        return {"running": False, "reason": f"never started here ({Path(state_dir) / 'server.json'} missing)"}
    creds = owner_credentials(state_dir)
    processes = {name: _alive(pid, PROCESS_MARKERS[name]) for name, pid in state.pids.items()}
    try:
        answering = ready(state.url, creds["api_key"])
    except requests.RequestException:
        answering = False
    return {
        "running": answering,
        "url": state.url,
        "processes": processes,
        "elasticsearch": f"http://127.0.0.1:{state.elasticsearch_port}",
        "redis_port": state.redis_port,
    }
