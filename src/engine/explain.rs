//! What one subject holds, per policy and namespace, with every path.

use std::collections::BTreeMap;

use jiff::Timestamp;

use super::exception_rules::{Standing, standing};
use super::holdings::{Held, holdings};
use super::violations::{DutyPaths, Evaluation, evaluate_subjects, path};
use crate::engine::index::Index;
use crate::model::{CLUSTER_WIDE, Identity, Name};

#[derive(Debug, Clone)]
pub struct ScopeHoldings {
    /// A namespace, or `*` for what the subject holds cluster-wide.
    pub namespace: Name,
    pub duties: Vec<DutyPaths>,
}

#[derive(Debug, Clone)]
pub struct PolicyHoldings {
    pub policy: Name,
    /// Whether the policy governs the subject (R1.5, R5.5).
    pub governed: bool,
    pub scopes: Vec<ScopeHoldings>,
}

/// An exception naming the subject, and whether it is active (R6.4, R6.5).
#[derive(Debug, Clone)]
pub struct ExceptionStanding {
    pub name: Name,
    pub policy: Name,
    pub standing: Standing,
}

#[derive(Debug, Clone)]
pub struct Explanation {
    pub subject: Identity,
    pub exists: bool,
    pub policies: Vec<PolicyHoldings>,
    pub evaluation: Evaluation,
    /// Every exception for the subject, with why it excuses nothing when it
    /// does not.
    pub exceptions: Vec<ExceptionStanding>,
}

pub fn explain(index: &Index, subject: &Identity, now: Timestamp) -> Explanation {
    let h = holdings(index, subject, None);
    let exists = index.exists(subject);
    let mut policies = Vec::new();
    for (slot, policy) in index.policies() {
        let held: &[Held<'_>] = h.by_policy.get(&slot).map_or(&[], Vec::as_slice);
        let mut namespaces: BTreeMap<&str, ()> = BTreeMap::new();
        for x in held {
            namespaces.insert(x.namespace.map_or(CLUSTER_WIDE, |n| &**n), ());
        }
        let mut scopes = Vec::new();
        for ns in namespaces.keys() {
            let in_scope =
                |x: &&Held<'_>| x.namespace.is_none() || x.namespace.is_some_and(|n| &**n == *ns);
            let perms: Vec<usize> = held
                .iter()
                .filter(in_scope)
                .map(|x| x.permission as usize)
                .collect();
            let mut duties = Vec::new();
            for d in &policy.duties {
                if !d.held(|p| perms.contains(&p)) {
                    continue;
                }
                let mut paths: Vec<_> = held
                    .iter()
                    .filter(in_scope)
                    .filter(|x| d.permissions.contains(&(x.permission as usize)))
                    .map(|x| path(index, x))
                    .collect();
                paths.sort_by_key(|p| p.to_string());
                paths.dedup();
                duties.push(DutyPaths {
                    duty: d.name.clone(),
                    paths,
                });
            }
            if !duties.is_empty() {
                scopes.push(ScopeHoldings {
                    namespace: Name::from(*ns),
                    duties,
                });
            }
        }
        policies.push(PolicyHoldings {
            policy: policy.name.clone(),
            governed: exists && policy.subjects.selects(subject),
            scopes,
        });
    }
    policies.sort_by(|a, b| a.policy.cmp(&b.policy));
    Explanation {
        subject: subject.clone(),
        exists,
        policies,
        evaluation: evaluate_subjects(index, [subject], now),
        exceptions: index
            .exceptions_for(subject)
            .map(|e| ExceptionStanding {
                name: e.name.clone(),
                policy: e.policy.clone(),
                standing: standing(index, e, now),
            })
            .collect(),
    }
}
