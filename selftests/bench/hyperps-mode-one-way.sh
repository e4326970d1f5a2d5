#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# The mode may only move from audit to enforce: nothing reachable from outside switches the
# checks off again once they are enforced.
mode=/sys/module/hyperps/parameters/mode
. /hps/tap.sh

echo "TAP version 13"
echo "1..4"
dmesg -c >/dev/null
check "mode is enforce" "[ \"\$(cat $mode)\" = enforce ]"
check "writing audit is refused" "! echo audit >$mode 2>/dev/null"
check "and the mode stays enforce" "[ \"\$(cat $mode)\" = enforce ]"
check "the refusal is logged" "dmesg | grep -q 'hyperps: mode cannot go back to audit'"
exit $failed
