# regtune: the README's two commands are `make quickstart` and `make test`.
# Each sets up .venv first when needed, so both work on a fresh clone.
#
# TORCH_SPEC picks the torch build (default: the CPU build pinned for these
# machines; an unpinned torch downloads several GB of CUDA wheels), and
# TORCH_PIP_ARGS passes extra pip arguments for it, e.g.
#   make setup TORCH_SPEC="torch==2.13.0" TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cu126"

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
PY := $(VENV)/bin/python
STAMP := $(VENV)/.regtune-installed
BENCH_STAMP := $(VENV)/.regtune-bench-installed

.PHONY: setup quickstart test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)" $(TORCH_PIP_ARGS)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

quickstart: setup
	$(VENV)/bin/regtune quickstart

lint: setup
	$(PY) -m ruff check regtune tests benchmarks
	$(PY) -m ruff format --check regtune tests benchmarks
	$(PY) -m mypy

test: lint
	$(PY) -m pytest

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[dev,bench]"
	# torchattacks' metadata asks for torchvision, whose PyPI build would
	# replace the pinned torch; it imports fine without it.
	$(PY) -m pip install --quiet --no-deps "torchattacks==3.5.1"
	touch $@

bench: $(BENCH_STAMP)
	$(PY) -m benchmarks.run_all

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
