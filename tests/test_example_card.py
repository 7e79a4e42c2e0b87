"""data_cards/demo/ is the card `make demo` writes, committed so a reader can open it on the web. This test
runs the demo pipeline as `make demo` does (into a temporary folder) and fails when the committed copy is
stale: refresh it with `make example-card`."""

from __future__ import annotations

from pathlib import Path

import pytest

from alfa.data.pipeline import build, load_pipeline

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_committed_demo_card_is_what_make_demo_writes(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the demo pipeline's input paths are relative to the repository, as in `make demo`
    config = load_pipeline(ROOT / "configs" / "pipelines" / "demo.yaml")
    config.output_dir = str(tmp_path / "demo")
    assert build(config) == 0
    written = (tmp_path / "demo" / "pairs" / "README.md").read_text()
    committed = (ROOT / "data_cards" / "demo" / "README.md").read_text()
    assert written == committed, "data_cards/demo/README.md is stale: run `make example-card` and commit it"
    for plot in (tmp_path / "demo" / "pairs" / "plots").glob("*.png"):
        assert (ROOT / "data_cards" / "demo" / "plots" / plot.name).exists(), f"{plot.name} is not committed"
