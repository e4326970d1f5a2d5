#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Build hyperps.ko against the bench kernel, or lint it.
#   scripts/module.sh build    hyperps/hyperps.ko and the test-only selftests/hyperps-attack
#   scripts/module.sh clippy   the kernel's clippy lints, warnings are errors (nothing shipped)
#   scripts/module.sh fmt      rustfmt --check with the kernel's rustfmt configuration
source "$(dirname "$0")/lib.sh"

kmake=(make -C "$HPS_KOBJ" M="$HPS_TOP/hyperps" -j"$(hps_jobs)")
need_kernel() {
	[ -f "$HPS_KOBJ/vmlinux" ] || hps_die "the kernel is not built; run scripts/kernel.sh"
}

case "${1:-build}" in
build)
	need_kernel
	"${kmake[@]}" modules
	hps_say "built $HPS_TOP/hyperps/hyperps.ko"
	# The test-only module of the refusal tests (never shipped).
	make -C "$HPS_KOBJ" M="$HPS_TOP/selftests/hyperps-attack" -j"$(hps_jobs)" modules
	hps_say "built $HPS_TOP/selftests/hyperps-attack/hyperps_attack.ko (tests only)"
	;;
clippy)
	need_kernel
	# A clippy build replaces the objects; the next `build` compiles them again.
	"${kmake[@]}" CLIPPY=1 KRUSTFLAGS="-Dwarnings" modules
	;;
fmt)
	[ -f "$HPS_KSRC/.rustfmt.toml" ] || hps_die "no kernel source; run scripts/kernel.sh prepare"
	rustfmt --check --edition 2021 --config-path "$HPS_KSRC/.rustfmt.toml" \
		"$HPS_TOP"/hyperps/*.rs
	;;
*) hps_die "usage: $0 build|clippy|fmt" ;;
esac
