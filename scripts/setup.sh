#!/usr/bin/env bash
# Idempotent machine setup for building and running hutong.
#
# Installs what a fresh Debian machine lacks: the apt packages the build and the tests use, the nightly
# rust-src component (the XDP program is built with -Z build-std=core) and clippy (make test lints the
# BPF crates with it), bpf-linker 0.13.0 linked against LLVM 22 (nightly's LLVM), and a mounted bpffs.
# Each step checks first, so a second run takes seconds.
set -euo pipefail

say() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }
die() { printf '\033[1;31m[setup] error:\033[0m %s\n' "$*" >&2; exit 1; }

# --- what this machine must be able to do -------------------------------------------------------
[ "$(id -u)" -eq 0 ] || die "hutong attaches XDP programs and creates network namespaces: run as root (sudo make ...)."
[ -e /proc/sys/net/core/bpf_jit_enable ] || [ -e /sys/kernel/btf/vmlinux ] \
  || die "this kernel has no BPF support (no /proc/sys/net/core/bpf_jit_enable, no /sys/kernel/btf/vmlinux)."
[ -e /proc/self/ns/net ] || die "this kernel has no network namespaces (CONFIG_NET_NS)."
command -v cargo >/dev/null || die "cargo is missing: install Rust with rustup first."

# --- apt packages -------------------------------------------------------------------------------
# llvm-22-dev, libpolly-22-dev: bpf-linker links against nightly's LLVM 22.
# iproute2, iputils-ping, curl, nftables, ethtool, iperf3, tcpdump: the demo, the tests and debugging.
# fonts-dejavu-core: the text of hutong bench's chart. conntrack: hutong bench empties Linux's
# connection table between session-capacity trials. etcd-server, etcd-client: the fleet's store,
# which its tests, bench and demo start themselves in temporary directories (the package's own
# service, where systemd runs one, is left alone: nothing here uses it). protobuf-compiler: the
# etcd client crate compiles etcd's gRPC protos at build time; libprotobuf-dev: the well-known
# types they import (google/protobuf/descriptor.proto), which protobuf-compiler alone lacks.
APT_PKGS=(llvm-22-dev libpolly-22-dev iproute2 iputils-ping curl nftables ethtool iperf3 tcpdump fonts-dejavu-core conntrack etcd-server etcd-client protobuf-compiler libprotobuf-dev)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing apt packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  say "apt packages present"
fi

# --- nightly toolchain pieces -------------------------------------------------------------------
rustup toolchain list | grep -q '^nightly' || die "the nightly toolchain is missing (rustup toolchain list)."
if ! rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^rust-src'; then
  say "adding rust-src to nightly"
  rustup component add rust-src --toolchain nightly
else
  say "nightly rust-src present"
fi
# make test lints the BPF crates with nightly's clippy (the clippy-bpf stage).
if ! rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^clippy'; then
  say "adding clippy to nightly"
  rustup component add clippy --toolchain nightly
else
  say "nightly clippy present"
fi

# --- bpf-linker against LLVM 22 -----------------------------------------------------------------
# The default feature wants LLVM 23, which Debian here lacks; llvm-22's llvm-config must come first on
# PATH or the link fails with "unable to find library -lLLVM".
if ! bpf-linker --version 2>/dev/null | grep -q '0\.13\.0'; then
  say "building bpf-linker 0.13.0 against LLVM 22 (about 4 minutes on 2 cores)"
  PATH=/usr/lib/llvm-22/bin:$PATH cargo install --locked bpf-linker --version 0.13.0 \
    --no-default-features --features llvm-22
else
  say "bpf-linker 0.13.0 present"
fi

# --- bpffs --------------------------------------------------------------------------------------
if ! mountpoint -q /sys/fs/bpf; then
  say "mounting bpffs on /sys/fs/bpf"
  mount -t bpf bpf /sys/fs/bpf
else
  say "bpffs mounted"
fi
say "ready"
