# regtune: the README's two commands are `make quickstart` and `make test`.
# Each sets up .venv first when needed, so both work on a fresh clone.
#
# TORCH_SPEC picks the torch build (default: the CPU build pinned for these
# machines; an unpinned torch downloads several GB of CUDA wheels), and
# TORCH_PIP_ARGS passes extra pip arguments for it, e.g.
#   make setup TORCH_SPEC="torch==2.13.0" TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cu126"
#
# Everything else is installed at the exact versions in constraints.txt (the
# set the suite passed with), so a fresh clone next year gets the same Ray,
# pydantic, hyperopt and the rest. `make lock` rewrites constraints.txt from
# .venv (after adding a dependency, or to move to newer versions:
#   make clean && make setup CONSTRAINTS=/dev/null && make test && make lock).

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
CONSTRAINTS ?= constraints.txt
PY := $(VENV)/bin/python
STAMP := $(VENV)/.regtune-installed
PIP := $(PY) -m pip install --quiet --constraint $(CONSTRAINTS)
# torchattacks' metadata asks for torchvision, whose PyPI build would replace
# the pinned torch; it imports fine without it (benchmarks/ uses it).
TORCHATTACKS := torchattacks==3.5.1

.PHONY: setup quickstart test lint browser bench lock clean

setup: $(STAMP)

# The bench extra is installed too: `make test` runs every benchmark's --smoke-test.
$(STAMP): pyproject.toml Makefile $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)" $(TORCH_PIP_ARGS)
	$(PIP) -e ".[dev,bench]"
	$(PIP) --no-deps "$(TORCHATTACKS)"
	touch $@

quickstart: setup
	$(VENV)/bin/regtune quickstart

lint: setup
	$(PY) -m ruff check regtune tests benchmarks
	$(PY) -m ruff format --check regtune tests benchmarks
	$(PY) -m mypy

# The HTML report's browser test drives Debian's chromium + chromedriver:
# installed here when missing and possible (root with apt-get); otherwise that
# one test skips and says why.
browser:
	@command -v chromedriver >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null) \
	      || echo "could not install chromium: the report's browser test will skip"; \
	  else echo "no chromium and no root apt-get: the report's browser test will skip"; fi; }

# TEST_WORKERS pytest-xdist workers (each test file's tests may land on
# either; `worksteal` keeps both busy to the end). TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= 2
# One BLAS/OpenMP thread per process in the suite: with both cores already
# busy with tests, a second pool thread only spins (40 small sklearn fits:
# 2.6 -> 0.3 CPU-s). TEST_THREADS=0 keeps the libraries' defaults.
TEST_THREADS ?= 1
TEST_ENV = $(if $(filter 0,$(TEST_THREADS)),,OMP_NUM_THREADS=$(TEST_THREADS) OPENBLAS_NUM_THREADS=$(TEST_THREADS) MKL_NUM_THREADS=$(TEST_THREADS))

test: lint browser
	$(TEST_ENV) $(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal

bench: setup
	$(PY) -m benchmarks.run_all

# constraints.txt = every installed package at its exact version, less regtune
# (editable) and torch (TORCH_SPEC picks its build).
lock: setup
	{ echo "# Exact versions make setup installs (written by make lock; edit with care)."; \
	  $(PY) -m pip freeze --exclude-editable | grep -v '^torch=='; } > constraints.txt.tmp
	mv constraints.txt.tmp constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
