#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Load KVM on the bench and report what kvm_intel enabled.
#   load-kvm.sh            kvm and kvm_intel, no HyperPS
#   load-kvm.sh --hyperps  hyperps.ko first, then kvm_intel (reloaded if it was loaded): a
#                          backend must be registered before kvm_intel enables VMX
set -e
M=/hps/modules
grep -q '^irqbypass ' /proc/modules || insmod $M/irqbypass.ko
grep -q '^kvm ' /proc/modules || insmod $M/kvm.ko
if [ "${1:-}" = --hyperps ]; then
	if grep -q '^kvm_intel ' /proc/modules; then rmmod kvm_intel; fi
	grep -q '^hyperps ' /proc/modules || insmod $M/hyperps.ko ${HPS_HYPERPS_ARGS:-}
	echo "hyperps.mode=$(cat /sys/module/hyperps/parameters/mode)"
fi
# Bochs never exits on an external interrupt while the guest has IF=0; bound every guest run
# (patches/bench) so the host keeps running. ~16 ms of guest time at the bench's TSC rate.
insmod $M/kvm-intel.ko bench_exit_ticks="${HPS_BENCH_EXIT_TICKS:-100000}"
[ -c /dev/kvm ] || { echo "/dev/kvm did not appear"; exit 1; }
for p in ept vpid unrestricted_guest nested enable_apicv pml enable_shadow_vmcs preemption_timer bench_exit_ticks; do
	printf 'kvm_intel.%s=%s ' "$p" "$(cat /sys/module/kvm_intel/parameters/$p 2>/dev/null || echo '?')"
done
echo
grep -m1 '^vmx flags' /proc/cpuinfo || true
