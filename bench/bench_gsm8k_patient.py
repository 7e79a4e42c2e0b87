"""Which retrieval settings make the fact-select patient a fair judge of "asked for the missing premise"?

On GSM8K missing-premise cases (`alfa tasks gsm8k`), the patient holds every premise sentence. A question should
draw the removed premise when it asks for it, and not when it asks about a quantity the problem already gives.
For each top-k and threshold, the share of cases whose removed premise the patient tells for:

- oracle: the removed sentence's own words as a question (`--questioner oracle`);
- blanked: the same with its numbers replaced by "how many" (a question that does not already know the answer);
- given: a premise the problem still states, blanked the same way (a question about a known quantity: must not);
- generic: "Can you tell me more?" (`asked_decisive_floor`: must not).

No model call: MiniLM only, ~1 min for 300 cases on 2 cores.

    alfa tasks gsm8k ../shared/data/gsm8k/train.jsonl -o runs/gsm8k
    .venv/bin/python bench/bench_gsm8k_patient.py runs/gsm8k/train.jsonl --cases 300
"""

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alfa.dialogue.patients import FactSelectPatient  # noqa: E402
from alfa.eval.cases import load_cases  # noqa: E402
from alfa.llm.embedder import Embedder  # noqa: E402
from alfa.stats import rate  # noqa: E402


class MemoEmbedder:
    """The same MiniLM embeddings, each text encoded once across the settings compared (a bench-side memo)."""

    def __init__(self, inner):
        self.inner, self.memo = inner, {}

    def encode(self, texts: list[str]):
        import numpy as np

        missing = [t for t in dict.fromkeys(texts) if t not in self.memo]
        if missing:
            self.memo.update(zip(missing, self.inner.encode(missing)))
        return np.stack([self.memo[t] for t in texts])


def blank(sentence: str) -> str:
    return re.sub(r"\d[\d,]*(?:\.\d+)?", "how many", sentence.strip().rstrip(".")) + "?"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cases", type=Path, help="train.jsonl from alfa tasks gsm8k (never the held-out cases)")
    p.add_argument("--cases", dest="n", type=int, default=300)
    args = p.parse_args()
    cases = load_cases(args.cases, limit=args.n)[0]
    embedder = MemoEmbedder(Embedder())
    print(f"{len(cases)} cases from {args.cases}\n")
    print("| top-k | threshold | oracle | blanked | given (must not) | generic (must not) |")
    print("|---|---|---|---|---|---|")
    for top_k in (1, 2):
        for threshold in (0.35, 0.45, 0.55):
            patient = FactSelectPatient(embedder, threshold, top_k)
            drawn: dict[str, list[bool]] = {k: [] for k in ("oracle", "blanked", "given", "generic")}
            for c in cases:
                removed = c.facts[c.decisive_fact]
                given = next(f for i, f in enumerate(c.facts) if i != c.decisive_fact)
                asks = {"oracle": removed.rstrip(".") + "?", "blanked": blank(removed), "given": blank(given),
                        "generic": "Can you tell me more?"}  # fmt: skip
                for name, question in asks.items():
                    drawn[name].append(c.decisive_fact in patient.answer(c.facts, question)[1])
            cells = []
            for name in drawn:
                r = rate(drawn[name])
                cells.append(f"{r['value']:.1%} ({r['ci_low']:.1%}-{r['ci_high']:.1%})")
            print(f"| {top_k} | {threshold} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
