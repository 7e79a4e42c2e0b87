"""llama.cpp's own server (xllamacpp) as a backend: a server none of us wrote, started by alfa for a GGUF file,
spoken to through the OpenAI-compatible client, and never left running: not after a run, not after Ctrl-C,
not after `kill -9` of alfa."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import urllib.request
from pathlib import Path

import polars as pl
import pytest
from conftest import SAMPLE, SAMPLE_MAP, kill_9_when_cached, run_until_cached

from alfa.cli import main
from alfa.data.ingest import ingest, parse_map
from alfa.llm.embedded import smollm2_gguf_path
from alfa.llm.llamacpp import LlamaCppServer

pytest.importorskip("xllamacpp")


def llama_servers() -> dict[int, int]:
    """{pid: parent pid} of every alfa llama.cpp server process on this machine."""
    out = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            if b"alfa.llm.llamacpp" in cmdline:
                stat = (proc / "stat").read_text()
                if stat.rsplit(")", 1)[1].split()[0] != "Z":  # a zombie is already dead
                    out[int(proc.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return out


def wait_gone(pid: int, timeout: float = 15) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pid not in llama_servers():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def questions_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("llamacpp") / "q.parquet"
    ingest(SAMPLE, parse_map(SAMPLE_MAP)).questions.head(8).write_parquet(path)
    return path


def test_synthesis_through_llamacpp_then_no_server_is_left(tmp_path, questions_file, capsys):
    before = set(llama_servers())
    cmd = [
        "synthesize",
        str(questions_file),
        "--rewriter",
        "llamacpp",
        "--model",
        str(smollm2_gguf_path()),
        "--select",
        "clarity",
        "--max-new-tokens",
        "24",
        "--samples",
        "1",
        "-o",
        str(tmp_path / "run"),
    ]
    assert main(cmd) == 0
    assert "16 variants (0 sampled again): 16 requests, 16 model calls" in capsys.readouterr().out
    assert set(llama_servers()) == before  # stopped when the run ended
    variants = pl.read_parquet(tmp_path / "run" / "variants.parquet")
    assert variants["error"].null_count() == 16 and all(r.strip() for r in variants["reply"])
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["rewriter"]["backend"] == "llamacpp" and "|gguf=" in run["rewriter"]["cache_id"]
    assert run["stats"]["prompt_tokens"] > 0  # usage from llama.cpp's replies
    assert main(cmd) == 0  # a rerun: every answer from the cache
    assert "0 model calls, 16 from cache" in capsys.readouterr().out


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_the_server_dies_with_alfa(tmp_path, questions_file, how):
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "alfa.cli",
        "-q",
        "synthesize",
        str(questions_file),
        "--rewriter",
        "llamacpp",
        "--model",
        str(smollm2_gguf_path()),
        "--max-new-tokens",
        "24",
        "-o",
        str(run),
    ]
    proc = run_until_cached(cmd, run / "cache.sqlite", at_least=2, timeout_s=180)
    servers = [pid for pid, parent in llama_servers().items() if parent == proc.pid]
    assert len(servers) == 1, "alfa started exactly one server of its own"
    os.kill(proc.pid, how)
    proc.wait(30)
    assert wait_gone(servers[0]), f"the llama.cpp server {servers[0]} outlived alfa ({how.name})"


def test_a_port_taken_after_it_was_chosen_is_left_for_another_and_a_bad_file_is_refused(tmp_path, monkeypatch):
    """The race free_port() leaves open, made to happen: the first port it picks is already held, once by a bare
    socket (llama.cpp's bind fails) and once by an HTTP server that answers /health (a squatter alfa must not
    take for its own). Each time alfa starts its server again on another port, and the one it talks to is its own."""
    import http.server
    import socket
    import threading

    import alfa.llm.llamacpp as llamacpp

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"status": "ok"}')

        def log_message(self, *args):
            pass

    bare = socket.socket()
    bare.bind(("127.0.0.1", 0))
    bare.listen()
    squatter = http.server.HTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=squatter.serve_forever, daemon=True).start()
    real_free_port = llamacpp.free_port
    gguf = smollm2_gguf_path()
    try:
        for taken in (bare.getsockname()[1], squatter.server_address[1]):
            picks = iter([taken])
            monkeypatch.setattr(llamacpp, "free_port", lambda: next(picks, None) or real_free_port())
            with LlamaCppServer(gguf, parallel=1, ctx=1024) as server:
                assert server.port != taken and llamacpp.listens_on(server.proc.pid, server.port)
                with urllib.request.urlopen(f"{server.base_url}/models", timeout=10) as r:
                    assert "SmolLM2" in r.read().decode()  # llama.cpp answers, not the squatter
            assert wait_gone(server.proc.pid)
    finally:
        bare.close()
        squatter.shutdown()
    monkeypatch.setattr(llamacpp, "free_port", real_free_port)
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(RuntimeError, match="llama.cpp's server exited"):  # not a port problem: no second try
        LlamaCppServer(broken, parallel=1, ctx=1024).start()


def test_two_servers_one_killed_mid_run_loses_nothing_and_pays_nothing_twice(tmp_path, questions_file, counting):
    """Two llama.cpp servers as replicas of one rewriter; one is killed (SIGKILL) after the 4th answer. The
    requests it held are retried on the other: every variant gets its reply, and no answer is delivered twice."""
    from alfa.data.attributes import load_pack
    from alfa.data.synthesize import SynthesisConfig, synthesize
    from alfa.llm.endpoint import ChatEndpoint

    gguf = smollm2_gguf_path()
    questions = pl.read_parquet(questions_file)
    pack = load_pack("core").select(["clarity", "relevance"])  # 8 questions x 2 x 2 = 32 requests
    with (
        LlamaCppServer(gguf, parallel=1, ctx=2048, threads=1) as a,
        LlamaCppServer(gguf, parallel=1, ctx=2048, threads=1) as b,
    ):
        replicas = ChatEndpoint("smollm2", [a.base_url, b.base_url], concurrency=2, max_tokens=24, identity="smollm2")
        killed_at = []

        class KillsOneReplica(counting):
            def complete(self, requests, on_done):
                def watched(i, completion):
                    on_done(i, completion)
                    if self.root.calls >= 4 and not killed_at:
                        a.proc.kill()
                        killed_at.append(self.root.calls)

                super().complete(requests, watched)

        rw = KillsOneReplica(replicas)
        stats = synthesize(questions, pack, rw, tmp_path / "run", SynthesisConfig(samples=1))
        assert killed_at == [4] and a.proc.poll() is not None  # killed mid-run, not after it
        variants = pl.read_parquet(tmp_path / "run" / "variants.parquet")
        assert variants.height == 32 and variants["error"].null_count() == 32  # nothing lost
        assert rw.calls == stats.calls_made == 32 and stats.failed == 0  # every request answered exactly once
        survivor = ChatEndpoint("smollm2", b.base_url, max_tokens=24, identity="smollm2")
        again = counting(survivor)
        synthesize(questions, pack, again, tmp_path / "run", SynthesisConfig(samples=1))
        assert again.calls == 0  # what the killed server answered before it died was kept


def test_roles_naming_one_model_share_one_server_and_none_is_left():
    """alfa eval interactive / flaws, sml and collab open their roles through RoleBackends: one server per spec."""
    from alfa.llm.make import RoleBackends

    before = set(llama_servers())
    spec = f"llamacpp:{smollm2_gguf_path()}"
    with RoleBackends() as roles:
        expert, judge = roles.get(spec, 48), roles.get(spec, 4)
        assert len(set(llama_servers()) - before) == 1  # the judge did not start a second server
        assert judge is not expert and judge.server is expert.server is not None
        assert (expert.sampling["max_tokens"], judge.sampling["max_tokens"]) == (48, 4)
    assert set(llama_servers()) == before  # stopped once, when the block ended


def test_a_run_whose_own_server_died_stops_at_once_and_resumes_from_the_cache(tmp_path, questions_file, counting):
    """Seen on a 2-hour build: alfa's server went away mid-run and every later call failed after its retries
    (362 calls over ~45 min) instead of the run stopping. Now the first refused connection to alfa's own server
    stops the run with the server's state and log, and a rerun pays only for what was not answered."""
    from alfa.data.attributes import load_pack
    from alfa.data.synthesize import SynthesisConfig, synthesize
    from alfa.llm.make import llamacpp_backend

    questions = pl.read_parquet(questions_file)
    pack = load_pack("core").select(["clarity"])  # 8 questions x 2 directions = 16 requests
    rewriter = llamacpp_backend(smollm2_gguf_path(), concurrency=1, max_new_tokens=24)
    answered = []

    class KillsItsServer(counting):
        def complete(self, requests, on_done):
            def watched(i, completion):
                on_done(i, completion)
                answered.append(completion)
                if len(answered) == 3:
                    rewriter.server.proc.kill()
                    rewriter.server.proc.wait(10)

            super().complete(requests, watched)

    with pytest.raises(RuntimeError, match=r"exited with code -9, so no call can be answered") as stopped:
        synthesize(questions, pack, KillsItsServer(rewriter), tmp_path / "run", SynthesisConfig(samples=1))
    assert str(rewriter.server.log_file) in str(stopped.value) and "rerun the same command" in str(stopped.value)
    assert all(c.error is None for c in answered)  # it stopped before any call was written off as failed

    again = counting(llamacpp_backend(smollm2_gguf_path(), concurrency=1, max_new_tokens=24))
    synthesize(questions, pack, again, tmp_path / "run", SynthesisConfig(samples=1))
    assert again.calls == 16 - 3  # the three answers from before the kill were kept
    assert pl.read_parquet(tmp_path / "run" / "variants.parquet")["error"].null_count() == 16
    again.inner.close()


def test_a_rerun_against_llamacpps_server_through_openai_pays_for_no_call(tmp_path, questions_file, capsys):
    """llama.cpp's /v1/models puts the time of the request in `created`: an identity hashed from the whole listing
    changed on every run, so the second run paid for every call again ("6 requests, 0 from cache")."""
    import urllib.request

    from alfa.llm.endpoint import ChatEndpoint

    gguf = smollm2_gguf_path()
    with LlamaCppServer(gguf, parallel=1, ctx=2048) as server:
        listings = []
        for _ in range(2):
            with urllib.request.urlopen(server.base_url + "/models") as resp:
                listings.append(json.loads(resp.read()))
            time.sleep(1.1)
        assert listings[0] != listings[1]  # the server's own quirk: `created` moved
        ids = [ChatEndpoint("smollm2", server.base_url).cache_id for _ in range(2)]
        assert ids[0] == ids[1] and "unlisted" not in ids[0]
        cmd = ["synthesize", str(questions_file), "--attributes", "core", "--limit", "2", "--rewriter", "openai",
               "--model", "smollm2", "--base-url", server.base_url, "-o", str(tmp_path / "run")]  # fmt: skip
        assert main(cmd) == 0
        first = json.loads((tmp_path / "run" / "run.json").read_text())
        time.sleep(1.1)
        assert main(cmd) == 0
        second = json.loads((tmp_path / "run" / "run.json").read_text())
    assert first["stats"]["calls_made"] > 0 and second["stats"]["calls_made"] == 0, second["stats"]
    assert first["rewriter"] == second["rewriter"]  # the merge key of `alfa pairs` stays the same


def test_kill_9_mid_run_against_llamacpps_server_then_a_rerun_pays_only_for_unfinished_calls(tmp_path, questions_file):
    """`alfa synthesize --rewriter openai` against llama.cpp's own server, killed with SIGKILL while it writes its
    cache; the rerun (same arguments, same server) takes every finished answer from the cache and calls only the
    rest. Before the identity ignored `created`, the rerun called everything again."""
    gguf = smollm2_gguf_path()
    out = tmp_path / "run"
    args = ["synthesize", str(questions_file), "--attributes", "core", "--limit", "4", "--samples", "1",
            "--rewriter", "openai", "--model", "smollm2", "--concurrency", "2", "--max-new-tokens", "16"]  # fmt: skip
    with LlamaCppServer(gguf, parallel=2, ctx=4096) as server:
        cmd = [sys.executable, "-m", "alfa.cli", "-q", *args, "--base-url", server.base_url, "-o", str(out)]
        cached = len(kill_9_when_cached(cmd, out / "cache.sqlite", at_least=4))
        time.sleep(1.1)  # the server's `created` moves on
        assert main([*args, "--base-url", server.base_url, "-o", str(out)]) == 0
    stats = json.loads((out / "run.json").read_text())["stats"]
    assert 4 <= cached < stats["requests"] == 4 * 3 * 2
    assert stats["cache_hits"] == cached and stats["calls_made"] == stats["requests"] - cached
