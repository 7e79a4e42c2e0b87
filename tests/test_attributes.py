import textwrap

import pytest

from alfa.data.attributes import load_pack, shipped_packs
from alfa.data.prompts import DIRECTIONS, rewrite_messages
from alfa.yamlconfig import ConfigError

CLINICAL = ["clarity", "focus", "answerability", "medical_accuracy", "diagnostic_relevance", "avoiding_diagnostic_bias"]


def test_shipped_packs():
    assert {"core", "clinical"} <= set(shipped_packs())
    assert list(load_pack("core").attributes) == ["clarity", "relevance", "specificity"]
    clinical = load_pack("clinical")
    assert list(clinical.attributes) == CLINICAL
    for a in clinical.attributes.values():
        assert sorted(a.scale) == [1, 2, 3, 4, 5] and a.examples and a.name


def _pack(tmp_path, body: str):
    path = tmp_path / "mine.yaml"
    path.write_text(textwrap.dedent(body))
    return path


GOOD = """\
name: mine
description: A user's own pack.
attributes:
  empathy:
    definition: Whether the question acknowledges the patient's worry.
    scale: {1: cold, 2: flat, 3: neutral, 4: warm, 5: kind}
    enhance: Acknowledge the worry briefly.
    corrupt: Sound dismissive.
    examples:
      - post: I am scared about this lump.
        question: How big is the lump?
        enhanced: I understand this is worrying; how big is the lump?
        corrupted: So how big is this lump of yours?
"""


def test_a_users_own_pack_needs_no_code(tmp_path):
    pack = load_pack(_pack(tmp_path, GOOD))
    assert list(pack.attributes) == ["empathy"]
    msgs = rewrite_messages(pack.attributes["empathy"], "enhance", "post", "Is it painful?")
    # system, then one few-shot exchange, then the real request
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[2]["content"] == "I understand this is worrying; how big is the lump?"
    assert "Is it painful?" in msgs[-1]["content"]
    # the digest changes when any text changes
    other = load_pack(_pack(tmp_path, GOOD.replace("Sound dismissive.", "Sound rushed.")))
    assert other.digest != pack.digest


@pytest.mark.parametrize(
    "edit, match",
    [
        (
            ("    corrupt: Sound dismissive.", "    corupt: Sound dismissive."),
            r"mine.yaml:8 \(attributes.empathy.corupt\): unknown key 'corupt'",
        ),
        (
            ("{1: cold, 2: flat, 3: neutral, 4: warm, 5: kind}", "{1: cold, 2: flat}"),
            r"mine.yaml:6 .*scale must have exactly the keys 1..5",
        ),
        (
            ("        enhanced: I understand this is worrying; how big is the lump?", "        enhanced: It is big."),
            r"mine.yaml:12 .*single question ending with '\?'",
        ),
        (("description: A user's own pack.\n", ""), r"missing required key 'description'"),
        (("    definition: Whether", "    definition: [Whether"), r"not valid YAML"),
    ],
)
def test_a_malformed_pack_names_the_line_and_key(tmp_path, edit, match):
    with pytest.raises(ConfigError, match=match):
        load_pack(_pack(tmp_path, GOOD.replace(*edit)))


def test_unknown_pack_and_attribute_selection():
    with pytest.raises(ConfigError, match="no attribute pack named 'nope'; shipped packs: clinical, coarse, core"):
        load_pack("nope")
    with pytest.raises(ConfigError, match=r"\['kindness'\] not in pack 'core'"):
        load_pack("core").select(["kindness"])
    assert list(load_pack("clinical").select(["focus"]).attributes) == ["focus"]


def test_hindsight_only_reaches_the_prompt_when_given():
    attr = load_pack("core").attributes["relevance"]
    with_h = rewrite_messages(attr, "enhance", "post", "Q?", {"final_diagnosis": "Gout"})
    without = rewrite_messages(attr, "corrupt", "post", "Q?", None)
    assert "Gout" in with_h[-1]["content"] and "Gout" not in str(without)
    with pytest.raises(ValueError, match="direction"):
        rewrite_messages(attr, "sideways", "post", "Q?")
    assert DIRECTIONS == ("enhance", "corrupt")
