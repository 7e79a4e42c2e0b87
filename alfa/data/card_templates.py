"""The card templates (Jinja2) in alfa/data/templates/, shipped inside the package (package data, so a plain
`pip install .` has them): dataset cards (alfa.data.card), method pair cards and model cards (alfa.train.run).
Change a card's wording there; the code only computes what fills it."""

from __future__ import annotations

import functools
import json
from pathlib import Path

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"


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
def environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )  # Markdown, not HTML
    env.globals["table"] = table
    env.globals["pct"] = pct
    env.filters["fmt"] = fmt
    env.filters["tojson_plain"] = json.dumps  # Jinja's own tojson escapes <, > and & for HTML
    return env


def render(template: str, **context) -> str:
    return environment().get_template(template).render(**context)
