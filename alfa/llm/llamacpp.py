"""llama.cpp's own HTTP server for any GGUF file, in a child process alfa starts, owns and stops.

The server is llama.cpp's C++ server from the PyPI wheel `xllamacpp` (OpenAI-compatible `/v1/chat/completions`,
`/v1/models`, `/health`), run in a child process so that alfa holds its pid:

- it listens on 127.0.0.1 on a free port, and alfa talks to it through the same async HTTP client as to any
  endpoint (`ChatEndpoint`); a second alfa process starts its own and never talks to a stranger's;
- it is stopped by its pid when the run ends (also on Ctrl-C: atexit), and the kernel kills it when alfa
  dies any other way, `kill -9` included (PR_SET_PDEATHSIG, set in the child);
- threads = the machine's cores, `parallel` slots (each gets ctx / parallel tokens of context).

    with LlamaCppServer(Path("model.gguf")) as server:
        rewriter = ChatEndpoint(server.alias, server.base_url, concurrency=server.parallel)
"""

from __future__ import annotations

import argparse
import atexit
import ctypes
import hashlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from alfa.llm.embedded import sha256_of

log = logging.getLogger(__name__)

XLLAMACPP_INSTALL = "pip install xllamacpp==2026.10.11549"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listens_on(pid: int, port: int) -> bool:
    """Whether process `pid` holds the socket listening on 127.0.0.1:`port` (Linux: /proc/net/tcp and the
    process's file descriptors). Elsewhere, where /proc is absent, it is taken on trust."""
    if not Path("/proc/net/tcp").exists():
        return True
    listening = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":  # 0A: LISTEN
            listening.add(f"socket:[{fields[9]}]")
    try:
        owned = {os.readlink(f) for f in Path(f"/proc/{pid}/fd").iterdir()}
    except OSError:  # the process is gone
        return False
    return bool(listening & owned)


def gguf_digest(gguf: Path) -> str:
    """sha256 of a GGUF file, computed once and kept in alfa's cache (keyed by path, size and mtime)."""
    gguf = Path(gguf).resolve()
    stat = gguf.stat()
    cache = Path(os.environ.get("ALFA_CACHE", Path.home() / ".cache" / "alfa")) / "weights-digests"
    sidecar = cache / (hashlib.sha256(f"{gguf}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16] + ".json")
    if sidecar.exists():
        return json.loads(sidecar.read_text())["sha256"]
    digest = sha256_of(gguf)
    cache.mkdir(parents=True, exist_ok=True)
    sidecar.write_text(json.dumps({"file": str(gguf), "sha256": digest}))
    return digest


class LlamaCppServer:
    def __init__(
        self,
        gguf: Path,
        parallel: int = 2,
        ctx: int = 8192,
        threads: int | None = None,
        alias: str | None = None,
        startup_timeout_s: float = 300.0,
        log_dir: Path | None = None,
    ):
        self.gguf = Path(gguf)
        if not self.gguf.is_file():
            raise FileNotFoundError(f"{self.gguf}: no such GGUF file")
        self.parallel, self.ctx = parallel, ctx
        self.threads = threads or os.cpu_count() or 1
        self.alias = alias or self.gguf.stem
        self.startup_timeout_s = startup_timeout_s
        self.log_path = Path(log_dir or Path(os.environ.get("ALFA_CACHE", Path.home() / ".cache" / "alfa")) / "logs")
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.log_file: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, attempts: int = 3) -> LlamaCppServer:
        """Start the server on a free port and wait for /health. The port is only known free when chosen: another
        process may take it before llama.cpp binds. Then llama.cpp exits on a failed bind, or /health is answered
        by whoever holds the port (checked: the listening socket must be this server's); either way this server
        is stopped and started again on another port. Any other exit is an error at once, with the log."""
        import importlib.util

        if importlib.util.find_spec("xllamacpp") is None:
            raise RuntimeError(f"llama.cpp's server is not installed: {XLLAMACPP_INSTALL}")
        atexit.register(self.stop)  # once: every attempt's process is self.proc, which stop() ends
        for attempt in range(1, attempts + 1):
            why = self._start_once()
            if why is None:
                return self
            self.stop()
            log.warning("llama.cpp's server on port %d: %s; attempt %d of %d", self.port, why, attempt, attempts)
        raise RuntimeError(
            f"llama.cpp's server for {self.gguf} did not start in {attempts} attempts; the last: {why}. "
            f"Its log: {self.log_file}"
        )

    def _start_once(self) -> str | None:
        """One start on a newly chosen port: None once this process answers /health, else why not."""
        self.port = free_port()
        self.log_path.mkdir(parents=True, exist_ok=True)
        log_file = self.log_file = self.log_path / f"llama-server-{self.port}.log"
        cmd = [
            sys.executable,
            "-m",
            "alfa.llm.llamacpp",
            "--gguf",
            str(self.gguf),
            "--port",
            str(self.port),
            "--parallel",
            str(self.parallel),
            "--ctx",
            str(self.ctx),
            "--threads",
            str(self.threads),
            "--alias",
            self.alias,
        ]
        self.proc = subprocess.Popen(
            cmd, stdout=log_file.open("ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = log_file.read_text()[-2000:]
                if "couldn't bind" in tail:  # another process took the port after free_port chose it
                    return "the port was taken before llama.cpp could bind it"
                raise RuntimeError(
                    f"llama.cpp's server exited with code {self.proc.returncode} while loading "
                    f"{self.gguf}; its log ({log_file}):\n{tail}"
                )
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                    if r.status == 200:
                        if not listens_on(self.proc.pid, self.port):
                            return "another process answers on that port"
                        log.info(
                            "llama.cpp server for %s on %s (pid %d, %d threads, %d slots)",
                            self.gguf.name,
                            self.base_url,
                            self.proc.pid,
                            self.threads,
                            self.parallel,
                        )
                        return None
            except OSError:  # not listening yet, or 503 while the model loads
                pass
            time.sleep(0.2)
        return f"no answer on /health within {self.startup_timeout_s:.0f} s"

    def stop(self) -> None:
        """Stop the server by its pid (SIGTERM, then SIGKILL); a no-op when it is not running."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def stopped_message(self) -> str:
        """Why no call can reach this server any more: for the error that stops a run whose server went away."""
        state = "refuses connections" if self.proc.poll() is None else f"exited with code {self.proc.returncode}"
        return (
            f"llama.cpp's server for {self.gguf.name} (pid {self.proc.pid}, {self.base_url}) {state}, so no call "
            f"can be answered and the run stops here. Every finished call is cached: rerun the same command to go "
            f"on. The server's log: {self.log_file}"
        )

    def __enter__(self) -> LlamaCppServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _die_with_parent() -> None:
    """Linux: the kernel sends SIGKILL to this process when its parent dies, whatever kills the parent."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def serve(args) -> None:
    """The child: start llama.cpp's server in this process and keep it up until signalled."""
    parent = os.getppid()
    _die_with_parent()
    if os.getppid() != parent:  # the parent died before prctl took effect
        sys.exit(1)
    import xllamacpp

    p = xllamacpp.CommonParams()
    p.model.path = args.gguf
    p.hostnames = ["127.0.0.1"]
    p.port = args.port
    p.n_ctx = args.ctx
    p.n_parallel = args.parallel
    p.cpuparams.n_threads = args.threads
    p.cpuparams_batch.n_threads = args.threads
    p.n_threads_http = 1
    p.model_alias = [args.alias]  # a list: a plain string would be split into characters
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    hold(xllamacpp.Server(p))  # Server() returns once it listens; hold() never returns


def hold(server) -> None:
    """Block this thread for the process's life while `server` (which serves on its own threads) stays referenced
    by this frame. Never returns: the process ends by SIGTERM or its parent's death. (A `sleep(3600)` loop that
    dropped the reference when it woke stopped the server after exactly one hour of every long run.)"""
    threading.Event().wait()


def main() -> None:
    ap = argparse.ArgumentParser(description="llama.cpp's server for one GGUF (started by alfa; see the module doc)")
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=8192)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--alias", required=True)
    serve(ap.parse_args())


if __name__ == "__main__":
    main()
