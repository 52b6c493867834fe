//! What an identity holds, and through which path.
//!
//! Holdings are collected by walking a graph from the identity: it acts as
//! itself, as each group the cluster puts it in (R1.4), and, through the
//! escalation paths of R9.1 that a policy considers, as every identity it can
//! obtain the credentials or rights of — transitively, each identity visited
//! once (cycles are cut). The walk of the derived edges is in
//! [`derive`](super::derive).

use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;

use super::derive::{Hop, Walk};
use crate::engine::index::{Grant, Index};
use crate::model::{BindingKey, DerivedSet, Identity, Name, RoleKey};

/// How the subject reaches the principal whose binding grants a permission.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Via {
    /// The binding names the subject itself.
    Direct,
    /// The binding names a group the subject is a member of.
    Group(Name),
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Via::Direct => Ok(()),
            Via::Group(g) => write!(f, "member of Group {g}"),
        }
    }
}

/// Where a holding ends: a rule of a role, or the last derived step itself
/// (a Pod mounting Secrets, escalating roles: no rule names the permission).
#[derive(Debug, Clone)]
pub enum End<'a> {
    Rule {
        /// `None` for a role the subject can bind to itself (RoleGrant).
        binding: Option<&'a BindingKey>,
        role: &'a RoleKey,
        grant: &'a Grant,
    },
    Derived,
}

/// One permission of one policy, held through one path.
#[derive(Debug, Clone)]
pub struct Held<'a> {
    pub permission: u32,
    /// `None` for cluster-wide holdings.
    pub namespace: Option<&'a Name>,
    pub via: Via,
    /// The derived steps before `end`, last first; `None` for a rule the
    /// subject holds itself.
    pub hops: Option<Rc<Hop<'a>>>,
    pub end: End<'a>,
}

impl Held<'_> {
    /// How many derived steps the path takes.
    pub fn depth(&self) -> u32 {
        self.hops.as_ref().map_or(0, |h| h.depth)
    }

    /// Which path an explanation prefers: the shortest, then direct before
    /// group, own rules before aggregated ones, then by binding and rule.
    pub fn rank(&self) -> (u32, bool, bool, Option<&BindingKey>, u32) {
        match &self.end {
            End::Rule { binding, grant, .. } => (
                self.depth(),
                self.via != Via::Direct,
                grant.source.is_some(),
                *binding,
                grant.rule,
            ),
            End::Derived => (self.depth(), false, false, None, 0),
        }
    }
}

/// Everything a subject holds, per policy slot.
#[derive(Debug, Default)]
pub struct Holdings<'a> {
    pub by_policy: BTreeMap<u32, Vec<Held<'a>>>,
}

/// The principals an identity acts as without any derivation, with how it
/// reaches each.
pub(super) fn principals(id: &Identity) -> Vec<(Identity, Via)> {
    let mut out = vec![(id.clone(), Via::Direct)];
    for g in id.implicit_groups() {
        let name = g.name().clone();
        out.push((g, Via::Group(name)));
    }
    out
}

/// Collects what `subject` holds of every policy (or only of `only`). Policies
/// that consider the same escalation paths (R9.2) share one walk.
pub fn holdings<'a>(index: &'a Index, subject: &Identity, only: Option<u32>) -> Holdings<'a> {
    let mut groups: Vec<(DerivedSet, Vec<u32>)> = Vec::new();
    for (slot, p) in index.policies() {
        if only.is_some_and(|o| o != slot) {
            continue;
        }
        match groups.iter_mut().find(|(set, _)| *set == p.derived) {
            Some((_, slots)) => slots.push(slot),
            None => groups.push((p.derived, vec![slot])),
        }
    }
    let mut h = Holdings::default();
    let single = groups.len() == 1;
    for (set, slots) in &groups {
        // With one group every policy of interest is in it: skip the filter.
        let filter = (!single || only.is_some()).then_some(slots.as_slice());
        Walk::new(index, *set, filter, &mut h).run(subject);
    }
    h
}
