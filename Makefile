# Skyport — `make` alone prints this help.
#   make run     serve a registry on http://127.0.0.1:5000 on an embedded moto backend
#                (SKYPORT_GATEWAY=lambda make run: the Lambda handler behind a local API Gateway;
#                 SKYPORT_AUTH=on make run: auth required, admin user `admin`;
#                 SKYPORT_UPLOAD_SERVICE=on make run: the upload service too, on SKYPORT_UPLOAD_PORT, default 5001)
#   make test    install what the tests need and run them all
#   make bench   side-by-side benchmarks against Distribution
#   make lint    ruff (lint and format check) and cfn-lint
#   make build   sam build (aws-sam-cli in .venv-sam); then `sam deploy --guided`, see README "Deploy on AWS"
#   make lock    re-resolve the pinned dependencies (requirements/); UPGRADE=1 to move every pin
#   make upload-image STACK=<stack>   build the upload service image, push it to the stack's ECR repository
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Every dependency of .venv (make run, make test), pinned with all its transitive
# dependencies for any platform (uv's universal resolution). The Lambda packages'
# requirements.txt are derived from it (`make lock`), so `sam build` ships the
# versions the tests ran with; tests/unit/test_lock.py fails when they drift.
LOCK := requirements/lock.txt
SAM_LOCK := requirements/sam.txt
LAMBDA_REQUIREMENTS := layers/skyport/requirements.txt functions/api/requirements.txt
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) | cksum | cut -d' ' -f1)

HOST ?= 127.0.0.1
PORT ?= 5000

# aws-sam-cli pins its own dependencies (and would clash with ours): it lives in
# a venv of its own. The tests run `sam validate --lint` and `sam build` with it.
SAM_VENV ?= .venv-sam
SAM_STAMP := $(SAM_VENV)/.installed-$(shell cat $(SAM_LOCK) | cksum | cut -d' ' -f1)
export SAM_CLI_TELEMETRY := 0
# sam build installs the function's dependencies with the runtime's Python
# (python3.12, template.yaml): find one, from pyenv if that is where it is.
PY312_DIR := $(shell for p in "$$(pyenv root 2>/dev/null)"/versions/3.12*/bin/python3.12 "$$(command -v python3.12)"; do \
	"$$p" -c '' 2>/dev/null && dirname "$$p" && break; done)

.PHONY: help run test test-fast lint bench build sam system-deps python312 lock clean upload-image
help:
	@sed -n '2,10p' Makefile | sed 's/^# *//'

# Exactly the lock: --no-deps, so pip resolves nothing of its own, and `pip check`
# fails if the lock misses a dependency (then run `make lock`).
$(STAMP): pyproject.toml $(LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --no-deps -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@$(BIN)/python -m pip check || { echo "$(LOCK) lacks a dependency of pyproject.toml: run make lock" >&2; exit 1; }
	@rm -f $(VENV)/.installed-*; touch $@

# Container clients for the end-to-end tests, from Debian packages.
system-deps:
	@bash scripts/install-system-deps.sh

$(SAM_STAMP): $(SAM_LOCK)
	@test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --no-deps -r $(SAM_LOCK)
	$(SAM_VENV)/bin/python -m pip check
	@rm -f $(SAM_VENV)/.installed-*; touch $@

sam: $(SAM_STAMP)

run: $(STAMP)
	$(BIN)/skyport serve --host $(HOST) --port $(PORT) --upload-service $(or $(SKYPORT_UPLOAD_SERVICE),off)

# The SAM tests need the function's runtime, python3.12: found on PATH or under pyenv
# (PY312_DIR) and handed to them as SKYPORT_RUNTIME_PYTHON (tests/machine.py). Debian 12
# packages none and PyPI has none that installs offline, so where there is none the SAM
# tests skip, saying why, and under CI=true `make test` stops here.
test: $(STAMP) $(SAM_STAMP) system-deps python312
	$(BIN)/ruff check layers functions cli tests bench
	$(BIN)/ruff format --check layers functions cli tests bench
	SKYPORT_RUNTIME_PYTHON="$(if $(PY312_DIR),$(PY312_DIR)/python3.12)" $(BIN)/python -m pytest

python312:
	@if [ -n "$(PY312_DIR)" ]; then echo "python3.12 for sam build: $(PY312_DIR)/python3.12"; \
	elif [ "$$CI" = true ]; then echo "make test: CI=true and no python3.12 (the function's runtime) on PATH or under pyenv: the SAM tests cannot run" >&2; exit 1; \
	else echo "make test: no python3.12 on PATH or under pyenv: the SAM tests will skip" >&2; fi

# Everything but the real-client end-to-end tests.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m 'not e2e'

lint: $(STAMP)
	$(BIN)/ruff check layers functions cli tests bench
	$(BIN)/ruff format --check layers functions cli tests bench
	$(BIN)/cfn-lint template.yaml

# Skyport side by side with Distribution on one moto server, ~15 min (bench/README.md).
# BENCH_ARGS="--profile tiny" runs in seconds; results go to bench/results/.
bench: $(STAMP) system-deps
	@bash bench/setup.sh
	$(BIN)/python -m bench $(BENCH_ARGS)

build: $(SAM_STAMP)
	@test -n "$(PY312_DIR)" || { echo "sam build needs python3.12 (the function's runtime) on PATH" >&2; exit 1; }
	PATH="$(PY312_DIR):$$PATH" $(SAM_VENV)/bin/sam build

# uv comes from the lock itself. Without UPGRADE, the versions already pinned are kept
# where they still fit; the Lambda packages get the lock's versions for python3.12 on
# arm64, wheels only (what their Makefiles install).
UV_UPGRADE := $(if $(UPGRADE),--upgrade)
UV_COMPILE = $(BIN)/uv pip compile --quiet $(UV_UPGRADE) --custom-compile-command 'make lock'
lock:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet "$$(grep -E '^uv==' $(LOCK) | cut -d' ' -f1)"
	$(UV_COMPILE) --universal --python-version 3.11 --extra dev pyproject.toml -o $(LOCK)
	$(UV_COMPILE) --annotation-style line -c $(LOCK) --python-version 3.12 \
		--python-platform aarch64-manylinux2014 --only-binary :all: \
		requirements/layer.in -o layers/skyport/requirements.txt
	$(UV_COMPILE) --annotation-style line -c $(LOCK) --python-version 3.12 \
		--python-platform aarch64-manylinux2014 --only-binary :all: \
		requirements/function.in -o functions/api/requirements.txt
	$(UV_COMPILE) --annotation-style line -c $(LOCK) --python-version 3.12 \
		--python-platform aarch64-manylinux2014 --only-binary :all: \
		requirements/events-function.in -o functions/events/requirements.txt
	$(UV_COMPILE) --annotation-style line -c $(LOCK) --python-version 3.12 \
		--python-platform aarch64-manylinux2014 --only-binary :all: \
		requirements/hooks-function.in -o functions/hooks/requirements.txt
	$(UV_COMPILE) --annotation-style line -c $(LOCK) --python-version 3.12 \
		--python-platform aarch64-manylinux2014 --only-binary :all: \
		requirements/scan-function.in -o functions/scan/requirements.txt
	$(UV_COMPILE) --annotation-style line -c $(LOCK) --python-version 3.12 \
		--python-platform aarch64-manylinux2014 --only-binary :all: \
		requirements/upload-service.in -o requirements/upload-service.txt
	$(UV_COMPILE) --universal --python-version 3.11 requirements/sam.in -o $(SAM_LOCK)

# The upload service image (Dockerfile) into the stack's ECR repository (output
# UploadRepositoryUri: deploy once with UploadService=on first), tagged with the commit
# (tags are immutable there: an image already pushed under it is kept). Built for the
# task's architecture, ARM64 in template.yaml. Prints the tag to deploy: UploadImageTag.
STACK ?= skyport
UPLOAD_PLATFORM ?= linux/arm64
UPLOAD_TAG ?= $(shell git rev-parse --short=12 HEAD)$(if $(shell git status --porcelain --untracked-files=no),-dirty-$(shell date +%s))
upload-image:
	@set -euo pipefail; \
	repo=$$(aws cloudformation describe-stacks --stack-name "$(STACK)" \
		--query "Stacks[0].Outputs[?OutputKey=='UploadRepositoryUri'].OutputValue" --output text); \
	if [ -z "$$repo" ] || [ "$$repo" = None ]; then \
		echo "stack $(STACK) has no UploadRepositoryUri: deploy it with UploadService=on first" >&2; exit 1; fi; \
	region=$$(echo "$$repo" | cut -d. -f4); \
	if aws ecr describe-images --region "$$region" --repository-name "$${repo#*/}" \
		--image-ids imageTag="$(UPLOAD_TAG)" >/dev/null 2>&1; then \
		echo "$$repo:$(UPLOAD_TAG) is in the repository already"; \
	else \
		aws ecr get-login-password --region "$$region" | docker login --username AWS --password-stdin "$${repo%%/*}"; \
		docker build --platform $(UPLOAD_PLATFORM) --tag "$$repo:$(UPLOAD_TAG)" .; \
		docker push "$$repo:$(UPLOAD_TAG)"; \
	fi; \
	echo "image: $$repo:$(UPLOAD_TAG)"; \
	echo "deploy it: UploadImageTag=$(UPLOAD_TAG) in samconfig.toml's parameter_overrides, then sam deploy"

clean:
	rm -rf $(VENV) $(SAM_VENV) .pytest_cache .aws-sam
