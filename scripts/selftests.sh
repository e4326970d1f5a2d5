#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Build, statically, the kernel tree's KVM selftests and HyperPS's own selftests.
# Output: build/selftests/kvm (upstream) and build/selftests/hyperps (ours).
source "$(dirname "$0")/lib.sh"

upstream_out=$HPS_BUILD/selftests/kvm
ours_out=$HPS_BUILD/selftests/hyperps
khdr=$HPS_KOBJ/usr/include
[ -d "$khdr/linux" ] || hps_die "no UAPI headers in $khdr; run scripts/kernel.sh build"
mkdir -p "$upstream_out" "$ours_out"

# -k: a test that does not build (for another architecture's needs) must not stop the rest;
# the tests we run are checked one by one below.
hps_step "building the upstream KVM selftests" "$HPS_LOGS/selftests-kvm.log" \
	make -C "$HPS_KSRC/tools/testing/selftests/kvm" -j"$(hps_jobs)" -k \
	OUTPUT="$upstream_out" KHDR_INCLUDES="-isystem $khdr" \
	LDFLAGS="-static -pthread -no-pie" || true

missing=()
while read -r test _; do
	[ -x "$upstream_out/$test" ] || missing+=("$test")
done < <(grep -v -e '^#' -e '^[[:space:]]*$' "${HPS_KVM_LIST:-$HPS_TOP/selftests/kvm-upstream.list}")
[ ${#missing[@]} -eq 0 ] ||
	hps_die "listed KVM selftests did not build: ${missing[*]}; see $HPS_LOGS/selftests-kvm.log"

hps_step "building the HyperPS selftests" "$HPS_LOGS/selftests-hyperps.log" \
	make -C "$HPS_TOP/selftests/kvm" KSRC="$HPS_KSRC" KVM_OUTPUT="$upstream_out" KHDR="$khdr" \
	OUTPUT="$ours_out" ||
	hps_die "HyperPS selftests failed to build; see $HPS_LOGS/selftests-hyperps.log"
