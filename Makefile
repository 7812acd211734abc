# Skyport — `make` alone prints this help.
#   make run     serve a registry on http://127.0.0.1:5000 on an embedded moto backend
#                (SKYPORT_GATEWAY=lambda make run: the Lambda handler behind a local API Gateway;
#                 SKYPORT_AUTH=on make run: auth required, admin user `admin`)
#   make test    install what the tests need and run them all
#   make bench   side-by-side benchmarks against Distribution
#   make lint    ruff and cfn-lint
#   make build   sam build (aws-sam-cli in .venv-sam); then `sam deploy --guided`, see README "Deploy on AWS"
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

HOST ?= 127.0.0.1
PORT ?= 5000

# aws-sam-cli pins its own dependencies (and would clash with ours): it lives in
# a venv of its own. The tests run `sam validate --lint` and `sam build` with it.
SAM_VENV ?= .venv-sam
SAM_CLI_VERSION ?= 1.170.0
SAM_STAMP := $(SAM_VENV)/.installed-$(SAM_CLI_VERSION)
export SAM_CLI_TELEMETRY := 0
# sam build installs the function's dependencies with the runtime's Python
# (python3.12, template.yaml): find one, from pyenv if that is where it is.
PY312_DIR := $(shell for p in "$$(pyenv root 2>/dev/null)"/versions/3.12*/bin/python3.12 "$$(command -v python3.12)"; do \
	"$$p" -c '' 2>/dev/null && dirname "$$p" && break; done)

.PHONY: help run test test-fast lint bench build sam system-deps clean
help:
	@sed -n '2,8p' Makefile | sed 's/^# *//'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*; touch $@

# Container clients for the end-to-end tests, from Debian packages.
system-deps:
	@bash scripts/install-system-deps.sh

$(SAM_STAMP):
	@test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/python -m pip install --quiet 'aws-sam-cli==$(SAM_CLI_VERSION)'
	@rm -f $(SAM_VENV)/.installed-*; touch $@

sam: $(SAM_STAMP)

run: $(STAMP)
	$(BIN)/skyport serve --host $(HOST) --port $(PORT)

test: $(STAMP) $(SAM_STAMP) system-deps
	$(BIN)/ruff check layers functions cli tests bench
	$(BIN)/python -m pytest

# Everything but the real-client end-to-end tests.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m 'not e2e'

lint: $(STAMP)
	$(BIN)/ruff check layers functions cli tests bench
	$(BIN)/cfn-lint template.yaml

# Skyport side by side with Distribution on one moto server, ~15 min (bench/README.md).
# BENCH_ARGS="--profile tiny" runs in seconds; results go to bench/results/.
bench: $(STAMP) system-deps
	@bash bench/setup.sh
	$(BIN)/python -m bench $(BENCH_ARGS)

build: $(SAM_STAMP)
	@test -n "$(PY312_DIR)" || { echo "sam build needs python3.12 (the function's runtime) on PATH" >&2; exit 1; }
	PATH="$(PY312_DIR):$$PATH" $(SAM_VENV)/bin/sam build

clean:
	rm -rf $(VENV) $(SAM_VENV) .pytest_cache .aws-sam
