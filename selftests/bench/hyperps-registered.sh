#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# hyperps.ko is loaded and registered (setup:hyperps_on, in audit mode for the audit half of the
# attacks): it reports itself and its mode, rejects an invalid mode, shows its counters, and
# cannot be unloaded (the registry pins it).
mode=/sys/module/hyperps/parameters/mode
dbg=/sys/kernel/debug/hyperps
. /hps/tap.sh

echo "TAP version 13"
echo "1..9"
check "hyperps is loaded" "grep -q '^hyperps ' /proc/modules"
check "reports its version" "dmesg | grep -q 'hyperps: version [0-9]'"
check "reports VMX capabilities read from the MSRs (EPT and VPID)" \
	"dmesg | grep 'hyperps: VMX features:' | grep -q ' ept_4level' && dmesg | grep 'hyperps: VMX features:' | grep -qw vpid"
check "it was loaded in audit mode, as asked" "[ \"\$(cat $mode)\" = audit ]"
check "an invalid mode is rejected and changes nothing" \
	"! echo sloppy >$mode 2>/dev/null && [ \"\$(cat $mode)\" = audit ]"
check "counters are readable" "grep -q '^vmcs .*verified [0-9]* refused [0-9]*' $dbg/counters"
check "the refusal log is readable" "cat $dbg/refusals >/dev/null"
check "frames are scrubbed when freed" "grep -q '^scrub_on_free yes' $dbg/counters"
check "rmmod is refused: a registered backend stays" \
	"! rmmod hyperps 2>/dev/null && grep -q '^hyperps ' /proc/modules"
sed 's/^/  /' $dbg/counters
exit $failed
