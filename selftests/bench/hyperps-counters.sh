#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# After the upstream KVM selftests ran under hyperps.ko in enforce mode: nothing legitimate was
# refused (counted from setup:hyperps_enforce on, which saved the counters), every check class
# those tests exercise verified writes (CR4 since load: it changes at VMXON), and with every VM
# gone and its memory freed no frame is left owned by a VM unless the kernel still holds it.
c=/sys/kernel/debug/hyperps/counters
base=/tmp/counters.enforce
. /hps/tap.sh
field() { awk -v c="$2" -v f="$3" '$1 == c { print $f }' "$1"; }

echo "TAP version 13"
echo "1..14"
sed 's/^/  /' $c
bad=""
for class in vmcs ept eptp cr0 cr3 cr4 ownership vmx registration; do
	[ "$(field $c $class 5)" -eq "$(field $base $class 5)" ] || bad="$bad $class"
done
check "no refusals in any class since enforce mode began${bad:+ (refused:$bad)}" "[ -z \"$bad\" ]"
last=$(cat /tmp/refusals.enforce 2>/dev/null)
check "no refusal logged since enforce mode began" \
	"! awk -v last=\"${last:-0}\" '\$1 > last { found = 1 } END { exit !found }' /sys/kernel/debug/hyperps/refusals"
# A frame a VM still owns once every VM is gone is either one HyperPS kept from the page
# allocator (refcount 0: a bug) or one the kernel never let go of (KVM 6.12's nested eVMCS
# path leaks one page per hyperv_evmcs run, HyperPS or not); the latter must stay the VM's.
vmf=/sys/kernel/debug/hyperps/vm_frames
sed 's/^/  still owned: /' $vmf
check "no frame the kernel let go of is left owned by a VM" \
	"grep -q '^frames host [0-9]* vm 0 ' $c || ! grep -q ' refcount 0 ' $vmf"
check "the frames VMs still own are all listed ($(grep -c . $vmf))" \
	"[ \"\$(awk '/^frames/ { print \$5 }' $c)\" -le 64 ] && [ \"\$(awk '/^frames/ { print \$5 }' $c)\" -eq \"\$(grep -c . $vmf)\" ]"
for class in vmcs ept eptp cr3 ownership vmx registration; do
	check "class $class verified writes ($(field $c $class 3))" "[ \"\$(field $c $class 3)\" -gt \"\$(field $base $class 3)\" ]"
done
# THP and hugetlbfs guests (hyperps_mm_flows_test, the hugetlb upstream tests) get 2 MiB leaves.
check "2 MiB EPT leaves verified ($(field $c ept_leaves_written 5))" \
	"[ \"\$(field $c ept_leaves_written 5)\" -gt \"\$(field $base ept_leaves_written 5)\" ]"
# CR4 changes at VMXON, which happened before enforce mode began: count since load.
check "class cr4 verified writes since load ($(field $c cr4 3))" "[ \"\$(field $c cr4 3)\" -gt 0 ]"

awk -v last="${last:-0}" '$1 > last' /sys/kernel/debug/hyperps/refusals | head -20 | sed 's/^/  refused: /'
exit $failed
