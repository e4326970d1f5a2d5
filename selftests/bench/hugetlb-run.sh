#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Run an upstream KVM selftest that needs reserved hugetlb pages, with the setup its own
# wrapper does on a normal host (nx_huge_pages_test.sh), and put everything back afterwards.
#   hugetlb-run.sh PAGES [--nx] TEST [ARGS...]
# PAGES 2 MiB pages are reserved on top of those reserved now. --nx also turns on KVM's NX
# huge page mitigation with a 100 ms recovery period, as nx_huge_pages_test.sh does.
pages=$1
shift
hp=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
kp=/sys/module/kvm/parameters
saved=$(cat $hp)
nx=
if [ "${1:-}" = --nx ]; then
	nx=$(cat $kp/nx_huge_pages) ratio=$(cat $kp/nx_huge_pages_recovery_ratio)
	period=$(cat $kp/nx_huge_pages_recovery_period_ms)
	shift
fi
restore() {
	echo "$saved" >$hp
	if [ -n "$nx" ]; then
		echo "$nx" >$kp/nx_huge_pages
		echo "$ratio" >$kp/nx_huge_pages_recovery_ratio
		echo "$period" >$kp/nx_huge_pages_recovery_period_ms
	fi
}
echo $((saved + pages)) >$hp
if [ "$(cat $hp)" -lt $((saved + pages)) ]; then
	echo "# hugetlb-run: could reserve only $(($(cat $hp) - saved)) of $pages huge pages"
	restore
	exit 1
fi
if [ -n "$nx" ]; then
	echo 1 >$kp/nx_huge_pages
	echo 1 >$kp/nx_huge_pages_recovery_ratio
	echo 100 >$kp/nx_huge_pages_recovery_period_ms
fi
echo "# hugetlb-run: $pages huge pages reserved${nx:+, NX huge pages on}"
"$@"
rc=$?
restore
exit $rc
