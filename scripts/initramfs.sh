#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Build a bench initramfs: busybox, the /init that runs a plan, the kernel modules, hyperps.ko
# and the programs the plan needs.
#
#   scripts/initramfs.sh test OUT.cpio.gz   KVM smoke and upstream KVM selftests, without and
#                                           with hyperps.ko; hyperps load, mode and counter checks
#   scripts/initramfs.sh test-without OUT   the first half of test: the selftests without HyperPS
#                                           (no hyperps.ko in it, so its results can be cached)
#   scripts/initramfs.sh test-with OUT      the second half: everything with hyperps.ko
#   scripts/initramfs.sh test-with1 OUT     test-with split in two parts that boot side by side:
#   scripts/initramfs.sh test-with2 OUT     the same checks, each upstream test in one part
#   scripts/initramfs.sh run  OUT.cpio.gz   hyperps loaded, then a real Linux guest under QEMU/KVM,
#                                           then what hyperps verified and refused
#   scripts/initramfs.sh bench OUT.cpio.gz  the guest benchmarks without, then with hyperps.ko
source "$(dirname "$0")/lib.sh"

mode=$1 out=$2
root=$HPS_BUILD/initramfs/$mode
rm -rf "$root"
mkdir -p "$root"/{bin,sbin,proc,sys,dev,tmp,hps/modules,hps/tests,hps/kvm,etc}

release=$(cat "$HPS_KOBJ/include/config/kernel.release")
moddir=$HPS_BUILD/modroot/lib/modules/$release
for m in virt/lib/irqbypass.ko arch/x86/kvm/kvm.ko arch/x86/kvm/kvm-intel.ko; do
	[ -f "$moddir/kernel/$m" ] || hps_die "module $m missing from $moddir; run scripts/kernel.sh build"
	cp "$moddir/kernel/$m" "$root/hps/modules/"
done
if [ "$mode" != test-without ]; then
	[ -f "$HPS_TOP/hyperps/hyperps.ko" ] || hps_die "hyperps.ko is not built; run make module"
	cp "$HPS_TOP/hyperps/hyperps.ko" "$root/hps/modules/"
fi
if [[ $mode == test || $mode == test-with* ]]; then
	attack=$HPS_TOP/selftests/hyperps-attack/hyperps_attack.ko
	[ -f "$attack" ] || hps_die "hyperps_attack.ko is not built; run make module"
	cp "$attack" "$root/hps/modules/"
fi

cp /bin/busybox "$root/bin/busybox"
cp "$HPS_TOP/selftests/bench/init" "$root/init"
cp "$HPS_TOP"/selftests/bench/*.sh "$root/hps/"
chmod +x "$root/init" "$root"/hps/*.sh

# install_program SRC DEST: stripped, and without the build-ID note, which hashes the debug
# information and with it the clone's path: the same sources give the same bytes in any clone.
install_program() {
	install -D "$1" "$2"
	strip --strip-all --remove-section=.note.gnu.build-id "$2"
}

plan=$root/hps/plan
# add NAME TIMEOUT COMMAND [GUEST_SECONDS]: a plan entry. The guest seconds it is expected to
# take (hps/plan.secs, read by scripts/bench.sh) let the progress lines estimate what is left.
add() {
	printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$plan"
	printf '%s\n' "${4:-1}" >>"$plan.secs"
}
: >"$plan"
: >"$plan.secs"

finish_initramfs() {
	# HPS_TEST_FILTER (make test T=RE): only the entries whose names match RE, and every setup.
	if [ -n "${HPS_TEST_FILTER:-}" ]; then
		paste "$plan" "$plan.secs" |
			awk -F'\t' -v re="$HPS_TEST_FILTER" '$1 ~ /^setup:/ || $1 ~ re' >"$plan.new"
		grep -qv '^setup:' "$plan.new" || hps_die "no bench test matches '$HPS_TEST_FILTER'"
		cut -f1-3 "$plan.new" >"$plan"
		cut -f4 "$plan.new" >"$plan.secs"
		rm "$plan.new"
	fi
	(cd "$root" && find . -print0 | sort -z | cpio --null -o -H newc --quiet) | gzip -6 >"$out"
	# What the bench will run, byte for byte and independent of timestamps: make test keys
	# its cached without-HyperPS results on it.
	(cd "$root" && find . -print0 | sort -z | xargs -0 stat -c '%A %N' &&
		find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$out.manifest"
	hps_say "initramfs '$mode': $(grep -c . "$plan") plan entries, $(du -h "$out" | cut -f1) -> $out"
}

case "$mode" in
test | test-without | test-with | test-with1 | test-with2)
	# The same tests twice: without HyperPS, then with hyperps.ko registered (it must be loaded
	# before kvm_intel, so kvm_intel is reloaded in between). "test" runs both in one boot;
	# make test boots test-without, test-with1 and test-with2 side by side.
	part=${mode#test}
	part=${part#-}
	for t in "$HPS_BUILD"/selftests/hyperps/x86_64/*; do
		install_program "$t" "$root/hps/tests/$(basename "$t")"
	done
	[ "$part" = without ] || for t in "$HPS_BUILD"/selftests/hyperps/attack/*; do
		install_program "$t" "$root/hps/attack/$(basename "$t")"
	done
	mapfile -t upstream < <(grep -v -e '^#' -e '^[[:space:]]*$' \
		"${HPS_KVM_LIST:-$HPS_TOP/selftests/kvm-upstream.list}")
	for line in "${upstream[@]}"; do
		read -r test secs with_secs _ <<<"$line"
		# An entry missing a seconds column would hand its first argument to the split.
		[[ $secs =~ ^[0-9.]+$ && $with_secs =~ ^[0-9.]+$ ]] ||
			hps_die "$test: the upstream test list needs two guest-seconds columns before the arguments"
		install_program "$HPS_BUILD/selftests/kvm/$test" "$root/hps/kvm/$test"
	done
	# A test's arguments may start with @hugepages=N (N 2 MiB pages reserved while it runs)
	# and @nx (KVM's NX huge pages on), the setup its upstream wrapper script does.
	upstream_command() {	# upstream_command TEST ARGS
		local pages="" nx="" args=$2 tok
		while [[ $args == @* ]]; do
			tok=${args%% *}
			case $tok in
			@hugepages=*) pages=${tok#@hugepages=} ;;
			@nx) nx="--nx " ;;
			*) hps_die "unknown option $tok of $1 in the upstream test list" ;;
			esac
			[[ $args == *" "* ]] && args=${args#* } || args=""
		done
		[ -z "$nx" ] || [ -n "$pages" ] || hps_die "$1: @nx needs @hugepages=N"
		echo "${pages:+/hps/hugetlb-run.sh $pages $nx}/hps/kvm/$1 ${args//\"/}"
	}
	# Which part of the with-HyperPS pass runs each upstream test: the longest first (by its
	# guest seconds with HyperPS, the list's third column) onto the part with less guest time
	# so far. Part 1 starts with the audit attacks and the HyperPS selftests (about 36 guest s),
	# part 2 ends with the enforce-mode attacks (about 21). Tests that reserve hugetlb pages go
	# to part 2, so that both parts make 2 MiB EPT leaves for hyperps_counters to count (part 1
	# has hyperps_mm_flows_test).
	declare -A part_of
	while read -r test p; do
		part_of[$test]=$p
	done < <(printf '%s\n' "${upstream[@]}" | sort -k3,3gr | awk '
		BEGIN { load[1] = 36; load[2] = 21 }
		{ p = ($4 ~ /^@hugepages/) ? 2 : (load[1] <= load[2] ? 1 : 2); load[p] += $3; print $1, p }')
	add_tests() {	# add_tests PREFIX [PART]: the HyperPS selftests (part 1) and upstream tests
		local t line test secs args cmd limit
		if [ "${2:-1}" = 1 ]; then
			for t in "$root"/hps/tests/*; do
				# The memory flows run 100 VMs and wait for ksmd: give them more time.
				case $(basename "$t") in
				hyperps_mm_flows_test) limit=600 secs=15 ;;
				*) limit=120 secs=1 ;;
				esac
				add "$1hyperps/$(basename "$t")" $limit "/hps/tests/$(basename "$t")" $secs
			done
		fi
		for line in "${upstream[@]}"; do
			read -r test secs with_secs args <<<"$line"
			[ -z "$1" ] || secs=$with_secs
			[ -z "${2:-}" ] || [ "${part_of[$test]}" = "$2" ] || continue
			# The bench runs 2-3x slower than the guest clock suggests; 120 s is kselftest's
			# limit. The verifier adds guest time (it runs on the same emulated CPU).
			cmd=$(upstream_command "$test" "$args") || exit 1
			add "$1kvm/$test" 240 "$cmd" "$secs"
		done
	}
	if [ "$part" = "" ] || [ "$part" = without ]; then
		add setup:kvm_modules_load 60 "/hps/load-kvm.sh"
		add_tests ""
	fi
	[ "$part" != without ] || {
		finish_initramfs
		exit 0
	}
	[ "$part" = "" ] || add setup:kvm_modules_load 60 "/hps/load-kvm.sh"
	with_part=${part#with}
	if [ "$with_part" != 2 ]; then
		add hyperps_load_refused 60 "/hps/hyperps-load-refused.sh"
		# hyperps.ko is loaded in audit mode for the audit half of the attacks; the mode can
		# only move to enforce afterwards, never back, so that half comes first.
		add setup:hyperps_on 60 "HPS_HYPERPS_ARGS=mode=audit /hps/load-kvm.sh --hyperps"
		add hyperps_registered 60 "/hps/hyperps-registered.sh"
		add setup:attack_module 60 "grep -q '^hyperps_attack ' /proc/modules || insmod /hps/modules/hyperps_attack.ko"
		add hyperps_attack_cr_audit 60 "/hps/hyperps-attack-cr.sh"
		add hyperps_attack_vm_audit 900 "/hps/attack/hyperps_vm_attack_test" 17
		add setup:hyperps_enforce 60 "/hps/hyperps-enforce.sh"
		add hyperps_mode_one_way 60 "/hps/hyperps-mode-one-way.sh"
	else
		# Part 2 loads hyperps.ko the same way, then moves it to enforce mode as part 1 does.
		add setup:hyperps_on 60 "HPS_HYPERPS_ARGS=mode=audit /hps/load-kvm.sh --hyperps"
		add setup:hyperps_enforce 60 "/hps/hyperps-enforce.sh"
	fi
	add_tests "with-hyperps/" "$with_part"
	add hyperps_counters 60 "/hps/hyperps-counters.sh" 2
	if [ "$with_part" != 1 ]; then
		[ "$with_part" != 2 ] ||
			add setup:attack_module 60 "grep -q '^hyperps_attack ' /proc/modules || insmod /hps/modules/hyperps_attack.ko"
		add hyperps_attack_cr 60 "/hps/hyperps-attack-cr.sh"
		add hyperps_attack_vm 900 "/hps/attack/hyperps_vm_attack_test" 17
	fi
	;;
run)
	# What a user does: hyperps.ko first, then kvm_intel, then a real guest.
	add setup:hyperps_kvm_load 60 "/hps/load-kvm.sh --hyperps"
	"$HPS_TOP/scripts/qemu-payload.sh" "$root"
	add qemu_linux_guest 300 "/hps/run-guest.sh"
	add hyperps_report 60 "/hps/hyperps-report.sh"
	;;
bench)
	# make bench: the same guest benchmarks without, then with hyperps.ko, in one boot.
	install_program "$HPS_BUILD/selftests/hyperps/bench/hyperps_bench" "$root/hps/bench/hyperps_bench"
	add setup:kvm_modules_load 60 "/hps/load-kvm.sh"
	add bench_without_hyperps 900 "/hps/bench/hyperps_bench without"
	add setup:hyperps_on 60 "/hps/load-kvm.sh --hyperps"
	add bench_with_hyperps 900 "/hps/bench/hyperps_bench with"
	;;
*) hps_die "usage: $0 test|test-without|test-with|test-with1|test-with2|run|bench OUT" ;;
esac
finish_initramfs
