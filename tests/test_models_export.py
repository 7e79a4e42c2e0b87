"""`alfa models export`: a GGUF becomes a Hugging Face folder that transformers loads and that generates what
the GGUF itself generates."""

from __future__ import annotations

import json

import pytest

from alfa.cli import main
from alfa.llm.embedded import smollm2_gguf_path


def _greedy(model, tokenizer, n=8):
    import torch

    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "My knee hurts when I climb stairs."}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.inference_mode():
        out = model.generate(**ids, max_new_tokens=n, do_sample=False)
    return out[0, ids["input_ids"].shape[1] :].tolist()


@pytest.mark.slow
def test_exported_folder_generates_what_the_gguf_generates(tmp_path, capsys):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert main(["models", "export", "smollm2", "-o", str(tmp_path / "fp32"), "--dtype", "float32"]) == 0
    assert "exported SmolLM2-135M-Instruct.Q4_1.gguf (float32)" in capsys.readouterr().out
    gguf = smollm2_gguf_path()
    reference = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "fp32")
    assert AutoTokenizer.from_pretrained(tmp_path / "fp32").chat_template == tokenizer.chat_template
    assert _greedy(exported, tokenizer) == _greedy(reference, tokenizer)

    assert main(["models", "export", str(gguf), "-o", str(tmp_path / "bf16")]) == 0  # a path, bfloat16 by default
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["dtype"] == "bfloat16"
    size = {d: sum(f.stat().st_size for f in (tmp_path / d).glob("*.safetensors")) for d in ("fp32", "bf16")}
    assert 0.45 < size["bf16"] / size["fp32"] < 0.55
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "bf16").dtype == torch.bfloat16
    assert main(["models", "export", str(tmp_path / "missing.gguf"), "-o", str(tmp_path / "x")]) == 2
