"""A recipe's `trl:` values checked against the installed TRL config class's fields before any model loads: the
type each field declares (a YAML `1e-3` is text, not a number; `two` is not an integer) and its choices (a field's
`choices` metadata, an enum, or the "Possible values are: ..." its help lists, as DPOConfig.loss_type's does).
Without this, `learning_rate: 1e-3` fails inside AdamW after the model loads and `loss_type: sigmod` during the
first step."""

from __future__ import annotations

import dataclasses
import enum
import re
import types
import typing

# The listing style of TRL's help texts: Possible values are: `'sigmoid'`, `'hinge'`, ...
POSSIBLE_VALUES = re.compile(r"Possible values are:(.*?)(?:\.\s|\.$)", re.DOTALL)


def _flat(hint) -> list:
    """A type hint's alternatives: Optional[X] -> [X, NoneType]; X | Y -> [X, Y]."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return [t for arg in typing.get_args(hint) for t in _flat(arg)]
    return [hint]


def choices_of(field: dataclasses.Field, hint) -> list[str] | None:
    if "choices" in field.metadata:
        return [str(c) for c in field.metadata["choices"]]
    alternatives = _flat(hint)
    enums = [t for t in alternatives if isinstance(t, type) and issubclass(t, enum.Enum)]
    if enums:  # `IntervalStrategy | str` too: transformers turns the text into the enum, refusing other text
        return [str(m.value) for m in enums[0]]
    listed = POSSIBLE_VALUES.search(field.metadata.get("help", ""))
    return re.findall(r"`'([^']+)'`", listed.group(1)) or None if listed else None


def value_problem(field: dataclasses.Field, hint, value) -> str | None:
    """Why `value` does not fit `field` (of declared type `hint`), or None when it does."""
    alternatives = _flat(hint)
    base = {typing.get_origin(t) or t for t in alternatives}
    if value is None:
        return None if type(None) in base or field.default is None else "is empty (null), and the field needs a value"
    if any(t is typing.Any or not isinstance(t, type) for t in base):
        return None  # a type we do not check
    if isinstance(value, str) and list in base:
        value = [value]  # TRL takes one text where it declares a list of them (loss_type: sigmoid)
    if isinstance(value, str) and not ({str, list} & base or any(issubclass(t, enum.Enum) for t in base)):
        if base & {float, int}:
            try:
                float(value)
            except ValueError:
                return f"{value!r} is not a number"
            return f"{value!r} is text: YAML reads a number with an exponent but no dot as text; write it as 1.0e-3"
        return f"{value!r} is text, the field takes {' or '.join(sorted(t.__name__ for t in base))}"
    if isinstance(value, float) and int in base and float not in base and not value.is_integer():
        return f"{value!r} is not a whole number"
    if isinstance(value, bool) and bool not in base and base & {int, float}:
        return f"{value!r} is true/false, the field takes a number"
    choices = choices_of(field, hint)
    if choices is not None:
        given = value if isinstance(value, list) else [value]
        wrong = [v for v in given if str(v) not in choices]
        if wrong:
            return f"{', '.join(map(repr, wrong))} is not one of {', '.join(choices)}"
    return None


def trl_value_problems(config_class, values: dict) -> dict[str, str]:
    """{key: why} for every value of `values` that does not fit its field of `config_class`."""
    hints = typing.get_type_hints(config_class)
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    problems = {}
    for key, value in values.items():
        if key in fields and (why := value_problem(fields[key], hints[key], value)):
            problems[key] = why
    return problems
