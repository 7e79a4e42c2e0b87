"""The recipe's `model:` block: which model, and how to load it (the options TRL's ModelConfig users know).

    model:
      name_or_path: runs/sft            # a local folder (no hub is contacted)
      tokenizer: null                   # default: the model folder
      dtype: float32                    # auto | bfloat16 | float16 | float32 (float32: right for the CPU)
      attn_implementation: null         # sdpa | eager | flash_attention_2 (transformers' default: sdpa)
      quantization: null                # 4bit | 8bit: QLoRA through bitsandbytes, with launch.lora, on a GPU
      chat_template: null               # a Jinja file that replaces the tokenizer's chat template
      trust_remote_code: false          # run code shipped with the model folder only when the recipe says so

`option_checks` tells, before any model loads, what the installed libraries and this machine cannot do.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

DTYPES = ("auto", "bfloat16", "float16", "float32")
ATTENTION = ("sdpa", "eager", "flash_attention_2")
QUANTIZATION = ("4bit", "8bit")


@dataclass
class ModelConfig:
    name_or_path: str
    tokenizer: str | None = None  # default: the model folder
    dtype: str = "float32"
    attn_implementation: str | None = None
    quantization: str | None = None
    chat_template: str | None = None
    trust_remote_code: bool = False
    built_by: str | None = None  # the command that makes this model folder: the dry run names it when it is missing

    def __post_init__(self):
        self.name_or_path = os.path.expanduser(self.name_or_path)
        self.tokenizer = os.path.expanduser(self.tokenizer) if self.tokenizer else None
        for key, allowed in (("dtype", DTYPES), ("attn_implementation", ATTENTION), ("quantization", QUANTIZATION)):
            value = getattr(self, key)
            if value is not None and value not in allowed:
                raise ValueError(f"{key} must be one of {', '.join(allowed)}, got {value!r}")


def loading_kwargs(model: ModelConfig) -> dict:
    """Keyword arguments for `from_pretrained` of the policy / reward model."""
    import torch

    kwargs = {
        "dtype": model.dtype if model.dtype == "auto" else getattr(torch, model.dtype),
        "trust_remote_code": model.trust_remote_code,
    }
    if model.attn_implementation:
        kwargs["attn_implementation"] = model.attn_implementation
    if model.quantization:
        # TRL's own helper builds the BitsAndBytesConfig (nf4, nested quantization, compute in the model's dtype),
        # so a QLoRA recipe loads as TRL's scripts load it; bfloat16 compute when the dtype is left to the model.
        from trl import ModelConfig as TRLModelConfig
        from trl import get_quantization_config

        kwargs["quantization_config"] = get_quantization_config(
            TRLModelConfig(
                model_name_or_path=model.name_or_path,
                dtype="bfloat16" if model.dtype == "auto" else model.dtype,
                load_in_4bit=model.quantization == "4bit",
                load_in_8bit=model.quantization == "8bit",
                bnb_4bit_quant_type="nf4",
                use_bnb_nested_quant=True,
            )
        )
    return kwargs


def load_tokenizer(model: ModelConfig):
    """The tokenizer, with the recipe's chat template in place of its own when the recipe gives one."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        model.tokenizer or model.name_or_path, trust_remote_code=model.trust_remote_code
    )
    if model.chat_template:
        tokenizer.chat_template = Path(model.chat_template).read_text()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def option_checks(model: ModelConfig, has_lora: bool) -> list[tuple[str, bool, str]]:
    """(check name, ok, message) for each loading option against the installed libraries and the hardware."""
    import torch

    gpu = torch.cuda.is_available()
    out = []
    if model.dtype == "bfloat16" and gpu and not torch.cuda.is_bf16_supported():
        out.append(
            (
                "model.dtype",
                False,
                f"bfloat16 on {torch.cuda.get_device_name(0)}, which has no bf16: "
                "use float16 (and trl.fp16: true) or float32",
            )
        )
    elif model.dtype == "float16" and not gpu:
        out.append(("model.dtype", False, "float16 training needs a GPU; on the CPU use float32 (or bfloat16)"))
    else:
        out.append(("model.dtype", True, f"{model.dtype} on {'the GPU' if gpu else 'the CPU'}"))
    if model.attn_implementation == "flash_attention_2":
        if importlib.util.find_spec("flash_attn") is None:
            out.append(
                (
                    "model.attn_implementation",
                    False,
                    "flash_attention_2: flash-attn is not installed "
                    "(`pip install flash-attn --no-build-isolation` on a CUDA machine), or use sdpa",
                )
            )
        elif not gpu or model.dtype not in ("bfloat16", "float16"):
            out.append(
                (
                    "model.attn_implementation",
                    False,
                    "flash_attention_2 needs a GPU and model.dtype bfloat16 or float16",
                )
            )
        else:
            out.append(("model.attn_implementation", True, "flash_attention_2"))
    elif model.attn_implementation:
        out.append(("model.attn_implementation", True, model.attn_implementation))
    if model.quantization:
        out.append(_quantization_check(model, gpu, has_lora))
    if model.chat_template:
        out.append(_template_check(Path(model.chat_template)))
    if model.trust_remote_code:
        out.append(("model.trust_remote_code", True, f"runs the Python code shipped in {model.name_or_path}"))
    return out


def _quantization_check(model: ModelConfig, gpu: bool, has_lora: bool) -> tuple[str, bool, str]:
    """bitsandbytes installed, a CUDA GPU, and a LoRA block: QLoRA needs all three."""
    problems = [
        why
        for bad, why in (
            (
                importlib.util.find_spec("bitsandbytes") is None,
                "bitsandbytes is not installed (pip install bitsandbytes)",
            ),
            (not gpu, "bitsandbytes quantization needs a CUDA GPU"),
            (not has_lora, "a quantized model trains only through adapters: add a launch.lora block (QLoRA)"),
        )
        if bad
    ]
    return (
        "model.quantization",
        not problems,
        f"{model.quantization}: " + ("; ".join(problems) if problems else "QLoRA through bitsandbytes"),
    )


def _template_check(path: Path) -> tuple[str, bool, str]:
    """The file exists and parses as Jinja."""
    ok = path.is_file()
    if ok:
        import jinja2

        try:
            jinja2.Environment().parse(path.read_text())
        except jinja2.TemplateSyntaxError as e:
            ok, why = False, f"{path}:{e.lineno}: not a Jinja template: {e.message}"
    return (
        "model.chat_template",
        ok,
        (
            f"{path} replaces the tokenizer's chat template"
            if ok
            else why
            if path.is_file()
            else f"{path}: no such file"
        ),
    )
