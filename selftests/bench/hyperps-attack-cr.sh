#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Refusal tests: hyperps_attack.ko plays a compromised host that clears CR0.WP, CR4.SMEP,
# CR4.PCIDE and CR4.VMXE, sets CR0.CD and loads CR3 with a root no mm registered (a copy of the
# current page table), through the kernel's own CR-write functions. In enforce mode each
# attempt must be refused before it reaches the register: refused, counted, logged, and no
# WARN from the kernel's own CR pinning (which would mean the write happened). In audit mode
# only CR0.CD and CR3 are let through (the others the kernel's pinning or the CPU would turn
# into a WARN or a #GP): each reaches the register, is logged as audited, and is put back.
d=/sys/kernel/debug
. /hps/tap.sh
refused() { awk -v c="$1" '$1 == c && $4 == "refused" { print $5 }' $d/hyperps/counters; }
mode=$(cat /sys/module/hyperps/parameters/mode)
if [ "$mode" = enforce ]; then
	attacks="cr0_wp_clear cr0_cd_set cr4_smep_clear cr4_pcide_clear cr4_vmxe_clear cr3_unregistered_root"
	want=refused logged=enforced
else
	attacks="cr0_cd_set cr3_unregistered_root"
	want=ALLOWED logged=audit
fi

echo "TAP version 13"
echo "1..$(( $(echo $attacks | wc -w) * 3 + 2 ))"
dmesg -c >/dev/null
for attack in $attacks; do
	class=${attack%%_*}
	before=$(refused "$class")
	out=$(cat $d/hyperps_attack/$attack)
	echo "# $attack: $out"
	after=$(refused "$class")
	if echo "$out" | grep -q '^skip:'; then
		check "$attack # SKIP $out" true
	else
		check "$attack: $want" "echo '$out' | grep -q '^$want '"
	fi
	check "$attack is counted ($class refused $before -> $after)" "[ \"$after\" -eq \$(($before + 1)) ] || echo '$out' | grep -q '^skip:'"
	check "$attack is in the refusal log as $logged" "tail -n 1 $d/hyperps/refusals | grep \" $class \" | grep -q \" $logged\" || echo '$out' | grep -q '^skip:'"
done
check "no WARN from the kernel's CR pinning" "! dmesg | grep -q 'bit went missing'"
check "KVM still runs a guest" "/hps/tests/exit_smoke_test >/dev/null"
dmesg | grep hyperps | sed 's/^/  /'
exit $failed
