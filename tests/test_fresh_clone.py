"""A clone with nothing beside it: the tests that read the real data skip with one reason naming the folder and
ALFA_DATA, and ALFA_NO_SKIPS=1 (set by .ci/run) turns that skip into a failure."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT

# A light real-data test (it reads the MediQ files, no model), run in a pytest of its own.
REAL_DATA_TEST = "tests/test_eval_cases.py::test_the_shared_medqa_and_craft_md_files_read_whole"
NO_DATA_TEST = "tests/test_eval_cases.py::test_a_repeated_case_id_is_a_reject_naming_the_first_line"


def _pytest(tmp_path, **env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("ALFA_NO_SKIPS", "ALFA_DATA")}
    environ |= {"ALFA_DATA": str(tmp_path / "no-data-here"), **env}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", REAL_DATA_TEST, NO_DATA_TEST]
    return subprocess.run(cmd, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=300)


def test_without_the_data_its_tests_skip_naming_the_folder_and_the_variable(tmp_path):
    run = _pytest(tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed, 1 skipped" in run.stdout
    assert f"needs the real data at {tmp_path / 'no-data-here'}" in run.stdout and "ALFA_DATA=" in run.stdout


def test_alfa_no_skips_turns_the_skip_into_a_failure(tmp_path):
    run = _pytest(tmp_path, ALFA_NO_SKIPS="1")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "1 passed, 1 error" in run.stdout and "ALFA_NO_SKIPS=1" in run.stdout


def test_real_data_tests_are_marked_for_selection():
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "--co",
        "-q",
        "-p",
        "no:cacheprovider",
        "-m",
        "real_data",
        "tests/test_eval_cases.py",
    ]
    listed = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300).stdout
    assert REAL_DATA_TEST in listed and NO_DATA_TEST not in listed
