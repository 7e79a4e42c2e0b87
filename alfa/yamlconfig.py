"""YAML -> dataclasses, with errors that name the file, the key and the line.

Every YAML alfa reads (attribute packs, pipeline configs) maps one-to-one onto a dataclass. Unknown
keys are rejected instead of silently ignored: a typo in a config should never change what runs.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path

import yaml


class ConfigError(ValueError):
    """A config or pack file that cannot be used; the message says where and what to do."""


def load_yaml(path: Path) -> tuple[object, dict[tuple, int]]:
    """Parse YAML, returning the data and a map from key path (tuple) to 1-based line number."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such file")
    text = path.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    lines: dict[tuple, int] = {}

    def walk(n, prefix):
        if n is None:
            return
        lines[prefix] = n.start_mark.line + 1
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                key = yaml.safe_load(yaml.serialize(k))
                lines[prefix + (key,)] = k.start_mark.line + 1
                walk(v, prefix + (key,))
        elif isinstance(n, yaml.SequenceNode):
            for i, v in enumerate(n.value):
                walk(v, prefix + (i,))

    walk(node, ())
    return data, lines


def where(path: Path, lines: dict[tuple, int | str], key_path: tuple) -> str:
    """`file:line (a.b.c)` for messages, or `--set a.b.c=VALUE` for a value given on the command line."""
    line = lines.get(key_path)
    while line is None and key_path:
        key_path = key_path[:-1]
        line = lines.get(key_path)
    dotted = ".".join(str(k) for k in key_path) or "<top level>"
    if isinstance(line, str):
        return f"{line} ({dotted})"
    return f"{path}:{line or 1} ({dotted})"


SCIENTIFIC = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


def apply_overrides(data: dict, lines: dict, overrides: list[str]) -> dict:
    """`KEY.PATH=VALUE` settings (`alfa train --set trl.learning_rate=1e-6`) on top of a parsed YAML: each
    VALUE is read as YAML (`[clarity]`, `1e-6`, `true`), then checked like the file's own keys."""
    for spec in overrides:
        dotted, sep, raw = spec.partition("=")
        if not sep or not dotted.strip():
            raise ConfigError(f"--set {spec!r}: expected KEY.PATH=VALUE, e.g. --set trl.learning_rate=1e-6")
        keys = tuple(dotted.strip().split("."))
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {spec!r}: the value is not valid YAML: {e}") from None
        if isinstance(value, str) and SCIENTIFIC.fullmatch(value):
            value = float(value)  # YAML 1.1 reads 1e-6 (no dot) as a string; on a command line it is a number
        node = data
        for i, key in enumerate(keys[:-1]):
            if not isinstance(node.setdefault(key, {}), dict):
                raise ConfigError(f"--set {spec!r}: {'.'.join(keys[: i + 1])} is not a mapping in the recipe")
            node = node[key]
        node[keys[-1]] = value
        for i in range(1, len(keys) + 1):
            lines.setdefault(keys[:i], f"--set {spec}")
        lines[keys] = f"--set {spec}"
    return data


def _check_type(value, hint, path, lines, key_path):
    """Coerce/validate one value against a (simple) type hint."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        return _check_type(value, non_none[0], path, lines, key_path)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, path, lines, key_path)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where(path, lines, key_path)}: expected a list, got {type(value).__name__}")
        return [_check_type(v, args[0], path, lines, key_path + (i,)) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where(path, lines, key_path)}: expected a mapping, got {type(value).__name__}")
        return {k: _check_type(v, args[1], path, lines, key_path + (k,)) for k, v in value.items()}
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (str, int, float, bool) and not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(
            f"{where(path, lines, key_path)}: expected {hint.__name__}, got {type(value).__name__} {value!r}"
        )
    return value


def from_dict(cls, data, path: Path, lines: dict[tuple, int], key_path: tuple = ()):
    """Build dataclass `cls` from a YAML mapping; unknown or missing keys raise ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where(path, lines, key_path)}: expected a mapping of {cls.__name__} fields")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            raise ConfigError(
                f"{where(path, lines, key_path + (key,))}: unknown key {key!r} for {cls.__name__}; "
                f"allowed keys: {', '.join(fields)}"
            )
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _check_type(data[name], hints[name], path, lines, key_path + (name,))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where(path, lines, key_path)}: missing required key {name!r} for {cls.__name__}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        # Validation messages start with the field at fault ("scale must ..."): point at its line.
        first = str(e).split(" ", 1)[0]
        at = key_path + (first,) if first in fields and first in data else key_path
        raise ConfigError(f"{where(path, lines, at)}: {e}") from None
