"""log p(target | context) under a local causal LM: what STaR-GATE scores a conversation by (the gold response's
log-probability under the initial model, given the task and the conversation), and anything else that needs it.

Batched with right padding; the sum runs over the target's own tokens only, never over padding (the defect in
STaR-GATE's public scorer, whose mask counted the right-padding of shorter sequences). The context is rendered
with the model's chat template and a generation prompt; the target's tokens follow it unmerged (the context and
the target are tokenized apart and joined), so every row scores exactly the tokens it would have generated.
Scores are cached by the weights' digest, the tokenizer's identity (its vocabulary and chat template) and the
texts: a rerun scores nothing twice, and a model folder given another chat template scores again.
"""

from __future__ import annotations

from pathlib import Path

from alfa.llm.backends import default_device, tokenizer_digest, weights_digest
from alfa.llm.cache import CallCache, call_key


class LogProbScorer:
    def __init__(self, model_path: str | Path, batch_size: int = 8, cache: CallCache | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_path = Path(model_path)
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        self.device = default_device()
        self.model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=torch.float32).to(self.device).eval()
        self.batch_size, self.cache = batch_size, cache
        self.identity = f"logprob-scorer|weights={weights_digest(self.model_path)[:16]}|tokenizer={tokenizer_digest(self.tokenizer)}"

    def token_ids(self, context: list[dict], target: str) -> tuple[list[int], int]:
        """(context ids + target ids, number of context ids)."""
        prompt = self.tokenizer.apply_chat_template(context, add_generation_prompt=True, tokenize=False)
        context_ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        target_ids = self.tokenizer(target, add_special_tokens=False)["input_ids"]
        return context_ids + target_ids, len(context_ids)

    def score(self, items: list[tuple[list[dict], str]]) -> list[float]:
        """Sum of log p(target token | everything before it) for each (context messages, target text)."""
        keys = [call_key(self.identity, context + [{"role": "target", "content": t}], {}) for context, t in items]
        cached = self.cache.get_many(keys) if self.cache is not None else {}
        scores: list[float | None] = [float(cached[k][0]) if k in cached else None for k in keys]
        todo = [i for i, s in enumerate(scores) if s is None]
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start : start + self.batch_size]
            for i, value in zip(batch, self._score_batch([items[i] for i in batch])):
                scores[i] = value
                if self.cache is not None:
                    self.cache.put(keys[i], self.identity, repr(value))
        if self.cache is not None:
            self.cache.flush()
        return scores  # type: ignore[return-value]

    def _score_batch(self, items: list[tuple[list[dict], str]]) -> list[float]:
        import torch

        rows = [self.token_ids(context, target) for context, target in items]
        width = max(len(ids) for ids, _ in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        target_mask = torch.zeros((len(rows), width), dtype=torch.bool)
        for r, (ids, n_context) in enumerate(rows):
            input_ids[r, : len(ids)] = torch.tensor(ids)
            attention[r, : len(ids)] = 1
            target_mask[r, n_context : len(ids)] = True  # the target's tokens; padding stays False
        with torch.inference_mode():
            logits = self.model(input_ids=input_ids.to(self.device), attention_mask=attention.to(self.device)).logits
        logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # position t predicts token t + 1
        picked = logprobs.gather(-1, input_ids[:, 1:].to(self.device).unsqueeze(-1)).squeeze(-1)
        return (picked * target_mask[:, 1:].to(self.device)).sum(dim=1).tolist()
