//! Aggregated ClusterRoles (R2.4), computed by the index itself so that it never
//! waits for the controller-manager to fill in `rules`.

use std::collections::BTreeSet;

use super::Index;
use crate::model::Rule;
use crate::model::{Name, RoleKey};

/// One effective rule of a role: where it comes from and which rule it is.
#[derive(Debug, Clone, Copy)]
pub struct EffectiveRule<'a> {
    /// The ClusterRole that carries the rule when it is aggregated from one.
    pub source: Option<&'a Name>,
    pub index: u32,
    pub rule: &'a Rule,
}

impl Index {
    /// Re-evaluates which aggregators select ClusterRole `name`, and, if it is
    /// an aggregator itself, which ClusterRoles it selects.
    pub(super) fn update_membership(&mut self, name: &Name) {
        let key = RoleKey {
            namespace: None,
            name: name.clone(),
        };
        let labels = self.roles.get(&key).map(|e| &e.role.labels);
        for (agg, members) in self.members.iter_mut() {
            if agg == name {
                continue;
            }
            let selected = labels.is_some_and(|labels| {
                let agg_key = RoleKey {
                    namespace: None,
                    name: agg.clone(),
                };
                self.roles
                    .get(&agg_key)
                    .and_then(|e| e.role.aggregation.as_ref())
                    .is_some_and(|sels| sels.iter().any(|s| s.matches(labels)))
            });
            if selected {
                members.insert(name.clone());
            } else {
                members.remove(name);
            }
        }
        match self
            .roles
            .get(&key)
            .and_then(|e| e.role.aggregation.as_ref())
        {
            Some(selectors) => {
                let members = self
                    .roles
                    .iter()
                    .filter(|(k, e)| {
                        k.namespace.is_none()
                            && k.name != *name
                            && selectors.iter().any(|s| s.matches(&e.role.labels))
                    })
                    .map(|(k, _)| k.name.clone())
                    .collect();
                self.members.insert(name.clone(), members);
            }
            None => {
                self.members.remove(name);
            }
        }
    }

    /// The aggregated ClusterRoles whose effective rules include those of
    /// `key`, directly or transitively.
    pub fn aggregators_reaching(&self, key: &RoleKey) -> BTreeSet<Name> {
        let mut found = BTreeSet::new();
        if key.namespace.is_some() {
            return found;
        }
        let mut work = vec![key.name.clone()];
        while let Some(n) = work.pop() {
            for (agg, members) in &self.members {
                if members.contains(&n) && found.insert(agg.clone()) {
                    work.push(agg.clone());
                }
            }
        }
        found.remove(&key.name);
        found
    }

    /// The ClusterRoles whose rules an aggregated ClusterRole includes,
    /// transitively, cycles cut, in a stable order.
    pub fn aggregated_sources(&self, name: &Name) -> Vec<&Name> {
        let mut seen: BTreeSet<&Name> = BTreeSet::new();
        let mut out = Vec::new();
        let mut work: Vec<&Name> = vec![name];
        while let Some(n) = work.pop() {
            if let Some(members) = self.members.get(n) {
                for m in members.iter().rev() {
                    if m != name && seen.insert(m) {
                        out.push(m);
                        work.push(m);
                    }
                }
            }
        }
        out
    }

    /// A role's effective rules: its own first, then those it aggregates.
    pub fn effective_rules(&self, key: &RoleKey) -> Vec<EffectiveRule<'_>> {
        let Some(entry) = self.roles.get(key) else {
            return Vec::new();
        };
        fn own<'a>(source: Option<&'a Name>, rules: &'a [Rule]) -> Vec<EffectiveRule<'a>> {
            rules
                .iter()
                .enumerate()
                .map(|(i, rule)| EffectiveRule {
                    source,
                    index: i as u32,
                    rule,
                })
                .collect()
        }
        let mut out = own(None, &entry.role.rules);
        if key.namespace.is_none() && entry.role.aggregation.is_some() {
            for src in self.aggregated_sources(&key.name) {
                let k = RoleKey {
                    namespace: None,
                    name: src.clone(),
                };
                if let Some(e) = self.roles.get(&k) {
                    out.extend(own(Some(src), &e.role.rules));
                }
            }
        }
        out
    }
}
