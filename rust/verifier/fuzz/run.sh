#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Run cargo-fuzz targets of the verifier for a fixed number of executions each.
#
#   fuzz/run.sh [runs] [target...]   default 200000 executions per target, every target
#
# HYPERPS_FUZZ_SECONDS=S stops each target after S seconds if the runs are not done by then.
#
# One libFuzzer process per CPU works on each target, sharing its corpus (fuzz/corpus/TARGET);
# the executions are split between them and added up at the end. Built without a sanitizer:
# the crate forbids `unsafe`, and overflow checks stay on (-O keeps debug assertions), so an
# overflow panics as it would in the kernel.
#
# Needs cargo-fuzz (cargo install cargo-fuzz --locked). Only a stable toolchain exists on the
# project machines, so RUSTC_BOOTSTRAP=1 lets cargo-fuzz use the nightly-only flags.
set -eu
runs=${1:-200000}
[ $# -gt 0 ] && shift
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
targets=${*:-$(cargo fuzz list)}
jobs=$(nproc)
per=$(((runs + jobs - 1) / jobs))
time_limit=
[ -n "${HYPERPS_FUZZ_SECONDS:-}" ] && time_limit="-max_total_time=$HYPERPS_FUZZ_SECONDS"
cargo fuzz build -O -s none >/dev/null
bin=target/x86_64-unknown-linux-gnu/release
for t in $targets; do
	[ -x "$bin/$t" ] || { echo "no fuzz target '$t' (see: cargo fuzz list)"; exit 2; }
	# Sequences of backend calls need far fewer bytes than the verifier's API sequences.
	max_len=4096
	[ "$t" = backend ] && max_len=512
	mkdir -p "corpus/$t" "artifacts/$t"
	start=$(date +%s)
	pids=
	for j in $(seq 1 "$jobs"); do
		# shellcheck disable=SC2086
		"$bin/$t" "corpus/$t" -runs="$per" -max_len="$max_len" -print_final_stats=1 \
			-artifact_prefix="artifacts/$t/" $time_limit >"target/fuzz-$t-$j.log" 2>&1 &
		pids="$pids $!"
	done
	failed=0
	for p in $pids; do wait "$p" || failed=1; done
	total=$(cat target/fuzz-"$t"-*.log | sed -n 's/^stat::number_of_executed_units: //p' |
		awk '{s += $1} END {print s + 0}')
	echo "== $t: $total executions in $(($(date +%s) - start)) s," \
		"corpus $(find "corpus/$t" -type f | wc -l) inputs"
	if [ "$failed" -ne 0 ]; then
		echo "FAILED: $t (see fuzz/target/fuzz-$t-*.log, fuzz/artifacts/$t/)"
		for f in target/fuzz-"$t"-*.log; do tail -n 40 "$f"; done
		exit 1
	fi
done
echo "all fuzz targets: OK"
