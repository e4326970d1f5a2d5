#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# hyperps.ko is loaded and registered (setup:hyperps_on): it reports itself, shows its mode and
# counters, switches modes through sysfs, and cannot be unloaded (the registry pins it).
mode=/sys/module/hyperps/parameters/mode
dbg=/sys/kernel/debug/hyperps
. /hps/tap.sh

echo "TAP version 13"
echo "1..9"
check "hyperps is loaded" "grep -q '^hyperps ' /proc/modules"
check "reports its version" "dmesg | grep -q 'hyperps: version [0-9]'"
check "reports VMX capabilities read from the MSRs (EPT and VPID)" \
	"dmesg | grep 'hyperps: VMX features:' | grep -q ' ept_4level' && dmesg | grep 'hyperps: VMX features:' | grep -qw vpid"
check "default mode is enforce" "[ \"\$(cat $mode)\" = enforce ]"
check "mode can be set to audit and back" \
	"echo audit >$mode && [ \"\$(cat $mode)\" = audit ] && echo enforce >$mode && [ \"\$(cat $mode)\" = enforce ]"
check "an invalid mode is rejected and changes nothing" \
	"! echo sloppy >$mode 2>/dev/null && [ \"\$(cat $mode)\" = enforce ]"
check "counters are readable" "grep -q '^vmcs .*verified [0-9]* refused [0-9]*' $dbg/counters"
check "the refusal log is readable" "cat $dbg/refusals >/dev/null"
check "rmmod is refused: a registered backend stays" \
	"! rmmod hyperps 2>/dev/null && grep -q '^hyperps ' /proc/modules"
sed 's/^/  /' $dbg/counters
exit $failed
