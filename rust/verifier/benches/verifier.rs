// SPDX-License-Identifier: GPL-2.0

//! Cost of the verifier's own checks, in ns per call (the gate crossing is not included).
//!
//! Run with `cargo bench --bench verifier`. The frame table covers 4 GiB (1 Mi frames) so that
//! lookups are not all cache hits.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use hyperps_verifier::*;

const FRAMES: usize = 1 << 20;
const CPU: CpuId = CpuId(0);

struct Storage {
    frames: Vec<FrameRecord>,
    regions: Vec<RegionRecord>,
    vms: Vec<VmRecord>,
    vcpus: Vec<VcpuRecord>,
    vmcs: Vec<VmcsRecord>,
    shares: Vec<ShareRecord>,
    vpids: Vec<VpidRecord>,
    cpus: Vec<CpuRecord>,
    audit: Vec<AuditRecord>,
}

impl Storage {
    fn new() -> Storage {
        Storage {
            frames: vec![FrameRecord::default(); FRAMES],
            regions: vec![RegionRecord::default(); Tables::regions_needed(FRAMES)],
            vms: vec![VmRecord::default(); 64],
            vcpus: vec![VcpuRecord::default(); 256],
            vmcs: vec![VmcsRecord::default(); 512],
            shares: vec![ShareRecord::default(); 4096],
            vpids: vec![VpidRecord::default(); 65536],
            cpus: vec![CpuRecord::default(); 8],
            audit: vec![AuditRecord::default(); 256],
        }
    }

    fn verifier(&mut self) -> Verifier<'_> {
        let config = Config::kvm_6_12(46, (1 << 20) | (1 << 21) | (1 << 11) | (1 << 16));
        let tables = Tables {
            frames: &mut self.frames,
            regions: &mut self.regions,
            vms: &mut self.vms,
            vcpus: &mut self.vcpus,
            vmcs: &mut self.vmcs,
            shares: &mut self.shares,
            vpids: &mut self.vpids,
            cpus: &mut self.cpus,
            audit: &mut self.audit,
        };
        match Verifier::new(config, tables) {
            Ok(v) => v,
            Err(e) => panic!("bench configuration refused: {e:?}"),
        }
    }
}

fn leaf(pfn: u64, level: u8, writable: bool) -> EptEntry {
    let mut v = (1u64 << 11) | (1 << 63) | 0x5 | (1 << 8) | (6 << 3) | (1 << 6) | (1 << 57);
    if level > 1 {
        v |= 1 << 7;
    }
    if writable {
        v |= 0x2 | (1 << 58) | (1 << 9);
    }
    EptEntry(v | (pfn << 12))
}

fn nonleaf(child: u64) -> EptEntry {
    EptEntry((1u64 << 11) | (1 << 63) | 0x7 | (1 << 8) | (child << 12))
}

const NONPRESENT: EptEntry = EptEntry(1 << 63);

fn bench(c: &mut Criterion) {
    let mut st = Storage::new();
    let mut v = st.verifier();
    let vm = v.create_vm().unwrap();
    for (i, level) in [EptLevel::L4, EptLevel::L3, EptLevel::L2, EptLevel::L1]
        .into_iter()
        .enumerate()
    {
        v.register_ept_page(vm, Pfn(10 + i as u64), level).unwrap();
    }
    v.write_spte(Pfn(10), 0, NONPRESENT, nonleaf(11)).unwrap();
    v.write_spte(Pfn(11), 0, NONPRESENT, nonleaf(12)).unwrap();
    v.write_spte(Pfn(12), 0, NONPRESENT, nonleaf(13)).unwrap();
    // 64 MiB of guest memory, spread over the table.
    let guest = 1 << 19;
    v.donate_to_vm(vm, Pfn(guest), 16384).unwrap();
    let vcpu = v.create_vcpu(vm).unwrap();
    v.register_vmcs(vcpu, Pfn(100), VmcsKind::Vmcs01).unwrap();
    v.register_host_pgd(Pfn(200), 2).unwrap();
    v.register_vmxon(CPU, Pfn(101)).unwrap();
    v.vmxon(CPU, Hpa(101 << 12)).unwrap();
    v.vmptrld(CPU, Hpa(100 << 12)).unwrap();
    v.assign_vpid(vcpu, Vpid(1)).unwrap();
    let host = HostState {
        cr0: 0x8005_0033,
        cr3: (200 << 12) | 1,
        cr4: (1 << 20) | (1 << 21) | (1 << 11) | (1 << 16) | (1 << 13) | (1 << 17),
        ..HostState::default()
    };

    let mut g = c.benchmark_group("ept");
    let mut i = 0u64;
    g.bench_function("check+commit 4K map+unmap (2 checks)", |b| {
        b.iter(|| {
            i = (i + 1) % 16384;
            let e = leaf(guest + i, 1, true);
            let plan = v
                .check_spte(Pfn(13), (i % 512) as u16, black_box(e))
                .unwrap();
            v.commit_spte(plan, NONPRESENT);
            let plan = v.check_spte(Pfn(13), (i % 512) as u16, NONPRESENT).unwrap();
            v.commit_spte(plan, e);
        })
    });
    g.bench_function("check 4K leaf", |b| {
        b.iter(|| {
            i = (i + 1) % 16384;
            black_box(
                v.check_spte(Pfn(13), 1, black_box(leaf(guest + i, 1, true)))
                    .is_ok(),
            )
        })
    });
    g.bench_function("check 2M leaf", |b| {
        b.iter(|| {
            i = (i + 1) % 32;
            black_box(
                v.check_spte(Pfn(12), 1, black_box(leaf(guest + i * 512, 2, true)))
                    .is_ok(),
            )
        })
    });
    g.bench_function("check refused (foreign frame)", |b| {
        b.iter(|| {
            black_box(
                v.check_spte(Pfn(13), 1, black_box(leaf(300_000, 1, true)))
                    .is_err(),
            )
        })
    });
    g.finish();

    let mut g = c.benchmark_group("vmcs");
    g.bench_function("GUEST_RIP (free)", |b| {
        b.iter(|| {
            black_box(
                v.check_vmcs_write(CPU, VmcsField::GUEST_RIP, black_box(0x1000), &host)
                    .is_ok(),
            )
        })
    });
    g.bench_function("HOST_CR3 (host state + root)", |b| {
        b.iter(|| {
            black_box(
                v.check_vmcs_write(CPU, VmcsField::HOST_CR3, black_box(host.cr3), &host)
                    .is_ok(),
            )
        })
    });
    let eptp = 6 | (3 << 3) | (1 << 6) | (10 << 12);
    g.bench_function("EPT_POINTER", |b| {
        b.iter(|| {
            black_box(
                v.check_vmcs_write(CPU, VmcsField::EPT_POINTER, black_box(eptp), &host)
                    .is_ok(),
            )
        })
    });
    g.bench_function("SECONDARY_VM_EXEC_CONTROL", |b| {
        b.iter(|| {
            black_box(
                v.check_vmcs_write(
                    CPU,
                    VmcsField::SECONDARY_VM_EXEC_CONTROL,
                    black_box(0xa2),
                    &host,
                )
                .is_ok(),
            )
        })
    });
    g.bench_function("vmptrld", |b| {
        b.iter(|| black_box(v.vmptrld(CPU, Hpa(100 << 12)).is_ok()))
    });
    g.finish();

    let mut g = c.benchmark_group("ownership");
    let mut p = 0u64;
    g.bench_function("donate+reclaim 4K (2 transitions)", |b| {
        b.iter(|| {
            p = (p + 1) % 100_000;
            let pfn = Pfn(600_000 + p);
            v.donate_to_vm(vm, pfn, 1).unwrap();
            let plan = v.check_reclaim(pfn).unwrap();
            v.commit_reclaim(plan.scrub(&mut NoScrub));
        })
    });
    g.bench_function("ksm merge+reclaim+donate (3 transitions)", |b| {
        b.iter(|| {
            p = (p + 1) % 8192;
            let k = Pfn(guest + p);
            let old = Pfn(guest + 8192 + p);
            v.ksm_merge(k, old).unwrap();
            let plan = v.check_reclaim(k).unwrap();
            v.commit_reclaim(plan.scrub(&mut NoScrub));
            v.donate_to_vm(vm, k, 1).unwrap();
        })
    });
    g.bench_function("donate 2M block", |b| {
        b.iter(|| {
            let first = Pfn(800_000 & !511);
            v.donate_to_vm(vm, first, 512).unwrap();
            for f in 0..512 {
                let plan = v.check_reclaim(Pfn(first.0 + f)).unwrap();
                v.commit_reclaim(plan.scrub(&mut NoScrub));
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("cr");
    g.bench_function("cr4", |b| {
        b.iter(|| {
            black_box(
                v.check_cr4(CPU, Cr4(host.cr4), black_box(Cr4(host.cr4)))
                    .is_ok(),
            )
        })
    });
    g.bench_function("cr3", |b| {
        b.iter(|| {
            black_box(
                v.check_cr3(CPU, Cr4(host.cr4), black_box(Cr3(host.cr3)))
                    .is_ok(),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

/// The benchmarks measure the verifier, not the kernel's page zeroing.
struct NoScrub;

impl Scrubber for NoScrub {
    fn scrub(&mut self, _pfn: Pfn) {}
}
