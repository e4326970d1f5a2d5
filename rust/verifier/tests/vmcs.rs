// SPDX-License-Identifier: GPL-2.0

//! VMCS field policy, current-VMCS tracking, shadow VMCS and vmcs02 rules, EPT pointer.

mod common;

use common::*;
use hyperps_verifier::policy::vmcs::*;
use hyperps_verifier::*;

const CPU: CpuId = CpuId(0);
const ROOT: u64 = 10;
const VMCS01: u64 = 40;
const VMCS02: u64 = 41;
const SHADOW: u64 = 42;
const MSR_BITMAP: u64 = 43;
const MSR_LIST: u64 = 44;
const PML: u64 = 45;
const VE: u64 = 46;
const PI: u64 = 47;
const VAPIC: u64 = 48;
const PID: u64 = 49;
const VMREAD: u64 = 50;
const VMWRITE: u64 = 51;
const VMXON: u64 = 52;
const PGD: u64 = 60;
const GUEST_PAGE: u64 = 70;

struct Vmx {
    vm: VmId,
    host: HostState,
}

fn host() -> HostState {
    HostState {
        cr0: 0x8005_0033,
        cr3: (PGD << 12) | 1,
        cr4: PINNED | (1 << 13) | (1 << 17) | (1 << 5) | (1 << 7),
        rip: 0xffff_ffff_c0de_0000,
        stack_low: 0xffff_c900_0000_0000,
        stack_high: 0xffff_c900_0000_4000,
        fs_selector: 0,
        gs_selector: 0,
        fs_base: 0x7f00_0000_1000,
        gs_base: 0xffff_8880_7fc0_0000,
        tr_base: 0xffff_fe00_0000_3000,
        gdtr_base: 0xffff_fe00_0000_1000,
        idtr_base: 0xffff_fe00_0000_0000,
        sysenter_cs: 0x10,
        sysenter_esp: 0xffff_fe00_0000_6000,
        sysenter_eip: 0xffff_ffff_8100_0000,
        pat: 0x0407_0504_0007_0106,
        efer: 0xd01,
        perf_global_ctrl: 0xf,
    }
}

fn setup(v: &mut Verifier<'_>) -> Vmx {
    let vm = vm_with_ept(v, ROOT);
    let vcpu = v.create_vcpu(vm).unwrap();
    v.register_vmcs(vcpu, Pfn(VMCS01), VmcsKind::Vmcs01)
        .unwrap();
    v.register_vmcs(vcpu, Pfn(VMCS02), VmcsKind::Vmcs02)
        .unwrap();
    v.register_vmcs(vcpu, Pfn(SHADOW), VmcsKind::Shadow)
        .unwrap();
    let me = AuxOwner::Vcpu(vcpu);
    v.register_aux_page(me, Pfn(MSR_BITMAP), AuxKind::MsrBitmap)
        .unwrap();
    v.register_aux_page(me, Pfn(MSR_LIST), AuxKind::MsrList)
        .unwrap();
    v.register_aux_page(me, Pfn(PML), AuxKind::Pml).unwrap();
    v.register_aux_page(me, Pfn(VE), AuxKind::VeInfo).unwrap();
    v.register_aux_page(me, Pfn(PI), AuxKind::PiDesc).unwrap();
    v.register_aux_page(me, Pfn(VAPIC), AuxKind::VirtualApic)
        .unwrap();
    v.register_aux_page(AuxOwner::Vm(vm), Pfn(PID), AuxKind::PidTable)
        .unwrap();
    v.register_aux_page(AuxOwner::Global, Pfn(VMREAD), AuxKind::VmreadBitmap)
        .unwrap();
    v.register_aux_page(AuxOwner::Global, Pfn(VMWRITE), AuxKind::VmwriteBitmap)
        .unwrap();
    v.register_host_pgd(Pfn(PGD), 2).unwrap();
    v.donate_to_vm(vm, Pfn(GUEST_PAGE), 1).unwrap();
    v.assign_vpid(vcpu, Vpid(1)).unwrap();
    v.assign_vpid(vcpu, Vpid(2)).unwrap();
    v.register_vmxon(CPU, Pfn(VMXON)).unwrap();
    v.vmxon(CPU, Hpa(VMXON << 12)).unwrap();
    v.vmptrld(CPU, Hpa(VMCS01 << 12)).unwrap();
    Vmx { vm, host: host() }
}

fn w(v: &mut Verifier<'_>, x: &Vmx, field: VmcsField, value: u64) -> Result<(), Denial> {
    v.check_vmcs_write(CPU, field, value, &x.host)
}

fn eptp(root: u64, walk4: bool, ad: bool) -> u64 {
    6 | if walk4 { 3 << 3 } else { 4 << 3 } | if ad { 1 << 6 } else { 0 } | (root << 12)
}

#[test]
fn free_pinned_unknown_and_width() {
    let mut st = Storage::new(FRAMES);
    let mut v = st.verifier();
    let x = setup(&mut v);
    assert_eq!(w(&mut v, &x, VmcsField::GUEST_RIP, 0xdead_beef), Ok(()));
    assert_eq!(w(&mut v, &x, VmcsField::GUEST_CR3, u64::MAX), Ok(()));
    assert_eq!(
        w(&mut v, &x, VmcsField::GUEST_CS_SELECTOR, 0x1_0000),
        Err(Denial::ValueTooWide)
    );
    assert_eq!(
        w(&mut v, &x, VmcsField::EXCEPTION_BITMAP, 1 << 32),
        Err(Denial::ValueTooWide)
    );
    assert_eq!(
        w(&mut v, &x, VmcsField(0x6c18), 0),
        Err(Denial::UnknownField)
    );
    assert_eq!(
        w(&mut v, &x, VmcsField(0x201b), 0),
        Err(Denial::UnknownField)
    ); // EPT_POINTER_HIGH
    assert_eq!(w(&mut v, &x, VmcsField::HOST_CS_SELECTOR, 0x10), Ok(()));
    assert_eq!(
        w(&mut v, &x, VmcsField::HOST_CS_SELECTOR, 0x33),
        Err(Denial::PinnedMismatch)
    );
    assert_eq!(w(&mut v, &x, VmcsField::HOST_TR_SELECTOR, 0x40), Ok(()));
    assert_eq!(w(&mut v, &x, VmcsField::VM_FUNCTION_CONTROL, 0), Ok(()));
    assert_eq!(
        w(&mut v, &x, VmcsField::VM_FUNCTION_CONTROL, 1),
        Err(Denial::PinnedMismatch)
    );
    assert_eq!(
        w(&mut v, &x, VmcsField::IO_BITMAP_A, 0x1000),
        Err(Denial::FieldNotWritable)
    );
    assert_eq!(
        w(&mut v, &x, VmcsField::EPTP_LIST_ADDRESS, 0x1000),
        Err(Denial::FieldNotWritable)
    );
    assert_eq!(
        w(&mut v, &x, VmcsField::VM_EXIT_REASON, 1),
        Err(Denial::FieldNotWritable)
    );
    assert_eq!(w(&mut v, &x, VmcsField::VM_EXIT_MSR_LOAD_COUNT, 8), Ok(()));
    assert_eq!(
        w(&mut v, &x, VmcsField::VM_EXIT_MSR_LOAD_COUNT, 9),
        Err(Denial::MsrCountTooLarge)
    );
    // The PID-pointer index must stay inside contiguous PID-table pages of this VM, starting
    // at the page PID_POINTER_TABLE names (written first).
    assert_eq!(
        w(&mut v, &x, VmcsField::LAST_PID_POINTER_INDEX, 0),
        Err(Denial::BadAddress)
    );
    assert_eq!(
        w(&mut v, &x, VmcsField::PID_POINTER_TABLE, PID << 12),
        Ok(())
    );
    assert_eq!(
        w(&mut v, &x, VmcsField::LAST_PID_POINTER_INDEX, 511),
        Ok(())
    );
    assert_eq!(
        w(&mut v, &x, VmcsField::LAST_PID_POINTER_INDEX, 512),
        Err(Denial::BadAddress)
    );
    v.register_aux_page(AuxOwner::Vm(x.vm), Pfn(90), AuxKind::PidTable)
        .unwrap();
    v.register_aux_page(AuxOwner::Vm(x.vm), Pfn(91), AuxKind::PidTable)
        .unwrap();
    assert_eq!(
        w(&mut v, &x, VmcsField::PID_POINTER_TABLE, 90 << 12),
        Ok(())
    );
    assert_eq!(
        w(&mut v, &x, VmcsField::LAST_PID_POINTER_INDEX, 1023),
        Ok(())
    );
    assert_eq!(
        w(&mut v, &x, VmcsField::LAST_PID_POINTER_INDEX, 1024),
        Err(Denial::BadAddress)
    );
    assert_eq!(v.unregister_aux_page(Pfn(90)), Err(Denial::PageInUse));
    assert_eq!(v.counters(CheckClass::Vmcs).verified, 10);
    assert_eq!(v.counters(CheckClass::Vmcs).refused, 13);
}

#[test]
fn host_state_must_match() {
    let mut st = Storage::new(FRAMES);
    let mut v = st.verifier();
    let x = setup(&mut v);
    let h = x.host;
    let ok: &[(VmcsField, u64)] = &[
        (VmcsField::HOST_CR0, h.cr0),
        (VmcsField::HOST_CR3, h.cr3),
        (VmcsField::HOST_CR4, h.cr4),
        (VmcsField::HOST_RIP, h.rip),
        (VmcsField::HOST_FS_SELECTOR, 0),
        (VmcsField::HOST_FS_BASE, h.fs_base),
        (VmcsField::HOST_GS_BASE, h.gs_base),
        (VmcsField::HOST_TR_BASE, h.tr_base),
        (VmcsField::HOST_GDTR_BASE, h.gdtr_base),
        (VmcsField::HOST_IDTR_BASE, h.idtr_base),
        (VmcsField::HOST_IA32_SYSENTER_CS, 0x10),
        (VmcsField::HOST_IA32_SYSENTER_ESP, h.sysenter_esp),
        (VmcsField::HOST_IA32_SYSENTER_EIP, h.sysenter_eip),
        (VmcsField::HOST_IA32_PAT, h.pat),
        (VmcsField::HOST_IA32_EFER, h.efer),
        (VmcsField::HOST_IA32_PERF_GLOBAL_CTRL, h.perf_global_ctrl),
    ];
    for (field, value) in ok {
        assert_eq!(w(&mut v, &x, *field, *value), Ok(()), "{field:?}");
        assert_eq!(
            w(&mut v, &x, *field, value ^ 0x8),
            Err(Denial::HostStateMismatch),
            "{field:?}"
        );
    }
    assert_eq!(w(&mut v, &x, VmcsField::HOST_RSP, h.stack_high - 8), Ok(()));
    assert_eq!(w(&mut v, &x, VmcsField::HOST_RSP, h.stack_low), Ok(()));
    assert_eq!(
        w(&mut v, &x, VmcsField::HOST_RSP, h.stack_high),
        Err(Denial::HostStateMismatch)
    );
    assert_eq!(
        w(&mut v, &x, VmcsField::HOST_RSP, h.stack_low - 8),
        Err(Denial::HostStateMismatch)
    );
    // Even a host state claiming otherwise cannot get WP, a pinned bit or VMXE cleared, or an
    // unregistered root into the host-state area.
    let mut bad = x.host;
    bad.cr0 &= !(1 << 16);
    bad.cr4 &= !(1 << 20);
    bad.cr3 = 99 << 12 | 1;
    assert_eq!(
        v.check_vmcs_write(CPU, VmcsField::HOST_CR0, bad.cr0, &bad),
        Err(Denial::Cr0Pinned)
    );
    assert_eq!(
        v.check_vmcs_write(CPU, VmcsField::HOST_CR4, bad.cr4, &bad),
        Err(Denial::Cr4Pinned)
    );
    assert_eq!(
        v.check_vmcs_write(CPU, VmcsField::HOST_CR3, bad.cr3, &bad),
        Err(Denial::Cr3UnknownRoot)
    );
    bad.cr4 = x.host.cr4 & !(1 << 13);
    assert_eq!(
        v.check_vmcs_write(CPU, VmcsField::HOST_CR4, bad.cr4, &bad),
        Err(Denial::Cr4Vmxe)
    );
}

#[test]
fn control_required_bits() {
    let mut st = Storage::new(FRAMES);
    let mut v = st.verifier();
    let x = setup(&mut v);
    let pin = 0x16 | u64::from(PIN_EXT_INTR | PIN_NMI_EXITING);
    assert_eq!(
        w(&mut v, &x, VmcsField::PIN_BASED_VM_EXEC_CONTROL, pin),
        Ok(())
    );
    assert_eq!(
        w(&mut v, &x, VmcsField::PIN_BASED_VM_EXEC_CONTROL, pin & !1),
        Err(Denial::ControlViolation)
    );
    assert_eq!(
        w(&mut v, &x, VmcsField::PIN_BASED_VM_EXEC_CONTROL, pin & !8),
        Err(Denial::ControlViolation)
    );
    // KVM's init_vmcs() primary controls on a typical host.
    let primary =
        0xb5a0_6dfa_u64 | u64::from(PRIMARY_UNCOND_IO_EXITING | PRIMARY_ACTIVATE_SECONDARY);
    let primary = primary & !u64::from(PRIMARY_USE_IO_BITMAPS);
    assert_eq!(
        w(&mut v, &x, VmcsField::CPU_BASED_VM_EXEC_CONTROL, primary),
        Ok(())
    );
    assert_eq!(
        w(
            &mut v,
            &x,
            VmcsField::CPU_BASED_VM_EXEC_CONTROL,
            primary | (1 << 25)
        ),
        Err(Denial::ControlViolation)
    );
    assert_eq!(
        w(
            &mut v,
            &x,
            VmcsField::CPU_BASED_VM_EXEC_CONTROL,
            primary & !(1 << 24)
        ),
        Err(Denial::ControlViolation)
    );
    assert_eq!(
        w(
            &mut v,
            &x,
            VmcsField::CPU_BASED_VM_EXEC_CONTROL,
            primary & !(1 << 31)
        ),
        Err(Denial::ControlViolation)
    );
    let secondary = 0x0010_34ae_u64 & !u64::from(SECONDARY_SHADOW_VMCS | SECONDARY_ENABLE_VMFUNC);
    assert_eq!(
        w(&mut v, &x, VmcsField::SECONDARY_VM_EXEC_CONTROL, secondary),
        Ok(())
    );
    assert_eq!(
        w(
            &mut v,
            &x,
            VmcsField::SECONDARY_VM_EXEC_CONTROL,
            secondary & !2
        ),
        Err(Denial::ControlViolation)
    );
    assert_eq!(
        w(
            &mut v,
            &x,
            VmcsField::SECONDARY_VM_EXEC_CONTROL,
            secondary | (1 << 13)
        ),
        Err(Denial::ControlViolation)
    );
    assert_eq!(
        w(
            &mut v,
            &x,
            VmcsField::SECONDARY_VM_EXEC_CONTROL,
            secondary | (1 << 22)
        ),
        Err(Denial::ControlViolation)
    );
    assert_eq!(
        w(
            &mut v,
            &x,
            VmcsField::SECONDARY_VM_EXEC_CONTROL,
            secondary | (1 << 14)
        ),
        // The vCPU has a registered shadow VMCS (see shadowing_needs_a_shadow_vmcs_of_the_vcpu).
        Ok(())
    );
    assert_eq!(
        w(&mut v, &x, VmcsField::TERTIARY_VM_EXEC_CONTROL, 1 << 4),
        Ok(())
    );
    assert_eq!(
        w(&mut v, &x, VmcsField::TERTIARY_VM_EXEC_CONTROL, 1 << 5),
        Err(Denial::ControlViolation)
    );
    assert_eq!(
        w(&mut v, &x, VmcsField::VM_EXIT_CONTROLS, 0x003f_ffff),
        Ok(())
    );
    assert_eq!(
        w(&mut v, &x, VmcsField::VM_EXIT_CONTROLS, 0x003f_fdff),
        Err(Denial::ControlViolation)
    );
    // The host's PAT is loaded at every VM exit: a VMCS may not drop it.
    assert_eq!(
        w(
            &mut v,
            &x,
            VmcsField::VM_EXIT_CONTROLS,
            0x003f_ffff & !(1 << 19)
        ),
        Err(Denial::ControlViolation)
    );
    assert_eq!(w(&mut v, &x, VmcsField::VM_ENTRY_CONTROLS, 0xd3ff), Ok(()));
    assert_eq!(
        w(&mut v, &x, VmcsField::VM_ENTRY_CONTROLS, 0xd3ff | (1 << 10)),
        Err(Denial::ControlViolation)
    );
}

#[test]
fn addresses_must_name_the_right_pages() {
    let mut st = Storage::new(FRAMES);
    let mut v = st.verifier();
    let x = setup(&mut v);
    let other = v.create_vcpu(x.vm).unwrap();
    v.register_aux_page(AuxOwner::Vcpu(other), Pfn(80), AuxKind::MsrBitmap)
        .unwrap();
    let pa = |pfn: u64| pfn << 12;
    let cases: &[(VmcsField, u64, Result<(), Denial>)] = &[
        (VmcsField::MSR_BITMAP, pa(MSR_BITMAP), Ok(())),
        (VmcsField::MSR_BITMAP, pa(80), Err(Denial::BadAddress)),
        (VmcsField::MSR_BITMAP, pa(PML), Err(Denial::BadAddress)),
        (
            VmcsField::MSR_BITMAP,
            pa(MSR_BITMAP) + 8,
            Err(Denial::BadAddress),
        ),
        (
            VmcsField::VM_EXIT_MSR_LOAD_ADDR,
            pa(MSR_LIST) + 0x10,
            Ok(()),
        ),
        (
            VmcsField::VM_ENTRY_MSR_LOAD_ADDR,
            pa(MSR_LIST) + 0xf80,
            Ok(()),
        ),
        (
            VmcsField::VM_EXIT_MSR_STORE_ADDR,
            pa(MSR_LIST) + 0xf90,
            Err(Denial::BadAddress),
        ),
        (
            VmcsField::VM_EXIT_MSR_LOAD_ADDR,
            pa(MSR_LIST) + 8,
            Err(Denial::BadAddress),
        ),
        (VmcsField::PML_ADDRESS, pa(PML), Ok(())),
        (VmcsField::PML_ADDRESS, 0, Err(Denial::BadAddress)),
        (VmcsField::VE_INFORMATION_ADDRESS, pa(VE), Ok(())),
        (VmcsField::POSTED_INTR_DESC_ADDR, pa(PI) + 0x40, Ok(())),
        (
            VmcsField::POSTED_INTR_DESC_ADDR,
            pa(PI) + 0x20,
            Err(Denial::BadAddress),
        ),
        (VmcsField::VIRTUAL_APIC_PAGE_ADDR, pa(VAPIC), Ok(())),
        (
            VmcsField::VIRTUAL_APIC_PAGE_ADDR,
            pa(GUEST_PAGE),
            Err(Denial::BadAddress),
        ),
        (VmcsField::APIC_ACCESS_ADDR, pa(GUEST_PAGE), Ok(())),
        (
            VmcsField::APIC_ACCESS_ADDR,
            pa(VAPIC),
            Err(Denial::BadAddress),
        ),
        (
            VmcsField::APIC_ACCESS_ADDR,
            pa(999),
            Err(Denial::BadAddress),
        ),
        (VmcsField::PID_POINTER_TABLE, pa(PID), Ok(())),
        (VmcsField::VMREAD_BITMAP, pa(VMREAD), Ok(())),
        (
            VmcsField::VMWRITE_BITMAP,
            pa(VMREAD),
            Err(Denial::BadAddress),
        ),
        (VmcsField::VMWRITE_BITMAP, pa(VMWRITE), Ok(())),
        (VmcsField::MSR_BITMAP, pa(ROOT), Err(Denial::BadAddress)),
        (
            VmcsField::MSR_BITMAP,
            pa(FRAMES as u64 + 1),
            Err(Denial::BadAddress),
        ),
    ];
    for (field, value, want) in cases {
        assert_eq!(
            w(&mut v, &x, *field, *value),
            *want,
            "{field:?} = {value:#x}"
        );
    }
}

#[test]
fn ept_pointer_rules_and_root_references() {
    let mut st = Storage::new(FRAMES);
    let mut v = st.verifier();
    let x = setup(&mut v);
    let other = vm_with_ept(&mut v, 20);
    let _ = other;
    assert_eq!(
        w(&mut v, &x, VmcsField::EPT_POINTER, eptp(ROOT, true, true)),
        Ok(())
    );
    assert_eq!(v.vmcs_ept_root(Pfn(VMCS01)), Some(Pfn(ROOT)));
    assert_eq!(v.counters(CheckClass::Eptp).verified, 1);
    let cases: &[(u64, Denial)] = &[
        (eptp(20, true, true), Denial::EptpBadRoot),
        (eptp(ROOT + 1, true, true), Denial::EptpBadWalkLength),
        (eptp(ROOT, false, true), Denial::EptpBadWalkLength),
        (eptp(ROOT, true, false), Denial::EptpBadAccessDirty),
        (eptp(ROOT, true, true) & !7, Denial::EptpBadMemoryType),
        (eptp(ROOT, true, true) | (1 << 7), Denial::EptpReservedBits),
        (eptp(ROOT, true, true) | (1 << 50), Denial::EptpReservedBits),
        (eptp(102, true, true), Denial::EptpBadRoot),
        (eptp(MSR_BITMAP, true, true), Denial::EptpBadRoot),
    ];
    for (value, want) in cases {
        assert_eq!(
            w(&mut v, &x, VmcsField::EPT_POINTER, *value),
            Err(*want),
            "{value:#x}"
        );
    }
    // The root is referenced by the VMCS: it cannot be freed until the VMCS lets go of it.
    v.write_spte(Pfn(ROOT), 0, nonleaf(ROOT + 1), NONPRESENT)
        .unwrap();
    assert_eq!(v.ept_page_counts(Pfn(ROOT)), Some((0, 1)));
    assert_eq!(v.unregister_ept_page(Pfn(ROOT)), Err(Denial::EptPageInUse));
    v.register_ept_page(x.vm, Pfn(30), EptLevel::L4).unwrap();
    assert_eq!(
        w(&mut v, &x, VmcsField::EPT_POINTER, eptp(30, true, true)),
        Ok(())
    );
    assert_eq!(v.ept_page_counts(Pfn(ROOT)), Some((0, 0)));
    v.unregister_ept_page(Pfn(ROOT)).unwrap();
    assert_eq!(v.audit().anomalies(), 0);
}

#[test]
fn five_level_walks_when_configured() {
    let mut st = Storage::new(FRAMES);
    let mut c = config();
    c.ept_max_level = EptLevel::L5;
    let mut v = st.verifier_with(c);
    let x = setup(&mut v);
    v.register_ept_page(x.vm, Pfn(30), EptLevel::L5).unwrap();
    v.write_spte(Pfn(30), 0, NONPRESENT, nonleaf(ROOT)).unwrap();
    assert_eq!(
        w(&mut v, &x, VmcsField::EPT_POINTER, eptp(30, false, true)),
        Ok(())
    );
    assert_eq!(
        w(&mut v, &x, VmcsField::EPT_POINTER, eptp(30, true, true)),
        Err(Denial::EptpBadWalkLength)
    );
}

#[test]
fn vpid_rules() {
    let mut st = Storage::new(FRAMES);
    let mut v = st.verifier();
    let x = setup(&mut v);
    let other = v.create_vcpu(x.vm).unwrap();
    v.assign_vpid(other, Vpid(3)).unwrap();
    assert_eq!(w(&mut v, &x, VmcsField::VIRTUAL_PROCESSOR_ID, 1), Ok(()));
    assert_eq!(v.vmcs_vpid(Pfn(VMCS01)), Some(Vpid(1)));
    assert_eq!(
        w(&mut v, &x, VmcsField::VIRTUAL_PROCESSOR_ID, 0),
        Err(Denial::BadVpid)
    );
    assert_eq!(
        w(&mut v, &x, VmcsField::VIRTUAL_PROCESSOR_ID, 3),
        Err(Denial::BadVpid)
    );
    assert_eq!(
        w(&mut v, &x, VmcsField::VIRTUAL_PROCESSOR_ID, 9),
        Err(Denial::BadVpid)
    );
}

#[test]
fn shadow_vmcs_link_and_shadow_writes() {
    let mut st = Storage::new(FRAMES);
    let mut v = st.verifier();
    let x = setup(&mut v);
    let secondary = 0x0000_00a2_u64;
    // set_current_vmptr(): the control first (the vCPU has a registered shadow VMCS), then
    // the link pointer.
    assert_eq!(
        w(
            &mut v,
            &x,
            VmcsField::SECONDARY_VM_EXEC_CONTROL,
            secondary | (1 << 14)
        ),
        Ok(())
    );
    assert_eq!(
        w(&mut v, &x, VmcsField::VMCS_LINK_POINTER, VMCS02 << 12),
        Err(Denial::BadLinkPointer)
    );
    assert_eq!(
        w(&mut v, &x, VmcsField::VMCS_LINK_POINTER, (SHADOW << 12) | 8),
        Err(Denial::BadLinkPointer)
    );
    assert_eq!(
        w(&mut v, &x, VmcsField::VMCS_LINK_POINTER, SHADOW << 12),
        Ok(())
    );
    // The shadow VMCS cannot be freed while linked.
    assert_eq!(v.unregister_vmcs(Pfn(SHADOW)), Err(Denial::VmcsInUse));
    // vmx_disable_shadow_vmcs(): control first, then the pointer.
    assert_eq!(
        w(&mut v, &x, VmcsField::VMCS_LINK_POINTER, u64::MAX),
        Err(Denial::BadLinkPointer)
    );
    assert_eq!(
        w(&mut v, &x, VmcsField::SECONDARY_VM_EXEC_CONTROL, secondary),
        Ok(())
    );
    assert_eq!(
        w(&mut v, &x, VmcsField::VMCS_LINK_POINTER, u64::MAX),
        Ok(())
    );
    // copy_vmcs12_to_shadow(): VMPTRLD the shadow, write shadow fields, VMCLEAR, back to vmcs01.
    v.vmptrld(CPU, Hpa(SHADOW << 12)).unwrap();
    assert_eq!(v.current_vmcs(CPU), Some(Pfn(SHADOW)));
    assert_eq!(w(&mut v, &x, VmcsField::GUEST_RIP, 1), Ok(()));
    assert_eq!(w(&mut v, &x, VmcsField::HOST_FS_BASE, 12345), Ok(()));
    assert_eq!(w(&mut v, &x, VmcsField::VM_EXIT_REASON, 48), Ok(()));
    assert_eq!(
        w(&mut v, &x, VmcsField::GUEST_PHYSICAL_ADDRESS_HIGH, 1),
        Ok(())
    );
    assert_eq!(
        w(&mut v, &x, VmcsField::PIN_BASED_VM_EXEC_CONTROL, 0),
        Ok(())
    );
    assert_eq!(
        w(&mut v, &x, VmcsField::EPT_POINTER, 0),
        Err(Denial::NotShadowField)
    );
    assert_eq!(
        w(&mut v, &x, VmcsField::HOST_RIP, 0),
        Err(Denial::NotShadowField)
    );
    assert_eq!(
        w(&mut v, &x, VmcsField::GUEST_ES_BASE, 0),
        Err(Denial::NotShadowField)
    );
    v.vmclear(CPU, Hpa(SHADOW << 12)).unwrap();
    assert_eq!(v.current_vmcs(CPU), None);
    assert_eq!(
        w(&mut v, &x, VmcsField::GUEST_RIP, 1),
        Err(Denial::NoCurrentVmcs)
    );
    v.vmptrld(CPU, Hpa(VMCS01 << 12)).unwrap();
    v.unregister_vmcs(Pfn(SHADOW)).unwrap();
}

#[test]
fn vmcs02_rules() {
    let mut st = Storage::new(FRAMES);
    let mut v = st.verifier();
    let x = setup(&mut v);
    v.vmptrld(CPU, Hpa(VMCS02 << 12)).unwrap();
    let secondary = 0x0000_00a2_u64;
    // VMFUNC is allowed (all functions exit), PML and shadowing are not.
    assert_eq!(
        w(
            &mut v,
            &x,
            VmcsField::SECONDARY_VM_EXEC_CONTROL,
            secondary | (1 << 13)
        ),
        Ok(())
    );
    assert_eq!(
        w(
            &mut v,
            &x,
            VmcsField::SECONDARY_VM_EXEC_CONTROL,
            secondary | (1 << 17)
        ),
        Err(Denial::ControlViolation)
    );
    assert_eq!(
        w(
            &mut v,
            &x,
            VmcsField::SECONDARY_VM_EXEC_CONTROL,
            secondary | (1 << 14)
        ),
        Err(Denial::ControlViolation)
    );
    // L1 pages: owned by the VM; the PML address may be 0; INVALID_GPA forces entry failure.
    assert_eq!(w(&mut v, &x, VmcsField::PML_ADDRESS, 0), Ok(()));
    assert_eq!(
        w(
            &mut v,
            &x,
            VmcsField::VIRTUAL_APIC_PAGE_ADDR,
            GUEST_PAGE << 12
        ),
        Ok(())
    );
    assert_eq!(
        w(&mut v, &x, VmcsField::VIRTUAL_APIC_PAGE_ADDR, u64::MAX),
        Ok(())
    );
    assert_eq!(
        w(&mut v, &x, VmcsField::VIRTUAL_APIC_PAGE_ADDR, VAPIC << 12),
        Err(Denial::BadAddress)
    );
    assert_eq!(
        w(
            &mut v,
            &x,
            VmcsField::POSTED_INTR_DESC_ADDR,
            (GUEST_PAGE << 12) + 0x80
        ),
        Ok(())
    );
    assert_eq!(
        w(&mut v, &x, VmcsField::POSTED_INTR_DESC_ADDR, PI << 12),
        Err(Denial::BadAddress)
    );
    assert_eq!(
        w(&mut v, &x, VmcsField::VMCS_LINK_POINTER, u64::MAX),
        Ok(())
    );
    assert_eq!(
        w(&mut v, &x, VmcsField::VMCS_LINK_POINTER, SHADOW << 12),
        Err(Denial::BadLinkPointer)
    );
    // vpid02 and A/D off in EPTP (L1 runs L2 without A/D), and KVM's dummy root.
    assert_eq!(w(&mut v, &x, VmcsField::VIRTUAL_PROCESSOR_ID, 2), Ok(()));
    assert_eq!(
        w(&mut v, &x, VmcsField::EPT_POINTER, eptp(ROOT, true, false)),
        Ok(())
    );
    v.register_zero_pages(Pfn(90), 1).unwrap();
    assert_eq!(
        w(&mut v, &x, VmcsField::EPT_POINTER, eptp(90, true, true)),
        Ok(())
    );
    assert_eq!(v.vmcs_ept_root(Pfn(VMCS02)), None);
    v.vmptrld(CPU, Hpa(VMCS01 << 12)).unwrap();
    assert_eq!(
        w(&mut v, &x, VmcsField::EPT_POINTER, eptp(90, true, true)),
        Err(Denial::EptpBadRoot)
    );
}

#[test]
fn vmptrld_vmclear_vmxon_tracking() {
    let mut st = Storage::new(FRAMES);
    let mut v = st.verifier();
    let x = setup(&mut v);
    let c1 = CpuId(1);
    // Not in VMX operation on CPU 1.
    assert_eq!(v.vmptrld(c1, Hpa(VMCS02 << 12)), Err(Denial::VmxOff));
    assert_eq!(
        v.check_vmcs_write(c1, VmcsField::GUEST_RIP, 0, &x.host),
        Err(Denial::NoCurrentVmcs)
    );
    assert_eq!(v.vmxon(c1, Hpa(VMXON << 12)), Err(Denial::BadVmxon));
    v.register_vmxon(c1, Pfn(53)).unwrap();
    assert_eq!(v.register_vmxon(c1, Pfn(54)), Err(Denial::BadVmxon));
    v.vmxon(c1, Hpa(53 << 12)).unwrap();
    assert_eq!(v.vmxon(c1, Hpa(53 << 12)), Err(Denial::BadVmxon));
    // vmcs01 is active on CPU 0: it must be cleared there before CPU 1 loads it.
    assert_eq!(
        v.vmptrld(c1, Hpa(VMCS01 << 12)),
        Err(Denial::VmcsActiveElsewhere)
    );
    assert_eq!(
        v.vmclear(c1, Hpa(VMCS01 << 12)),
        Err(Denial::VmcsActiveElsewhere)
    );
    assert_eq!(v.unregister_vmcs(Pfn(VMCS01)), Err(Denial::VmcsInUse));
    v.vmclear(CPU, Hpa(VMCS01 << 12)).unwrap();
    v.vmptrld(c1, Hpa(VMCS01 << 12)).unwrap();
    assert_eq!(v.current_vmcs(c1), Some(Pfn(VMCS01)));
    // Unregistered, misaligned and non-VMCS pages.
    assert_eq!(
        v.vmptrld(c1, Hpa(MSR_BITMAP << 12)),
        Err(Denial::UnknownVmcs)
    );
    assert_eq!(
        v.vmptrld(c1, Hpa((VMCS02 << 12) + 4)),
        Err(Denial::UnknownVmcs)
    );
    // VMXOFF clears everything active on the CPU; then the VMCS can be freed.
    assert_eq!(v.unregister_vmxon(c1), Err(Denial::BadVmxon));
    v.vmxoff(c1).unwrap();
    assert_eq!(v.vmxoff(c1), Err(Denial::VmxOff));
    assert!(!v.vmx_on(c1));
    v.unregister_vmxon(c1).unwrap();
    v.unregister_vmcs(Pfn(VMCS01)).unwrap();
    assert_eq!(v.vmptrld(CPU, Hpa(VMCS01 << 12)), Err(Denial::UnknownVmcs));
    assert_eq!(
        v.vmptrld(CpuId(99), Hpa(VMCS02 << 12)),
        Err(Denial::UnknownCpu)
    );
}

#[test]
fn address_fields_pin_their_pages() {
    let mut st = Storage::new(FRAMES);
    let mut v = st.verifier();
    let x = setup(&mut v);
    assert_eq!(
        w(&mut v, &x, VmcsField::MSR_BITMAP, MSR_BITMAP << 12),
        Ok(())
    );
    assert_eq!(
        w(&mut v, &x, VmcsField::APIC_ACCESS_ADDR, GUEST_PAGE << 12),
        Ok(())
    );
    // Named pages can be neither freed nor handed on.
    assert_eq!(
        v.unregister_aux_page(Pfn(MSR_BITMAP)),
        Err(Denial::PageInUse)
    );
    // The CPU never accesses the APIC-access page: checked, not pinned.
    assert_eq!(v.frame_mappings(Pfn(GUEST_PAGE)), Some((0, 0)));
    assert_eq!(
        w(
            &mut v,
            &x,
            VmcsField::APIC_ACCESS_ADDR,
            (GUEST_PAGE + 2) << 12
        ),
        Err(Denial::BadAddress)
    );
    v.donate_to_vm(x.vm, Pfn(GUEST_PAGE + 1), 1).unwrap();
    // vmcs02 names an L1 page as virtual-APIC page: pinned until replaced.
    v.vmptrld(CPU, Hpa(VMCS02 << 12)).unwrap();
    assert_eq!(
        w(
            &mut v,
            &x,
            VmcsField::VIRTUAL_APIC_PAGE_ADDR,
            (GUEST_PAGE + 1) << 12
        ),
        Ok(())
    );
    assert_eq!(
        v.check_reclaim(Pfn(GUEST_PAGE + 1)).map(|_| ()),
        Err(Denial::FrameMapped)
    );
    assert_eq!(v.frame_mappings(Pfn(GUEST_PAGE + 1)), Some((1, 1)));
    assert_eq!(
        v.ksm_merge(Pfn(GUEST_PAGE + 1), Pfn(GUEST_PAGE)),
        Err(Denial::FrameMapped)
    );
    assert_eq!(
        w(&mut v, &x, VmcsField::VIRTUAL_APIC_PAGE_ADDR, u64::MAX),
        Ok(())
    );
    assert_eq!(v.frame_mappings(Pfn(GUEST_PAGE + 1)), Some((0, 0)));
    assert!(v.check_reclaim(Pfn(GUEST_PAGE + 1)).is_ok());
    // Rewriting a field moves the pin; freeing the VMCS drops all of them.
    v.vmptrld(CPU, Hpa(VMCS01 << 12)).unwrap();
    v.register_aux_page(
        AuxOwner::Vcpu(v.vpid_owner(Vpid(1)).unwrap()),
        Pfn(81),
        AuxKind::MsrBitmap,
    )
    .unwrap();
    assert_eq!(w(&mut v, &x, VmcsField::MSR_BITMAP, 81 << 12), Ok(()));
    v.unregister_aux_page(Pfn(MSR_BITMAP)).unwrap();
    assert_eq!(v.unregister_aux_page(Pfn(81)), Err(Denial::PageInUse));
    v.vmclear(CPU, Hpa(VMCS01 << 12)).unwrap();
    v.unregister_vmcs(Pfn(VMCS01)).unwrap();
    v.unregister_aux_page(Pfn(81)).unwrap();
    assert_eq!(v.frame_mappings(Pfn(GUEST_PAGE)), Some((0, 0)));
    assert_eq!(v.audit().anomalies(), 0);
}

#[test]
fn active_cpu_follows_vmptrld_and_vmclear() {
    let mut st = Storage::new(FRAMES);
    let mut v = st.verifier();
    let _x = setup(&mut v);
    assert_eq!(v.vmcs_active_cpu(Pfn(VMCS01)), Some(CPU));
    assert_eq!(v.vmcs_active_cpu(Pfn(VMCS02)), None);
    assert_eq!(v.vmcs_active_cpu(Pfn(GUEST_PAGE)), None);
    v.vmclear(CPU, Hpa(VMCS01 << 12)).unwrap();
    assert_eq!(v.vmcs_active_cpu(Pfn(VMCS01)), None);
}

#[test]
fn shadowing_needs_a_shadow_vmcs_of_the_vcpu() {
    let mut st = Storage::new(FRAMES);
    let mut v = st.verifier();
    let x = setup(&mut v);
    v.unregister_vmcs(Pfn(SHADOW)).unwrap();
    // Its own shadow VMCS is gone; one of another vCPU, or a vmcs02, does not count.
    let other = v.create_vcpu(x.vm).unwrap();
    v.register_vmcs(other, Pfn(SHADOW), VmcsKind::Shadow)
        .unwrap();
    for _ in 0..2 {
        assert_eq!(
            w(
                &mut v,
                &x,
                VmcsField::SECONDARY_VM_EXEC_CONTROL,
                0xa2 | (1 << 14)
            ),
            Err(Denial::BadLinkPointer)
        );
        v.unregister_vmcs(Pfn(SHADOW)).unwrap();
        v.register_vmcs(other, Pfn(SHADOW), VmcsKind::Vmcs02)
            .unwrap();
    }
}

#[test]
fn vmcs01_virtual_apic_may_be_zero() {
    let mut st = Storage::new(FRAMES);
    let mut v = st.verifier();
    let x = setup(&mut v);
    assert_eq!(w(&mut v, &x, VmcsField::VIRTUAL_APIC_PAGE_ADDR, 0), Ok(()));
    assert_eq!(
        w(&mut v, &x, VmcsField::VIRTUAL_APIC_PAGE_ADDR, VAPIC << 12),
        Ok(())
    );
    assert_eq!(w(&mut v, &x, VmcsField::VIRTUAL_APIC_PAGE_ADDR, 0), Ok(()));
    // The page is unpinned again.
    assert_eq!(v.unregister_aux_page(Pfn(VAPIC)), Ok(()));
}
