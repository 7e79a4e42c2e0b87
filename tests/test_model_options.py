"""The recipe's model-loading options: each one through --dry-run (accepted where this machine can do it,
refused with the key named where it cannot), and the ones a CPU can train with through a tiny run."""

from __future__ import annotations

import json
import textwrap

import pytest

from alfa.cli import main
from alfa.train.run import run_recipe


def _recipe(tmp_path, model_dir, pairs_dir, model_extra="", launch="", steps=2):
    path = tmp_path / "recipe.yaml"
    path.write_text(
        textwrap.dedent(f"""\
        stage: dpo
        model: {{name_or_path: {model_dir}{model_extra}}}
        data: {{pairs_dir: {pairs_dir}, attributes: [clarity]}}
        {launch}
        trl: {{output_dir: {tmp_path / "out"}, per_device_train_batch_size: 4, max_steps: {steps}, max_length: 128,
              save_strategy: "no", bf16: false, report_to: [], logging_steps: 1}}
        """)
    )
    return path


def _dry_run(path, capsys, *extra):
    code = main(["train", str(path), "--dry-run", *extra])
    return code, capsys.readouterr().out


def test_cpu_options_pass_the_dry_run(tmp_path, tiny_model_dir, pairs_dir, capsys):
    template = tmp_path / "template.jinja"
    template.write_text(
        "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    path = _recipe(
        tmp_path,
        tiny_model_dir,
        pairs_dir,
        f", dtype: bfloat16, attn_implementation: sdpa, chat_template: {template}, trust_remote_code: true",
    )
    code, out = _dry_run(path, capsys)
    assert code == 0, out
    assert "[ok] model.dtype: bfloat16 on the CPU" in out and "[ok] model.attn_implementation: sdpa" in out
    assert f"[ok] model.chat_template: {template} replaces" in out and "[ok] model.trust_remote_code" in out


@pytest.mark.parametrize(
    "extra, launch, message",
    [
        (", dtype: float16", "", "[FAIL] model.dtype: float16 training needs a GPU"),
        (
            ", attn_implementation: flash_attention_2",
            "",
            "[FAIL] model.attn_implementation: flash_attention_2: flash-attn is not installed",
        ),
        (", quantization: 4bit", "", "[FAIL] model.quantization: 4bit: "),
        (", quantization: 8bit", "launch: {lora: {r: 8}}", "bitsandbytes quantization needs a CUDA GPU"),
        (", chat_template: missing.jinja", "", "[FAIL] model.chat_template: missing.jinja: no such file"),
    ],
)
def test_what_this_machine_cannot_do_fails_the_dry_run_naming_the_key(
    tmp_path, tiny_model_dir, pairs_dir, capsys, extra, launch, message
):
    code, out = _dry_run(_recipe(tmp_path, tiny_model_dir, pairs_dir, extra, launch), capsys)
    assert code == 1 and message in out


def test_quantization_without_lora_and_bad_values_are_named(tmp_path, tiny_model_dir, pairs_dir, capsys):
    code, out = _dry_run(_recipe(tmp_path, tiny_model_dir, pairs_dir, ", quantization: 4bit"), capsys)
    assert "add a launch.lora block (QLoRA)" in out
    assert main(["train", str(_recipe(tmp_path, tiny_model_dir, pairs_dir, ", dtype: fp8")), "--dry-run"]) == 2
    assert "(model.dtype): dtype must be one of auto, bfloat16, float16, float32" in capsys.readouterr().err
    bad = tmp_path / "bad.jinja"
    bad.write_text("{% for m in messages %}")
    code, out = _dry_run(_recipe(tmp_path, tiny_model_dir, pairs_dir, f", chat_template: {bad}"), capsys)
    assert code == 1 and f"{bad}:1: not a Jinja template" in out


def test_bf16_on_a_gpu_without_it_is_refused(tmp_path, tiny_model_dir, pairs_dir, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla T4")
    code, out = _dry_run(_recipe(tmp_path, tiny_model_dir, pairs_dir, ", dtype: bfloat16"), capsys)
    assert code == 1 and "[FAIL] model.dtype: bfloat16 on Tesla T4, which has no bf16" in out


def test_bf16_eager_and_a_chat_template_file_train_on_the_cpu(tmp_path, tiny_model_dir, pairs_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    original = AutoTokenizer.from_pretrained(tiny_model_dir).chat_template
    template = tmp_path / "template.jinja"
    template.write_text(original + "{# the recipe's own template #}")
    path = _recipe(
        tmp_path, tiny_model_dir, pairs_dir, f", dtype: bfloat16, attn_implementation: eager, chat_template: {template}"
    )
    summary = run_recipe(path)
    assert summary["global_steps"] == 2 and summary["first_loss"] is not None
    saved = tmp_path / "out"
    assert AutoTokenizer.from_pretrained(saved).chat_template == template.read_text()
    assert json.loads((saved / "config.json").read_text())["dtype"] == "bfloat16"
    model = AutoModelForCausalLM.from_pretrained(saved)
    assert model.config._attn_implementation in ("eager", "sdpa")  # loadable; trained with eager


@pytest.mark.parametrize("dtype, compute", [("auto", "bfloat16"), ("float16", "float16"), ("bfloat16", "bfloat16")])
def test_quantization_config_comes_from_trl_with_the_recipe_dtype(dtype, compute):
    import torch

    from alfa.train.model_options import ModelConfig, loading_kwargs

    four = loading_kwargs(ModelConfig("m", dtype=dtype, quantization="4bit"))["quantization_config"]
    assert four.load_in_4bit and not four.load_in_8bit
    assert four.bnb_4bit_quant_type == "nf4" and four.bnb_4bit_use_double_quant
    assert four.bnb_4bit_compute_dtype == getattr(torch, compute)
    eight = loading_kwargs(ModelConfig("m", dtype=dtype, quantization="8bit"))["quantization_config"]
    assert eight.load_in_8bit and not eight.load_in_4bit
    assert "quantization_config" not in loading_kwargs(ModelConfig("m", dtype=dtype))
