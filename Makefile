# Meridian: `make run` starts a single-node store, `make test` runs everything that must pass.
# Both install what they need (scripts/setup.sh) and share one warm cargo target directory.

SHELL := /bin/bash
export CARGO_TARGET_DIR ?= $(HOME)/.cache/meridian/target
export MERIDIAN_VENV ?= $(HOME)/.cache/meridian/venv
export MERIDIAN_S3FS_VENV ?= $(HOME)/.cache/meridian/venv-s3fs
BIN := $(CARGO_TARGET_DIR)/debug/meridian
NEXTEST := $(shell cargo nextest --version >/dev/null 2>&1 && echo yes)

# One build command for `make run` and `make test`: cargo unifies dependency features per
# build, so building the binary alone would compile dozens of crates again after the tests.
BUILD := cargo build --workspace --all-targets

.PHONY: run test setup setup-system setup-python fmt-check clippy build rust-test client-test run-is-warm bench fuzz fuzz-smoke

run: setup-system
	$(BUILD)
	$(BIN) serve

test: setup fmt-check clippy build rust-test client-test fuzz-smoke run-is-warm

setup:
	scripts/setup.sh all

setup-system:
	scripts/setup.sh system

setup-python:
	scripts/setup.sh python

fmt-check:
	cargo fmt --all -- --check

clippy:
	cargo clippy --workspace --all-targets -- -D warnings

# The end-to-end tests run the real binary, so build it (same dev profile) first.
build:
	$(BUILD)

# After the tests, `make run` must start at once: its build step compiles nothing.
run-is-warm:
	@if $(BUILD) 2>&1 | grep Compiling; then echo "make run would compile the crates above" >&2; exit 1; fi

# The S3 suites again against a region of three nodes (MERIDIAN_TEST_REGION=1: each test's
# server is etcd and three nodes sharing a keyring, each request sent to the next node), but
# for the tests that read one node's disks or logs, or presign a URL for one node's host.
# (`--workspace`, as every build here: one feature set, nothing compiled twice.)
REGION_SUITES := binary(versioning) | binary(listing) | binary(multipart) | binary(conformance) \
	| binary(objects) | binary(checksums) | binary(copy_tagging) | binary(object_lock) \
	| binary(lifecycle) | binary(buckets) | binary(policy) | binary(encryption) \
	| binary(access_keys) | binary(auth)
REGION_SKIPS := test(deleting_a_bucket_aborts_its_incomplete_uploads_and_reclaims_their_parts) \
	| test(abort_removes_the_upload_and_its_shards) | test(stale_uploads_are_aborted_in_the_background) \
	| test(presigned_get_works_until_it_expires) | test(below_the_api_nothing_removes_a_locked_version)

rust-test: build
ifeq ($(NEXTEST),yes)
	cargo nextest run --workspace --no-fail-fast
	MERIDIAN_TEST_REGION=1 cargo nextest run --workspace --no-fail-fast \
		-E '($(REGION_SUITES)) - ($(REGION_SKIPS))'
else
	cargo test --workspace --no-fail-fast
endif

# The client suites, then the boto3, aws CLI and conformance suites again over HTTPS (a CA
# made for the run), then against a region of three nodes (deploy/local-cluster.sh), then s3fs.
client-test: build setup-python
	MERIDIAN_BIN=$(BIN) $(MERIDIAN_VENV)/bin/python -m pytest -q tests/clients
	MERIDIAN_CLIENT_TLS=1 MERIDIAN_BIN=$(BIN) $(MERIDIAN_VENV)/bin/python -m pytest -q \
		tests/clients/test_boto3.py tests/clients/test_aws_cli.py tests/clients/test_conformance.py \
		tests/clients/test_encryption.py tests/clients/test_keys.py tests/clients/test_cors.py \
		tests/clients/test_acl.py tests/clients/test_compat.py tests/clients/test_post.py
	MERIDIAN_CLIENT_CLUSTER=1 MERIDIAN_BIN=$(BIN) $(MERIDIAN_VENV)/bin/python -m pytest -q \
		tests/clients/test_boto3.py tests/clients/test_aws_cli.py tests/clients/test_conformance.py \
		tests/clients/test_large_transfers.py tests/clients/test_cors.py tests/clients/test_cluster.py \
		tests/clients/test_keys.py tests/clients/test_acl.py tests/clients/test_compat.py \
		tests/clients/test_post.py tests/clients/test_object_lock.py tests/clients/test_policy.py
	MERIDIAN_BIN=$(BIN) $(MERIDIAN_S3FS_VENV)/bin/python -m pytest -q tests/clients-s3fs

bench: setup
	scripts/bench-suite.sh

# Every fuzz target (fuzz/) for FUZZ_SECONDS each; `make test` runs each for 20 s so that a
# parser that learned to panic is caught. Builds in its own target directory (other flags).
FUZZ_SECONDS ?= 300
fuzz: setup
	scripts/fuzz.sh $(FUZZ_SECONDS)

fuzz-smoke: setup
	scripts/fuzz.sh 20
