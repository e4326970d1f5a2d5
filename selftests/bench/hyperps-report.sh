#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# What hyperps.ko verified and refused while the guest ran (read by scripts/run.sh).
d=/sys/kernel/debug/hyperps
[ -r $d/counters ] || { echo "no $d/counters: is hyperps loaded?"; exit 1; }
sed 's/^/HPS-COUNTERS /' $d/counters
sed 's/^/HPS-REFUSED /' $d/refusals
dmesg | grep 'hyperps:' | grep -v -e 'VMX' -e 'version' | tail -20 | sed 's/^/HPS-DMESG /'
exit 0
