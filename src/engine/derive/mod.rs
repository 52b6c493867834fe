//! Who acts as whom, the other way round (R9.4): the subjects whose holdings a
//! change can alter include everyone who acts as an affected subject, or can
//! bind a changed role, transitively.

use std::collections::{HashMap, HashSet};

use super::holdings::IdSet;
use super::violations::affected_subjects;
pub(super) use crate::engine::index::every_service_account;
use crate::engine::index::{Derive, Deriver, Index, Power, Targets};
use crate::model::identity_groups::{ALL_SERVICEACCOUNTS, SERVICEACCOUNTS_OF};
use crate::model::{Binding, DerivedKind, DerivedSet, Identity, Name, RoleKey};

/// The escalation paths some policy considers.
pub(super) fn considered(index: &Index) -> DerivedSet {
    index
        .policies()
        .fold(DerivedSet::NONE, |acc, (_, p)| acc.union(p.derived))
}

/// The escalation paths every policy considers: an edge of these kinds is
/// in the walk of every policy.
pub(super) fn common(index: &Index) -> DerivedSet {
    let mut policies = index.policies().peekable();
    if policies.peek().is_none() {
        return DerivedSet::NONE;
    }
    let all: Vec<DerivedSet> = policies.map(|(_, p)| p.derived).collect();
    DerivedKind::ALL
        .into_iter()
        .filter(|k| all.iter().all(|set| set.contains(*k)))
        .collect()
}

/// Who acts as every ServiceAccount of `ns` in the walk of every policy,
/// by a power of their own bindings (or their groups') held in `ns` or
/// cluster-wide; and, among them, those whose power is workload creation,
/// who hold what a Pod mounts in `ns` (R9.1) already. Read from the
/// per-scope derivers, never by walking.
pub fn acting_as_every_service_account(index: &Index, ns: &Name) -> (IdSet, IdSet) {
    let set = common(index);
    let mut all = IdSet::default();
    let mut workloads = IdSet::default();
    if set.is_empty() {
        return (all, workloads);
    }
    let creates_kind = set.contains(DerivedKind::WorkloadCreation);
    for scope in [Some(ns), None] {
        for d in index.derivers_in(scope) {
            if !d.reach.every_sa.intersects(set) {
                continue;
            }
            let creates = creates_kind && d.reach.workloads;
            for s in &d.binding.subjects {
                affected_subjects(index, s, &mut all);
                if creates {
                    affected_subjects(index, s, &mut workloads);
                }
            }
        }
    }
    (all, workloads)
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

/// Whoever impersonates an identity whose implicit groups (R1.4) include
/// `group` (every authenticated identity's, or every ServiceAccount's), named
/// or not: an impersonated User or ServiceAccount needs no binding (nor, for
/// impersonation, to exist) to hold what its groups hold, so it is not among
/// the group's members the index knows. A namespace's ServiceAccount group is
/// read per scope by [`Actors`].
fn implicit_group_actors(index: &Index, set: DerivedSet, group: &str, out: &mut IdSet) {
    use crate::model::identity_groups::{ALL_AUTHENTICATED, ALL_SERVICEACCOUNTS};
    if !set.contains(DerivedKind::Impersonation) {
        return;
    }
    let users = group == ALL_AUTHENTICATED;
    if !users && group != ALL_SERVICEACCOUNTS {
        return;
    }
    take_subjects(
        index,
        index.derivers(),
        set,
        |d, scope| match &d.power {
            Power::ImpersonateUsers(_) => users && scope.is_none(),
            Power::ImpersonateServiceAccounts(_) => true,
            _ => false,
        },
        out,
    );
}

/// Adds the subjects of binding `bkey` (and the known members of its groups)
/// to `out`.
fn take_binding(index: &Index, b: &Binding, out: &mut IdSet) {
    for s in &b.subjects {
        affected_subjects(index, s, out);
    }
}

/// Adds to `out` the subjects of those bindings among `bkeys` whose role
/// has a power, of a kind in `set`, that `hit` accepts for the binding's
/// scope (its namespace; `None` cluster-wide).
fn take_subjects<'a>(
    index: &'a Index,
    derivers: impl IntoIterator<Item = &'a Deriver>,
    set: DerivedSet,
    hit: impl Fn(&Derive, Option<&Name>) -> bool,
    out: &mut IdSet,
) {
    for d in derivers {
        let b = &d.binding;
        let Some(entry) = index.role(&b.role) else {
            continue;
        };
        let scope = b.key.namespace.as_ref();
        if entry
            .derives
            .iter()
            .any(|d| set.contains(d.kind) && hit(d, scope))
        {
            take_binding(index, b, out);
        }
    }
}

/// Adds to `out` the subjects of the bindings whose role has a `bind` power,
/// of a kind in `set`, that `hit` accepts for the binding's scope. Read from
/// the few roles with such a power ([`Index::bind_roles`]) and their
/// bindings: looking up the role of every escalation binding of the cluster
/// was most of a decision (20 ms at 100k bindings).
fn take_binders(
    index: &Index,
    set: DerivedSet,
    hit: impl Fn(&Derive, Option<&Name>) -> bool,
    out: &mut IdSet,
) {
    let binds = |d: &&Derive| set.contains(d.kind) && matches!(d.power, Power::Bind { .. });
    for entry in index.bind_roles().filter_map(|k| index.role(k)) {
        for b in index.bindings_of_role(&entry.role.key) {
            let scope = b.namespace.as_ref();
            if entry.derives.iter().filter(binds).any(|d| hit(d, scope))
                && let Some(b) = index.binding(b)
            {
                take_binding(index, b, out);
            }
        }
    }
}

/// R9.4: adds to `out` everyone who acts as one of its identities, or can
/// bind one of `roles` to themselves, transitively. Only the bindings whose
/// roles open an escalation path are looked at ([`Index::derivers_in`]), in
/// the target's namespace and cluster-wide.
pub fn add_actors(index: &Index, roles: &[RoleKey], out: &mut IdSet) {
    let set = considered(index);
    if set.is_empty() {
        return;
    }
    let mut queue: Vec<Identity> = out.iter().cloned().collect();
    let mut fresh = IdSet::default();
    if set.contains(DerivedKind::RoleGrant) && !roles.is_empty() {
        take_binders(
            index,
            set,
            |d, scope| roles.iter().any(|r| binds(d, scope, r)),
            &mut fresh,
        );
    }
    // Whoever can bind a role to themselves acts, through it, as whatever
    // that role's Pods, exec, tokens or impersonation reach: when anyone is
    // affected, so may they be (judging more subjects is only slower). And
    // when a role changes, so may they even if nobody is bound to it: a
    // role they can bind may grant `bind` on the changed one (a second
    // step the direct lookup above does not see).
    let mut binders_taken = !set.contains(DerivedKind::RoleGrant);
    let mut actors = Actors::default();
    loop {
        for x in std::mem::take(&mut fresh) {
            if out.insert(x.clone()) {
                queue.push(x);
            }
        }
        if !binders_taken && (!queue.is_empty() || !roles.is_empty()) {
            binders_taken = true;
            take_binders(index, set, |_, _| true, &mut fresh);
            continue;
        }
        let Some(t) = queue.pop() else { break };
        if let Identity::Group(g) = &t {
            implicit_group_actors(index, set, g, &mut fresh);
        }
        // The group of a namespace's ServiceAccounts is reached from that
        // namespace too, the group of all of them from every namespace
        // (impersonating a missing ServiceAccount there).
        let hit = |d: &Derive, scope: Option<&Name>| reaches(d, scope, &t);
        if matches!(&t, Identity::Group(g) if &**g == ALL_SERVICEACCOUNTS) {
            take_subjects(index, index.derivers(), set, hit, &mut fresh);
            continue;
        }
        actors.of(index, set, &t, &mut fresh);
    }
}

/// Who acts as an identity, read one scope (a namespace, or cluster-wide)
/// at a time. The bindings of a scope whose power reaches every
/// ServiceAccount there (Pods, exec, tokens or impersonation of all), or
/// every User, reach each of them alike: they are taken once per scope, not
/// once per target (50,000 ServiceAccounts and thousands of Users, each
/// against every cluster-wide binding, took minutes). Powers that name their
/// targets are looked up by name, each name once.
#[derive(Default)]
struct Actors<'a> {
    scopes: HashMap<Option<Name>, ScopeActors<'a>>,
    taken: HashSet<(Option<Name>, Bucket, Option<Name>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Bucket {
    EveryServiceAccount,
    ServiceAccount,
    AnyServiceAccountImpersonation,
    EveryUser,
    User,
    Group,
}

/// The bindings of one scope whose role has a power of a considered kind,
/// by whom the power reaches (as [`reaches`] says).
#[derive(Default)]
struct ScopeActors<'a> {
    every_sa: Vec<&'a Binding>,
    named_sa: HashMap<&'a Name, Vec<&'a Binding>>,
    /// Impersonation of ServiceAccounts, all or named: it reaches the
    /// ServiceAccount groups (R1.4).
    sa_impersonation: Vec<&'a Binding>,
    every_user: Vec<&'a Binding>,
    named_user: HashMap<&'a Name, Vec<&'a Binding>>,
    named_group: HashMap<&'a Name, Vec<&'a Binding>>,
}

impl<'a> ScopeActors<'a> {
    /// Read from what the index keeps of each binding's reach: no binding
    /// or role is looked up.
    fn of(index: &'a Index, set: DerivedSet, scope: Option<&Name>) -> Self {
        let impersonation = set.contains(DerivedKind::Impersonation);
        let mut out = ScopeActors::default();
        for d in index.derivers_in(scope) {
            let (b, r) = (&*d.binding, &d.reach);
            if r.every_sa.intersects(set) {
                out.every_sa.push(b);
            }
            if !impersonation && !set.contains(DerivedKind::TokenRequest) {
                continue;
            }
            if impersonation && r.sa_impersonation {
                out.sa_impersonation.push(b);
            }
            if impersonation && r.every_user {
                out.every_user.push(b);
            }
            let Some(named) = &r.named else { continue };
            for (n, kind) in &named.service_accounts {
                if set.contains(*kind) {
                    file(&mut out.named_sa, n, b);
                }
            }
            if impersonation {
                for n in &named.users {
                    file(&mut out.named_user, n, b);
                }
                for n in &named.groups {
                    file(&mut out.named_group, n, b);
                }
            }
        }
        out
    }

    fn bucket(&self, bucket: Bucket, name: Option<&Name>) -> &[&'a Binding] {
        match bucket {
            Bucket::EveryServiceAccount => &self.every_sa,
            Bucket::AnyServiceAccountImpersonation => &self.sa_impersonation,
            Bucket::EveryUser => &self.every_user,
            Bucket::ServiceAccount => lookup(&self.named_sa, name),
            Bucket::User => lookup(&self.named_user, name),
            Bucket::Group => lookup(&self.named_group, name),
        }
    }
}

/// Files binding `b` under `name`, once: a role may name a target twice.
fn file<'a>(map: &mut HashMap<&'a Name, Vec<&'a Binding>>, name: &'a Name, b: &'a Binding) {
    let bindings = map.entry(name).or_default();
    if !bindings.last().is_some_and(|x| std::ptr::eq(*x, b)) {
        bindings.push(b);
    }
}

fn lookup<'m, 'a>(
    m: &'m HashMap<&'a Name, Vec<&'a Binding>>,
    name: Option<&Name>,
) -> &'m [&'a Binding] {
    name.and_then(|n| m.get(n)).map_or(&[], Vec::as_slice)
}

impl<'a> Actors<'a> {
    /// Adds to `out`, once, the subjects of the bindings of `scope` in
    /// `bucket` (for `name`, for the named buckets).
    fn take(
        &mut self,
        index: &'a Index,
        set: DerivedSet,
        scope: Option<&Name>,
        bucket: Bucket,
        name: Option<&Name>,
        out: &mut IdSet,
    ) {
        if !self.taken.insert((scope.cloned(), bucket, name.cloned())) {
            return;
        }
        let actors = self
            .scopes
            .entry(scope.cloned())
            .or_insert_with(|| ScopeActors::of(index, set, scope));
        for b in actors.bucket(bucket, name) {
            take_binding(index, b, out);
        }
    }

    /// Adds to `out` whoever acts as `t` (a ServiceAccount, a User, or a
    /// Group other than every ServiceAccount's) by a binding of its own
    /// namespace or a cluster-wide one, as [`reaches`] says.
    fn of(&mut self, index: &'a Index, set: DerivedSet, t: &Identity, out: &mut IdSet) {
        match t {
            Identity::ServiceAccount { namespace, name } => {
                for scope in [Some(namespace), None] {
                    self.take(index, set, scope, Bucket::EveryServiceAccount, None, out);
                    self.take(index, set, scope, Bucket::ServiceAccount, Some(name), out);
                }
            }
            // Users and Groups are impersonated by cluster-wide bindings
            // only.
            Identity::User(n) => {
                self.take(index, set, None, Bucket::EveryUser, None, out);
                self.take(index, set, None, Bucket::User, Some(n), out);
            }
            Identity::Group(g) => {
                let own = sa_group_namespace(t);
                for scope in [own.as_ref(), None] {
                    if g.starts_with(ALL_SERVICEACCOUNTS) {
                        self.take(
                            index,
                            set,
                            scope,
                            Bucket::AnyServiceAccountImpersonation,
                            None,
                            out,
                        );
                    }
                    if scope.is_none() {
                        self.take(index, set, None, Bucket::Group, Some(g), out);
                        break;
                    }
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
