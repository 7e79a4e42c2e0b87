"""The real Argilla web UI in headless Chromium (Debian's `chromium`, driven by Playwright): an annotator
logs in, answers a record and submits; `alfa review pull` sees that answer."""

from __future__ import annotations

import time

import polars as pl
import pytest
from conftest import CHROMIUM

from alfa.cli import main
from alfa.data.pairs import load_pairs
from alfa.review.pull import fetch
from alfa.review.records import chosen_side

# The flags keep Chromium from calling out to Google's services, which a closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


pytestmark = pytest.mark.chromium  # skipped where Debian's chromium is absent (conftest.NEEDS)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def test_annotator_answers_in_the_web_ui_and_pull_sees_it(owner, argilla, askdocs_run, browser, tmp_path, capsys):
    _, url, _ = argilla
    assert main(["review", "push", str(askdocs_run.pairs), "--sample", "2", "--dataset", "ui-check"]) == 0
    creds = tmp_path / "reviewers.csv"
    assert main(["review", "users", "add", "dana", "--credentials", str(creds)]) == 0
    password = creds.read_text().splitlines()[1].split(",")[1]

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{url}/sign-in")
    page.get_by_label("Username").fill("dana")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("ui-check", exact=True).first.click()
    page.get_by_text("Which question is better on this attribute?").wait_for()
    shown = page.inner_text("body")
    page.locator("label", has_text="Question B").first.click()
    page.locator("label", has_text="Yes").first.click()
    page.get_by_role("button", name="Submit").click()

    answers = pl.DataFrame()
    for _ in range(50):  # the UI posts the answer asynchronously
        _, answers = fetch(owner, "ui-check")
        if answers.height:
            break
        time.sleep(0.2)
    page.close()
    assert answers.select("annotator", "status", "better", "differ_only_in_attribute").rows() == [
        ("dana", "submitted", "B", "yes")
    ]
    pair_id = answers["pair_id"][0]
    pair = load_pairs(askdocs_run.pairs).filter(pl.col("pair_id") == pair_id).to_dicts()[0]
    assert pair["chosen"][0]["content"].strip() in shown and pair["rejected"][0]["content"].strip() in shown

    out = tmp_path / "reviewed"
    assert (
        main(
            ["review", "pull", str(askdocs_run.pairs), "-o", str(out), "--dataset", "ui-check", "--on-reversed", "flip"]
        )
        == 0
    )
    assert "1 of 2 records reviewed" in capsys.readouterr().out
    reviewed = pl.concat([load_pairs(out), pl.read_parquet(out / "review" / "dropped.parquet")], how="diagonal_relaxed")
    # a pair dana reversed was flipped: a new pair whose flipped_from is the one she saw
    row = reviewed.filter((pl.col("pair_id") == pair_id) | (pl.col("flipped_from") == pair_id)).to_dicts()[0]
    assert row["decided_by"] == "humans: dana"
    assert row["review_verdict"] == ("agree" if chosen_side(pair_id) == "B" else "reversed")
    assert (row["pair_id"] == pair_id) == (row["review_verdict"] == "agree")
