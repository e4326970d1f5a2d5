#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# After the upstream KVM selftests ran under hyperps.ko: nothing legitimate was refused, and
# every check class those tests exercise verified writes, and with every VM gone no frame is
# left owned by a VM.
c=/sys/kernel/debug/hyperps/counters
. /hps/tap.sh
verified() { awk -v c="$1" '$1 == c && $2 == "verified" { print $3 }' $c; }

echo "TAP version 13"
echo "1..11"
sed 's/^/  /' $c
check "no refusals in any class" \
	"awk '\$2 == \"verified\" && \$4 == \"refused\" && \$5 != 0 { bad = 1 } END { exit bad }' $c"
check "the refusal log is empty" "[ -z \"\$(cat /sys/kernel/debug/hyperps/refusals)\" ]"
check "no frame is left owned by a VM" "grep -q '^frames host [0-9]* vm 0 ' $c"
for class in vmcs ept eptp cr3 cr4 ownership vmx registration; do
	check "class $class verified writes ($(verified $class))" "[ \"\$(verified $class)\" -gt 0 ]"
done
head -20 /sys/kernel/debug/hyperps/refusals | sed 's/^/  refused: /'
exit $failed
