//! What an identity holds, and through which path.
//!
//! Holdings are collected by walking a graph from the identity: it acts as
//! itself and as each principal it can become. Today the edges are the group
//! memberships the cluster assigns (R1.4); derived powers — impersonation,
//! running Pods as a ServiceAccount, minting its tokens, binding or escalating
//! roles — become further [`Via`] edges of the same walk.

use std::collections::BTreeMap;
use std::fmt;

use crate::engine::index::{Grant, Index};
use crate::model::{BindingKey, Identity, Name, RoleKey};

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

/// One permission of one policy, held through one binding.
#[derive(Debug, Clone)]
pub struct Held<'a> {
    pub permission: u32,
    /// `None` for holdings through ClusterRoleBindings (cluster-wide).
    pub namespace: Option<&'a Name>,
    pub via: Via,
    pub binding: &'a BindingKey,
    pub role: &'a RoleKey,
    pub grant: &'a Grant,
}

/// Everything a subject holds, per policy slot.
#[derive(Debug, Default)]
pub struct Holdings<'a> {
    pub by_policy: BTreeMap<u32, Vec<Held<'a>>>,
}

/// The principals an identity acts as, with how it reaches each.
fn principals(id: &Identity) -> Vec<(Identity, Via)> {
    let mut out = vec![(id.clone(), Via::Direct)];
    for g in id.implicit_groups() {
        let name = g.name().clone();
        out.push((g, Via::Group(name)));
    }
    out
}

/// Collects what `subject` holds of every policy (or only of `only`).
pub fn holdings<'a>(index: &'a Index, subject: &Identity, only: Option<u32>) -> Holdings<'a> {
    let mut h = Holdings::default();
    for (principal, via) in principals(subject) {
        for bkey in index.bindings_naming(&principal) {
            let Some(binding) = index.binding(bkey) else {
                continue;
            };
            // R2.3: a binding to a missing role grants nothing.
            let Some(role) = index.role(&binding.role) else {
                continue;
            };
            for grant in &role.grants {
                if only.is_some_and(|o| o != grant.policy) {
                    continue;
                }
                if grant.non_resource && binding.key.namespace.is_some() {
                    continue;
                }
                h.by_policy.entry(grant.policy).or_default().push(Held {
                    permission: grant.permission,
                    namespace: binding.key.namespace.as_ref(),
                    via: via.clone(),
                    binding: &binding.key,
                    role: &binding.role,
                    grant,
                });
            }
        }
    }
    h
}
