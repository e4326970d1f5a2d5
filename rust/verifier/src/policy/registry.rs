// SPDX-License-Identifier: GPL-2.0

//! Registration of VMs, vCPUs, EPT pages, VMCSs, VMXON regions, auxiliary pages and VPIDs.
//!
//! These are the records the rules are checked against. Each registration of a page is a
//! transition into HyperPS ownership and each unregistration a transition back to the pool:
//!
//! ```text
//! register_*:   Host or clean pool page  => Protected(role)
//! unregister_*: Protected(role)          => Protected(pool)   (EPT pages: INVEPT pending)
//! ```
//!
//! VM, vCPU and VMCS slots are found by a linear scan of their tables; that happens only when a
//! VM, vCPU or VMCS is created, never on a check path.

use super::denial::{CheckClass, Denial};
use super::records::{
    AuxKind, AuxOwner, EptPage, FrameState, Protected, VcpuRecord, VmRecord, VmcsKind, VmcsRecord,
    VpidRecord,
};
use super::types::{CpuId, EptLevel, Pfn, VcpuId, VmId, Vpid};
use super::Verifier;

impl<'a> Verifier<'a> {
    /// Creates a VM record and returns its identifier.
    pub fn create_vm(&mut self) -> Result<VmId, Denial> {
        let verdict = self
            .vms
            .iter()
            .position(|r| !r.live && !r.retired)
            .and_then(|i| u16::try_from(i).ok())
            .ok_or(Denial::TableFull);
        let slot = self.record(CheckClass::Registration, 0, 0, 0, verdict)?;
        let mut id = None;
        if let Some(r) = self.vms.get_mut(usize::from(slot)) {
            *r = VmRecord {
                gen: r.gen,
                live: true,
                ..VmRecord::FREE
            };
            id = Some(VmId::new(slot, r.gen));
        }
        self.bump_epoch();
        id.ok_or(Denial::TableFull)
    }

    /// Destroys a VM record.
    ///
    /// ```text
    /// VM X: LIVE => GONE; every frame still Vm(X) becomes orphaned (awaits reclaim + scrub)
    /// ```
    ///
    /// The VM must have no vCPU, EPT page, auxiliary page or MMIO range left: KVM frees them
    /// all before the VM itself. Frames are released lazily, without a walk of the frame table:
    /// the slot's generation changes, so `Vm(X)` no longer names a live VM. A slot whose
    /// generation would wrap is retired for good.
    pub fn destroy_vm(&mut self, vm: VmId) -> Result<(), Denial> {
        let verdict = self.vm_record(vm).and_then(|r| {
            if r.vcpus == 0 && r.ept_pages == 0 && r.aux_pages == 0 && r.mmio_ranges == 0 {
                Ok(())
            } else {
                Err(Denial::VmBusy)
            }
        });
        self.record(
            CheckClass::Registration,
            u64::from(vm.to_raw()),
            0,
            0,
            verdict,
        )?;
        if let Ok(r) = self.vm_record_mut(vm) {
            let (gen, retired) = match r.gen.checked_add(1) {
                Some(g) => (g, false),
                None => (r.gen, true),
            };
            *r = VmRecord {
                gen,
                retired,
                ..VmRecord::FREE
            };
        }
        self.bump_epoch();
        Ok(())
    }

    /// Creates a vCPU record of a live VM.
    pub fn create_vcpu(&mut self, vm: VmId) -> Result<VcpuId, Denial> {
        let verdict = self.vm_record(vm).and_then(|r| {
            r.vcpus.checked_add(1).ok_or(Denial::CounterOverflow)?;
            self.vcpus
                .iter()
                .position(|r| !r.live && !r.retired)
                .and_then(|i| u16::try_from(i).ok())
                .ok_or(Denial::TableFull)
        });
        let slot = self.record(
            CheckClass::Registration,
            u64::from(vm.to_raw()),
            0,
            0,
            verdict,
        )?;
        let mut id = None;
        if let Some(r) = self.vcpus.get_mut(usize::from(slot)) {
            *r = VcpuRecord {
                gen: r.gen,
                live: true,
                vm,
                ..VcpuRecord::FREE
            };
            id = Some(VcpuId::new(slot, r.gen));
        }
        if let Ok(r) = self.vm_record_mut(vm) {
            r.vcpus = r.vcpus.saturating_add(1);
        }
        self.bump_epoch();
        id.ok_or(Denial::TableFull)
    }

    /// Destroys a vCPU record. Its VMCSs, auxiliary pages and VPIDs must be gone.
    pub fn destroy_vcpu(&mut self, vcpu: VcpuId) -> Result<(), Denial> {
        let verdict = self.vcpu_record(vcpu).and_then(|r| {
            if r.vmcs == 0 && r.aux_pages == 0 && r.vpids == 0 {
                Ok(r.vm)
            } else {
                Err(Denial::VcpuBusy)
            }
        });
        let vm = self.record(
            CheckClass::Registration,
            u64::from(vcpu.to_raw()),
            0,
            0,
            verdict,
        )?;
        if let Ok(r) = self.vcpu_record_mut(vcpu) {
            let (gen, retired) = match r.gen.checked_add(1) {
                Some(g) => (g, false),
                None => (r.gen, true),
            };
            *r = VcpuRecord {
                gen,
                retired,
                ..VcpuRecord::FREE
            };
        }
        if let Ok(r) = self.vm_record_mut(vm) {
            r.vcpus = r.vcpus.saturating_sub(1);
        }
        self.bump_epoch();
        Ok(())
    }

    /// Records that `pfn` is an EPT paging-structure page of `vm` at `level`.
    ///
    /// ```text
    /// Initiator: Host or HyperPS pool  OWNED  => NOPAGE
    /// Completer: HyperPS               NOPAGE => EPT page (VM X, level L)
    /// ```
    ///
    /// The page must already hold only non-present entries (HyperPS initialises pool pages with
    /// `SHADOW_NONPRESENT_VALUE`, or zero): the verifier counts entries from here on.
    pub fn register_ept_page(&mut self, vm: VmId, pfn: Pfn, level: EptLevel) -> Result<(), Denial> {
        let verdict = self.vm_record(vm).and_then(|r| {
            r.ept_pages.checked_add(1).ok_or(Denial::CounterOverflow)?;
            if level > self.config.ept_max_level {
                return Err(Denial::BadRange);
            }
            self.take_for_protection(pfn)
        });
        self.record(
            CheckClass::Registration,
            pfn.0,
            0,
            u64::from(level.get()),
            verdict,
        )?;
        let page = EptPage {
            vm,
            level,
            entries: 0,
            refs: 0,
        };
        self.set_state(pfn, FrameState::Protected(Protected::Ept(page)));
        if let Ok(r) = self.vm_record_mut(vm) {
            r.ept_pages = r.ept_pages.saturating_add(1);
        }
        self.bump_epoch();
        Ok(())
    }

    /// Withdraws an EPT page (KVM freed it, after its RCU grace period).
    ///
    /// ```text
    /// HyperPS: EPT page (no entries, no references) => pool, INVEPT pending
    /// ```
    ///
    /// Refused while any entry of the page still references something or while any non-leaf
    /// entry or VMCS EPT pointer still names it: the glue must defer such a free (KVM can free a
    /// root before the vCPU has loaded its replacement) and retry once the reference is gone.
    pub fn unregister_ept_page(&mut self, pfn: Pfn) -> Result<(), Denial> {
        let verdict = match self.frame(pfn).map(|f| f.state) {
            Ok(FrameState::Protected(Protected::Ept(p))) => {
                if p.entries == 0 && p.refs == 0 {
                    Ok(p.vm)
                } else {
                    Err(Denial::EptPageInUse)
                }
            }
            Ok(_) => Err(Denial::NotEptPage),
            Err(e) => Err(e),
        };
        let vm = self.record(CheckClass::Registration, pfn.0, 0, 0, verdict)?;
        let pending = Some(self.invept_gen);
        self.set_state(
            pfn,
            FrameState::Protected(Protected::Pool {
                invept_pending: pending,
            }),
        );
        if let Ok(r) = self.vm_record_mut(vm) {
            r.ept_pages = r.ept_pages.saturating_sub(1);
        }
        self.bump_epoch();
        Ok(())
    }

    /// Takes back a registration that the backend made earlier in the same call, because a
    /// later step of the call was refused: the page, still without entries or references,
    /// becomes the clean pool page it was. Anything else is an anomaly and changes nothing.
    pub(super) fn undo_ept_registration(&mut self, pfn: Pfn) {
        let vm = match self.ept_page(pfn) {
            Some(p) if p.entries == 0 && p.refs == 0 => p.vm,
            _ => {
                self.audit.anomaly();
                return;
            }
        };
        self.set_state(
            pfn,
            FrameState::Protected(Protected::Pool {
                invept_pending: None,
            }),
        );
        if let Ok(r) = self.vm_record_mut(vm) {
            r.ept_pages = r.ept_pages.saturating_sub(1);
        }
        self.bump_epoch();
    }

    /// Reports that a global INVEPT (all contexts) has completed on every CPU.
    pub fn note_invept_global(&mut self) {
        self.invept_gen = self.invept_gen.wrapping_add(1);
        self.bump_epoch();
    }

    /// Reports that a global INVVPID (all contexts) has completed on every CPU.
    pub fn note_invvpid_global(&mut self) {
        self.invvpid_gen = self.invvpid_gen.wrapping_add(1);
        self.bump_epoch();
    }

    /// Assigns a VPID to a vCPU (`allocate_vpid()`). The VPID must be nonzero and free, and if
    /// it was used before, a global INVVPID must have been reported since.
    pub fn assign_vpid(&mut self, vcpu: VcpuId, vpid: Vpid) -> Result<(), Denial> {
        let verdict = self.vcpu_record(vcpu).and_then(|_| {
            if vpid.0 == 0 {
                return Err(Denial::BadVpid);
            }
            let rec = self.vpids.get(usize::from(vpid.0)).ok_or(Denial::BadVpid)?;
            if rec.owner.is_some() {
                return Err(Denial::BadVpid);
            }
            match rec.invvpid_pending {
                Some(gen) if gen == self.invvpid_gen => Err(Denial::NeedsInvvpid),
                _ => Ok(()),
            }
        });
        self.record(
            CheckClass::Registration,
            u64::from(vpid.0),
            0,
            u64::from(vcpu.to_raw()),
            verdict,
        )?;
        if let Some(rec) = self.vpids.get_mut(usize::from(vpid.0)) {
            *rec = VpidRecord {
                owner: Some(vcpu),
                invvpid_pending: None,
            };
        }
        if let Ok(r) = self.vcpu_record_mut(vcpu) {
            r.vpids = r.vpids.saturating_add(1);
        }
        self.bump_epoch();
        Ok(())
    }

    /// Releases a VPID of a vCPU (`free_vpid()`). The VPID may be reassigned only after a
    /// global INVVPID. A VMCS that still names it keeps failing its next VPID write.
    pub fn release_vpid(&mut self, vcpu: VcpuId, vpid: Vpid) -> Result<(), Denial> {
        let verdict = match self.vpids.get(usize::from(vpid.0)) {
            Some(rec) if rec.owner == Some(vcpu) => Ok(()),
            _ => Err(Denial::BadVpid),
        };
        self.record(
            CheckClass::Registration,
            u64::from(vpid.0),
            0,
            u64::from(vcpu.to_raw()),
            verdict,
        )?;
        let gen = self.invvpid_gen;
        if let Some(rec) = self.vpids.get_mut(usize::from(vpid.0)) {
            *rec = VpidRecord {
                owner: None,
                invvpid_pending: Some(gen),
            };
        }
        if let Ok(r) = self.vcpu_record_mut(vcpu) {
            r.vpids = r.vpids.saturating_sub(1);
        }
        self.bump_epoch();
        Ok(())
    }

    /// The vCPU a VPID is assigned to.
    pub fn vpid_owner(&self, vpid: Vpid) -> Option<VcpuId> {
        self.vpids.get(usize::from(vpid.0)).and_then(|r| r.owner)
    }

    /// Records a VMCS region of a vCPU.
    ///
    /// ```text
    /// Initiator: Host or HyperPS pool  OWNED  => NOPAGE
    /// Completer: HyperPS               NOPAGE => VMCS (vCPU, kind)
    /// ```
    pub fn register_vmcs(&mut self, vcpu: VcpuId, pfn: Pfn, kind: VmcsKind) -> Result<(), Denial> {
        let verdict = self.register_vmcs_verdict(vcpu, pfn);
        let (slot, vm) = self.record(CheckClass::Registration, pfn.0, 0, kind as u64, verdict)?;
        if let Some(r) = self.vmcs.get_mut(usize::from(slot)) {
            *r = VmcsRecord {
                live: true,
                pfn,
                vcpu,
                vm,
                kind,
                ..VmcsRecord::FREE
            };
        }
        self.set_state(pfn, FrameState::Protected(Protected::Vmcs { slot }));
        if let Ok(r) = self.vcpu_record_mut(vcpu) {
            r.vmcs = r.vmcs.saturating_add(1);
            if kind == VmcsKind::Shadow {
                r.shadows = r.shadows.saturating_add(1);
            }
        }
        self.bump_epoch();
        Ok(())
    }

    fn register_vmcs_verdict(&self, vcpu: VcpuId, pfn: Pfn) -> Result<(u16, VmId), Denial> {
        let r = self.vcpu_record(vcpu)?;
        r.vmcs.checked_add(1).ok_or(Denial::CounterOverflow)?;
        let vm = r.vm;
        self.vm_record(vm)?;
        self.take_for_protection(pfn)?;
        let slot = self
            .vmcs
            .iter()
            .position(|r| !r.live)
            .and_then(|i| u16::try_from(i).ok())
            .ok_or(Denial::TableFull)?;
        Ok((slot, vm))
    }

    /// Withdraws a VMCS region (`free_vmcs()`). It must not be active on any CPU, and no other
    /// VMCS may name it as its link pointer.
    ///
    /// ```text
    /// HyperPS: VMCS => pool
    /// ```
    pub fn unregister_vmcs(&mut self, pfn: Pfn) -> Result<(), Denial> {
        let verdict = self.vmcs_slot_of(pfn).and_then(|slot| {
            let r = self
                .vmcs
                .get(usize::from(slot))
                .ok_or(Denial::UnknownVmcs)?;
            if r.active_cpu.is_some() || r.link_refs != 0 {
                Err(Denial::VmcsInUse)
            } else {
                Ok((slot, *r))
            }
        });
        let (slot, rec) = self.record(CheckClass::Registration, pfn.0, 0, 0, verdict)?;
        // Drop the references this VMCS held.
        if let Some(root) = rec.ept_root {
            self.drop_ept_ref(root);
        }
        if let Some(link) = rec.link {
            if let Some(l) = self.vmcs.get_mut(usize::from(link)) {
                l.link_refs = l.link_refs.saturating_sub(1);
            }
        }
        for r in rec.addr_refs.iter().flatten() {
            self.adjust_addr_ref(*r, false);
        }
        if let Some(r) = self.vmcs.get_mut(usize::from(slot)) {
            *r = VmcsRecord::FREE;
        }
        self.set_state(
            pfn,
            FrameState::Protected(Protected::Pool {
                invept_pending: None,
            }),
        );
        if let Ok(r) = self.vcpu_record_mut(rec.vcpu) {
            r.vmcs = r.vmcs.saturating_sub(1);
            if rec.kind == VmcsKind::Shadow {
                r.shadows = r.shadows.saturating_sub(1);
            }
        }
        self.bump_epoch();
        Ok(())
    }

    /// Records an auxiliary page (MSR bitmap, MSR list, PML buffer, #VE page, PI descriptor,
    /// virtual-APIC page, PID table, VMREAD/VMWRITE bitmap). A PID-pointer table of several
    /// pages is registered page by page; its pages must be physically contiguous.
    ///
    /// ```text
    /// Initiator: Host or HyperPS pool  OWNED  => NOPAGE
    /// Completer: HyperPS               NOPAGE => AUX (owner, kind)
    /// ```
    pub fn register_aux_page(
        &mut self,
        owner: AuxOwner,
        pfn: Pfn,
        kind: AuxKind,
    ) -> Result<(), Denial> {
        let verdict = self
            .owner_counter_ok(owner)
            .and_then(|()| self.take_for_protection(pfn));
        self.record(CheckClass::Registration, pfn.0, 0, kind as u64, verdict)?;
        self.set_state(
            pfn,
            FrameState::Protected(Protected::Aux {
                owner,
                kind,
                refs: 0,
            }),
        );
        self.adjust_owner_aux(owner, true);
        self.bump_epoch();
        Ok(())
    }

    /// Withdraws an auxiliary page.
    ///
    /// ```text
    /// HyperPS: AUX => pool
    /// ```
    ///
    /// Refused while an address field of a registered VMCS still names the page: the glue
    /// frees the VMCS first (as KVM does) or defers the free.
    pub fn unregister_aux_page(&mut self, pfn: Pfn) -> Result<(), Denial> {
        let verdict = match self.frame(pfn).map(|f| f.state) {
            Ok(FrameState::Protected(Protected::Aux {
                owner,
                kind,
                refs: 0,
            })) => Ok((owner, kind)),
            Ok(FrameState::Protected(Protected::Aux { .. })) => Err(Denial::PageInUse),
            Ok(_) => Err(Denial::WrongState),
            Err(e) => Err(e),
        };
        let (owner, _kind) = self.record(CheckClass::Registration, pfn.0, 0, 0, verdict)?;
        self.set_state(
            pfn,
            FrameState::Protected(Protected::Pool {
                invept_pending: None,
            }),
        );
        self.adjust_owner_aux(owner, false);
        self.bump_epoch();
        Ok(())
    }

    fn owner_counter_ok(&self, owner: AuxOwner) -> Result<(), Denial> {
        match owner {
            AuxOwner::Vcpu(v) => self.vcpu_record(v).and_then(|r| {
                r.aux_pages
                    .checked_add(1)
                    .map(|_| ())
                    .ok_or(Denial::CounterOverflow)
            }),
            AuxOwner::Vm(vm) => self.vm_record(vm).and_then(|r| {
                r.aux_pages
                    .checked_add(1)
                    .map(|_| ())
                    .ok_or(Denial::CounterOverflow)
            }),
            AuxOwner::Global => Ok(()),
        }
    }

    fn adjust_owner_aux(&mut self, owner: AuxOwner, add: bool) {
        let counter = match owner {
            AuxOwner::Vcpu(v) => self.vcpu_record_mut(v).ok().map(|r| &mut r.aux_pages),
            AuxOwner::Vm(vm) => self.vm_record_mut(vm).ok().map(|r| &mut r.aux_pages),
            AuxOwner::Global => None,
        };
        if let Some(c) = counter {
            *c = if add {
                c.saturating_add(1)
            } else {
                c.saturating_sub(1)
            };
        }
    }

    /// Records the VMXON region of a CPU (`alloc_kvm_area()`).
    ///
    /// ```text
    /// Initiator: Host or HyperPS pool  OWNED  => NOPAGE
    /// Completer: HyperPS               NOPAGE => VMXON (cpu)
    /// ```
    pub fn register_vmxon(&mut self, cpu: CpuId, pfn: Pfn) -> Result<(), Denial> {
        let verdict = self.cpu_record(cpu).and_then(|c| {
            if c.vmxon_region.is_some() {
                Err(Denial::BadVmxon)
            } else {
                self.take_for_protection(pfn)
            }
        });
        self.record(
            CheckClass::Registration,
            pfn.0,
            0,
            u64::from(cpu.0),
            verdict,
        )?;
        self.set_state(pfn, FrameState::Protected(Protected::Vmxon { cpu }));
        if let Ok(c) = self.cpu_record_mut(cpu) {
            c.vmxon_region = Some(pfn);
        }
        self.bump_epoch();
        Ok(())
    }

    /// Withdraws the VMXON region of a CPU that is not in VMX operation.
    ///
    /// ```text
    /// HyperPS: VMXON => pool
    /// ```
    pub fn unregister_vmxon(&mut self, cpu: CpuId) -> Result<(), Denial> {
        let verdict = self
            .cpu_record(cpu)
            .and_then(|c| match (c.vmx_on, c.vmxon_region) {
                (false, Some(pfn)) => Ok(pfn),
                _ => Err(Denial::BadVmxon),
            });
        let pfn = self.record(CheckClass::Registration, u64::from(cpu.0), 0, 0, verdict)?;
        self.set_state(
            pfn,
            FrameState::Protected(Protected::Pool {
                invept_pending: None,
            }),
        );
        if let Ok(c) = self.cpu_record_mut(cpu) {
            c.vmxon_region = None;
        }
        self.bump_epoch();
        Ok(())
    }

    // --- Helpers used by the EPT and VMCS rules --------------------------------------------

    /// The VMCS table slot of a registered VMCS page.
    pub(crate) fn vmcs_slot_of(&self, pfn: Pfn) -> Result<u16, Denial> {
        match self.frame(pfn).map(|f| f.state) {
            Ok(FrameState::Protected(Protected::Vmcs { slot })) => Ok(slot),
            _ => Err(Denial::UnknownVmcs),
        }
    }

    /// The EPT page record of `pfn`, if it is one.
    pub(crate) fn ept_page(&self, pfn: Pfn) -> Option<EptPage> {
        match self.frame(pfn).map(|f| f.state) {
            Ok(FrameState::Protected(Protected::Ept(p))) => Some(p),
            _ => None,
        }
    }

    pub(crate) fn ept_page_mut(&mut self, pfn: Pfn) -> Option<&mut EptPage> {
        match self.frame_mut(pfn) {
            Ok(f) => match &mut f.state {
                FrameState::Protected(Protected::Ept(p)) => Some(p),
                _ => None,
            },
            Err(_) => None,
        }
    }

    pub(crate) fn drop_ept_ref(&mut self, pfn: Pfn) {
        match self.ept_page_mut(pfn) {
            Some(p) if p.refs > 0 => p.refs = p.refs.saturating_sub(1),
            _ => self.audit.anomaly(),
        }
    }

    /// True if [`Verifier::create_vm`] would find a free slot.
    pub fn vm_slot_free(&self) -> bool {
        self.vms.iter().any(|r| !r.live && !r.retired)
    }

    /// True if [`Verifier::create_vcpu`] would find a free slot.
    pub fn vcpu_slot_free(&self) -> bool {
        self.vcpus.iter().any(|r| !r.live && !r.retired)
    }

    /// True if `n` more VMCSs could be registered.
    pub fn vmcs_slots_free(&self, n: usize) -> bool {
        self.vmcs.iter().filter(|r| !r.live).count() >= n
    }

    /// True if [`Verifier::assign_vpid`] would accept `vpid` for a live vCPU.
    pub fn vpid_assignable(&self, vpid: Vpid) -> bool {
        vpid.0 != 0
            && self.vpids.get(usize::from(vpid.0)).is_some_and(|rec| {
                rec.owner.is_none()
                    && !matches!(rec.invvpid_pending, Some(gen) if gen == self.invvpid_gen)
            })
    }

    /// True if `pfn` may become a HyperPS page (it is `Host`, or a clean pool page).
    pub fn can_protect(&self, pfn: Pfn) -> bool {
        self.take_for_protection(pfn).is_ok()
    }

    /// The vCPU, VM and kind of a registered VMCS.
    pub fn vmcs_owner(&self, pfn: Pfn) -> Option<(VcpuId, VmId, VmcsKind)> {
        let slot = self.vmcs_slot_of(pfn).ok()?;
        self.vmcs
            .get(usize::from(slot))
            .filter(|r| r.live)
            .map(|r| (r.vcpu, r.vm, r.kind))
    }

    /// The vCPU a registered vCPU id belongs to: its VM, if the vCPU is live.
    pub fn vcpu_vm(&self, vcpu: VcpuId) -> Option<VmId> {
        self.vcpu_record(vcpu).ok().map(|r| r.vm)
    }

    /// Kind of a registered VMCS.
    pub fn vmcs_kind(&self, pfn: Pfn) -> Option<VmcsKind> {
        let slot = self.vmcs_slot_of(pfn).ok()?;
        self.vmcs.get(usize::from(slot)).map(|r| r.kind)
    }

    /// EPT root named by a registered VMCS's last verified `EPT_POINTER`.
    pub fn vmcs_ept_root(&self, pfn: Pfn) -> Option<Pfn> {
        let slot = self.vmcs_slot_of(pfn).ok()?;
        self.vmcs.get(usize::from(slot)).and_then(|r| r.ept_root)
    }

    /// The CPU on which a registered VMCS is active (loaded by VMPTRLD and not yet cleared).
    pub fn vmcs_active_cpu(&self, pfn: Pfn) -> Option<CpuId> {
        let slot = self.vmcs_slot_of(pfn).ok()?;
        self.vmcs.get(usize::from(slot)).and_then(|r| r.active_cpu)
    }

    /// The VMCS current on a CPU, as tracked from VMPTRLD and VMCLEAR.
    pub fn current_vmcs(&self, cpu: CpuId) -> Option<Pfn> {
        let slot = self.cpu_record(cpu).ok()?.current?;
        self.vmcs.get(usize::from(slot)).map(|r| r.pfn)
    }
}
