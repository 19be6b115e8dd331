# The two commands (as root): `make demo` and `make test`. Both set the machine up first.
CARGO ?= cargo

.PHONY: setup demo test build fuzz

STAGE = bash scripts/stage.sh

setup:
	$(STAGE) setup bash scripts/setup.sh

build: setup
	$(STAGE) build $(CARGO) build --release

# Builds a demo site in network namespaces, forwards real traffic through the XDP gateway,
# prints the evidence, and removes everything again.
demo: build
	./target/release/hutong demo

# The BPF crates (the XDP program, the bench's programs), which the host clippy above never
# builds: linted for their own target, as dataplane/build.rs and bench/build.rs build them
# (nightly, -Z build-std=core), every unsafe block with its `// SAFETY:` comment. About a minute
# on 2 cores from a clean target (core is built for BPF), seconds after.
CLIPPY_BPF = $(CARGO) +nightly clippy -p hutong-xdp -p hutong-bench-xdp --target bpfel-unknown-none \
	-Z build-std=core -- -D warnings -D clippy::undocumented_unsafe_blocks

# Every test: unit tests, BPF_PROG_TEST_RUN tests of the XDP program, end-to-end tests in
# network namespaces with real Linux hosts. Kernel-level tests fail (never skip) without root.
# --show-output keeps what passing tests report (frames compared, packets forwarded, bytes
# moved) in the log, as the evidence that they really ran.
test: setup
	$(STAGE) fmt $(CARGO) fmt --all -- --check
	$(STAGE) clippy $(CARGO) clippy --all-targets -- -D warnings
	$(STAGE) clippy-bpf $(CLIPPY_BPF)
	$(STAGE) test $(CARGO) test --no-fail-fast -- --show-output

# The plan reader under libFuzzer (not part of `make test`: it needs a few minutes to build and
# as long as you give it to run). FUZZ_SECONDS=0 runs until stopped; crashes land in
# control/fuzz/artifacts/plan/.
FUZZ_SECONDS ?= 300
fuzz: setup
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	mkdir -p control/fuzz/corpus/plan
	cp configs/demo/plan.yaml configs/examples/conversions.yaml configs/examples/province-tree.yaml control/fuzz/corpus/plan/
	cd control && $(CARGO) +nightly fuzz run plan -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048
