// SPDX-License-Identifier: GPL-2.0

//! Counters and the refusal ring.
//!
//! Every verdict increments one counter of its [`CheckClass`]. Every refusal is also written to a
//! fixed-size ring of [`AuditRecord`]s that the caller supplies; when the ring is full the oldest
//! record is overwritten, and [`AuditLog::lost`] tells how many were overwritten before being
//! read. Nothing here allocates or can fail.

use super::denial::{CheckClass, Denial};

/// Verified and refused counts of one class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassCounters {
    /// Number of checks that passed.
    pub verified: u64,
    /// Number of checks that were refused.
    pub refused: u64,
}

/// One refused write or transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    /// Sequence number, starting at 1; 0 marks an empty slot.
    pub seq: u64,
    /// Class of the check that refused.
    pub class: CheckClass,
    /// Why it was refused.
    pub reason: Denial,
    /// What was written: the VMCS field encoding, the physical address of the EPT entry, the
    /// frame number of an ownership transition, or the control-register number.
    pub subject: u64,
    /// The previous value when the verifier knows it, otherwise 0.
    pub old: u64,
    /// The refused value.
    pub new: u64,
}

impl AuditRecord {
    /// An unused ring slot.
    pub const EMPTY: AuditRecord = AuditRecord {
        seq: 0,
        class: CheckClass::Vmcs,
        reason: Denial::BadConfig,
        subject: 0,
        old: 0,
        new: 0,
    };
}

impl Default for AuditRecord {
    fn default() -> Self {
        AuditRecord::EMPTY
    }
}

/// Counters per class plus the refusal ring.
pub struct AuditLog<'a> {
    counters: [ClassCounters; CheckClass::COUNT],
    ring: &'a mut [AuditRecord],
    next_seq: u64,
    read_seq: u64,
    lost_total: u64,
    anomalies: u64,
}

/// The log's counters and sequence numbers, without its ring (feature `explore`).
#[cfg(feature = "explore")]
#[derive(Clone, Copy, Debug)]
pub struct AuditScalars {
    counters: [ClassCounters; CheckClass::COUNT],
    next_seq: u64,
    read_seq: u64,
    lost_total: u64,
    anomalies: u64,
}

#[cfg(feature = "explore")]
impl<'a> AuditLog<'a> {
    pub(crate) fn scalars(&self) -> AuditScalars {
        AuditScalars {
            counters: self.counters,
            next_seq: self.next_seq,
            read_seq: self.read_seq,
            lost_total: self.lost_total,
            anomalies: self.anomalies,
        }
    }

    /// A log over a copy of the ring it saved `s` with.
    pub(crate) fn resume(ring: &'a mut [AuditRecord], s: &AuditScalars) -> AuditLog<'a> {
        AuditLog {
            counters: s.counters,
            ring,
            next_seq: s.next_seq,
            read_seq: s.read_seq,
            lost_total: s.lost_total,
            anomalies: s.anomalies,
        }
    }
}

impl<'a> AuditLog<'a> {
    pub(crate) fn new(ring: &'a mut [AuditRecord]) -> AuditLog<'a> {
        for slot in ring.iter_mut() {
            *slot = AuditRecord::EMPTY;
        }
        AuditLog {
            counters: [ClassCounters::default(); CheckClass::COUNT],
            ring,
            next_seq: 1,
            read_seq: 1,
            lost_total: 0,
            anomalies: 0,
        }
    }

    pub(crate) fn verified(&mut self, class: CheckClass) {
        if let Some(c) = self.counters.get_mut(class.index()) {
            c.verified = c.verified.saturating_add(1);
        }
    }

    pub(crate) fn refused(
        &mut self,
        class: CheckClass,
        reason: Denial,
        subject: u64,
        old: u64,
        new: u64,
    ) {
        if let Some(c) = self.counters.get_mut(class.index()) {
            c.refused = c.refused.saturating_add(1);
        }
        let seq = self.next_seq;
        self.next_seq = self.next_seq.saturating_add(1);
        let len = self.ring.len() as u64;
        if len == 0 {
            return;
        }
        // `len` is non-zero here, so the remainder is well defined.
        let slot = seq.checked_rem(len).and_then(|i| usize::try_from(i).ok());
        if let Some(rec) = slot.and_then(|i| self.ring.get_mut(i)) {
            *rec = AuditRecord {
                seq,
                class,
                reason,
                subject,
                old,
                new,
            };
        }
    }

    /// Records an internal inconsistency that was tolerated instead of panicking, such as a
    /// commit reporting an old value that was never verified.
    pub(crate) fn anomaly(&mut self) {
        self.anomalies = self.anomalies.saturating_add(1);
    }

    /// Counters of one class.
    pub fn counters(&self, class: CheckClass) -> ClassCounters {
        self.counters
            .get(class.index())
            .copied()
            .unwrap_or_default()
    }

    /// Total number of refusals recorded since initialisation.
    pub fn total_refused(&self) -> u64 {
        self.next_seq.saturating_sub(1)
    }

    /// Number of internal inconsistencies tolerated (should stay 0).
    pub fn anomalies(&self) -> u64 {
        self.anomalies
    }

    /// Number of refusal records overwritten before they were read with [`AuditLog::pop`].
    pub fn lost(&self) -> u64 {
        let len = self.ring.len() as u64;
        let pending = self.next_seq.saturating_sub(self.read_seq);
        self.lost_total.saturating_add(pending.saturating_sub(len))
    }

    /// Returns the oldest unread refusal record, if any.
    pub fn pop(&mut self) -> Option<AuditRecord> {
        let len = self.ring.len() as u64;
        if len == 0 {
            return None;
        }
        // Skip records that were overwritten before they could be read.
        let oldest_kept = self.next_seq.saturating_sub(len);
        if self.read_seq < oldest_kept {
            self.lost_total = self
                .lost_total
                .saturating_add(oldest_kept.saturating_sub(self.read_seq));
            self.read_seq = oldest_kept;
        }
        if self.read_seq >= self.next_seq {
            return None;
        }
        let slot = self
            .read_seq
            .checked_rem(len)
            .and_then(|i| usize::try_from(i).ok())?;
        let rec = self.ring.get(slot).copied()?;
        self.read_seq = self.read_seq.saturating_add(1);
        Some(rec)
    }

    /// The most recent refusal record, without consuming it.
    pub fn last(&self) -> Option<AuditRecord> {
        let len = self.ring.len() as u64;
        let seq = self.next_seq.checked_sub(1).filter(|s| *s > 0)?;
        let slot = seq.checked_rem(len).and_then(|i| usize::try_from(i).ok())?;
        self.ring.get(slot).copied()
    }
}
