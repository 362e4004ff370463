# `make demo` and `make test` are all a new user needs; both install first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test test-fast lint typecheck protos bench

install: $(VENV)/.installed

# --no-deps: requirements.lock pins the whole tree. crypten's own metadata would pull
# sklearn, torchvision and a CUDA build of torch (see pyproject.toml).
$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --no-deps -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

demo: install
	$(BIN)/mpc demo --out out/demo

lint: install
	$(BIN)/ruff check mpc tests scripts

# What mypy checks, and how strictly, is in pyproject.toml ([tool.mypy]).
typecheck: install
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest

# The unit tests only: no processes, servers or network (tests/conftest.py marks them).
test-fast: lint typecheck
	$(BIN)/pytest -m "not integration"

protos: install
	$(BIN)/python scripts/gen_protos.py

bench: install
	$(BIN)/python scripts/bench_aggregate.py
