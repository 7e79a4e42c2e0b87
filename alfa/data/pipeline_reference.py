"""Every key of a pipeline YAML (`alfa build`), with its default and what it does, generated from the dataclasses
`alfa.data.pipeline.PipelineConfig` maps onto: the field names, types and defaults from the dataclasses, the
words from their docstrings and the comment beside each field in the source. docs/pipeline-reference.md is this
module's output; a test fails when it drifts. Regenerate with:

    python -m alfa.data.pipeline_reference > docs/pipeline-reference.md
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing

import yaml

from alfa.data.pipeline import PipelineConfig

FIELD_LINE = re.compile(r"^\s+(\w+): [^#\n]*?(?:#\s*(.*))?$")


def field_comments(cls) -> dict[str, str]:
    """{field: the comment written beside it in the source of the class, or of the dataclass it extends}."""
    comments = {}
    for klass in (k for k in cls.__mro__ if dataclasses.is_dataclass(k)):
        for line in inspect.getsource(klass).splitlines():
            m = FIELD_LINE.match(line)
            if m and m.group(2):
                comments.setdefault(m.group(1), m.group(2).strip())
    return comments


def summary(cls) -> str:
    """The first paragraph of the class's own docstring (not the signature dataclasses writes when there is none)."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    return "" if doc.startswith(f"{cls.__name__}(") else doc.split("\n\n")[0].replace("\n", " ")


def nested_class(hint):
    """The dataclass a field holds (also when optional), or None."""
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    return next((a for a in args if dataclasses.is_dataclass(a)), None)


def type_name(hint) -> str:
    text = re.sub(r"<class '([\w.]+)'>", r"\1", str(hint)).replace("NoneType", "None")
    return re.sub(r"\b(?:\w+\.)+(\w+)", r"\1", text)  # alfa.data.ingest.FieldMap -> FieldMap


def default_of(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def yaml_value(value) -> str:
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def block(cls, indent: int = 0) -> list[str]:
    """The YAML lines of `cls`'s fields, each with its comment; nested dataclasses expanded below their key."""
    hints, comments, pad, out = typing.get_type_hints(cls), field_comments(cls), "  " * indent, []
    for f in dataclasses.fields(cls):
        hint, default = hints[f.name], default_of(f)
        inner = nested_class(hint)
        note = [f"{type_name(hint)}"]
        if default is dataclasses.MISSING:
            note.append("required")
        if f.name in comments:
            note.append(comments[f.name])
        if inner is not None:
            doc = summary(inner)
            out.append(f"{pad}{f.name}:".ljust(40) + f"# {'; '.join(note)}" + (f". {doc}" if doc else ""))
            if default is None:
                out.append(f"{pad}  # null by default; a mapping with these keys turns it on:")
            out += block(inner, indent + 1)
            continue
        value = "" if default is dataclasses.MISSING else f" {yaml_value(default)}"
        out.append(f"{pad}{f.name}:{value}".ljust(40) + f"# {'; '.join(note)}")
    return out


def reference() -> str:
    head = [
        "# Pipeline YAML reference (`alfa build PIPELINE.yaml`)",
        "",
        "Every key, its default and what it does, generated from the dataclasses of `alfa/data/pipeline.py` (and",
        "the ones they hold) by `python -m alfa.data.pipeline_reference`: do not edit by hand. Unknown keys are",
        "rejected with their line; relative paths are relative to the folder you run `alfa` from. Shipped examples:",
        "`configs/pipelines/`.",
        "",
        "```yaml",
    ]
    return "\n".join(head + block(PipelineConfig) + ["```", ""])


if __name__ == "__main__":
    print(reference(), end="")
