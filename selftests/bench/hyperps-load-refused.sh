#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Loads of hyperps.ko that must fail cleanly: kvm_intel is loaded (the backend would miss the
# VMX state that already exists), and a bad mode. Nothing may stay loaded or registered.
ko=/hps/modules/hyperps.ko
. /hps/tap.sh
loaded() { grep -q '^hyperps ' /proc/modules; }

echo "TAP version 13"
echo "1..5"
dmesg -c >/dev/null
check "kvm_intel is loaded (precondition)" "grep -q '^kvm_intel ' /proc/modules"
check "insmod hyperps.ko fails while kvm_intel is loaded" "! insmod $ko"
check "the log says to load hyperps before kvm_intel" \
	"! loaded && dmesg | grep 'hyperps:' | grep -q 'before kvm_intel'"
check "insmod hyperps.ko mode=bogus fails" "! insmod $ko mode=bogus && ! loaded"
check "KVM still runs guests" "/hps/tests/exit_smoke_test >/dev/null"
dmesg | grep 'hyperps' | sed 's/^/  /'
exit $failed
