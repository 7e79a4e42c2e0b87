"""What a user sees when something is missing or wrong: one line that says what to do, exit code 2; the
traceback only with --debug or ALFA_DEBUG=1."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from alfa.cli import main

ROOT = Path(__file__).resolve().parents[1]
RECIPE = str(ROOT / "recipes" / "tiny" / "dpo_clarity.yaml")


@pytest.mark.parametrize(
    "module, extra, argv",
    [
        ("trl", "train", ["train", RECIPE, "--dry-run"]),
        ("argilla", "review", ["review", "status"]),
    ],
)
def test_a_missing_extra_is_named_with_its_install_command(monkeypatch, capsys, module, extra, argv):
    monkeypatch.setitem(sys.modules, module, None)  # as if `pip install -e .` had left the extra out
    monkeypatch.setenv("ARGILLA_API_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("ARGILLA_API_KEY", "unused")
    monkeypatch.delenv("ALFA_DEBUG", raising=False)
    if module == "argilla":  # `review status` reaches the SDK only after the server answers: fail at the SDK import
        monkeypatch.setattr("alfa.review.connection.connect", lambda *a: __import__("argilla"))
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert f"pip install -e '.[{extra}]'" in err and f"module {module!r}" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_debug_shows_the_traceback(monkeypatch):
    monkeypatch.setitem(sys.modules, "trl", None)
    with pytest.raises(ModuleNotFoundError):
        main(["--debug", "train", RECIPE, "--dry-run"])
    monkeypatch.setenv("ALFA_DEBUG", "1")
    with pytest.raises(ModuleNotFoundError):
        main(["train", RECIPE, "--dry-run"])


def test_expected_errors_stay_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ALFA_DEBUG", raising=False)
    assert main(["train", str(tmp_path / "missing.yaml"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("alfa train: error: ") and len(err.strip().splitlines()) == 1
