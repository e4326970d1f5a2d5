#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Build, statically, the kernel tree's KVM selftests and HyperPS's own selftests.
# Output: build/selftests/kvm (upstream) and build/selftests/hyperps (ours).
source "$(dirname "$0")/lib.sh"

upstream_out=$HPS_BUILD/selftests/kvm
ours_out=$HPS_BUILD/selftests/hyperps
khdr=$HPS_KOBJ/usr/include
list=${HPS_KVM_LIST:-$HPS_TOP/selftests/kvm-upstream.list}
skip=$HPS_TOP/selftests/kvm-upstream.skip
[ -d "$khdr/linux" ] || hps_die "no UAPI headers in $khdr; run scripts/kernel.sh build"
mkdir -p "$upstream_out" "$ours_out"

# -k: a test that does not build (for another architecture's needs) must not stop the rest;
# the tests we run are checked one by one below.
hps_step "building the upstream KVM selftests" "$HPS_LOGS/selftests-kvm.log" \
	make -C "$HPS_KSRC/tools/testing/selftests/kvm" -j"$(hps_jobs)" -k \
	OUTPUT="$upstream_out" KHDR_INCLUDES="-isystem $khdr" \
	LDFLAGS="-static -pthread -no-pie" || true

# Every x86_64 test of this tree must be either run (the list) or skipped with a reason.
tree_tests=$(make -s -p -C "$HPS_KSRC/tools/testing/selftests/kvm" ARCH=x86 -n 2>/dev/null |
	sed -n -e 's/^TEST_GEN_PROGS_x86_64 :\?= //p' -e 's/^TEST_GEN_PROGS_EXTENDED_x86_64 :\?= //p' |
	tr ' ' '\n' | grep . | sort -u)
[ -n "$tree_tests" ] || hps_die "could not read the KVM selftest list from the kernel tree"
accounted=$( (grep -v -e '^#' -e '^[[:space:]]*$' "$HPS_TOP/selftests/kvm-upstream.list" | awk '{print $1}'
	grep -v -e '^#' -e '^[[:space:]]*$' "$skip" | cut -f1) | sort)
dups=$(echo "$accounted" | uniq -d)
[ -z "$dups" ] || hps_die "in both or twice in kvm-upstream.list/.skip: $dups"
unaccounted=$(comm -23 <(echo "$tree_tests") <(echo "$accounted"))
[ -z "$unaccounted" ] ||
	hps_die "KVM selftests neither run nor skipped with a reason: $(echo $unaccounted)"
unknown=$(comm -13 <(echo "$tree_tests") <(echo "$accounted"))
[ -z "$unknown" ] || hps_die "listed KVM selftests that this tree does not have: $(echo $unknown)"

missing=()
while read -r test _; do
	[ -x "$upstream_out/$test" ] || missing+=("$test")
done < <(grep -v -e '^#' -e '^[[:space:]]*$' "$list")
[ ${#missing[@]} -eq 0 ] ||
	hps_die "listed KVM selftests did not build: ${missing[*]}; see $HPS_LOGS/selftests-kvm.log"

hps_step "building the HyperPS selftests" "$HPS_LOGS/selftests-hyperps.log" \
	make -C "$HPS_TOP/selftests/kvm" KSRC="$HPS_KSRC" KVM_OUTPUT="$upstream_out" KHDR="$khdr" \
	OUTPUT="$ours_out" ||
	hps_die "HyperPS selftests failed to build; see $HPS_LOGS/selftests-hyperps.log"
