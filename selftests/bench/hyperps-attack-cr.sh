#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Refusal tests: hyperps_attack.ko plays a compromised host that clears CR0.WP and CR4.SMEP and
# loads CR3 with a root no mm registered (a copy of the current page table), through the
# kernel's own CR-write functions. Each attempt must be refused, counted and logged; the
# register keeps its value, and KVM still runs guests afterwards. The module stays
# loaded for the VM attacks (attack/hyperps_vm_attack_test).
d=/sys/kernel/debug
. /hps/tap.sh
refused() { awk -v c="$1" '$1 == c && $4 == "refused" { print $5 }' $d/hyperps/counters; }

echo "TAP version 13"
echo "1..12"
[ "$(cat /sys/module/hyperps/parameters/mode)" = enforce ] || echo enforce >/sys/module/hyperps/parameters/mode
check "load the attack module" "insmod /hps/modules/hyperps_attack.ko"
dmesg -c >/dev/null
for attack in cr0_wp_clear cr4_smep_clear cr3_unregistered_root; do
	class=${attack%%_*}
	before=$(refused "$class")
	out=$(cat $d/hyperps_attack/$attack)
	echo "# $attack: $out"
	after=$(refused "$class")
	check "$attack is refused and the register keeps its value" "echo '$out' | grep -q '^refused '"
	check "$attack is counted ($class refused $before -> $after)" "[ \"$after\" -eq \$(($before + 1)) ]"
	check "$attack is in the refusal log" "grep -q \" $class \" $d/hyperps/refusals"
done
check "a refusal line is in the kernel log" "dmesg | grep -q 'hyperps: .*refused'"
check "KVM still runs a guest" "/hps/tests/exit_smoke_test >/dev/null"
dmesg | grep hyperps | sed 's/^/  /'
exit $failed
