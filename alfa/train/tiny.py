"""A tiny Llama built from a config, with a byte-level BPE tokenizer trained on the spot and a ChatML
chat template: real transformers weights (untrained), small enough to train DPO for 20 steps on a CPU
in seconds. The `tiny` recipes, the tests and the benchmarks use it; no hub needed.

    python -m alfa.train.tiny runs/tiny-model            # then: alfa train recipes/tiny/dpo_specificity.yaml
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "clinical_sample.jsonl"


def sample_texts() -> list[str]:
    """Tokenizer training text: the project's hand-written sample (plain English clinical posts)."""
    texts = []
    for line in SAMPLE.read_text().splitlines():
        row = json.loads(line)
        texts += [row["post"], row["question"], row["title"]]
    return texts


def build_tiny_llama(
    out: Path,
    texts: list[str] | None = None,
    hidden_size: int = 64,
    num_layers: int = 2,
    vocab_size: int = 600,
    seed: int = 0,
) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(out)
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|pad|>", "<|im_start|>", "<|im_end|>"]
    tok.train_from_iterator(
        (texts or sample_texts()) * 3,
        trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<|pad|>", bos_token="<|im_start|>", eos_token="<|im_end|>"
    )
    fast.chat_template = CHATML
    fast.save_pretrained(out)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        pad_token_id=fast.pad_token_id,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(out)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m alfa.train.tiny OUTPUT_DIR")
    print(build_tiny_llama(Path(sys.argv[1])))
