#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Setup: after the audit half of the attacks, move hyperps.ko to enforce mode (the only way a
# mode may change after load) and remember the counters, so that the checks after the
# selftests see only what happened from here on.
mode=/sys/module/hyperps/parameters/mode
dbg=/sys/kernel/debug/hyperps
echo enforce >$mode || exit 1
[ "$(cat $mode)" = enforce ] || exit 1
cp $dbg/counters /tmp/counters.enforce
tail -n 1 $dbg/refusals | cut -d' ' -f1 >/tmp/refusals.enforce
echo "hyperps.mode=$(cat $mode); counters saved"
