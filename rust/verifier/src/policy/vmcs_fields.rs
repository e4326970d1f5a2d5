// SPDX-License-Identifier: GPL-2.0

//! VMCS field encodings (Linux 6.12 `enum vmcs_field`) and the field policy table.
//!
//! Every encoding KVM 6.12 knows is classified in [`field_policy`]; anything else, including
//! the `_HIGH` halves of 64-bit fields (x86-64 KVM always writes the full field), is an unknown
//! field and is refused. [`is_shadow_field`] lists the fields of `vmcs_shadow_fields.h`, the
//! only ones KVM writes while a shadow VMCS is current.

use super::types::VmcsField;

impl VmcsField {
    /// `VIRTUAL_PROCESSOR_ID`.
    pub const VIRTUAL_PROCESSOR_ID: VmcsField = VmcsField(0x00000000);
    /// `POSTED_INTR_NV`.
    pub const POSTED_INTR_NV: VmcsField = VmcsField(0x00000002);
    /// `LAST_PID_POINTER_INDEX`.
    pub const LAST_PID_POINTER_INDEX: VmcsField = VmcsField(0x00000008);
    /// `GUEST_ES_SELECTOR`.
    pub const GUEST_ES_SELECTOR: VmcsField = VmcsField(0x00000800);
    /// `GUEST_CS_SELECTOR`.
    pub const GUEST_CS_SELECTOR: VmcsField = VmcsField(0x00000802);
    /// `GUEST_SS_SELECTOR`.
    pub const GUEST_SS_SELECTOR: VmcsField = VmcsField(0x00000804);
    /// `GUEST_DS_SELECTOR`.
    pub const GUEST_DS_SELECTOR: VmcsField = VmcsField(0x00000806);
    /// `GUEST_FS_SELECTOR`.
    pub const GUEST_FS_SELECTOR: VmcsField = VmcsField(0x00000808);
    /// `GUEST_GS_SELECTOR`.
    pub const GUEST_GS_SELECTOR: VmcsField = VmcsField(0x0000080a);
    /// `GUEST_LDTR_SELECTOR`.
    pub const GUEST_LDTR_SELECTOR: VmcsField = VmcsField(0x0000080c);
    /// `GUEST_TR_SELECTOR`.
    pub const GUEST_TR_SELECTOR: VmcsField = VmcsField(0x0000080e);
    /// `GUEST_INTR_STATUS`.
    pub const GUEST_INTR_STATUS: VmcsField = VmcsField(0x00000810);
    /// `GUEST_PML_INDEX`.
    pub const GUEST_PML_INDEX: VmcsField = VmcsField(0x00000812);
    /// `HOST_ES_SELECTOR`.
    pub const HOST_ES_SELECTOR: VmcsField = VmcsField(0x00000c00);
    /// `HOST_CS_SELECTOR`.
    pub const HOST_CS_SELECTOR: VmcsField = VmcsField(0x00000c02);
    /// `HOST_SS_SELECTOR`.
    pub const HOST_SS_SELECTOR: VmcsField = VmcsField(0x00000c04);
    /// `HOST_DS_SELECTOR`.
    pub const HOST_DS_SELECTOR: VmcsField = VmcsField(0x00000c06);
    /// `HOST_FS_SELECTOR`.
    pub const HOST_FS_SELECTOR: VmcsField = VmcsField(0x00000c08);
    /// `HOST_GS_SELECTOR`.
    pub const HOST_GS_SELECTOR: VmcsField = VmcsField(0x00000c0a);
    /// `HOST_TR_SELECTOR`.
    pub const HOST_TR_SELECTOR: VmcsField = VmcsField(0x00000c0c);
    /// `IO_BITMAP_A`.
    pub const IO_BITMAP_A: VmcsField = VmcsField(0x00002000);
    /// `IO_BITMAP_A_HIGH`.
    pub const IO_BITMAP_A_HIGH: VmcsField = VmcsField(0x00002001);
    /// `IO_BITMAP_B`.
    pub const IO_BITMAP_B: VmcsField = VmcsField(0x00002002);
    /// `IO_BITMAP_B_HIGH`.
    pub const IO_BITMAP_B_HIGH: VmcsField = VmcsField(0x00002003);
    /// `MSR_BITMAP`.
    pub const MSR_BITMAP: VmcsField = VmcsField(0x00002004);
    /// `MSR_BITMAP_HIGH`.
    pub const MSR_BITMAP_HIGH: VmcsField = VmcsField(0x00002005);
    /// `VM_EXIT_MSR_STORE_ADDR`.
    pub const VM_EXIT_MSR_STORE_ADDR: VmcsField = VmcsField(0x00002006);
    /// `VM_EXIT_MSR_STORE_ADDR_HIGH`.
    pub const VM_EXIT_MSR_STORE_ADDR_HIGH: VmcsField = VmcsField(0x00002007);
    /// `VM_EXIT_MSR_LOAD_ADDR`.
    pub const VM_EXIT_MSR_LOAD_ADDR: VmcsField = VmcsField(0x00002008);
    /// `VM_EXIT_MSR_LOAD_ADDR_HIGH`.
    pub const VM_EXIT_MSR_LOAD_ADDR_HIGH: VmcsField = VmcsField(0x00002009);
    /// `VM_ENTRY_MSR_LOAD_ADDR`.
    pub const VM_ENTRY_MSR_LOAD_ADDR: VmcsField = VmcsField(0x0000200a);
    /// `VM_ENTRY_MSR_LOAD_ADDR_HIGH`.
    pub const VM_ENTRY_MSR_LOAD_ADDR_HIGH: VmcsField = VmcsField(0x0000200b);
    /// `PML_ADDRESS`.
    pub const PML_ADDRESS: VmcsField = VmcsField(0x0000200e);
    /// `PML_ADDRESS_HIGH`.
    pub const PML_ADDRESS_HIGH: VmcsField = VmcsField(0x0000200f);
    /// `TSC_OFFSET`.
    pub const TSC_OFFSET: VmcsField = VmcsField(0x00002010);
    /// `TSC_OFFSET_HIGH`.
    pub const TSC_OFFSET_HIGH: VmcsField = VmcsField(0x00002011);
    /// `VIRTUAL_APIC_PAGE_ADDR`.
    pub const VIRTUAL_APIC_PAGE_ADDR: VmcsField = VmcsField(0x00002012);
    /// `VIRTUAL_APIC_PAGE_ADDR_HIGH`.
    pub const VIRTUAL_APIC_PAGE_ADDR_HIGH: VmcsField = VmcsField(0x00002013);
    /// `APIC_ACCESS_ADDR`.
    pub const APIC_ACCESS_ADDR: VmcsField = VmcsField(0x00002014);
    /// `APIC_ACCESS_ADDR_HIGH`.
    pub const APIC_ACCESS_ADDR_HIGH: VmcsField = VmcsField(0x00002015);
    /// `POSTED_INTR_DESC_ADDR`.
    pub const POSTED_INTR_DESC_ADDR: VmcsField = VmcsField(0x00002016);
    /// `POSTED_INTR_DESC_ADDR_HIGH`.
    pub const POSTED_INTR_DESC_ADDR_HIGH: VmcsField = VmcsField(0x00002017);
    /// `VM_FUNCTION_CONTROL`.
    pub const VM_FUNCTION_CONTROL: VmcsField = VmcsField(0x00002018);
    /// `VM_FUNCTION_CONTROL_HIGH`.
    pub const VM_FUNCTION_CONTROL_HIGH: VmcsField = VmcsField(0x00002019);
    /// `EPT_POINTER`.
    pub const EPT_POINTER: VmcsField = VmcsField(0x0000201a);
    /// `EPT_POINTER_HIGH`.
    pub const EPT_POINTER_HIGH: VmcsField = VmcsField(0x0000201b);
    /// `EOI_EXIT_BITMAP0`.
    pub const EOI_EXIT_BITMAP0: VmcsField = VmcsField(0x0000201c);
    /// `EOI_EXIT_BITMAP0_HIGH`.
    pub const EOI_EXIT_BITMAP0_HIGH: VmcsField = VmcsField(0x0000201d);
    /// `EOI_EXIT_BITMAP1`.
    pub const EOI_EXIT_BITMAP1: VmcsField = VmcsField(0x0000201e);
    /// `EOI_EXIT_BITMAP1_HIGH`.
    pub const EOI_EXIT_BITMAP1_HIGH: VmcsField = VmcsField(0x0000201f);
    /// `EOI_EXIT_BITMAP2`.
    pub const EOI_EXIT_BITMAP2: VmcsField = VmcsField(0x00002020);
    /// `EOI_EXIT_BITMAP2_HIGH`.
    pub const EOI_EXIT_BITMAP2_HIGH: VmcsField = VmcsField(0x00002021);
    /// `EOI_EXIT_BITMAP3`.
    pub const EOI_EXIT_BITMAP3: VmcsField = VmcsField(0x00002022);
    /// `EOI_EXIT_BITMAP3_HIGH`.
    pub const EOI_EXIT_BITMAP3_HIGH: VmcsField = VmcsField(0x00002023);
    /// `EPTP_LIST_ADDRESS`.
    pub const EPTP_LIST_ADDRESS: VmcsField = VmcsField(0x00002024);
    /// `EPTP_LIST_ADDRESS_HIGH`.
    pub const EPTP_LIST_ADDRESS_HIGH: VmcsField = VmcsField(0x00002025);
    /// `VMREAD_BITMAP`.
    pub const VMREAD_BITMAP: VmcsField = VmcsField(0x00002026);
    /// `VMREAD_BITMAP_HIGH`.
    pub const VMREAD_BITMAP_HIGH: VmcsField = VmcsField(0x00002027);
    /// `VMWRITE_BITMAP`.
    pub const VMWRITE_BITMAP: VmcsField = VmcsField(0x00002028);
    /// `VMWRITE_BITMAP_HIGH`.
    pub const VMWRITE_BITMAP_HIGH: VmcsField = VmcsField(0x00002029);
    /// `VE_INFORMATION_ADDRESS`.
    pub const VE_INFORMATION_ADDRESS: VmcsField = VmcsField(0x0000202a);
    /// `VE_INFORMATION_ADDRESS_HIGH`.
    pub const VE_INFORMATION_ADDRESS_HIGH: VmcsField = VmcsField(0x0000202b);
    /// `XSS_EXIT_BITMAP`.
    pub const XSS_EXIT_BITMAP: VmcsField = VmcsField(0x0000202c);
    /// `XSS_EXIT_BITMAP_HIGH`.
    pub const XSS_EXIT_BITMAP_HIGH: VmcsField = VmcsField(0x0000202d);
    /// `ENCLS_EXITING_BITMAP`.
    pub const ENCLS_EXITING_BITMAP: VmcsField = VmcsField(0x0000202e);
    /// `ENCLS_EXITING_BITMAP_HIGH`.
    pub const ENCLS_EXITING_BITMAP_HIGH: VmcsField = VmcsField(0x0000202f);
    /// `TSC_MULTIPLIER`.
    pub const TSC_MULTIPLIER: VmcsField = VmcsField(0x00002032);
    /// `TSC_MULTIPLIER_HIGH`.
    pub const TSC_MULTIPLIER_HIGH: VmcsField = VmcsField(0x00002033);
    /// `TERTIARY_VM_EXEC_CONTROL`.
    pub const TERTIARY_VM_EXEC_CONTROL: VmcsField = VmcsField(0x00002034);
    /// `TERTIARY_VM_EXEC_CONTROL_HIGH`.
    pub const TERTIARY_VM_EXEC_CONTROL_HIGH: VmcsField = VmcsField(0x00002035);
    /// `PID_POINTER_TABLE`.
    pub const PID_POINTER_TABLE: VmcsField = VmcsField(0x00002042);
    /// `PID_POINTER_TABLE_HIGH`.
    pub const PID_POINTER_TABLE_HIGH: VmcsField = VmcsField(0x00002043);
    /// `GUEST_PHYSICAL_ADDRESS`.
    pub const GUEST_PHYSICAL_ADDRESS: VmcsField = VmcsField(0x00002400);
    /// `GUEST_PHYSICAL_ADDRESS_HIGH`.
    pub const GUEST_PHYSICAL_ADDRESS_HIGH: VmcsField = VmcsField(0x00002401);
    /// `VMCS_LINK_POINTER`.
    pub const VMCS_LINK_POINTER: VmcsField = VmcsField(0x00002800);
    /// `VMCS_LINK_POINTER_HIGH`.
    pub const VMCS_LINK_POINTER_HIGH: VmcsField = VmcsField(0x00002801);
    /// `GUEST_IA32_DEBUGCTL`.
    pub const GUEST_IA32_DEBUGCTL: VmcsField = VmcsField(0x00002802);
    /// `GUEST_IA32_DEBUGCTL_HIGH`.
    pub const GUEST_IA32_DEBUGCTL_HIGH: VmcsField = VmcsField(0x00002803);
    /// `GUEST_IA32_PAT`.
    pub const GUEST_IA32_PAT: VmcsField = VmcsField(0x00002804);
    /// `GUEST_IA32_PAT_HIGH`.
    pub const GUEST_IA32_PAT_HIGH: VmcsField = VmcsField(0x00002805);
    /// `GUEST_IA32_EFER`.
    pub const GUEST_IA32_EFER: VmcsField = VmcsField(0x00002806);
    /// `GUEST_IA32_EFER_HIGH`.
    pub const GUEST_IA32_EFER_HIGH: VmcsField = VmcsField(0x00002807);
    /// `GUEST_IA32_PERF_GLOBAL_CTRL`.
    pub const GUEST_IA32_PERF_GLOBAL_CTRL: VmcsField = VmcsField(0x00002808);
    /// `GUEST_IA32_PERF_GLOBAL_CTRL_HIGH`.
    pub const GUEST_IA32_PERF_GLOBAL_CTRL_HIGH: VmcsField = VmcsField(0x00002809);
    /// `GUEST_PDPTR0`.
    pub const GUEST_PDPTR0: VmcsField = VmcsField(0x0000280a);
    /// `GUEST_PDPTR0_HIGH`.
    pub const GUEST_PDPTR0_HIGH: VmcsField = VmcsField(0x0000280b);
    /// `GUEST_PDPTR1`.
    pub const GUEST_PDPTR1: VmcsField = VmcsField(0x0000280c);
    /// `GUEST_PDPTR1_HIGH`.
    pub const GUEST_PDPTR1_HIGH: VmcsField = VmcsField(0x0000280d);
    /// `GUEST_PDPTR2`.
    pub const GUEST_PDPTR2: VmcsField = VmcsField(0x0000280e);
    /// `GUEST_PDPTR2_HIGH`.
    pub const GUEST_PDPTR2_HIGH: VmcsField = VmcsField(0x0000280f);
    /// `GUEST_PDPTR3`.
    pub const GUEST_PDPTR3: VmcsField = VmcsField(0x00002810);
    /// `GUEST_PDPTR3_HIGH`.
    pub const GUEST_PDPTR3_HIGH: VmcsField = VmcsField(0x00002811);
    /// `GUEST_BNDCFGS`.
    pub const GUEST_BNDCFGS: VmcsField = VmcsField(0x00002812);
    /// `GUEST_BNDCFGS_HIGH`.
    pub const GUEST_BNDCFGS_HIGH: VmcsField = VmcsField(0x00002813);
    /// `GUEST_IA32_RTIT_CTL`.
    pub const GUEST_IA32_RTIT_CTL: VmcsField = VmcsField(0x00002814);
    /// `GUEST_IA32_RTIT_CTL_HIGH`.
    pub const GUEST_IA32_RTIT_CTL_HIGH: VmcsField = VmcsField(0x00002815);
    /// `HOST_IA32_PAT`.
    pub const HOST_IA32_PAT: VmcsField = VmcsField(0x00002c00);
    /// `HOST_IA32_PAT_HIGH`.
    pub const HOST_IA32_PAT_HIGH: VmcsField = VmcsField(0x00002c01);
    /// `HOST_IA32_EFER`.
    pub const HOST_IA32_EFER: VmcsField = VmcsField(0x00002c02);
    /// `HOST_IA32_EFER_HIGH`.
    pub const HOST_IA32_EFER_HIGH: VmcsField = VmcsField(0x00002c03);
    /// `HOST_IA32_PERF_GLOBAL_CTRL`.
    pub const HOST_IA32_PERF_GLOBAL_CTRL: VmcsField = VmcsField(0x00002c04);
    /// `HOST_IA32_PERF_GLOBAL_CTRL_HIGH`.
    pub const HOST_IA32_PERF_GLOBAL_CTRL_HIGH: VmcsField = VmcsField(0x00002c05);
    /// `PIN_BASED_VM_EXEC_CONTROL`.
    pub const PIN_BASED_VM_EXEC_CONTROL: VmcsField = VmcsField(0x00004000);
    /// `CPU_BASED_VM_EXEC_CONTROL`.
    pub const CPU_BASED_VM_EXEC_CONTROL: VmcsField = VmcsField(0x00004002);
    /// `EXCEPTION_BITMAP`.
    pub const EXCEPTION_BITMAP: VmcsField = VmcsField(0x00004004);
    /// `PAGE_FAULT_ERROR_CODE_MASK`.
    pub const PAGE_FAULT_ERROR_CODE_MASK: VmcsField = VmcsField(0x00004006);
    /// `PAGE_FAULT_ERROR_CODE_MATCH`.
    pub const PAGE_FAULT_ERROR_CODE_MATCH: VmcsField = VmcsField(0x00004008);
    /// `CR3_TARGET_COUNT`.
    pub const CR3_TARGET_COUNT: VmcsField = VmcsField(0x0000400a);
    /// `VM_EXIT_CONTROLS`.
    pub const VM_EXIT_CONTROLS: VmcsField = VmcsField(0x0000400c);
    /// `VM_EXIT_MSR_STORE_COUNT`.
    pub const VM_EXIT_MSR_STORE_COUNT: VmcsField = VmcsField(0x0000400e);
    /// `VM_EXIT_MSR_LOAD_COUNT`.
    pub const VM_EXIT_MSR_LOAD_COUNT: VmcsField = VmcsField(0x00004010);
    /// `VM_ENTRY_CONTROLS`.
    pub const VM_ENTRY_CONTROLS: VmcsField = VmcsField(0x00004012);
    /// `VM_ENTRY_MSR_LOAD_COUNT`.
    pub const VM_ENTRY_MSR_LOAD_COUNT: VmcsField = VmcsField(0x00004014);
    /// `VM_ENTRY_INTR_INFO_FIELD`.
    pub const VM_ENTRY_INTR_INFO_FIELD: VmcsField = VmcsField(0x00004016);
    /// `VM_ENTRY_EXCEPTION_ERROR_CODE`.
    pub const VM_ENTRY_EXCEPTION_ERROR_CODE: VmcsField = VmcsField(0x00004018);
    /// `VM_ENTRY_INSTRUCTION_LEN`.
    pub const VM_ENTRY_INSTRUCTION_LEN: VmcsField = VmcsField(0x0000401a);
    /// `TPR_THRESHOLD`.
    pub const TPR_THRESHOLD: VmcsField = VmcsField(0x0000401c);
    /// `SECONDARY_VM_EXEC_CONTROL`.
    pub const SECONDARY_VM_EXEC_CONTROL: VmcsField = VmcsField(0x0000401e);
    /// `PLE_GAP`.
    pub const PLE_GAP: VmcsField = VmcsField(0x00004020);
    /// `PLE_WINDOW`.
    pub const PLE_WINDOW: VmcsField = VmcsField(0x00004022);
    /// `NOTIFY_WINDOW`.
    pub const NOTIFY_WINDOW: VmcsField = VmcsField(0x00004024);
    /// `VM_INSTRUCTION_ERROR`.
    pub const VM_INSTRUCTION_ERROR: VmcsField = VmcsField(0x00004400);
    /// `VM_EXIT_REASON`.
    pub const VM_EXIT_REASON: VmcsField = VmcsField(0x00004402);
    /// `VM_EXIT_INTR_INFO`.
    pub const VM_EXIT_INTR_INFO: VmcsField = VmcsField(0x00004404);
    /// `VM_EXIT_INTR_ERROR_CODE`.
    pub const VM_EXIT_INTR_ERROR_CODE: VmcsField = VmcsField(0x00004406);
    /// `IDT_VECTORING_INFO_FIELD`.
    pub const IDT_VECTORING_INFO_FIELD: VmcsField = VmcsField(0x00004408);
    /// `IDT_VECTORING_ERROR_CODE`.
    pub const IDT_VECTORING_ERROR_CODE: VmcsField = VmcsField(0x0000440a);
    /// `VM_EXIT_INSTRUCTION_LEN`.
    pub const VM_EXIT_INSTRUCTION_LEN: VmcsField = VmcsField(0x0000440c);
    /// `VMX_INSTRUCTION_INFO`.
    pub const VMX_INSTRUCTION_INFO: VmcsField = VmcsField(0x0000440e);
    /// `GUEST_ES_LIMIT`.
    pub const GUEST_ES_LIMIT: VmcsField = VmcsField(0x00004800);
    /// `GUEST_CS_LIMIT`.
    pub const GUEST_CS_LIMIT: VmcsField = VmcsField(0x00004802);
    /// `GUEST_SS_LIMIT`.
    pub const GUEST_SS_LIMIT: VmcsField = VmcsField(0x00004804);
    /// `GUEST_DS_LIMIT`.
    pub const GUEST_DS_LIMIT: VmcsField = VmcsField(0x00004806);
    /// `GUEST_FS_LIMIT`.
    pub const GUEST_FS_LIMIT: VmcsField = VmcsField(0x00004808);
    /// `GUEST_GS_LIMIT`.
    pub const GUEST_GS_LIMIT: VmcsField = VmcsField(0x0000480a);
    /// `GUEST_LDTR_LIMIT`.
    pub const GUEST_LDTR_LIMIT: VmcsField = VmcsField(0x0000480c);
    /// `GUEST_TR_LIMIT`.
    pub const GUEST_TR_LIMIT: VmcsField = VmcsField(0x0000480e);
    /// `GUEST_GDTR_LIMIT`.
    pub const GUEST_GDTR_LIMIT: VmcsField = VmcsField(0x00004810);
    /// `GUEST_IDTR_LIMIT`.
    pub const GUEST_IDTR_LIMIT: VmcsField = VmcsField(0x00004812);
    /// `GUEST_ES_AR_BYTES`.
    pub const GUEST_ES_AR_BYTES: VmcsField = VmcsField(0x00004814);
    /// `GUEST_CS_AR_BYTES`.
    pub const GUEST_CS_AR_BYTES: VmcsField = VmcsField(0x00004816);
    /// `GUEST_SS_AR_BYTES`.
    pub const GUEST_SS_AR_BYTES: VmcsField = VmcsField(0x00004818);
    /// `GUEST_DS_AR_BYTES`.
    pub const GUEST_DS_AR_BYTES: VmcsField = VmcsField(0x0000481a);
    /// `GUEST_FS_AR_BYTES`.
    pub const GUEST_FS_AR_BYTES: VmcsField = VmcsField(0x0000481c);
    /// `GUEST_GS_AR_BYTES`.
    pub const GUEST_GS_AR_BYTES: VmcsField = VmcsField(0x0000481e);
    /// `GUEST_LDTR_AR_BYTES`.
    pub const GUEST_LDTR_AR_BYTES: VmcsField = VmcsField(0x00004820);
    /// `GUEST_TR_AR_BYTES`.
    pub const GUEST_TR_AR_BYTES: VmcsField = VmcsField(0x00004822);
    /// `GUEST_INTERRUPTIBILITY_INFO`.
    pub const GUEST_INTERRUPTIBILITY_INFO: VmcsField = VmcsField(0x00004824);
    /// `GUEST_ACTIVITY_STATE`.
    pub const GUEST_ACTIVITY_STATE: VmcsField = VmcsField(0x00004826);
    /// `GUEST_SYSENTER_CS`.
    pub const GUEST_SYSENTER_CS: VmcsField = VmcsField(0x0000482a);
    /// `VMX_PREEMPTION_TIMER_VALUE`.
    pub const VMX_PREEMPTION_TIMER_VALUE: VmcsField = VmcsField(0x0000482e);
    /// `HOST_IA32_SYSENTER_CS`.
    pub const HOST_IA32_SYSENTER_CS: VmcsField = VmcsField(0x00004c00);
    /// `CR0_GUEST_HOST_MASK`.
    pub const CR0_GUEST_HOST_MASK: VmcsField = VmcsField(0x00006000);
    /// `CR4_GUEST_HOST_MASK`.
    pub const CR4_GUEST_HOST_MASK: VmcsField = VmcsField(0x00006002);
    /// `CR0_READ_SHADOW`.
    pub const CR0_READ_SHADOW: VmcsField = VmcsField(0x00006004);
    /// `CR4_READ_SHADOW`.
    pub const CR4_READ_SHADOW: VmcsField = VmcsField(0x00006006);
    /// `CR3_TARGET_VALUE0`.
    pub const CR3_TARGET_VALUE0: VmcsField = VmcsField(0x00006008);
    /// `CR3_TARGET_VALUE1`.
    pub const CR3_TARGET_VALUE1: VmcsField = VmcsField(0x0000600a);
    /// `CR3_TARGET_VALUE2`.
    pub const CR3_TARGET_VALUE2: VmcsField = VmcsField(0x0000600c);
    /// `CR3_TARGET_VALUE3`.
    pub const CR3_TARGET_VALUE3: VmcsField = VmcsField(0x0000600e);
    /// `EXIT_QUALIFICATION`.
    pub const EXIT_QUALIFICATION: VmcsField = VmcsField(0x00006400);
    /// `GUEST_LINEAR_ADDRESS`.
    pub const GUEST_LINEAR_ADDRESS: VmcsField = VmcsField(0x0000640a);
    /// `GUEST_CR0`.
    pub const GUEST_CR0: VmcsField = VmcsField(0x00006800);
    /// `GUEST_CR3`.
    pub const GUEST_CR3: VmcsField = VmcsField(0x00006802);
    /// `GUEST_CR4`.
    pub const GUEST_CR4: VmcsField = VmcsField(0x00006804);
    /// `GUEST_ES_BASE`.
    pub const GUEST_ES_BASE: VmcsField = VmcsField(0x00006806);
    /// `GUEST_CS_BASE`.
    pub const GUEST_CS_BASE: VmcsField = VmcsField(0x00006808);
    /// `GUEST_SS_BASE`.
    pub const GUEST_SS_BASE: VmcsField = VmcsField(0x0000680a);
    /// `GUEST_DS_BASE`.
    pub const GUEST_DS_BASE: VmcsField = VmcsField(0x0000680c);
    /// `GUEST_FS_BASE`.
    pub const GUEST_FS_BASE: VmcsField = VmcsField(0x0000680e);
    /// `GUEST_GS_BASE`.
    pub const GUEST_GS_BASE: VmcsField = VmcsField(0x00006810);
    /// `GUEST_LDTR_BASE`.
    pub const GUEST_LDTR_BASE: VmcsField = VmcsField(0x00006812);
    /// `GUEST_TR_BASE`.
    pub const GUEST_TR_BASE: VmcsField = VmcsField(0x00006814);
    /// `GUEST_GDTR_BASE`.
    pub const GUEST_GDTR_BASE: VmcsField = VmcsField(0x00006816);
    /// `GUEST_IDTR_BASE`.
    pub const GUEST_IDTR_BASE: VmcsField = VmcsField(0x00006818);
    /// `GUEST_DR7`.
    pub const GUEST_DR7: VmcsField = VmcsField(0x0000681a);
    /// `GUEST_RSP`.
    pub const GUEST_RSP: VmcsField = VmcsField(0x0000681c);
    /// `GUEST_RIP`.
    pub const GUEST_RIP: VmcsField = VmcsField(0x0000681e);
    /// `GUEST_RFLAGS`.
    pub const GUEST_RFLAGS: VmcsField = VmcsField(0x00006820);
    /// `GUEST_PENDING_DBG_EXCEPTIONS`.
    pub const GUEST_PENDING_DBG_EXCEPTIONS: VmcsField = VmcsField(0x00006822);
    /// `GUEST_SYSENTER_ESP`.
    pub const GUEST_SYSENTER_ESP: VmcsField = VmcsField(0x00006824);
    /// `GUEST_SYSENTER_EIP`.
    pub const GUEST_SYSENTER_EIP: VmcsField = VmcsField(0x00006826);
    /// `HOST_CR0`.
    pub const HOST_CR0: VmcsField = VmcsField(0x00006c00);
    /// `HOST_CR3`.
    pub const HOST_CR3: VmcsField = VmcsField(0x00006c02);
    /// `HOST_CR4`.
    pub const HOST_CR4: VmcsField = VmcsField(0x00006c04);
    /// `HOST_FS_BASE`.
    pub const HOST_FS_BASE: VmcsField = VmcsField(0x00006c06);
    /// `HOST_GS_BASE`.
    pub const HOST_GS_BASE: VmcsField = VmcsField(0x00006c08);
    /// `HOST_TR_BASE`.
    pub const HOST_TR_BASE: VmcsField = VmcsField(0x00006c0a);
    /// `HOST_GDTR_BASE`.
    pub const HOST_GDTR_BASE: VmcsField = VmcsField(0x00006c0c);
    /// `HOST_IDTR_BASE`.
    pub const HOST_IDTR_BASE: VmcsField = VmcsField(0x00006c0e);
    /// `HOST_IA32_SYSENTER_ESP`.
    pub const HOST_IA32_SYSENTER_ESP: VmcsField = VmcsField(0x00006c10);
    /// `HOST_IA32_SYSENTER_EIP`.
    pub const HOST_IA32_SYSENTER_EIP: VmcsField = VmcsField(0x00006c12);
    /// `HOST_RSP`.
    pub const HOST_RSP: VmcsField = VmcsField(0x00006c14);
    /// `HOST_RIP`.
    pub const HOST_RIP: VmcsField = VmcsField(0x00006c16);

    /// Width of the field in bits, from bits 14:13 of the encoding (natural width is 64 on
    /// x86-64); the `_HIGH` access of a 64-bit field is 32 bits wide.
    pub fn width_bits(self) -> u32 {
        match (self.0 >> 13) & 0x3 {
            0 => 16,
            1 if self.0 & 1 != 0 => 32,
            1 => 64,
            2 => 32,
            _ => 64,
        }
    }

    /// Largest value the field can hold.
    pub fn max_value(self) -> u64 {
        match self.width_bits() {
            16 => u64::from(u16::MAX),
            32 => u64::from(u32::MAX),
            _ => u64::MAX,
        }
    }
}

/// Host-state values the kernel passes in with every VMCS write (see [`super::HostState`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostField {
    /// `HOST_FS_SELECTOR`.
    FsSelector,
    /// `HOST_GS_SELECTOR`.
    GsSelector,
    /// `HOST_FS_BASE`.
    FsBase,
    /// `HOST_GS_BASE`.
    GsBase,
    /// `HOST_TR_BASE`.
    TrBase,
    /// `HOST_GDTR_BASE`.
    GdtrBase,
    /// `HOST_IDTR_BASE`.
    IdtrBase,
    /// `HOST_IA32_SYSENTER_CS`.
    SysenterCs,
    /// `HOST_IA32_SYSENTER_ESP`.
    SysenterEsp,
    /// `HOST_IA32_SYSENTER_EIP`.
    SysenterEip,
    /// `HOST_IA32_PAT`.
    Pat,
    /// `HOST_IA32_EFER`.
    Efer,
    /// `HOST_IA32_PERF_GLOBAL_CTRL`.
    PerfGlobalCtrl,
    /// `HOST_RIP` (`vmx_vmexit`).
    Rip,
}

/// Which execution-control field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlField {
    /// Pin-based VM-execution controls.
    Pin,
    /// Primary processor-based VM-execution controls.
    Primary,
    /// Secondary processor-based VM-execution controls.
    Secondary,
    /// Tertiary processor-based VM-execution controls.
    Tertiary,
    /// VM-exit controls.
    Exit,
    /// VM-entry controls.
    Entry,
}

/// Which page an address field must point to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressField {
    /// `MSR_BITMAP`.
    MsrBitmap,
    /// `VM_EXIT_MSR_STORE_ADDR`, `VM_EXIT_MSR_LOAD_ADDR`, `VM_ENTRY_MSR_LOAD_ADDR`.
    MsrList,
    /// `PML_ADDRESS`.
    Pml,
    /// `VE_INFORMATION_ADDRESS`.
    VeInfo,
    /// `POSTED_INTR_DESC_ADDR`.
    PiDesc,
    /// `VIRTUAL_APIC_PAGE_ADDR`.
    VirtualApic,
    /// `APIC_ACCESS_ADDR`.
    ApicAccess,
    /// `VMREAD_BITMAP`.
    VmreadBitmap,
    /// `VMWRITE_BITMAP`.
    VmwriteBitmap,
    /// `PID_POINTER_TABLE`.
    PidTable,
}

/// How a field's value is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldPolicy {
    /// Guest state or a control that cannot break isolation: any value that fits.
    Free,
    /// VM-exit information, written by KVM only into a shadow VMCS.
    ReadOnly,
    /// Known, but KVM 6.12 never writes it (I/O bitmaps, EPTP list): refused.
    NeverWritten,
    /// Must equal a constant.
    Pinned(u64),
    /// Must equal a value of the live host state.
    Host(HostField),
    /// `HOST_CR0`: equal to the host's and with PE, PG, WP set.
    HostCr0,
    /// `HOST_CR3`: equal to the host's, and a registered page-table root.
    HostCr3,
    /// `HOST_CR4`: equal to the host's, with the pinned bits and VMXE set.
    HostCr4,
    /// `HOST_RSP`: inside the current task stack.
    HostRsp,
    /// An execution, exit or entry control with required-1 and required-0 bits.
    Control(ControlField),
    /// An address that must point to a page this VMCS may reference.
    Address(AddressField),
    /// `EPT_POINTER`.
    Eptp,
    /// `VIRTUAL_PROCESSOR_ID`.
    Vpid,
    /// `VMCS_LINK_POINTER`.
    LinkPointer,
    /// An MSR load/store count.
    MsrCount,
    /// `LAST_PID_POINTER_INDEX`.
    PidIndex,
    /// `POSTED_INTR_NV`: KVM's posted-interrupt vector (the nested one in a vmcs02).
    PiVector,
}

/// Kernel code segment selector (`__KERNEL_CS`, GDT entry 2).
pub const KERNEL_CS: u64 = 0x10;
/// Kernel data segment selector (`__KERNEL_DS`, GDT entry 3).
pub const KERNEL_DS: u64 = 0x18;
/// TSS selector (`GDT_ENTRY_TSS * 8`, GDT entry 8).
pub const KERNEL_TSS: u64 = 0x40;

/// The policy of a field, or `None` for an encoding the verifier does not know.
pub fn field_policy(field: VmcsField) -> Option<FieldPolicy> {
    use self::AddressField as A;
    use self::ControlField as C;
    use self::FieldPolicy as P;
    use self::HostField as H;
    let policy = match field {
        VmcsField::VIRTUAL_PROCESSOR_ID => P::Vpid,
        VmcsField::POSTED_INTR_NV => P::PiVector,
        VmcsField::LAST_PID_POINTER_INDEX => P::PidIndex,
        VmcsField::GUEST_ES_SELECTOR
        | VmcsField::GUEST_CS_SELECTOR
        | VmcsField::GUEST_SS_SELECTOR
        | VmcsField::GUEST_DS_SELECTOR
        | VmcsField::GUEST_FS_SELECTOR
        | VmcsField::GUEST_GS_SELECTOR
        | VmcsField::GUEST_LDTR_SELECTOR
        | VmcsField::GUEST_TR_SELECTOR
        | VmcsField::GUEST_INTR_STATUS
        | VmcsField::GUEST_PML_INDEX => P::Free,
        VmcsField::HOST_ES_SELECTOR | VmcsField::HOST_DS_SELECTOR => P::Pinned(0),
        VmcsField::HOST_CS_SELECTOR => P::Pinned(KERNEL_CS),
        VmcsField::HOST_SS_SELECTOR => P::Pinned(KERNEL_DS),
        VmcsField::HOST_TR_SELECTOR => P::Pinned(KERNEL_TSS),
        VmcsField::HOST_FS_SELECTOR => P::Host(H::FsSelector),
        VmcsField::HOST_GS_SELECTOR => P::Host(H::GsSelector),
        VmcsField::IO_BITMAP_A | VmcsField::IO_BITMAP_B | VmcsField::EPTP_LIST_ADDRESS => {
            P::NeverWritten
        }
        VmcsField::MSR_BITMAP => P::Address(A::MsrBitmap),
        VmcsField::VM_EXIT_MSR_STORE_ADDR
        | VmcsField::VM_EXIT_MSR_LOAD_ADDR
        | VmcsField::VM_ENTRY_MSR_LOAD_ADDR => P::Address(A::MsrList),
        VmcsField::PML_ADDRESS => P::Address(A::Pml),
        VmcsField::TSC_OFFSET | VmcsField::TSC_MULTIPLIER => P::Free,
        VmcsField::VIRTUAL_APIC_PAGE_ADDR => P::Address(A::VirtualApic),
        VmcsField::APIC_ACCESS_ADDR => P::Address(A::ApicAccess),
        VmcsField::POSTED_INTR_DESC_ADDR => P::Address(A::PiDesc),
        // All VMFUNCs are emulated through VM exits: no function may be enabled.
        VmcsField::VM_FUNCTION_CONTROL => P::Pinned(0),
        VmcsField::EPT_POINTER => P::Eptp,
        VmcsField::EOI_EXIT_BITMAP0
        | VmcsField::EOI_EXIT_BITMAP1
        | VmcsField::EOI_EXIT_BITMAP2
        | VmcsField::EOI_EXIT_BITMAP3
        | VmcsField::XSS_EXIT_BITMAP
        | VmcsField::ENCLS_EXITING_BITMAP => P::Free,
        VmcsField::VMREAD_BITMAP => P::Address(A::VmreadBitmap),
        VmcsField::VMWRITE_BITMAP => P::Address(A::VmwriteBitmap),
        VmcsField::VE_INFORMATION_ADDRESS => P::Address(A::VeInfo),
        VmcsField::TERTIARY_VM_EXEC_CONTROL => P::Control(C::Tertiary),
        VmcsField::PID_POINTER_TABLE => P::Address(A::PidTable),
        VmcsField::GUEST_PHYSICAL_ADDRESS => P::ReadOnly,
        VmcsField::VMCS_LINK_POINTER => P::LinkPointer,
        VmcsField::GUEST_IA32_DEBUGCTL
        | VmcsField::GUEST_IA32_PAT
        | VmcsField::GUEST_IA32_EFER
        | VmcsField::GUEST_IA32_PERF_GLOBAL_CTRL
        | VmcsField::GUEST_PDPTR0
        | VmcsField::GUEST_PDPTR1
        | VmcsField::GUEST_PDPTR2
        | VmcsField::GUEST_PDPTR3
        | VmcsField::GUEST_BNDCFGS
        | VmcsField::GUEST_IA32_RTIT_CTL => P::Free,
        VmcsField::HOST_IA32_PAT => P::Host(H::Pat),
        VmcsField::HOST_IA32_EFER => P::Host(H::Efer),
        VmcsField::HOST_IA32_PERF_GLOBAL_CTRL => P::Host(H::PerfGlobalCtrl),
        VmcsField::PIN_BASED_VM_EXEC_CONTROL => P::Control(C::Pin),
        VmcsField::CPU_BASED_VM_EXEC_CONTROL => P::Control(C::Primary),
        VmcsField::EXCEPTION_BITMAP
        | VmcsField::PAGE_FAULT_ERROR_CODE_MASK
        | VmcsField::PAGE_FAULT_ERROR_CODE_MATCH
        | VmcsField::CR3_TARGET_COUNT => P::Free,
        VmcsField::VM_EXIT_CONTROLS => P::Control(C::Exit),
        VmcsField::VM_EXIT_MSR_STORE_COUNT
        | VmcsField::VM_EXIT_MSR_LOAD_COUNT
        | VmcsField::VM_ENTRY_MSR_LOAD_COUNT => P::MsrCount,
        VmcsField::VM_ENTRY_CONTROLS => P::Control(C::Entry),
        VmcsField::VM_ENTRY_INTR_INFO_FIELD
        | VmcsField::VM_ENTRY_EXCEPTION_ERROR_CODE
        | VmcsField::VM_ENTRY_INSTRUCTION_LEN
        | VmcsField::TPR_THRESHOLD => P::Free,
        VmcsField::SECONDARY_VM_EXEC_CONTROL => P::Control(C::Secondary),
        VmcsField::PLE_GAP | VmcsField::PLE_WINDOW | VmcsField::NOTIFY_WINDOW => P::Free,
        VmcsField::VM_INSTRUCTION_ERROR
        | VmcsField::VM_EXIT_REASON
        | VmcsField::VM_EXIT_INTR_INFO
        | VmcsField::VM_EXIT_INTR_ERROR_CODE
        | VmcsField::IDT_VECTORING_INFO_FIELD
        | VmcsField::IDT_VECTORING_ERROR_CODE
        | VmcsField::VM_EXIT_INSTRUCTION_LEN
        | VmcsField::VMX_INSTRUCTION_INFO => P::ReadOnly,
        VmcsField::GUEST_ES_LIMIT
        | VmcsField::GUEST_CS_LIMIT
        | VmcsField::GUEST_SS_LIMIT
        | VmcsField::GUEST_DS_LIMIT
        | VmcsField::GUEST_FS_LIMIT
        | VmcsField::GUEST_GS_LIMIT
        | VmcsField::GUEST_LDTR_LIMIT
        | VmcsField::GUEST_TR_LIMIT
        | VmcsField::GUEST_GDTR_LIMIT
        | VmcsField::GUEST_IDTR_LIMIT
        | VmcsField::GUEST_ES_AR_BYTES
        | VmcsField::GUEST_CS_AR_BYTES
        | VmcsField::GUEST_SS_AR_BYTES
        | VmcsField::GUEST_DS_AR_BYTES
        | VmcsField::GUEST_FS_AR_BYTES
        | VmcsField::GUEST_GS_AR_BYTES
        | VmcsField::GUEST_LDTR_AR_BYTES
        | VmcsField::GUEST_TR_AR_BYTES
        | VmcsField::GUEST_INTERRUPTIBILITY_INFO
        | VmcsField::GUEST_ACTIVITY_STATE
        | VmcsField::GUEST_SYSENTER_CS
        | VmcsField::VMX_PREEMPTION_TIMER_VALUE => P::Free,
        VmcsField::HOST_IA32_SYSENTER_CS => P::Host(H::SysenterCs),
        VmcsField::CR0_GUEST_HOST_MASK
        | VmcsField::CR4_GUEST_HOST_MASK
        | VmcsField::CR0_READ_SHADOW
        | VmcsField::CR4_READ_SHADOW
        | VmcsField::CR3_TARGET_VALUE0
        | VmcsField::CR3_TARGET_VALUE1
        | VmcsField::CR3_TARGET_VALUE2
        | VmcsField::CR3_TARGET_VALUE3 => P::Free,
        VmcsField::EXIT_QUALIFICATION | VmcsField::GUEST_LINEAR_ADDRESS => P::ReadOnly,
        VmcsField::GUEST_CR0
        | VmcsField::GUEST_CR3
        | VmcsField::GUEST_CR4
        | VmcsField::GUEST_ES_BASE
        | VmcsField::GUEST_CS_BASE
        | VmcsField::GUEST_SS_BASE
        | VmcsField::GUEST_DS_BASE
        | VmcsField::GUEST_FS_BASE
        | VmcsField::GUEST_GS_BASE
        | VmcsField::GUEST_LDTR_BASE
        | VmcsField::GUEST_TR_BASE
        | VmcsField::GUEST_GDTR_BASE
        | VmcsField::GUEST_IDTR_BASE
        | VmcsField::GUEST_DR7
        | VmcsField::GUEST_RSP
        | VmcsField::GUEST_RIP
        | VmcsField::GUEST_RFLAGS
        | VmcsField::GUEST_PENDING_DBG_EXCEPTIONS
        | VmcsField::GUEST_SYSENTER_ESP
        | VmcsField::GUEST_SYSENTER_EIP => P::Free,
        VmcsField::HOST_CR0 => P::HostCr0,
        VmcsField::HOST_CR3 => P::HostCr3,
        VmcsField::HOST_CR4 => P::HostCr4,
        VmcsField::HOST_FS_BASE => P::Host(H::FsBase),
        VmcsField::HOST_GS_BASE => P::Host(H::GsBase),
        VmcsField::HOST_TR_BASE => P::Host(H::TrBase),
        VmcsField::HOST_GDTR_BASE => P::Host(H::GdtrBase),
        VmcsField::HOST_IDTR_BASE => P::Host(H::IdtrBase),
        VmcsField::HOST_IA32_SYSENTER_ESP => P::Host(H::SysenterEsp),
        VmcsField::HOST_IA32_SYSENTER_EIP => P::Host(H::SysenterEip),
        VmcsField::HOST_RSP => P::HostRsp,
        VmcsField::HOST_RIP => P::Host(H::Rip),
        _ => return None,
    };
    Some(policy)
}

/// Index of an address field in [`super::records::VmcsRecord`]'s pinned references.
pub fn address_slot(field: VmcsField) -> Option<usize> {
    let slot = match field {
        VmcsField::MSR_BITMAP => 0,
        VmcsField::VM_EXIT_MSR_STORE_ADDR => 1,
        VmcsField::VM_EXIT_MSR_LOAD_ADDR => 2,
        VmcsField::VM_ENTRY_MSR_LOAD_ADDR => 3,
        VmcsField::PML_ADDRESS => 4,
        VmcsField::VE_INFORMATION_ADDRESS => 5,
        VmcsField::POSTED_INTR_DESC_ADDR => 6,
        VmcsField::VIRTUAL_APIC_PAGE_ADDR => 7,
        VmcsField::APIC_ACCESS_ADDR => 8,
        VmcsField::PID_POINTER_TABLE => 9,
        VmcsField::VMREAD_BITMAP => 10,
        VmcsField::VMWRITE_BITMAP => 11,
        _ => return None,
    };
    Some(slot)
}

/// True if KVM may write `field` while a shadow VMCS is current (`vmcs_shadow_fields.h`, both
/// the read-write and the read-only lists).
pub fn is_shadow_field(field: VmcsField) -> bool {
    matches!(
        field,
        // SHADOW_FIELD_RW
        VmcsField::GUEST_INTR_STATUS
            | VmcsField::GUEST_PML_INDEX
            | VmcsField::HOST_FS_SELECTOR
            | VmcsField::HOST_GS_SELECTOR
            | VmcsField::CPU_BASED_VM_EXEC_CONTROL
            | VmcsField::PIN_BASED_VM_EXEC_CONTROL
            | VmcsField::EXCEPTION_BITMAP
            | VmcsField::VM_ENTRY_EXCEPTION_ERROR_CODE
            | VmcsField::VM_ENTRY_INTR_INFO_FIELD
            | VmcsField::VM_ENTRY_INSTRUCTION_LEN
            | VmcsField::TPR_THRESHOLD
            | VmcsField::GUEST_INTERRUPTIBILITY_INFO
            | VmcsField::VMX_PREEMPTION_TIMER_VALUE
            | VmcsField::GUEST_RIP
            | VmcsField::GUEST_RSP
            | VmcsField::GUEST_CR0
            | VmcsField::GUEST_CR3
            | VmcsField::GUEST_CR4
            | VmcsField::GUEST_RFLAGS
            | VmcsField::CR0_GUEST_HOST_MASK
            | VmcsField::CR0_READ_SHADOW
            | VmcsField::CR4_READ_SHADOW
            | VmcsField::HOST_FS_BASE
            | VmcsField::HOST_GS_BASE
            // SHADOW_FIELD_RO
            | VmcsField::VM_EXIT_REASON
            | VmcsField::VM_EXIT_INTR_INFO
            | VmcsField::VM_EXIT_INSTRUCTION_LEN
            | VmcsField::IDT_VECTORING_INFO_FIELD
            | VmcsField::IDT_VECTORING_ERROR_CODE
            | VmcsField::VM_EXIT_INTR_ERROR_CODE
            | VmcsField::GUEST_CS_AR_BYTES
            | VmcsField::GUEST_SS_AR_BYTES
            | VmcsField::EXIT_QUALIFICATION
            | VmcsField::GUEST_LINEAR_ADDRESS
            | VmcsField::GUEST_PHYSICAL_ADDRESS
            | VmcsField::GUEST_PHYSICAL_ADDRESS_HIGH
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_follow_the_encoding() {
        assert_eq!(VmcsField::VIRTUAL_PROCESSOR_ID.width_bits(), 16);
        assert_eq!(VmcsField::EPT_POINTER.width_bits(), 64);
        assert_eq!(VmcsField::EPT_POINTER_HIGH.width_bits(), 32);
        assert_eq!(VmcsField::PIN_BASED_VM_EXEC_CONTROL.width_bits(), 32);
        assert_eq!(VmcsField::HOST_RIP.width_bits(), 64);
    }

    #[test]
    fn high_halves_are_unknown_and_every_host_field_is_checked() {
        assert_eq!(field_policy(VmcsField::EPT_POINTER_HIGH), None);
        assert_eq!(field_policy(VmcsField::IO_BITMAP_A_HIGH), None);
        // Every host-state field (type bits 11:10 = 3) has a rule other than Free.
        for raw in 0u32..0x7000 {
            let f = VmcsField(raw);
            if (raw >> 10) & 3 == 3 {
                if let Some(p) = field_policy(f) {
                    assert_ne!(p, FieldPolicy::Free, "{raw:#x}");
                }
            }
        }
    }

    #[test]
    fn shadow_fields_are_known_fields() {
        for raw in 0u32..0x7000 {
            let f = VmcsField(raw);
            if is_shadow_field(f) && f != VmcsField::GUEST_PHYSICAL_ADDRESS_HIGH {
                assert!(field_policy(f).is_some(), "{raw:#x}");
            }
        }
    }
}
