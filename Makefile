# haul: two commands matter. `make dev` runs the system locally; `make test` checks all of it.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export CARGO_TERM_COLOR ?= never

.PHONY: help dev dev-down test bench soak lint stack-up stack-down

help:
	@echo "make dev    start the local stack (LocalStack S3/SQS + DynamoDB Local) and create haul's resources"
	@echo "            HAUL_DEV_AUTH=1 make dev: with callers (a local OIDC issuer; tokens from scripts/dev-token NAME)"
	@echo "make test   install what is missing, start the stack, run fmt, clippy and every test, stop what it started"
	@echo "make bench  the worker vs rclone, s5cmd, boto3+CRT, awscli at Lambda CPU shares; hot-key model; API (target/bench/*.json)"
	@echo "make soak   500 jobs with ~10% injected faults; none lost or duplicated (writes target/soak/report.json)"
	@echo "make dev-down  stop the local stack"

dev:
	@scripts/dev.sh

dev-down stack-down:
	@scripts/stack.sh down

stack-up:
	@scripts/stack.sh up >/dev/null

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

test:
	@scripts/test.sh

bench:
	@scripts/bench.sh

soak:
	@scripts/soak.sh
