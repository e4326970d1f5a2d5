#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Boot a real Linux guest with Debian's QEMU on /dev/kvm (kvm_intel on the bench's VT-x).
# The guest prints HPS-GUEST lines and powers off; QEMU then exits 0.
out=/tmp/guest.log
echo "HPS-GUEST-START $(cut -d' ' -f1 /proc/uptime)"
qemu-system-x86_64 -enable-kvm -M pc -m 128 -nodefaults -nographic -serial stdio -no-reboot \
	-kernel /hps/guest/bzImage -initrd /hps/guest/initrd.gz \
	-append "console=ttyS0 panic=-1 tsc_early_khz=200000" 2>&1 | tee $out
rc=$?
echo "HPS-GUEST-EXIT qemu_status=$rc uptime=$(cut -d' ' -f1 /proc/uptime)"
grep -q 'HPS-GUEST: done' $out || { echo "the guest did not finish"; exit 1; }
exit $rc
