# medseg3d — set-up in two commands: `make demo` and `make test`.
# Both create .venv when missing; torch is installed first so pip never pulls an unexpected build.
PYTHON ?= python3
TORCH_VERSION ?= 2.13.0
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.medseg3d-installed
# two workers: the suite is CPU-bound and most of it is single-threaded Python and subprocesses
PYTEST_ARGS ?= -n 2

.PHONY: install test demo lint format bench docs clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip

# torch first (the CPU build on machines that have it on disk, the matching PyPI build elsewhere),
# then the package with the extras the tests use (dev: pytest/ruff/ignite, distributed: ray,
# docs: mkdocs-material for the strict docs build).
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install "torch==$(TORCH_VERSION)"
	$(PY) -m pip install -e ".[dev,distributed,docs]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(VENV)/bin/medseg3d demo --out demo_output

lint: $(STAMP)
	$(VENV)/bin/ruff check medseg3d tests benchmarks examples
	$(VENV)/bin/ruff format --check medseg3d tests benchmarks examples

format: $(STAMP)
	$(VENV)/bin/ruff format medseg3d tests benchmarks examples
	$(VENV)/bin/ruff check --fix medseg3d tests benchmarks examples

bench: $(STAMP)
	$(PY) -m pip install -e ".[bench]"
	for script in benchmarks/bench_*.py; do $(PY) $$script || exit 1; done

docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) demo_output .pytest_cache
