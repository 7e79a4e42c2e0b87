"""A planted key never reaches a file alfa writes: not the run dir (error bodies that echo headers), not a
trained model's folder (recipe copied into the card, TRL's pickled config), not a dry run's output."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from chat_server import ChatServer, serve_in_thread
from conftest import SAMPLE, SAMPLE_MAP

from alfa.cli import main
from alfa.data.attributes import load_pack
from alfa.data.ingest import ingest, parse_map
from alfa.data.synthesize import synthesize
from alfa.llm.backends import TransformersRewriter
from alfa.llm.endpoint import OpenAIRewriter
from alfa.train.run import run_recipe

PLANTED_KEY = "sk-PLANTED-4f1d9a7c2b"
PLANTED_TOKEN = "hf_PLANTEDtokenQ8w3e5r7"


def files_holding(folder: Path, secret: str) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_an_endpoint_echoing_headers_leaves_no_key_in_the_run_dir(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("ALFA_PLANTED_KEY", PLANTED_KEY)
    chat = ChatServer(TransformersRewriter(tiny_model_dir, batch_size=1, max_new_tokens=8))
    chat.url, stop = serve_in_thread(chat)
    try:
        chat.faults = {i: "echo_headers" for i in range(1, 4)}  # not retryable: recorded as failed calls
        rw = OpenAIRewriter(
            "tiny", chat.url, concurrency=1, max_tokens=8, max_retries=0, api_key_env="ALFA_PLANTED_KEY"
        )
        questions = ingest(SAMPLE, parse_map(SAMPLE_MAP)).questions.head(3)
        stats = synthesize(questions, load_pack("core").select(["clarity"]), rw, tmp_path / "run")
    finally:
        stop()
    assert stats.failed == 3 and PLANTED_KEY in str(chat.auth_headers)  # the key was sent, and echoed back
    failed = (tmp_path / "run" / "failed_calls.jsonl").read_text()
    assert "HTTP 400" in failed and "<redacted>" in failed
    assert files_holding(tmp_path / "run", PLANTED_KEY) == []


def test_a_hub_token_in_a_recipe_reaches_no_file_of_the_run(tmp_path, tiny_model_dir, pairs_dir, capsys, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        textwrap.dedent(f"""\
        stage: dpo
        model: {{name_or_path: {tiny_model_dir}}}
        data: {{pairs_dir: {pairs_dir}, attributes: [clarity]}}
        trl:
          output_dir: {tmp_path / "out"}
          hub_token: {PLANTED_TOKEN}   # a secret a user should not put here, and alfa must not spread
          per_device_train_batch_size: 4
          max_steps: 2
          max_length: 128
          save_strategy: steps
          save_steps: 1
          bf16: false
          report_to: [tensorboard]
        """)
    )
    assert main(["train", str(recipe), "--dry-run"]) == 0
    assert PLANTED_TOKEN not in capsys.readouterr().out
    run_recipe(recipe)
    assert (tmp_path / "out" / "checkpoint-2").is_dir()  # checkpoints (and their pickled config) were written
    assert files_holding(tmp_path / "out", PLANTED_TOKEN) == []
    card = (tmp_path / "out" / "README.md").read_text()
    assert "hub_token: <redacted>" in card
    assert json.loads((tmp_path / "out" / "alfa_train.json").read_text())["global_steps"] == 2


@pytest.fixture(autouse=True)
def _restore_hf_token():
    import os

    before = os.environ.get("HF_TOKEN")
    yield
    os.environ.pop("HF_TOKEN", None)  # keep_secrets_off_disk hands the token to this process's environment
    if before is not None:
        os.environ["HF_TOKEN"] = before
