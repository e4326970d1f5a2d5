#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# `make bench`: the guest micro-benchmarks (selftests/kvm/bench/hyperps_bench.c) without and
# with hyperps.ko in one bench boot, the verifier core's own cost per check (cargo bench), and a
# report: a table on stdout, build/perf/results.{csv,json} and build/perf/overhead.png.
#   scripts/perf.sh [--report-only]   --report-only: redo the report from the last logs
source "$(dirname "$0")/lib.sh"

out=$HPS_BUILD/perf
log=$HPS_LOGS/perf.serial.log
crit=$HPS_TOP/rust/verifier/target/criterion
if [ "${1:-}" != --report-only ]; then
	"$HPS_TOP/scripts/deps.sh"
	# Only make bench draws a plot; /usr/bin/python3 is Debian's, where apt installs it.
	if ! /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
		hps_say "installing python3-matplotlib for the plot"
		$(command -v sudo >/dev/null && [ "$(id -u)" -ne 0 ] && echo sudo) \
			apt-get install -y -q python3-matplotlib >"$HPS_LOGS/apt-matplotlib.log" 2>&1 ||
			hps_warn "python3-matplotlib did not install (see $HPS_LOGS/apt-matplotlib.log); no PNG"
	fi
	"$HPS_TOP/scripts/kernel.sh" all
	hps_step "building hyperps.ko" "$HPS_LOGS/module-build.log" "$HPS_TOP/scripts/module.sh" build ||
		hps_die "hyperps.ko did not build"
	"$HPS_TOP/scripts/selftests.sh"
	# Only this run's checks in the report.
	rm -rf "$crit"
	hps_step "verifier core: cargo bench (ns per check)" "$HPS_LOGS/cargo-bench.log" \
		sh -c "cd '$HPS_TOP/rust/verifier' && cargo bench --locked --bench verifier -- \
			--warm-up-time 1 --measurement-time 2 --noplot" ||
		hps_die "cargo bench failed; see $HPS_LOGS/cargo-bench.log"
	hps_step "building the bench initramfs with the benchmarks" "$HPS_LOGS/initramfs-bench.log" \
		"$HPS_TOP/scripts/initramfs.sh" bench "$HPS_BUILD/initramfs-bench.cpio.gz" ||
		hps_die "initramfs build failed"
	hps_say "make bench: the benchmarks without, then with hyperps.ko (about a minute of bench)"
	"$HPS_TOP/scripts/bench.sh" perf "$HPS_BUILD/initramfs-bench.cpio.gz" --budget 2400 ||
		hps_die "the bench did not finish; see $log"
	python3 "$HPS_TOP/scripts/tap-judge.py" "$log" >"$HPS_LOGS/perf.judge" ||
		{ sed 's/^/  /' "$HPS_LOGS/perf.judge"; hps_die "a benchmark run failed; see $log"; }
fi
[ -f "$log" ] || hps_die "no bench log at $log; run make bench"
echo
echo "==================== HyperPS benchmarks (L1) ===================="
/usr/bin/python3 "$HPS_TOP/scripts/perf-report.py" "$log" "$out" "$crit" ||
	hps_die "no complete results in $log"
echo "Written: $out/results.csv, $out/results.json$([ -f "$out/overhead.png" ] && echo ", $out/overhead.png")"
echo "=================================================================="
