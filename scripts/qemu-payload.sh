#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Add Debian's QEMU, its libraries and firmware, and a guest (the bench kernel plus a one-binary
# initramfs) to an initramfs tree, so the bench can run a real VMM on /dev/kvm.
#   scripts/qemu-payload.sh ROOT
source "$(dirname "$0")/lib.sh"

root=$1
qemu=$(command -v qemu-system-x86_64) || hps_die "qemu-system-x86_64 not found; run scripts/deps.sh"
mkdir -p "$root/usr/bin" "$root/lib/x86_64-linux-gnu" "$root/lib64" "$root/usr/share/qemu" \
	"$root/usr/share/seabios" "$root/hps/guest"
cp -L "$qemu" "$root/usr/bin/"
ldd "$qemu" | awk '/=> \//{print $3}' | while read -r lib; do
	cp -L "$lib" "$root/lib/x86_64-linux-gnu/"
done
cp -L /lib64/ld-linux-x86-64.so.2 "$root/lib64/"
ln -sfn ../lib "$root/usr/lib"
cp -L /usr/share/seabios/bios-256k.bin "$root/usr/share/seabios/"
for f in bios-256k.bin kvmvapic.bin linuxboot_dma.bin; do
	cp -L "/usr/share/qemu/$f" "$root/usr/share/qemu/" 2>/dev/null ||
		cp -L "/usr/share/seabios/$f" "$root/usr/share/qemu/"
done

guest=$HPS_BUILD/guest
mkdir -p "$guest/root"
gcc -static -O2 -Wall -o "$guest/root/init" "$HPS_TOP/selftests/bench/guest-init.c" ||
	hps_die "cannot build the guest's /init"
(cd "$guest/root" && echo init | cpio -o -H newc --quiet) | gzip -6 >"$root/hps/guest/initrd.gz"
cp "$HPS_KOBJ/arch/x86/boot/bzImage" "$root/hps/guest/bzImage"
