# make demo  - set up .venv if needed, then run a search end to end and write a contact sheet
# make test  - set up .venv if needed, then run the test suite (CPU, minutes)
# make bench - run the benchmarks (figures printed to stdout)
VENV ?= .venv
PY := $(VENV)/bin/python
VIDEO ?=

.PHONY: env demo test bench clean

$(VENV)/.videoseek-ready: pyproject.toml scripts/setup_env.sh
	bash scripts/setup_env.sh $(VENV)
	touch $@

env: $(VENV)/.videoseek-ready

demo: env
	$(PY) examples/demo.py $(if $(VIDEO),--video $(VIDEO),)

test: env
	$(PY) -m pytest -q tests

bench: env
	$(PY) benchmarks/bench_temporal.py
	$(PY) benchmarks/bench_corpus.py

clean:
	rm -rf $(VENV) demo_out .pytest_cache
