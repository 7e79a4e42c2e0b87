"""Attribute packs: what makes a follow-up question good, one attribute at a time, in YAML.

A pack is a YAML file (see alfa/attribute_packs/core.yaml) that maps onto `AttributePack`. The
shipped packs are `core` (clarity, relevance, specificity) and `clinical` (the ALFA paper's six).
Users write their own pack file and pass its path: no code needed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from alfa.yamlconfig import ConfigError, from_dict, load_yaml, where

PACKS_DIR = Path(__file__).parent / "attribute_packs"


@dataclass
class Example:
    """A few-shot example: a short post, its original question and the two rewrites."""

    post: str
    question: str
    enhanced: str
    corrupted: str


@dataclass
class Attribute:
    """One attribute. `enhance`/`corrupt` are the rewriter's instructions for each direction."""

    definition: str
    scale: dict[int, str]
    enhance: str
    corrupt: str
    examples: list[Example] = field(default_factory=list)
    name: str = ""  # filled from the mapping key

    def __post_init__(self):
        if sorted(self.scale) != [1, 2, 3, 4, 5]:
            raise ValueError(f"scale must have exactly the keys 1..5, got {sorted(self.scale)}")
        for key in ("definition", "enhance", "corrupt"):
            if not getattr(self, key).strip():
                raise ValueError(f"{key} is empty")


@dataclass
class AttributePack:
    name: str
    description: str
    attributes: dict[str, Attribute]
    source: str = ""  # the file it came from

    @property
    def digest(self) -> str:
        """Content hash of the pack: recorded in run dirs and cards, changes when any text changes."""
        payload = json.dumps({k: asdict(v) for k, v in self.attributes.items()}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def select(self, names: list[str] | None) -> "AttributePack":
        """The same pack restricted to `names` (None: all)."""
        if not names:
            return self
        unknown = [n for n in names if n not in self.attributes]
        if unknown:
            raise ConfigError(f"attribute(s) {unknown} not in pack {self.name!r}; it has: {', '.join(self.attributes)}")
        return AttributePack(self.name, self.description, {n: self.attributes[n] for n in names}, self.source)


def shipped_packs() -> list[str]:
    return sorted(p.stem for p in PACKS_DIR.glob("*.yaml"))


def load_pack(name_or_path: str | Path) -> AttributePack:
    """Load a shipped pack by name (`core`, `clinical`) or a user's pack by path."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = PACKS_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise ConfigError(
                f"no attribute pack named {name_or_path!r}; shipped packs: {', '.join(shipped_packs())}, "
                "or give the path of your own pack YAML"
            )
    data, lines = load_yaml(path)
    if isinstance(data, dict) and isinstance(data.get("attributes"), dict):
        for attr_name, attr in data["attributes"].items():
            if isinstance(attr, dict):
                if "name" in attr:
                    raise ConfigError(
                        f"{where(path, lines, ('attributes', attr_name, 'name'))}: "
                        "the attribute's name is its key; remove 'name'"
                    )
                attr["name"] = attr_name
    pack = from_dict(AttributePack, data, path, lines)
    if not pack.attributes:
        raise ConfigError(f"{where(path, lines, ('attributes',))}: a pack needs at least one attribute")
    for attr_name, attr in pack.attributes.items():
        for i, ex in enumerate(attr.examples):
            for key in ("question", "enhanced", "corrupted"):
                text = getattr(ex, key).strip()
                if not text.endswith("?"):
                    raise ConfigError(
                        f"{where(path, lines, ('attributes', attr_name, 'examples', i, key))}: "
                        "an example must be a single question ending with '?'"
                    )
    pack.source = str(path)
    return pack
