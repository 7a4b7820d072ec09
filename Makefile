# The two commands the README opens with: `make demo` and `make test`.
SHELL := /bin/bash
# Integration tests wait on I/O (API server, emulator, operator processes): run them wide.
TEST_THREADS ?= 8

.PHONY: demo test test-prometheus tools python-sdk lint fmt crds control-plane-up control-plane-down bench chaos-long build static

## demo: local control plane + Databricks emulator + operator + a sample DatabricksToken that rotates
demo: tools build
	hack/demo.sh

## test: the whole suite (unit, emulator + official Python SDK, CRDs, e2e against a real API server, chart)
test: tools python-sdk
	cargo test --workspace --doc
	cargo test --workspace --all-targets --no-fail-fast -- --test-threads=$(TEST_THREADS)

## test-prometheus: the chart's alerts in a real Prometheus scraping a real operator (builds Prometheus, ~6 min cold)
test-prometheus: tools
	hack/build-tools.sh prometheus
	cargo test --features prometheus-tests --test prometheus -- --nocapture

tools:
	hack/build-tools.sh

python-sdk:
	if [[ -x hack/python-venv.sh ]]; then hack/python-venv.sh; fi

build:
	cargo build --workspace --bins

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

## crds: regenerate crds/*.yaml and the chart's copy from the Rust types
crds:
	cargo run -q --bin crdgen

## control-plane-up: a local API server for kubectl/helm; KUBECONFIG=.cache/control-plane/kubeconfig
control-plane-up: tools
	hack/control-plane.sh start

control-plane-down:
	hack/control-plane.sh stop

## bench: the benchmark figures kept in BENCHMARKS.md
bench: tools build
	cargo build --release --bins
	cargo run --release -p bench -- $(BENCH_ARGS)

## chaos-long: the long chaos run whose figures RELIABILITY.md reports (about 35 minutes)
CHAOS_TOKENS ?= 40
CHAOS_SECONDS ?= 1800
chaos-long: tools
	CHAOS_TOKENS=$(CHAOS_TOKENS) CHAOS_SECONDS=$(CHAOS_SECONDS) cargo test --release --test chaos -- --nocapture

## static: the static (musl) release binary, as the Dockerfile's builder stage makes it
static:
	hack/build-static.sh
