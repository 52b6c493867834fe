//! What every ServiceAccount of a namespace holds, as permissions per policy
//! and scope, kept across decisions with what its walk read.
//!
//! A namespace's summary walks its ServiceAccounts and everyone they act as,
//! transitively, so it reads beyond the namespace: the bindings that name
//! each identity it reaches (a RoleBinding in another namespace may name
//! one of them) and everything that renews the index's epoch (roles,
//! policies, ServiceAccounts, escalation bindings, who is named). It holds
//! on a state while the epoch is the same and every identity it reached is
//! named by the very same bindings: a plain binding elsewhere leaves it be.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use fixedbitset::FixedBitSet;

use super::{Index, Power, Targets, Weigh};
use crate::model::{Binding, DerivedSet, Identity, Name};

/// Which permissions of one policy a summary holds, cluster-wide and per
/// namespace.
#[derive(Debug, Default, Clone)]
pub struct SlotBits {
    pub cluster: FixedBitSet,
    pub per_ns: BTreeMap<Name, FixedBitSet>,
    /// `cluster` and every `per_ns` together.
    pub all: FixedBitSet,
}

impl SlotBits {
    /// Room for a policy of `n` permissions.
    pub fn new(n: usize) -> Self {
        SlotBits {
            cluster: FixedBitSet::with_capacity(n),
            per_ns: BTreeMap::new(),
            all: FixedBitSet::with_capacity(n),
        }
    }

    /// Permission `p` held in `scope` (`None`: cluster-wide).
    pub fn insert(&mut self, p: usize, scope: Option<&Name>) {
        match scope {
            None => self.cluster.insert(p),
            Some(ns) => {
                if let Some(b) = self.per_ns.get_mut(ns) {
                    b.insert(p);
                } else {
                    let mut b = FixedBitSet::with_capacity(self.all.len());
                    b.insert(p);
                    self.per_ns.insert(ns.clone(), b);
                }
            }
        }
        self.all.insert(p);
    }
}

/// (namespace, the escalation paths walked, the policies of interest: all
/// when `None`).
pub(crate) type SummaryKey = (Name, DerivedSet, Option<Vec<u32>>);

/// A namespace's summary without its paths, and what it read.
#[derive(Debug)]
pub struct KeptSummary {
    pub slots: BTreeMap<u32, Arc<SlotBits>>,
    reads: Reads,
    covered: Covered,
    /// The last [`Index::state`] it was found to hold on (0: none): the
    /// same state holds the same objects, so it holds there without
    /// reading again what the walk read (hundreds of lookups). Decisions
    /// between two changes of the state check it on the same state.
    held_on: AtomicU64,
}

/// Where a summary's walk reached every ServiceAccount of a namespace, and
/// where it mounted a namespace's Secrets: a new binding that lets an
/// identity it reached do no more than that there adds its grants alone.
#[derive(Debug, Default)]
pub struct Covered {
    pub every: BTreeSet<Name>,
    pub mounts: BTreeSet<Name>,
}

/// A binding a change added: the state after it is the state before (of
/// epoch `epoch_before`) with `binding`, which names nobody the state before
/// did not know ([`Index::knows`]: the ghosts, Users and groups known are
/// the same).
#[derive(Debug, Clone, Copy)]
pub struct Added<'a> {
    pub binding: &'a Binding,
    pub epoch_before: u64,
    /// The [`Index::state`] before it.
    pub state_before: u64,
}

impl<'a> Added<'a> {
    /// `binding`, which the change `undo` undoes added.
    pub(crate) fn by(binding: &'a Binding, undo: &super::Undo) -> Self {
        Added {
            binding,
            epoch_before: undo.epoch_before(),
            state_before: undo.state_before(),
        }
    }
}

/// Why [`Index::kept_summary_but`] found no summary.
#[derive(Debug, Clone)]
pub enum NotKept {
    /// None is kept that held on the state before the binding.
    Missing,
    /// One is (its permissions on the state before), but the binding lets
    /// a subject it reached obtain more than the walk had reached.
    Beyond(BTreeMap<u32, Arc<SlotBits>>),
}

/// The permissions of a summary kept for the state before a binding was
/// added, and on the state after it ([`Index::kept_summary_but`]).
#[derive(Debug, Clone)]
pub struct KeptBut {
    pub before: BTreeMap<u32, Arc<SlotBits>>,
    pub after: BTreeMap<u32, Arc<SlotBits>>,
}

/// The index's epoch and, for each identity the walk reached (groups too),
/// the bindings naming it. The bindings are kept, so no other binding can
/// take the address of one while this is kept.
#[derive(Debug)]
struct Reads {
    epoch: u64,
    named: Vec<(Identity, Box<[Arc<Binding>]>)>,
}

impl KeptSummary {
    /// A summary computed on `index`, whose walk read the bindings naming
    /// each of `reached` (repeats allowed), all but `without`: then it is
    /// the summary of the state without that binding, whose epoch is
    /// `epoch`.
    pub(crate) fn new<'a>(
        index: &Index,
        epoch: u64,
        slots: BTreeMap<u32, Arc<SlotBits>>,
        reached: impl IntoIterator<Item = &'a Identity>,
        covered: Covered,
        without: Option<&Binding>,
    ) -> Self {
        let without = without.map(std::ptr::from_ref);
        let mut named: Vec<(Identity, Box<[Arc<Binding>]>)> = Vec::new();
        // Each ServiceAccount's groups are read again with it.
        let mut seen = super::FastSet::default();
        for id in reached {
            if !seen.insert(id) {
                continue;
            }
            // In the index's order: most checks find it so.
            let list: Box<[Arc<Binding>]> = index
                .bindings_naming(id)
                .iter()
                .filter(|b| Some(Arc::as_ptr(b)) != without)
                .cloned()
                .collect();
            named.push((id.clone(), list));
        }
        KeptSummary {
            slots,
            reads: Reads { epoch, named },
            covered,
            held_on: AtomicU64::new(0),
        }
    }

    /// Whether the walk would find the same on `index`.
    pub(crate) fn holds_on(&self, index: &Index) -> bool {
        self.remembered(index.state(), || {
            self.read_the_same(index, index.epoch, None)
        })
    }

    /// `check`, which tells whether it holds on the state numbered
    /// `state`, or what was found on that state before.
    fn remembered(&self, state: u64, check: impl FnOnce() -> bool) -> bool {
        if state != 0 && self.held_on.load(Ordering::Relaxed) == state {
            return true;
        }
        let holds = check();
        if holds && state != 0 {
            self.held_on.store(state, Ordering::Relaxed);
        }
        holds
    }

    /// Whether what the walk read is what `index` has at epoch `epoch`,
    /// but for the binding `added` there besides.
    fn read_the_same(&self, index: &Index, epoch: u64, added: Option<&Binding>) -> bool {
        let added_at = added.map(std::ptr::from_ref);
        self.reads.epoch == epoch
            && self.reads.named.iter().all(|(id, kept)| {
                let now = index.bindings_naming(id);
                let extra = usize::from(added.is_some_and(|b| b.subjects.contains(id)));
                now.len() == kept.len() + extra
                    && same_bindings(
                        now.iter().map(Arc::as_ptr).filter(|b| Some(*b) != added_at),
                        kept,
                    )
            })
    }
}

/// Whether the bindings at the addresses `now` are those of `kept`, in any
/// order: the index keeps a list in the order bindings came (a removal may
/// swap two), so it is compared in that order first, and sorted only when
/// that fails.
fn same_bindings(now: impl Iterator<Item = *const Binding> + Clone, kept: &[Arc<Binding>]) -> bool {
    let mut n = 0;
    let in_order = now.clone().zip(kept).all(|(a, b)| {
        n += 1;
        a == Arc::as_ptr(b)
    });
    if in_order && n == kept.len() && now.clone().count() == n {
        return true;
    }
    let mut a: Vec<*const Binding> = now.collect();
    let mut b: Vec<*const Binding> = kept.iter().map(Arc::as_ptr).collect();
    a.sort_unstable();
    b.sort_unstable();
    a == b
}

impl KeptSummary {
    /// Whether `added` names an identity the walk reached.
    pub(crate) fn reached_by(&self, added: &Binding) -> bool {
        self.reads
            .named
            .iter()
            .any(|(id, _)| added.subjects.contains(id))
    }

    /// [`holds_on`](Self::holds_on) the state before `added`, read on the
    /// state after it (`index`).
    fn holds_on_but(&self, index: &Index, added: Added<'_>) -> bool {
        self.remembered(added.state_before, || {
            self.read_the_same(index, added.epoch_before, Some(added.binding))
        })
    }
}

/// A summary's permissions `out` with what `added` grants, as a walk that
/// reached one of its subjects finds them (of the policies `slots`, all when
/// `None`).
pub(crate) fn with_grants(
    index: &Index,
    mut out: BTreeMap<u32, Arc<SlotBits>>,
    added: &Binding,
    slots: Option<&[u32]>,
) -> BTreeMap<u32, Arc<SlotBits>> {
    // R2.3: a binding to a missing role grants nothing.
    let Some(entry) = index.role(&added.role) else {
        return out;
    };
    let scope = added.key.namespace.as_ref();
    for g in entry.grants.iter().filter(|g| g.counts(scope, slots)) {
        let n = index
            .policy_slot(g.policy)
            .map_or(0, |p| p.permissions.len());
        let p = g.permission as usize;
        if p >= n {
            continue;
        }
        insert_bit(&mut out, g.policy, n, p, scope);
    }
    out
}

/// Permission `p` of the policy in `slot` (of `n` permissions) held in
/// `scope`, in a summary's permissions `out`.
fn insert_bit(
    out: &mut BTreeMap<u32, Arc<SlotBits>>,
    slot: u32,
    n: usize,
    p: usize,
    scope: Option<&Name>,
) {
    Arc::make_mut(
        out.entry(slot)
            .or_insert_with(|| Arc::new(SlotBits::new(n))),
    )
    .insert(p, scope);
}

/// A summary's permissions `out` with what a Pod mounts in `ns`, as a walk
/// that reached a subject creating workloads there finds them (of the
/// policies `slots`, all when `None`).
fn with_mounts(
    index: &Index,
    mut out: BTreeMap<u32, Arc<SlotBits>>,
    ns: &Name,
    slots: Option<&[u32]>,
) -> BTreeMap<u32, Arc<SlotBits>> {
    let wanted = |slot: u32| slots.is_none_or(|s| s.contains(&slot));
    for &(slot, pi) in index.mount_pairs().iter().filter(|(s, _)| wanted(*s)) {
        let n = index.policy_slot(slot).map_or(0, |p| p.permissions.len());
        insert_bit(&mut out, slot, n, pi as usize, Some(ns));
    }
    out
}

impl Weigh for KeptSummary {
    fn weight(&self) -> usize {
        let named: usize = self.reads.named.iter().map(|(_, l)| 1 + l.len()).sum();
        let scopes: usize = self.slots.values().map(|s| 1 + s.per_ns.len()).sum();
        named + scopes + self.covered.every.len() + self.covered.mounts.len()
    }
}

impl Index {
    /// The epoch of this state (see [`Undo::epoch_before`]).
    ///
    /// [`Undo::epoch_before`]: super::Undo::epoch_before
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The summary kept for `key` that holds on this state.
    pub(crate) fn kept_summary(&self, key: &SummaryKey) -> Option<Arc<KeptSummary>> {
        self.ns_summaries.get(key, |s| s.holds_on(self))
    }

    /// The permissions on this state, the state after `added`, of the
    /// summary kept for `key` on the state before it: as kept when the
    /// summary's walk reached none of the binding's subjects; with what the
    /// binding grants when it did, and its role lets them obtain nothing
    /// the walk had not reached already ([`with_added`](Self::with_added)). `Err` says why
    /// not: nothing is kept for the state before, or the binding reaches
    /// beyond what its walk had (walked again).
    pub(crate) fn kept_summary_but(
        &self,
        key: &SummaryKey,
        added: Added<'_>,
    ) -> Result<KeptBut, NotKept> {
        let kept = self
            .ns_summaries
            .get(key, |s| s.holds_on_but(self, added))
            .ok_or(NotKept::Missing)?;
        let b = added.binding;
        let before = kept.slots.clone();
        if !kept.reached_by(b) {
            let after = before.clone();
            return Ok(KeptBut { before, after });
        }
        match self.with_added(key, before.clone(), &kept.covered, b) {
            Some(after) => Ok(KeptBut { before, after }),
            None => Err(NotKept::Beyond(before)),
        }
    }

    /// A summary's permissions `slots` on the state before binding `b`
    /// (its walk reached one of `b`'s subjects, and `covered` is what it
    /// reached), with what `b` adds on the state after it, when its role
    /// lets them obtain nothing the walk had not reached already: no
    /// escalation path of the walk's kinds, or workloads, exec or every
    /// token in a namespace whose every ServiceAccount the walk had
    /// reached (workloads mount that namespace's Secrets too). `None`
    /// otherwise.
    pub(crate) fn with_added(
        &self,
        key: &SummaryKey,
        slots: BTreeMap<u32, Arc<SlotBits>>,
        covered: &Covered,
        b: &Binding,
    ) -> Option<BTreeMap<u32, Arc<SlotBits>>> {
        let derives = self.role(&b.role).map_or(&[][..], |e| &e.derives[..]);
        // Workloads in a namespace whose Secrets the walk had not mounted:
        // their Pods mount them now, a fixed set of permissions there.
        let mut mounts = None;
        let nothing_new = derives.iter().filter(|d| key.1.contains(d.kind)).all(|d| {
            let Some(ns) = &b.key.namespace else {
                return false;
            };
            let every = covered.every.contains(ns);
            match &d.power {
                Power::Workloads => {
                    if !covered.mounts.contains(ns) {
                        mounts = Some(ns);
                    }
                    every
                }
                Power::Exec | Power::Tokens(Targets::All) => every,
                _ => false,
            }
        });
        if !nothing_new {
            return None;
        }
        let slots = with_grants(self, slots, b, key.2.as_deref());
        Some(match mounts {
            Some(ns) => with_mounts(self, slots, ns, key.2.as_deref()),
            None => slots,
        })
    }

    /// Whether a summary computed for `key` on a state that lasts one
    /// decision would be kept (see [`MemoList::put`]).
    pub(crate) fn keeps_summary(&self, key: &SummaryKey, passing: bool) -> bool {
        !passing || !self.ns_summaries.has(key)
    }

    /// Keeps `summary`, computed on this state, for `key`; `only_first`
    /// when nothing else is kept for it (see [`MemoList::put`]).
    ///
    /// [`MemoList::put`]: super::MemoList::put
    pub(crate) fn keep_summary(&self, key: &SummaryKey, summary: KeptSummary, only_first: bool) {
        self.ns_summaries.put(key, Arc::new(summary), only_first);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BindingKey, RoleKey};

    #[test]
    fn the_same_bindings_in_any_order_and_no_others() {
        let b = |name: &str| {
            Arc::new(Binding {
                key: BindingKey {
                    namespace: None,
                    name: Name::from(name),
                },
                role: RoleKey::cluster("r"),
                subjects: Vec::new(),
            })
        };
        let (x, y, z) = (b("x"), b("y"), b("z"));
        let kept = [x.clone(), y.clone()];
        let at = |l: &[&Arc<Binding>]| l.iter().map(|b| Arc::as_ptr(b)).collect::<Vec<_>>();
        let same = |l: &[&Arc<Binding>]| same_bindings(at(l).into_iter(), &kept);
        assert!(same(&[&x, &y]));
        assert!(same(&[&y, &x]), "a removal may swap two");
        assert!(!same(&[&x]));
        assert!(!same(&[&x, &y, &z]));
        assert!(!same(&[&x, &z]));
        assert!(!same(&[&x, &x]), "the same binding twice is not the other");
        // Equal content at another address is another binding.
        assert!(!same(&[&x, &b("y")]));
    }
}
