/* SPDX-License-Identifier: GPL-2.0 */
/*
 * HyperPS's debugfs counters, as the HyperPS selftests read them.  Without
 * hyperps.ko the file is absent and every field is 0, present false.
 */
#ifndef SELFTEST_HYPERPS_COUNTERS_H
#define SELFTEST_HYPERPS_COUNTERS_H

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define HPS_COUNTERS_FILE	"/sys/kernel/debug/hyperps/counters"

struct hps_counters {
	bool present;
	/* Refusals of every class, and internal inconsistencies. */
	unsigned long long refused, anomalies;
	unsigned long long ept_verified, ownership_verified;
	unsigned long long live_vms, live_vcpus;
	/* The frame census: frames of RAM by owner. */
	unsigned long long host, vm, shared, protected;
	/* EPT leaves let through since load, by size. */
	unsigned long long leaves_4k, leaves_2m;
};

static inline struct hps_counters hps_counters_read(void)
{
	struct hps_counters c = {};
	unsigned long long verified, refused;
	char line[512], name[32];
	FILE *f = fopen(HPS_COUNTERS_FILE, "r");
	const char *p;

	if (!f)
		return c;
	c.present = true;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%31s verified %llu refused %llu", name, &verified,
			   &refused) == 3) {
			c.refused += refused;
			if (!strcmp(name, "ept"))
				c.ept_verified = verified;
			else if (!strcmp(name, "ownership"))
				c.ownership_verified = verified;
			continue;
		}
		if (sscanf(line, "frames host %llu vm %llu shared %llu protected %llu",
			   &c.host, &c.vm, &c.shared, &c.protected) == 4)
			continue;
		if (sscanf(line, "ept_leaves_written 4k %llu 2m %llu", &c.leaves_4k,
			   &c.leaves_2m) == 2)
			continue;
		p = strstr(line, "anomalies ");
		if (p && sscanf(p, "anomalies %llu", &c.anomalies) != 1)
			c.anomalies = ~0ULL;
		p = strstr(line, "live_vms ");
		if (p && sscanf(p, "live_vms %llu live_vcpus %llu", &c.live_vms,
				&c.live_vcpus) != 2)
			c.live_vms = ~0ULL;
	}
	fclose(f);
	return c;
}

#endif /* SELFTEST_HYPERPS_COUNTERS_H */
