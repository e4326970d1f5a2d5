#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Load KVM on the bench and report what kvm_intel enabled.
set -e
insmod /hps/modules/irqbypass.ko
insmod /hps/modules/kvm.ko
# Bochs never exits on an external interrupt while the guest has IF=0; bound every guest run
# (patches/bench) so the host keeps running. ~16 ms of guest time at the bench's TSC rate.
insmod /hps/modules/kvm-intel.ko bench_exit_ticks="${HPS_BENCH_EXIT_TICKS:-100000}"
[ -c /dev/kvm ] || { echo "/dev/kvm did not appear"; exit 1; }
for p in ept vpid unrestricted_guest nested enable_apicv pml enable_shadow_vmcs preemption_timer bench_exit_ticks; do
	printf 'kvm_intel.%s=%s ' "$p" "$(cat /sys/module/kvm_intel/parameters/$p 2>/dev/null || echo '?')"
done
echo
grep -m1 '^vmx flags' /proc/cpuinfo || true
