#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# The VM attacks again in audit mode: each write must be let through (and undone by the attack
# module) but still counted and logged as audited. Enforce mode is restored afterwards.
mode=/sys/module/hyperps/parameters/mode
echo audit >$mode || exit 1
/hps/attack/hyperps_vm_attack_test
rc=$?
echo enforce >$mode || rc=1
exit $rc
