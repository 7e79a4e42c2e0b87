"""Rendering of alfa's cards (Jinja2 templates, Markdown out), a bottom-layer helper: each layer keeps its own
templates beside its code, shipped as package data so a plain `pip install .` has them. Dataset, method-pair
and review-section cards in alfa/data/templates/ (DATA_TEMPLATES), model cards in alfa/train/templates/
(alfa.train.run). Change a card's wording there; the code only computes what fills it."""

from __future__ import annotations

import functools
import json
from pathlib import Path

DATA_TEMPLATES = Path(__file__).resolve().parent / "data" / "templates"


def table(header: list[str], rows: list[list]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt(x: float | None, spec: str = ".2f") -> str:
    return "n/a" if x is None else format(x, spec)


def pct(x: float | None) -> str:
    """0.731 -> '73%'; 'n/a' for None or nan (an interval of no data)."""
    return "n/a" if x is None or x != x else f"{x:.0%}"


@functools.cache
def environment(folder: Path = DATA_TEMPLATES):
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder),
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )  # Markdown, not HTML
    env.globals["table"] = table
    env.globals["pct"] = pct
    env.filters["fmt"] = fmt
    env.filters["tojson_plain"] = json.dumps  # Jinja's own tojson escapes <, > and & for HTML
    return env


def render(template: str, folder: Path = DATA_TEMPLATES, **context) -> str:
    """`template` (a file name in `folder`) filled with `context`."""
    return environment(folder).get_template(template).render(**context)
