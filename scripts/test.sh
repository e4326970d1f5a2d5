#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# `make test`: every check HyperPS has, from a fresh clone, ending with "N passed, N failed".
#
# Checks run in order: setup, userspace Rust tests and style gates, checkpatch, the patch
# failure check, the kernel/module/selftest builds, then the bench (Bochs VT-x) run whose TAP
# results each count as one check.
source "$(dirname "$0")/lib.sh"
set +e

results=$HPS_LOGS/test-results.tsv
: >"$results"
t_start=$(date +%s)

record() {	# record STATUS NAME DETAIL
	printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$results"
	printf '  %-4s %s %s\n' "$(echo "$1" | tr a-z A-Z)" "$2" "$3"
}

# check NAME LOG CMD...: one pass/fail check whose output goes to LOG.
check() {
	local name=$1 log=$2 t0 rc
	shift 2
	t0=$(date +%s)
	printf '  ...  %s (log %s)\n' "$name" "$log"
	"$@" >"$log" 2>&1
	rc=$?
	if [ $rc -eq 0 ]; then
		record pass "$name" "($(( $(date +%s) - t0 ))s)"
	else
		record fail "$name" "(exit $rc; log $log)"
		tail -n 15 "$log" | sed 's/^/    | /'
	fi
	return $rc
}

summary() {
	local p f s
	p=$(grep -c '^pass' "$results")
	f=$(grep -c '^fail' "$results")
	s=$(grep -c '^skip' "$results")
	echo
	hps_say "make test finished in $(( $(date +%s) - t_start ))s; results in $results"
	if [ "$f" -gt 0 ]; then
		echo "Failed checks:"
		grep '^fail' "$results" | cut -f2,3 | sed 's/^/  /' | sort | uniq -c
	fi
	echo "$p passed, $f failed, $s skipped"
	[ "$f" -eq 0 ]
	exit $?
}

hps_say "make test: setup"
check deps "$HPS_LOGS/deps.log" "$HPS_TOP/scripts/deps.sh" || summary

check kernel-prepare "$HPS_LOGS/kernel-prepare.log" "$HPS_TOP/scripts/kernel.sh" prepare || summary
grep -h 'kernel source:' "$HPS_LOGS/kernel-prepare.log" | sed 's/^==> /  /'

filter=${HPS_TEST_FILTER:-}
if [ -z "$filter" ]; then
	hps_say "make test: userspace tests and style gates"
	"$HPS_TOP/scripts/userspace-checks.sh" "$results"
fi

hps_say "make test: kernel, module and selftest builds"
check kernel-config "$HPS_LOGS/kernel-config.log" "$HPS_TOP/scripts/kernel.sh" config || summary
check kernel-build "$HPS_LOGS/kernel-build-step.log" "$HPS_TOP/scripts/kernel.sh" build || summary
check patch-failure-is-reported "$HPS_LOGS/patch-failure.log" \
	"$HPS_TOP/scripts/check-patch-failure.sh"
check module-clippy "$HPS_LOGS/module-clippy.log" "$HPS_TOP/scripts/module.sh" clippy
check module-build "$HPS_LOGS/module-build.log" "$HPS_TOP/scripts/module.sh" build || summary
check selftests-build "$HPS_LOGS/selftests-build.log" "$HPS_TOP/scripts/selftests.sh" || summary

# judge NAME LABEL: one bench's serial log, its results added to make test's.
judge() {
	local log=$HPS_LOGS/$1.serial.log res=$HPS_LOGS/bench-$1.results retries
	python3 "$HPS_TOP/scripts/tap-judge.py" "$log" --results "$res" >/dev/null
	# The with-HyperPS boot loads KVM first too and has a kernel log: name those apart.
	[ "$1" != test-with ] ||
		sed -i -e 's/\tsetup:kvm_modules_load\t/\tsetup:kvm_modules_load_before_hyperps\t/' \
			-e 's/\tkernel-log-clean\t/\twith-hyperps\/kernel-log-clean\t/' "$res"
	sed 's/^\([a-z]*\)\t/\1\tbench:/' "$res" >>"$results"
	grep -v '^pass' "$res" | sed 's/^/  /' | tr '\t' ' '
	echo "  bench ($2): $(grep -c '^pass' "$res") passed, $(grep -c '^fail' "$res") failed," \
		"$(grep -c '^skip' "$res") skipped; serial log $log"
	retries=$(grep -c '^# HPS-RETRY' "$log")
	[ "$retries" -eq 0 ] ||
		echo "  bench ($2): Bochs froze $retries time(s); each such test was rerun once on a fresh boot"
}

if [ -n "$filter" ]; then
	check initramfs "$HPS_LOGS/initramfs-test-only.log" \
		"$HPS_TOP/scripts/initramfs.sh" test "$HPS_BUILD/initramfs-test-only.cpio.gz" || summary
	hps_say "make test T='$filter': the matching bench tests, with their setup, in one boot"
	"$HPS_TOP/scripts/bench.sh" test-only "$HPS_BUILD/initramfs-test-only.cpio.gz" --budget 4200
	judge test-only "T='$filter'"
	summary
fi

for part in without with; do
	check "initramfs-$part" "$HPS_LOGS/initramfs-test-$part.log" \
		"$HPS_TOP/scripts/initramfs.sh" "test-$part" "$HPS_BUILD/initramfs-test-$part.cpio.gz" ||
		summary
done

hps_say "make test: bench runs on emulated VT-x (Bochs): the selftests without HyperPS and, side by side, with it (about 16 minutes)"
# One Bochs per core. The budget keeps the whole of make test inside CI's 90 minutes even if
# the bench misbehaves.
for part in without with; do
	"$HPS_TOP/scripts/bench.sh" "test-$part" "$HPS_BUILD/initramfs-test-$part.cpio.gz" \
		--budget 4200 &
done
wait
judge test-without "without HyperPS"
judge test-with "with HyperPS"
summary
