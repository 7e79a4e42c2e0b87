"""A plain (not editable) `pip install` of alfa has everything alfa reads at run time: the card templates and the
attribute packs ship as package data. Before, `alfa card` from such an install said "alfa's card templates are
not at .../site-packages/...". Installed with this Python into a folder of its own, from a copy of the source."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from conftest import ROOT


def test_a_plain_pip_install_carries_the_card_templates_and_attribute_packs(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    shutil.copy(ROOT / "pyproject.toml", source)
    shutil.copy(ROOT / "README.md", source)
    shutil.copytree(ROOT / "alfa", source / "alfa", ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
               str(target), str(source)]  # fmt: skip
    subprocess.run(install, check=True, capture_output=True, timeout=600)
    shutil.rmtree(source)  # nothing may come from the source tree any more
    code = (
        "import alfa\n"
        "from alfa.data.attributes import load_pack\n"
        "from alfa.card_templates import environment\n"
        "from alfa.train.run import MODEL_CARD_TEMPLATES\n"
        "envs = [environment(), environment(MODEL_CARD_TEMPLATES)]\n"
        "names = sorted(n for e in envs for n in e.list_templates())\n"
        "for e in envs: [e.get_template(n) for n in e.list_templates()]\n"
        "print(alfa.__file__, names, sorted(load_pack('clinical').attributes))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(str(target / "alfa" / "__init__.py"))
    for name in ("dataset_card.md.j2", "method_pairs_card.md.j2", "model_card.md.j2", "review_section.md.j2"):
        assert name in run.stdout
    assert "'medical_accuracy'" in run.stdout
