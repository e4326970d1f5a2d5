#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Load KVM on the bench and report what kvm_intel enabled.
set -e
for m in irqbypass kvm kvm-intel; do
	insmod /hps/modules/$m.ko
done
[ -c /dev/kvm ] || { echo "/dev/kvm did not appear"; exit 1; }
for p in ept vpid unrestricted_guest nested enable_apicv pml enable_shadow_vmcs; do
	printf 'kvm_intel.%s=%s ' "$p" "$(cat /sys/module/kvm_intel/parameters/$p 2>/dev/null || echo '?')"
done
echo
grep -m1 '^vmx flags' /proc/cpuinfo || true
