// SPDX-License-Identifier: GPL-2.0

//! Saving what a [`Verifier`] keeps outside its tables, and resuming over copies of the
//! tables: the exhaustive explorer (`tests/explore.rs`) forks every state it reaches this way.
//! Built only with the `explore` feature, which only the crate's own tests enable; the module
//! never contains it.

use core::hash::{Hash, Hasher};

use super::audit::{AuditLog, AuditScalars};
use super::denial::Denial;
use super::records::{MmioRange, Tables};
use super::{Config, Verifier, MAX_MMIO_RANGES};

/// The state of a verifier that is not in its tables.
///
/// Its [`Hash`] covers only what a later decision can depend on: the counters, the refusal
/// ring's sequence numbers and the plan epoch (plans never outlive one call) are left out, so
/// two states that differ only in history hash alike.
#[derive(Clone, Copy, Debug)]
pub struct VerifierScalars {
    config: Config,
    audit: AuditScalars,
    mmio: [Option<MmioRange>; MAX_MMIO_RANGES],
    share_free_head: Option<u32>,
    invept_gen: u32,
    invvpid_gen: u32,
    epoch: u64,
}

impl Hash for VerifierScalars {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.mmio.hash(state);
        self.share_free_head.hash(state);
        self.invept_gen.hash(state);
        self.invvpid_gen.hash(state);
    }
}

impl<'a> Verifier<'a> {
    /// What [`Verifier::resume`] needs besides the tables.
    pub fn scalars(&self) -> VerifierScalars {
        VerifierScalars {
            config: self.config,
            audit: self.audit.scalars(),
            mmio: self.mmio,
            share_free_head: self.share_free_head,
            invept_gen: self.invept_gen,
            invvpid_gen: self.invvpid_gen,
            epoch: self.epoch,
        }
    }

    /// A verifier over `tables`, which hold exactly what the tables of the verifier that saved
    /// `s` held then (copies of them). Nothing is reset. No tracked-frame bitmap is attached.
    pub fn resume(tables: Tables<'a>, s: &VerifierScalars) -> Result<Verifier<'a>, Denial> {
        if tables.regions.len() < Tables::regions_needed(tables.frames.len()) {
            return Err(Denial::BadConfig);
        }
        Ok(Verifier {
            config: s.config,
            frames: tables.frames,
            regions: tables.regions,
            vms: tables.vms,
            vcpus: tables.vcpus,
            vmcs: tables.vmcs,
            shares: tables.shares,
            vpids: tables.vpids,
            cpus: tables.cpus,
            audit: AuditLog::resume(tables.audit, &s.audit),
            mmio: s.mmio,
            share_free_head: s.share_free_head,
            invept_gen: s.invept_gen,
            invvpid_gen: s.invvpid_gen,
            epoch: s.epoch,
            tracked: &[],
        })
    }
}
