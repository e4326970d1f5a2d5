// SPDX-License-Identifier: GPL-2.0
/*
 * /init of the guest that `make run` boots under QEMU/KVM on the bench. It proves the guest
 * runs real Linux userspace, touches fresh memory (one EPT violation per page on the host),
 * checks what it wrote, and powers off.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/reboot.h>
#include <sys/utsname.h>
#include <unistd.h>

#define TOUCH_BYTES	(32UL << 20)
#define PAGE		4096UL

int main(void)
{
	struct utsname u;
	unsigned long i, bad = 0;
	unsigned char *mem;

	uname(&u);
	printf("HPS-GUEST: hello from a KVM guest: %s %s %s\n", u.sysname, u.release, u.machine);
	mem = mmap(NULL, TOUCH_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		perror("HPS-GUEST: mmap");
	} else {
		for (i = 0; i < TOUCH_BYTES; i += PAGE)
			mem[i] = (unsigned char)(i / PAGE);
		for (i = 0; i < TOUCH_BYTES; i += PAGE)
			bad += mem[i] != (unsigned char)(i / PAGE);
		printf("HPS-GUEST: touched %lu fresh pages, %lu read back wrong\n",
		       TOUCH_BYTES / PAGE, bad);
	}
	printf("HPS-GUEST: done\n");
	fflush(stdout);
	sync();
	reboot(RB_POWER_OFF);
	return 0;
}
