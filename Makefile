# The two commands: `make run` and `make test`. Everything else is a building block.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STATE := .local
COVERAGE_FLOOR := 94.5
PYTEST_ARGS ?=
export PYTHONPATH := $(CURDIR)/hack

.PHONY: help venv deps control-plane lint unit test cluster-up cluster-down run kind-up bench chaos

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed ## create .venv and install the package with dev extras

deps: venv ## install missing Debian packages (postgresql, redis-server)
	$(PY) -m bandsy_dev.packages

control-plane: ## build (or reuse) etcd, kube-apiserver, kube-controller-manager, kubectl, FerretDB
	hack/control-plane/build.sh
	hack/ferretdb/build.sh

lint: venv workflows-lint ## ruff check, ruff format --check, mypy --strict, actionlint
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy --strict operator/
	$(VENV)/bin/mypy --strict hack/bandsy_dev

unit: venv ## the fast unit tests only
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test: lint deps control-plane ## THE test command: lint, then every test against real servers
	$(PY) -m pytest --cov --cov-report=term --cov-fail-under=$(COVERAGE_FLOOR) $(PYTEST_ARGS)

bench: deps control-plane ## benchmarks on fresh local servers: table on stdout, JSON in .local/bench.json
	$(PY) -m bandsy_dev.bench --output $(STATE)/bench.json $(BENCH_ARGS)

chaos: deps control-plane ## the fault-injection suite at full size (make test runs it reduced)
	BANDSY_CHAOS_SIZE=full $(PY) -m pytest tests/chaos $(PYTEST_ARGS)

cluster-up: deps control-plane ## start the local servers in the background; writes .local/cluster.env
	$(PY) -m bandsy_dev up --state $(STATE)

cluster-down: ## stop the local servers
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

kind-up: ## kind cluster + image + deploy/ + samples (needs a Docker engine)
	hack/kind-up.sh
