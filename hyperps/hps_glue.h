/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Interface between the Rust part of hyperps.ko (glue.rs) and its C part
 * (hps_glue.c).
 */
#ifndef _HPS_GLUE_H
#define _HPS_GLUE_H

#include <linux/hyperps.h>
#include <linux/types.h>

/* Shared with Rust (glue.rs); keep the values in sync. */
enum hps_frame_kind {
	HPS_FRAME_UNUSABLE = 0,
	HPS_FRAME_USER = 1,
	HPS_FRAME_KERNEL = 2,
	HPS_FRAME_HUGE_ZERO = 3,
};

enum hps_host_value {
	HPS_HOST_CR0, HPS_HOST_CR3, HPS_HOST_CR4,
	HPS_HOST_FS_SEL, HPS_HOST_GS_SEL, HPS_HOST_FS_BASE, HPS_HOST_GS_BASE,
	HPS_HOST_TR_BASE, HPS_HOST_GDTR_BASE, HPS_HOST_IDTR_BASE,
	HPS_HOST_SYSENTER_CS, HPS_HOST_SYSENTER_ESP, HPS_HOST_SYSENTER_EIP,
	HPS_HOST_PAT, HPS_HOST_EFER, HPS_HOST_PERF_GLOBAL_CTRL, HPS_HOST_PI_DEST,
	HPS_HOST_RIP,
};

#define HPS_CLASSES	9
#define HPS_RING	256
#define HPS_REASON_LEN	40

struct hps_stats {
	u64 verified[HPS_CLASSES];
	u64 refused[HPS_CLASSES];
	u64 anomalies, lost, deferred, leaked, vms, vcpus;
	/* Frames of RAM by owner: host (incl. page-table roots), VMs, KSM shares, HyperPS. */
	u64 frames_host, frames_vm, frames_shared, frames_protected;
	/* EPT leaves written since load: 4 KiB, 2 MiB, 1 GiB. */
	u64 leaf_writes[3];
};

/* A frame a VM owns (debugfs vm_frames). */
struct hps_vm_frame {
	u64 pfn, maps;
	u32 owner, live;
};

struct hps_refusal {
	u64 seq, subject, old, new;
	u32 class;
	bool enforced;
	char reason[HPS_REASON_LEN];
};

/*
 * Implemented in Rust.  The ops table is built in glue.rs with bindgen's struct
 * hyperps_ops, so rustc checks each entry point against <linux/hyperps.h>.
 */
extern const struct hyperps_ops hps_rs_ops;
void hps_rs_stats(struct hps_stats *out);
u32 hps_rs_vm_frames(struct hps_vm_frame *out, u32 max);
void hps_rs_deferred_work(void);

/* Called from Rust. */
unsigned long hps_c_lock(void);
void hps_c_unlock(unsigned long flags);
bool hps_c_in_nmi(void);
bool hps_c_enforce(void);
void *hps_c_vzalloc(size_t size);
void hps_c_free_tables(void);
unsigned int hps_c_table_count(void);
size_t hps_c_table_size(unsigned int i);
u64 hps_c_table_pfn(unsigned int i, size_t offset);
u64 hps_c_pa(const void *p);
void *hps_c_va(u64 pa);
void *hps_c_pt_page(gfp_t gfp, u64 init_value);
void hps_c_free_page(void *p);
unsigned int hps_c_cpu(void);
unsigned int hps_c_nr_cpus(void);
u64 hps_c_max_pfn(void);
u8 hps_c_phys_bits(void);
u64 hps_c_cr4(void);
u64 hps_c_zero_pfn(void);
u64 hps_c_host_value(u32 which);
bool hps_c_rdmsr(u32 msr, u64 *val);
bool hps_c_vmread(u32 field, u64 *val);
unsigned long hps_c_current_mm(void);
void hps_c_mm_grab(unsigned long mm);
void hps_c_mm_drop(unsigned long mm);
bool hps_c_user_mapping(u64 hva, u64 *pfn, bool *writable, u32 *level);
u32 hps_c_frame_kind(u64 pfn);
bool hps_c_frames_equal(u64 a, u64 b);
void hps_c_scrub(u64 pfn);
bool hps_c_pgd_is_new(u64 pa, unsigned int nr_pages);
bool hps_c_read_phys(u64 pa, u64 *val);
void *hps_c_frame_va(u64 pfn);
bool hps_c_frame_unreferenced(u64 pfn);
void hps_c_report(u32 class, const char *reason, size_t len, u64 subject,
		  u64 old, u64 new, bool enforced);
void hps_c_kill_vm(struct kvm *kvm);
void hps_c_invvpid_all(void);
void hps_c_invept_all(void);
void hps_c_kick_work(void);
void hps_c_root_set(u64 pfn, unsigned int nr_pages, bool known);
bool hps_c_cr3_root_known(u64 pfn);
int hps_c_register(void);
int hps_c_init(void);
void hps_c_exit(void);

#endif /* _HPS_GLUE_H */
