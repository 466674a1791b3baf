# The two commands: `make run` and `make test`. Everything else is a building block.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STATE := .local
COVERAGE_FLOOR := 95.0
PYTEST_ARGS ?=
# Each checkout's own temporary root: pytest prunes the oldest of its default ones, so a second
# session on the machine (another checkout) would delete this one's servers' data directories.
TEST_TMP ?= /tmp/bandsy-test-$(shell printf %s "$(CURDIR)" | sha256sum | cut -c1-8)
# `make cluster-up` (and `make run`) start a real node when root; NODE=0 keeps the node-less mode.
NODE ?= 1
export NODE
export PYTHONPATH := $(CURDIR)/hack

.PHONY: help venv deps control-plane lint unit test cluster-up cluster-down run kind-up bench chaos docs

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

# Every dependency at an exact version, with the hashes of all its files (`make lock` writes them
# from pyproject.toml). The image installs the runtime lock; .venv the dev lock (runtime + dev).
RUNTIME_LOCK := requirements/runtime.lock.txt
DEV_LOCK := requirements/dev.lock.txt

# --clear: a new lock gives a new venv, so nothing left from an older lock hides a missing pin.
$(VENV)/.installed: pyproject.toml $(DEV_LOCK)
	$(PYTHON) -m venv --clear $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --require-hashes -r $(DEV_LOCK)
	$(PY) -m pip install -q --no-deps -e .
	touch $@

venv: $(VENV)/.installed ## create .venv: the dev lock (hashes checked), then the package itself

deps: venv ## install missing Debian packages (postgresql, redis-server; as root the node's too)
	$(PY) -m bandsy_dev.packages

control-plane: ## build (or reuse) the control plane, the node's binaries, FerretDB
	hack/control-plane/build.sh
	hack/node/build.sh
	hack/ferretdb/build.sh

lint: venv workflows-lint ## ruff check, ruff format --check, mypy --strict, actionlint
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy --strict operator/
	$(VENV)/bin/mypy --strict hack/bandsy_dev

docs: venv ## write docs/reference/api.md from crds/*.yaml (a unit test fails when it is stale)
	$(PY) -m bandsy_dev.apidocs

unit: venv ## the fast unit tests only
	$(PY) -m pytest tests/unit --basetemp=$(TEST_TMP)-unit $(PYTEST_ARGS)

test: lint deps control-plane ## THE test command: lint, then every test against real servers
	$(PY) -m pytest --cov --cov-report=term --cov-fail-under=$(COVERAGE_FLOOR) \
		--basetemp=$(TEST_TMP) $(PYTEST_ARGS)

bench: deps control-plane ## benchmarks on fresh local servers: table on stdout, JSON in .local/bench.json
	$(PY) -m bandsy_dev.bench --output $(STATE)/bench.json $(BENCH_ARGS)

.PHONY: bench-backup
bench-backup: deps ## one backup (dump, upload, restore, check) of a database of ROWS rows (default 1M)
	$(PY) -m bandsy_dev.bench.backup_size --rows $(or $(ROWS),1000000)

chaos: deps control-plane ## the fault-injection suite at full size (make test runs it reduced)
	BANDSY_CHAOS_SIZE=full $(PY) -m pytest tests/chaos --basetemp=$(TEST_TMP)-chaos $(PYTEST_ARGS)

cluster-up: deps control-plane ## start the local servers (as root a node too; NODE=0: none); .local/cluster.env
	$(PY) -m bandsy_dev up --state $(STATE)

cluster-down: ## stop the local servers; give the host back as it was
	$(PY) -m bandsy_dev down --state $(STATE)

run: venv ## run the operator in the foreground (starts a local cluster unless KUBECONFIG is set)
	@if [[ -z "$${KUBECONFIG:-}" ]]; then \
	  $(MAKE) --no-print-directory cluster-up; \
	  set -a; source $(STATE)/cluster.env; set +a; \
	fi; \
	$(PY) -m bandsy_dev.install; \
	exec $(PY) -m bandsy_operator

ACTIONLINT_VERSION := v1.7.12
ACTIONLINT := .cache/tools/actionlint-$(ACTIONLINT_VERSION)/actionlint

$(ACTIONLINT):
	GOTOOLCHAIN=local GOBIN=$(CURDIR)/$(@D) go install github.com/rhysd/actionlint/cmd/actionlint@$(ACTIONLINT_VERSION)

.PHONY: workflows-lint
workflows-lint: $(ACTIONLINT) ## actionlint .github/workflows; every `make X` and bandsyctl they run exists
	$(ACTIONLINT) -no-color
	@for target in $$(grep -ohE '\bmake [a-z][a-z-]*' .github/workflows/*.yaml | awk '{print $$2}' | sort -u); do \
	  grep -qE "^$$target:" Makefile || { echo "a workflow runs 'make $$target': no such target" >&2; exit 1; }; \
	done
	@if grep -qw bandsyctl .github/workflows/*.yaml; then \
	  grep -qE '^bandsyctl = ' pyproject.toml || { echo "workflows run bandsyctl: not a console script" >&2; exit 1; }; \
	fi

UV_VERSION := 0.13.9
UV_HOME := .cache/tools/uv-$(UV_VERSION)
UV := $(UV_HOME)/bin/uv
# One resolution for every platform and Python >= 3.11 (markers where they differ), with the
# hashes of every file of each pinned version. Existing pins are kept unless LOCK_ARGS says
# otherwise: `make lock LOCK_ARGS=--upgrade` (everything), `LOCK_ARGS='-P kopf'` (one package).
LOCK_ARGS ?=
UV_COMPILE := $(UV) pip compile --quiet --no-config --universal --python-version 3.11 \
	--generate-hashes --custom-compile-command 'make lock' $(LOCK_ARGS)

$(UV):
	$(PYTHON) -m venv --clear $(UV_HOME)
	$(UV_HOME)/bin/pip install -q uv==$(UV_VERSION)

# The runtime lock is constrained by the dev lock: the image runs the versions the tests ran.
.PHONY: lock
lock: $(UV) ## rewrite requirements/*.lock.txt from pyproject.toml (LOCK_ARGS=--upgrade: newest)
	$(UV_COMPILE) --extra dev -o $(DEV_LOCK) pyproject.toml
	$(UV_COMPILE) -c $(DEV_LOCK) -o $(RUNTIME_LOCK) pyproject.toml

# Without a Docker engine (SPEC §8.1): buildah builds Dockerfile on a local Debian 12 Python 3.11
# base (bandsy_dev/image.py), into .cache/images; unchanged inputs skip the build.
.PHONY: image
image: venv ## build the operator's image from Dockerfile; import it into the local node if one runs
	@import=; \
	if [[ -f $(STATE)/cluster.env ]] && (source $(STATE)/cluster.env && [[ "$${BANDSY_NODE:-}" == 1 ]]); then \
	  import=--import; \
	fi; \
	$(PY) -m bandsy_dev.image $$import

kind-up: ## kind cluster + image + deploy/ + samples (needs a Docker engine)
	hack/kind-up.sh
