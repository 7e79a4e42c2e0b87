"""A planted key never reaches a file alfa writes: not the run dir (error bodies that echo headers), not a
trained model's folder (recipe copied into the card, TRL's pickled config), not a dry run's output."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest
from chat_server import ChatServer, serve_in_thread
from conftest import SAMPLE, SAMPLE_MAP

from alfa.cli import main
from alfa.data.attributes import load_pack
from alfa.data.ingest import ingest, parse_map
from alfa.data.synthesize import synthesize
from alfa.llm.backends import TransformersBackend
from alfa.llm.endpoint import ChatEndpoint
from alfa.train.run import run_recipe

PLANTED_KEY = "sk-PLANTED-4f1d9a7c2b"
PLANTED_TOKEN = "hf_PLANTEDtokenQ8w3e5r7"


def files_holding(folder: Path, secret: str) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_an_endpoint_echoing_headers_leaves_no_key_in_the_run_dir(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("ALFA_PLANTED_KEY", PLANTED_KEY)
    chat = ChatServer(TransformersBackend(tiny_model_dir, batch_size=1, max_new_tokens=8))
    chat.url, stop = serve_in_thread(chat)
    try:
        chat.faults = {i: "echo_headers" for i in range(1, 4)}  # not retryable: recorded as failed calls
        rw = ChatEndpoint("tiny", chat.url, concurrency=1, max_tokens=8, max_retries=0, api_key_env="ALFA_PLANTED_KEY")
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


def test_a_secret_given_with_set_reaches_no_file_no_printout_and_no_command_line(
    tmp_path, tiny_model_dir, pairs_dir, capsys, monkeypatch
):
    """`--set trl.hub_token=...` was stored raw in alfa_train.json, printed by --dry-run, written into the model
    card (its redaction missed dotted keys) and carried on the `accelerate launch` command line."""
    from alfa.train import run as train_run
    from alfa.train.recipe import SECRET_OVERRIDES_ENV, redact_override

    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert redact_override(f"trl.hub_token={PLANTED_TOKEN}") == "trl.hub_token=<redacted>"
    assert redact_override("trl.learning_rate=1e-6") == "trl.learning_rate=1e-6"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        textwrap.dedent(f"""\
        stage: dpo
        model: {{name_or_path: {tiny_model_dir}}}
        data: {{pairs_dir: {pairs_dir}, attributes: [clarity]}}
        launch: {{num_processes: 2}}
        trl: {{output_dir: {tmp_path / "out"}, per_device_train_batch_size: 2, max_steps: 1, max_length: 128,
               save_strategy: "no", bf16: false}}
        """)
    )
    secret = f"trl.hub_token={PLANTED_TOKEN}"
    assert main(["train", str(recipe), "--dry-run", "--set", secret]) == 0
    printed = capsys.readouterr().out
    assert PLANTED_TOKEN not in printed and "--set trl.hub_token=<redacted>" in printed
    launched = {}

    def call(cmd, env):  # the parent's launch, caught: what would reach `accelerate launch`
        launched.update(cmd=cmd, env=env)
        return 0

    monkeypatch.setattr(train_run.subprocess, "call", call)
    assert train_run.train_command(recipe, overrides=[secret, "trl.max_steps=1"]) == 0
    assert PLANTED_TOKEN not in " ".join(launched["cmd"]) and "trl.max_steps=1" in launched["cmd"]
    assert json.loads(launched["env"][SECRET_OVERRIDES_ENV]) == [secret]
    # the child reads it back from its environment, trains, and writes it nowhere
    monkeypatch.setenv("ALFA_LAUNCHED", "1")
    monkeypatch.setenv(SECRET_OVERRIDES_ENV, launched["env"][SECRET_OVERRIDES_ENV])
    assert train_run.train_command(recipe, overrides=["trl.max_steps=1"]) == 0
    record = json.loads((tmp_path / "out" / "alfa_train.json").read_text())
    assert record["overrides"] == ["trl.max_steps=1", "trl.hub_token=<redacted>"]
    assert os.environ["HF_TOKEN"] == PLANTED_TOKEN  # it reached the training process, as TRL's hub_token does
    assert files_holding(tmp_path / "out", PLANTED_TOKEN) == []
    assert "trl.hub_token=<redacted>" in (tmp_path / "out" / "README.md").read_text()


def test_a_review_connection_never_shows_its_key():
    from alfa.review.connection import Connection

    assert PLANTED_KEY not in repr(Connection("http://127.0.0.1:6900", PLANTED_KEY, "owner", "owner"))
