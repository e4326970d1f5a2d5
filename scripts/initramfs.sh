#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Build a bench initramfs: busybox, the /init that runs a plan, the kernel modules, hyperps.ko
# and the programs the plan needs.
#
#   scripts/initramfs.sh test OUT.cpio.gz   KVM smoke, hyperps load/unload, upstream KVM selftests
#   scripts/initramfs.sh run  OUT.cpio.gz   hyperps loaded, then a real Linux guest under QEMU/KVM
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
[ -f "$HPS_TOP/hyperps/hyperps.ko" ] || hps_die "hyperps.ko is not built; run make module"
cp "$HPS_TOP/hyperps/hyperps.ko" "$root/hps/modules/"

cp /bin/busybox "$root/bin/busybox"
cp "$HPS_TOP/selftests/bench/init" "$root/init"
cp "$HPS_TOP"/selftests/bench/*.sh "$root/hps/"
chmod +x "$root/init" "$root"/hps/*.sh

plan=$root/hps/plan
add() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$plan"; }
: >"$plan"
add setup:kvm_modules_load 60 "/hps/load-kvm.sh"

case "$mode" in
test)
	add hyperps_load_unload 60 "/hps/hyperps-load-unload.sh"
	for t in "$HPS_BUILD"/selftests/hyperps/x86_64/*; do
		install -D -s "$t" "$root/hps/tests/$(basename "$t")"
		add "hyperps/$(basename "$t")" 120 "/hps/tests/$(basename "$t")"
	done
	while read -r test secs args; do
		install -D -s "$HPS_BUILD/selftests/kvm/$test" "$root/hps/kvm/$test"
		# The bench runs 2-3x slower than the guest clock suggests; 120 s is kselftest's limit.
		add "kvm/$test" 120 "/hps/kvm/$test ${args//\"/}"
	done < <(grep -v -e '^#' -e '^[[:space:]]*$' "${HPS_KVM_LIST:-$HPS_TOP/selftests/kvm-upstream.list}")
	;;
run)
	add hyperps_load 60 "insmod /hps/modules/hyperps.ko && grep -q '^hyperps ' /proc/modules"
	"$HPS_TOP/scripts/qemu-payload.sh" "$root"
	add qemu_linux_guest 300 "/hps/run-guest.sh"
	;;
*) hps_die "usage: $0 test|run OUT" ;;
esac

(cd "$root" && find . -print0 | sort -z | cpio --null -o -H newc --quiet) | gzip -6 >"$out"
hps_say "initramfs '$mode': $(grep -c . "$plan") plan entries, $(du -h "$out" | cut -f1) -> $out"
