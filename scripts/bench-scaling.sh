#!/usr/bin/env bash
# The bench's scaling series, for a many-core machine: `hutong bench --cores N` for N = 1, 2,
# 4, 8, 16 (as far as the machine's CPUs go) on netmap and NAPT with 1k established flows.
# It needs only the hutong binary and root: the bench builds its namespaces over netlink and
# loads its own XDP programs. Where `nft` is missing (the device machine has none) the Linux
# rows are skipped, loudly.
#
#   sudo scripts/bench-scaling.sh [HUTONG_BINARY] [OUT_DIR]
#
# Each N's report goes to OUT_DIR/cores-N/; OUT_DIR/summary.md collects the 64-byte rows with
# the core count, to compare against N = 1 (the goal: at 8 cores, at least 6x).
set -euo pipefail

bin=${1:-./target/release/hutong}
out=${2:-bench-scaling}
[ "$(id -u)" -eq 0 ] || { echo "bench-scaling: run as root" >&2; exit 1; }
[ -x "$bin" ] || { echo "bench-scaling: no hutong binary at $bin (cargo build --release)" >&2; exit 1; }
# The gateway pins its maps there.
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf

cpus=$(nproc)
mkdir -p "$out"
summary="$out/summary.md"
printf '| cores | scenario | device under test | frame | Mpps | at full rate | p50 / p99 µs | wrong | × Linux | × ceiling |\n' >"$summary"
printf '| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n' >>"$summary"
for n in 1 2 4 8 16; do
    if [ "$n" -gt "$cpus" ]; then
        echo "bench-scaling: $cpus CPUs here, stopping before --cores $n"
        break
    fi
    echo "bench-scaling: --cores $n"
    "$bin" bench --cores "$n" --scenario netmap --scenario napt-1k --out "$out/cores-$n"
    grep '| 64 B |' "$out/cores-$n/report.md" | sed "s/^|/| $n |/" >>"$summary"
done
echo "bench-scaling: wrote $summary"
