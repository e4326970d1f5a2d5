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
# Every run of a target is added to fuzz/ledger.tsv (git-ignored, beside the corpus): date,
# source hash, target, executions, seconds, result. The source hash covers the code the target
# runs (see source_hash below), so the total printed for a target only adds up runs of exactly
# the code that is being fuzzed now.
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
# The code a target runs, hashed before the build so that an edit during a long run is not
# credited with it: the verifier core, the target and its driver, and for `backend` the
# backend and the explorer's world (the other targets never call the backend).
source_hash() {
	code="../src/lib.rs ../src/policy driver.rs"
	[ "$1" = backend ] && code="../src ../tests/world"
	# shellcheck disable=SC2086
	find $code "fuzz_targets/$1.rs" Cargo.toml ../Cargo.toml -type f |
		{ if [ "$1" = backend ]; then cat; else grep -v '^\.\./src/policy/backend/'; fi; } |
		LC_ALL=C sort | xargs cat | sha256sum | cut -c1-12
}
hashes=
for t in $targets; do hashes="$hashes $t=$(source_hash "$t")"; done
cargo fuzz build -O -s none >/dev/null
ledger=ledger.tsv
[ -f "$ledger" ] || printf 'date\tsource\ttarget\texecutions\tseconds\tresult\n' >"$ledger"
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
	seconds=$(($(date +%s) - start))
	src=$(echo "$hashes" | tr ' ' '\n' | sed -n "s/^$t=//p")
	result=ok
	[ "$failed" -ne 0 ] && result=FAILED
	# Stopped by a signal (Ctrl-C), with no crash: the executions count, but not as a pass.
	if [ "$failed" -ne 0 ] && grep -q 'libFuzzer: run interrupted' target/fuzz-"$t"-*.log &&
		! grep -qE 'deadly signal|ERROR: libFuzzer' target/fuzz-"$t"-*.log; then
		result=interrupted
	fi
	printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$src" "$t" "$total" \
		"$seconds" "$result" >>"$ledger"
	sum=$(awk -F'\t' -v s="$src" -v t="$t" \
		'$2 == s && $3 == t && $6 == "ok" {n += $4} END {print n + 0}' "$ledger")
	echo "== $t: $total executions in $seconds s," \
		"corpus $(find "corpus/$t" -type f | wc -l) inputs ($(du -sh "corpus/$t" | cut -f1));" \
		"$sum in all on source $src"
	if [ "$result" = interrupted ]; then
		echo "interrupted: $t (no crash; the ledger keeps the run, the total leaves it out)"
		exit 130
	fi
	if [ "$failed" -ne 0 ]; then
		echo "FAILED: $t (see fuzz/target/fuzz-$t-*.log, fuzz/artifacts/$t/)"
		for f in target/fuzz-"$t"-*.log; do tail -n 40 "$f"; done
		exit 1
	fi
done
echo "all fuzz targets: OK"
