// SPDX-License-Identifier: GPL-2.0

//! Saving what a [`Backend`] keeps outside its tables, and resuming over copies of them
//! (feature `explore`, see `policy/snapshot.rs`).

use core::hash::{Hash, Hasher};

use super::super::denial::Denial;
use super::super::records::Tables;
use super::super::snapshot::VerifierScalars;
use super::super::types::Pfn;
use super::super::Verifier;
use super::{Backend, BackendTables};

/// The state of a backend (and its verifier) that is not in their tables.
///
/// Its [`Hash`] leaves out the counters (leaked pages, leaves written), as
/// [`VerifierScalars`] does.
#[derive(Clone, Copy, Debug)]
pub struct BackendScalars {
    verifier: VerifierScalars,
    ghost_next: usize,
    zero_page: Option<Pfn>,
    leaked: u64,
    leaf_writes: [u64; 3],
    registering: bool,
    memslot_free: Option<u32>,
}

impl Hash for BackendScalars {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.verifier.hash(state);
        self.ghost_next.hash(state);
        self.zero_page.hash(state);
        self.registering.hash(state);
        self.memslot_free.hash(state);
    }
}

impl<'a> Backend<'a> {
    /// What [`Backend::resume`] needs besides the tables.
    pub fn scalars(&self) -> BackendScalars {
        BackendScalars {
            verifier: self.v.scalars(),
            ghost_next: self.ghost_next,
            zero_page: self.zero_page,
            leaked: self.leaked,
            leaf_writes: self.leaf_writes,
            registering: self.registering,
            memslot_free: self.memslot_free,
        }
    }

    /// A backend over copies of the tables of the backend that saved `s`, as they were then.
    pub fn resume(
        tables: Tables<'a>,
        t: BackendTables<'a>,
        s: &BackendScalars,
    ) -> Result<Backend<'a>, Denial> {
        let v = Verifier::resume(tables, &s.verifier)?;
        if !t.fit(&v) {
            return Err(Denial::BadConfig);
        }
        Ok(Backend {
            v,
            pending: t.pending,
            vms: t.vms,
            vcpus: t.vcpus,
            memslots: t.memslots,
            deferred: t.deferred,
            zombies: t.zombies,
            ghosts: t.ghosts,
            ghost_next: s.ghost_next,
            zero_page: s.zero_page,
            leaked: s.leaked,
            leaf_writes: s.leaf_writes,
            registering: s.registering,
            memslot_free: s.memslot_free,
        })
    }
}
