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

# judge NAME LABEL: one bench's serial log, its results added to make test's. A result whose
# name an earlier bench already reported (the setup steps, kernel-log-clean, hyperps_counters)
# is named "NAME@BENCH".
judge() {
	local log=$HPS_LOGS/$1.serial.log res=$HPS_LOGS/bench-$1.results retries
	python3 "$HPS_TOP/scripts/tap-judge.py" "$log" --results "$res" >/dev/null
	awk -F'\t' -v OFS='\t' -v bench="$1" '
		NR == FNR { seen[$2] = 1; next }
		{ $2 = "bench:" $2; if ($2 in seen) $2 = $2 "@" bench; print }' "$results" "$res" \
		>>"$results"
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

for part in without with1 with2; do
	check "initramfs-$part" "$HPS_LOGS/initramfs-test-$part.log" \
		"$HPS_TOP/scripts/initramfs.sh" "test-$part" "$HPS_BUILD/initramfs-test-$part.cpio.gz" ||
		summary
done

# The without-HyperPS results depend only on what the bench boots and how: the kernel image,
# the initramfs (stock modules, selftests, bench scripts, plan; no hyperps.ko), the Bochs and
# boot loader configuration, and the emulator with its ROMs. The key hashes all of them, so a
# change to any of them reruns the pass; a change to hyperps/ or rust/ alone does not.
baseline_key() {
	local pkg
	{
		sha256sum <"$HPS_KOBJ/arch/x86/boot/bzImage"
		cat "$HPS_BUILD/initramfs-test-without.cpio.gz.manifest"
		"$HPS_TOP/scripts/bench.sh" --print-config
		for pkg in bochs bochs-term bochsbios vgabios isolinux syslinux-common xorriso; do
			dpkg-query -W -f '${Package} ${Version}\n' "$pkg" 2>/dev/null || echo "$pkg none"
		done
		sha256sum "$(command -v bochs)" /usr/share/bochs/BIOS-bochs-latest \
			/usr/share/vgabios/vgabios.bin /usr/lib/ISOLINUX/isolinux.bin \
			/usr/lib/syslinux/modules/bios/ldlinux.c32
		echo "hang=${HPS_HANG_SECONDS:-240} budget=4200"
	} | sha256sum | cut -c1-16
}
baseline_dir=${XDG_CACHE_HOME:-$HOME/.cache}/hyperps/baseline/$(baseline_key)
cached=""
if [ -n "${HPS_TEST_FULL:-}" ]; then
	hps_say "make test FULL=1: the without-HyperPS pass runs again (cache $baseline_dir)"
elif [ -f "$baseline_dir/serial.log" ]; then
	cached=$baseline_dir
	cp "$cached/serial.log" "$HPS_LOGS/test-without.serial.log"
	hps_say "make test: without-HyperPS pass: cached baseline from $(cat "$cached/when")," \
		"key $(basename "$cached") (kernel, initramfs, bench scripts and Bochs unchanged);" \
		"make test FULL=1 reruns it"
fi

if [ -n "$cached" ]; then
	hps_say "make test: bench runs on emulated VT-x (Bochs): the selftests with HyperPS, in two parts side by side (about 12 minutes)"
else
	hps_say "make test: bench runs on emulated VT-x (Bochs): the selftests without HyperPS and, side by side, with it in two parts (about 18 minutes)"
fi
# The budget keeps the whole of make test inside CI's 90 minutes even if the bench misbehaves.
parts="with1 with2"
[ -n "$cached" ] || parts="without $parts"
pids=()
for part in $parts; do
	"$HPS_TOP/scripts/bench.sh" "test-$part" "$HPS_BUILD/initramfs-test-$part.cpio.gz" \
		--budget 4200 &
	pids+=("$part:$!")
done
without_ended=""
for p in "${pids[@]}"; do
	if wait "${p#*:}" && [ "${p%%:*}" = without ]; then
		without_ended=1
	fi
done
judge test-without "without HyperPS${cached:+, cached}"
judge test-with1 "with HyperPS, part 1"
judge test-with2 "with HyperPS, part 2"
# Only a baseline that ran to its end with every check passed is kept: a Bochs freeze or a
# failure is never replayed from the cache.
if [ -z "$cached" ] && [ -n "$without_ended" ] &&
   ! grep -q '^fail' "$HPS_LOGS/bench-test-without.results"; then
	mkdir -p "$baseline_dir"
	cp "$HPS_LOGS/test-without.serial.log" "$baseline_dir/serial.log.new"
	echo "$(date -u '+%Y-%m-%d %H:%M UTC') (commit $(git -C "$HPS_TOP" rev-parse --short HEAD 2>/dev/null || echo '?'))" \
		>"$baseline_dir/when"
	mv "$baseline_dir/serial.log.new" "$baseline_dir/serial.log"
	echo "  without-HyperPS results cached in $baseline_dir"
fi
summary
