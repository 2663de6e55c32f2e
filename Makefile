# Two commands set everything up on a fresh clone: `make pretrain` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv pretrain test lint format experiments bench clean-data

venv: $(STAMP)

# torch first and pinned: this machine's CPU wheel, never an unpinned CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

pretrain: $(STAMP)
	$(PY) -m dyt_llama.corpus
	$(PY) pretrain.py --config configs/tiny.yaml $(ARGS)

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q -n 2 $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

experiments: $(STAMP)
	$(PY) experiments/run_all.py
