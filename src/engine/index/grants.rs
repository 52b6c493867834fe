//! Per role, which permissions of which policies its effective rules grant.
//! Decisions read these instead of matching rules again.

use std::sync::Arc;

use super::Index;
use crate::model::{Name, RoleKey};
use crate::rbac;

/// Permission `permission` of the policy in slot `policy` is granted by rule
/// `rule` of the role, or of the aggregated ClusterRole `source`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub policy: u32,
    pub permission: u32,
    pub source: Option<Name>,
    pub rule: u32,
    /// Non-resource URLs are granted through ClusterRoleBindings only (R3.4).
    pub non_resource: bool,
}

impl Grant {
    /// Whether a walk counts this grant, given by a binding in `scope`
    /// (`None`: cluster-wide), for the policies `slots` (all when `None`).
    pub fn counts(&self, scope: Option<&Name>, slots: Option<&[u32]>) -> bool {
        slots.is_none_or(|s| s.contains(&self.policy)) && !(self.non_resource && scope.is_some())
    }
}

impl Index {
    fn compute_grants(&self, key: &RoleKey, only: Option<u32>) -> Vec<Grant> {
        let rules = self.effective_rules(key);
        let mut out: Vec<Grant> = Vec::new();
        for (slot, policy) in self.policies() {
            if only.is_some_and(|o| o != slot) {
                continue;
            }
            for (pi, perm) in policy.permissions.iter().enumerate() {
                // Own rules come first, so the first match is the shortest path.
                if let Some(r) = rules.iter().find(|r| rbac::grants(r.rule, perm)) {
                    out.push(Grant {
                        policy: slot,
                        permission: pi as u32,
                        source: r.source.cloned(),
                        rule: r.index,
                        non_resource: perm.is_non_resource(),
                    });
                }
            }
        }
        out
    }

    pub(super) fn recompute_grants(&mut self, key: &RoleKey) {
        let grants = self.compute_grants(key, None);
        let derives = self.compute_derives(key);
        if let Some(e) = self.roles.get_mut(key) {
            let e = Arc::make_mut(e);
            e.grants = grants;
            e.derives = derives;
        }
        self.note_role_derives(key);
    }

    pub(super) fn recompute_policy_grants(&mut self, slot: u32) {
        let keys: Vec<RoleKey> = self.roles.keys().cloned().collect();
        for k in keys {
            let fresh = self.compute_grants(&k, Some(slot));
            let stale = |e: &super::RoleEntry| e.grants.iter().any(|g| g.policy == slot);
            // A role a snapshot shares is copied only if it changes.
            if fresh.is_empty() && !self.roles.get(&k).is_some_and(|e| stale(e)) {
                continue;
            }
            if let Some(e) = self.roles.get_mut(&k) {
                let e = Arc::make_mut(e);
                e.grants.retain(|g| g.policy != slot);
                e.grants.extend(fresh);
            }
        }
    }

    pub(super) fn recompute_all_grants(&mut self) {
        let keys: Vec<RoleKey> = self.roles.keys().cloned().collect();
        for k in keys {
            self.recompute_grants(&k);
        }
    }
}
