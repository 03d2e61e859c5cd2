# Every target sets up the local virtualenv (.venv) first when it is missing or stale.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Data: ../shared/data when this checkout sits next to one, else ./data (downloaded on demand).
DATA_ROOT ?= $(if $(wildcard ../shared/data/MNIST),$(abspath ../shared/data),data)
PYTEST_ARGS ?=

.PHONY: setup run test test-all lint format bench paper clean
.PHONY: paper-table1 paper-table2 paper-table3 paper-table4 paper-table5 paper-table6
.PHONY: paper-figure3 paper-figure4 paper-quadratic

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e ".[suite,dev]"
	touch $@

setup: $(VENV)/.installed

run: setup  ## the default job: MNIST MLP with LOSSGRAD, 30 epochs
	$(PY) run.py data.root=$(DATA_ROOT)

test: setup  ## the test suite without the slow tests
	$(PY) -m pytest -m "not slow and not gpu" $(PYTEST_ARGS)

test-all: setup  ## every test that this machine can run, slow ones included
	$(PY) -m pytest -m "not gpu" $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: setup  ## optimizer step cost side by side (prints ratios)
	$(PY) -m scripts.bench_optimizers

# The paper's tables and figures: runs what is missing, then writes results/paper/. Options go
# in PAPER_ARGS, e.g. make paper PAPER_ARGS="budget=smoke seeds=1" (see scripts/paper.py).
paper: setup  ## every table and figure of the paper
	$(PY) -m scripts.paper all data.root=$(DATA_ROOT) $(PAPER_ARGS)

paper-table1 paper-table2 paper-table3 paper-table4 paper-table5 paper-table6: paper-table%: setup
	$(PY) -m scripts.paper table=$* data.root=$(DATA_ROOT) $(PAPER_ARGS)

paper-figure3 paper-figure4: paper-figure%: setup
	$(PY) -m scripts.paper figure=$* data.root=$(DATA_ROOT) $(PAPER_ARGS)

paper-quadratic: setup  ## Section 3's figure on 2-D quadratics (no training runs)
	$(PY) -m scripts.paper figure=quadratic $(PAPER_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
