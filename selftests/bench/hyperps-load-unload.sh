#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# hyperps.ko loads, reports its version and the VMX capabilities, unloads, and loads again.
ko=/hps/modules/hyperps.ko
n=0
failed=0
check() {
	n=$((n + 1))
	if eval "$2"; then echo "ok $n $1"; else echo "not ok $n $1"; failed=1; fi
}
loaded() { grep -q '^hyperps ' /proc/modules; }

echo "TAP version 13"
echo "1..8"
dmesg -c >/dev/null
check "insmod hyperps.ko" "insmod $ko"
check "module is listed in /proc/modules" "loaded"
check "reports its version" "dmesg | grep -q 'hyperps: version [0-9]'"
check "reports VMX capabilities read from the MSRs (EPT and VPID)" \
	"dmesg | grep 'hyperps: VMX features:' | grep -q ' ept_4level' && dmesg | grep 'hyperps: VMX features:' | grep -qw vpid"
check "rmmod hyperps" "rmmod hyperps"
check "module is gone and said so" "! loaded && dmesg | grep -q 'hyperps: unloaded'"
check "loads a second time" "insmod $ko && loaded"
check "unloads a second time" "rmmod hyperps && ! loaded"
dmesg | grep 'hyperps:' | sed 's/^/  /'
exit $failed
