# Skyport — `make` alone prints this help.
#   make run     serve a registry on http://127.0.0.1:5000 on an embedded moto backend
#   make test    install what the tests need and run them all
#   make bench   side-by-side benchmarks against Distribution
#   make lint    ruff and cfn-lint
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: help run test test-fast lint bench system-deps clean
help:
	@sed -n '2,6p' Makefile | sed 's/^# *//'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*; touch $@

# Container clients for the end-to-end tests, from Debian packages.
system-deps:
	@bash scripts/install-system-deps.sh

run: $(STAMP)
	$(BIN)/skyport serve --host $(HOST) --port $(PORT)

test: $(STAMP) system-deps
	$(BIN)/python -m pytest

# Everything but the real-client end-to-end tests.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m 'not e2e'

lint: $(STAMP)
	$(BIN)/ruff check layers functions cli tests bench
	$(BIN)/cfn-lint template.yaml

clean:
	rm -rf $(VENV) .pytest_cache .aws-sam
