"""The card templates (Jinja2) in the top-level data_cards/templates/: dataset cards (alfa.data.card) and
model cards (alfa.train.run). Change a card's wording there; the code only computes what fills it."""

from __future__ import annotations

import functools
import json
from pathlib import Path

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "data_cards" / "templates"


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

    if not TEMPLATES_DIR.is_dir():
        raise FileNotFoundError(
            f"alfa's card templates are not at {TEMPLATES_DIR}: alfa reads them from its source "
            "tree; install it from a clone with `pip install -e .` (or `make install`)"
        )
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
