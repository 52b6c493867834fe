//! Who acts as whom, the other way round (R9.4): the subjects whose holdings a
//! change can alter include everyone who acts as an affected subject, or can
//! bind a changed role, transitively.

use std::collections::BTreeSet;

use super::violations::affected_subjects;
use crate::engine::index::{Derive, Index, Power, Targets};
use crate::model::identity_groups::{ALL_SERVICEACCOUNTS, SERVICEACCOUNTS_OF};
use crate::model::{BindingKey, DerivedKind, DerivedSet, Identity, Name, RoleKey};

/// The escalation paths some policy considers.
pub(super) fn considered(index: &Index) -> DerivedSet {
    index
        .policies()
        .fold(DerivedSet::NONE, |acc, (_, p)| acc.union(p.derived))
}

/// Whether power `d`, held through a binding of the right scope, reaches `t`.
fn reaches(d: &Derive, scope: Option<&Name>, t: &Identity) -> bool {
    let has = |targets: &Targets, n: &Name| match targets {
        Targets::All => true,
        Targets::Named(names) => names.contains(n),
    };
    match (&d.power, t) {
        (Power::Workloads | Power::Exec, Identity::ServiceAccount { .. }) => true,
        (
            Power::Tokens(tg) | Power::ImpersonateServiceAccounts(tg),
            Identity::ServiceAccount { name, .. },
        ) => has(tg, name),
        // Impersonating a ServiceAccount, one that does not exist too, gives
        // its groups (R1.4): over-counting who is affected only costs time.
        (Power::ImpersonateServiceAccounts(_), Identity::Group(n)) => {
            n.starts_with(ALL_SERVICEACCOUNTS)
        }
        (Power::ImpersonateUsers(tg), Identity::User(n)) => scope.is_none() && has(tg, n),
        (Power::ImpersonateGroups(Targets::Named(names)), Identity::Group(n)) => {
            scope.is_none() && names.contains(n)
        }
        _ => false,
    }
}

/// Whether power `d` of a binding in `scope` can bind `role`.
fn binds(d: &Derive, scope: Option<&Name>, role: &RoleKey) -> bool {
    let Power::Bind {
        cluster_roles,
        targets,
    } = &d.power
    else {
        return false;
    };
    let kind_ok = match &role.namespace {
        None => *cluster_roles,
        Some(ns) => !*cluster_roles && scope.is_none_or(|s| s == ns),
    };
    kind_ok
        && match targets {
            Targets::All => true,
            Targets::Named(names) => names.contains(&role.name),
        }
}

/// R9.4: adds to `out` everyone who acts as one of its identities, or can
/// bind one of `roles` to themselves, transitively. Only the bindings whose
/// roles open an escalation path are looked at ([`Index::derivers_in`]), in
/// the target's namespace and cluster-wide.
pub fn add_actors(index: &Index, roles: &[RoleKey], out: &mut BTreeSet<Identity>) {
    let set = considered(index);
    if set.is_empty() {
        return;
    }
    let mut queue: Vec<Identity> = out.iter().cloned().collect();
    let mut fresh = BTreeSet::new();
    let take = |b: &BindingKey, fresh: &mut BTreeSet<Identity>| {
        if let Some(binding) = index.binding(b) {
            for s in &binding.subjects {
                affected_subjects(index, s, fresh);
            }
        }
    };
    if set.contains(DerivedKind::RoleGrant) && !roles.is_empty() {
        for bkey in index.derivers() {
            let Some(entry) = index.binding(bkey).and_then(|b| index.role(&b.role)) else {
                continue;
            };
            let scope = bkey.namespace.as_ref();
            if entry
                .derives
                .iter()
                .any(|d| set.contains(d.kind) && roles.iter().any(|r| binds(d, scope, r)))
            {
                take(bkey, &mut fresh);
            }
        }
    }
    // Whoever can bind a role to themselves acts, through it, as whatever
    // that role's Pods, exec, tokens or impersonation reach: when anyone is
    // affected, so may they be (judging more subjects is only slower). And
    // when a role changes, so may they even if nobody is bound to it: a
    // role they can bind may grant `bind` on the changed one (a second
    // step the direct lookup above does not see).
    let mut binders_taken = !set.contains(DerivedKind::RoleGrant);
    loop {
        for x in std::mem::take(&mut fresh) {
            if out.insert(x.clone()) {
                queue.push(x);
            }
        }
        if !binders_taken && (!queue.is_empty() || !roles.is_empty()) {
            binders_taken = true;
            for bkey in index.derivers() {
                let Some(entry) = index.binding(bkey).and_then(|b| index.role(&b.role)) else {
                    continue;
                };
                if entry
                    .derives
                    .iter()
                    .any(|d| set.contains(d.kind) && matches!(d.power, Power::Bind { .. }))
                {
                    take(bkey, &mut fresh);
                }
            }
            continue;
        }
        let Some(t) = queue.pop() else { break };
        // The group of a namespace's ServiceAccounts is reached from that
        // namespace too, the group of all of them from every namespace
        // (impersonating a missing ServiceAccount there).
        if matches!(&t, Identity::Group(g) if &**g == ALL_SERVICEACCOUNTS) {
            for bkey in index.derivers() {
                let Some(entry) = index.binding(bkey).and_then(|b| index.role(&b.role)) else {
                    continue;
                };
                let scope = bkey.namespace.as_ref();
                if entry
                    .derives
                    .iter()
                    .any(|d| set.contains(d.kind) && reaches(d, scope, &t))
                {
                    take(bkey, &mut fresh);
                }
            }
            continue;
        }
        let own = t.namespace().cloned().or_else(|| sa_group_namespace(&t));
        let scopes: [Option<&Name>; 2] = [own.as_ref(), None];
        let n = if own.is_some() { 2 } else { 1 };
        for scope in &scopes[2 - n..] {
            for bkey in index.derivers_in(*scope) {
                let Some(entry) = index.binding(bkey).and_then(|b| index.role(&b.role)) else {
                    continue;
                };
                if entry
                    .derives
                    .iter()
                    .any(|d| set.contains(d.kind) && reaches(d, *scope, &t))
                {
                    take(bkey, &mut fresh);
                }
            }
        }
    }
}

/// `ns` of the group `system:serviceaccounts:ns`.
fn sa_group_namespace(t: &Identity) -> Option<Name> {
    let Identity::Group(g) = t else { return None };
    g.strip_prefix(SERVICEACCOUNTS_OF).map(Name::from)
}

#[cfg(test)]
mod tests;
