# The two commands (as root): `make demo` and `make test`. Both set the machine up first.
CARGO ?= cargo

.PHONY: setup demo test build

setup:
	bash scripts/setup.sh

build: setup
	$(CARGO) build --release

# Builds a demo site in network namespaces, forwards real traffic through the XDP gateway,
# prints the evidence, and removes everything again.
demo: build
	./target/release/hutong demo

# Every test: unit tests, BPF_PROG_TEST_RUN tests of the XDP program, end-to-end tests in
# network namespaces with real Linux hosts. Kernel-level tests fail (never skip) without root.
test: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) test --no-fail-fast
