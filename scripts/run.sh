#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# `make run`: what a HyperPS user does on a VT-x host, on the bench. Build the patched kernel and
# hyperps.ko, boot the bench, load KVM and HyperPS, boot a real Linux guest with QEMU on KVM,
# and print a report.
source "$(dirname "$0")/lib.sh"

t_start=$(date +%s)
bench_rc=0
if [ "${1:-}" != --report-only ]; then
"$HPS_TOP/scripts/deps.sh"
	"$HPS_TOP/scripts/kernel.sh" all
hps_step "building hyperps.ko" "$HPS_LOGS/module-build.log" "$HPS_TOP/scripts/module.sh" build ||
	hps_die "hyperps.ko did not build"
hps_step "building the bench initramfs with QEMU and a guest" "$HPS_LOGS/initramfs-run.log" \
	"$HPS_TOP/scripts/initramfs.sh" run "$HPS_BUILD/initramfs-run.cpio.gz" ||
	hps_die "initramfs build failed"
"$HPS_TOP/scripts/bench.sh" run "$HPS_BUILD/initramfs-run.cpio.gz" --budget 900 || bench_rc=$?
fi

log=$HPS_LOGS/run.serial.log
strip_ts() { sed -e 's/\r//' -e 's/^# //' -e 's/^\[ *[0-9.]*\] //'; }
first() { strip_ts <"$log" | grep -a -m1 -e "$1" || true; }

echo
echo "==================== HyperPS run report ===================="
echo "Kernel:          $(first '^HPS-BOOT' | sed -n 's/.*kernel=\([^ ]*\).*/\1/p')" \
	"(Debian linux-source-6.12 $(dpkg-query -W -f='${Version}' linux-source-6.12)," \
	"$(grep -c . <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$HPS_TOP/patches/series") || true) HyperPS patches)"
echo "CPU (bench):     Bochs corei7_skylake_x:$(first '^HPS-BOOT' | sed -n 's/.*cpu=//p')"
echo "hyperps.ko:      $(first 'hyperps: version' | sed 's/^hyperps: //')"
echo "VMX (MSRs):      $(first 'hyperps: VMX features:' | sed 's/^hyperps: VMX features: //')"
echo "kvm_intel:       $(first 'kvm_intel.ept=')"
echo "HyperPS mode:    $(first '^hyperps.mode=' | sed 's/^hyperps.mode=//')"
echo "Guest (QEMU on /dev/kvm inside the bench):"
strip_ts <"$log" | grep -a -e '^HPS-GUEST' | grep -v '^HPS-GUEST-START' | sed 's/^/    /'
start=$(first '^HPS-GUEST-START' | awk '{print $2}')
end=$(first '^HPS-GUEST-EXIT' | sed -n 's/.*uptime=//p')
[ -n "$start" ] && [ -n "$end" ] &&
	echo "    guest run took $(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.1f", b - a}') s of bench time"
echo "HyperPS verified and refused (debugfs hyperps/counters after the guest exited):"
{ strip_ts <"$log" | grep -a '^HPS-COUNTERS ' || echo "HPS-COUNTERS (none: hyperps.ko did not report)"; } |
	sed 's/^HPS-COUNTERS /    /'
refused=$(strip_ts <"$log" | grep -a -c '^HPS-REFUSED ' || true)
echo "Refused writes logged: $refused"
{ strip_ts <"$log" | grep -a '^HPS-REFUSED ' || true; } | head -10 | sed 's/^HPS-REFUSED /    /'
echo "Bench results:"
judge_rc=0
python3 "$HPS_TOP/scripts/tap-judge.py" "$log" >"$HPS_LOGS/run.judge" || judge_rc=$?
sed 's/^/  /' "$HPS_LOGS/run.judge"
echo "Full serial log: $log"
echo "Took $(( $(date +%s) - t_start ))s."
echo "============================================================"
[ "$bench_rc" -eq 0 ] && [ "$judge_rc" -eq 0 ]
