//! Who acts as whom, the other way round (R9.4): the subjects whose holdings a
//! change can alter include everyone who acts as an affected subject, or can
//! bind a changed role, transitively.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::holdings::IdSet;
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

/// Whether a power acts as every ServiceAccount of the namespace it is held
/// in (of every namespace when held cluster-wide), as the walk follows it.
pub(super) fn every_service_account(p: &Power) -> bool {
    matches!(
        p,
        Power::Workloads
            | Power::Exec
            | Power::Tokens(Targets::All)
            | Power::ImpersonateServiceAccounts(Targets::All)
    )
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
    for scope in [Some(ns), None] {
        for bkey in index.derivers_in(scope) {
            let Some(binding) = index.binding(bkey) else {
                continue;
            };
            let Some(entry) = index.role(&binding.role) else {
                continue;
            };
            let mut every = false;
            let mut creates = false;
            for d in &entry.derives {
                if set.contains(d.kind) && every_service_account(&d.power) {
                    every = true;
                    creates |= d.power == Power::Workloads;
                }
            }
            if !every {
                continue;
            }
            for s in &binding.subjects {
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
fn take_binding(index: &Index, bkey: &BindingKey, out: &mut IdSet) {
    if let Some(b) = index.binding(bkey) {
        for s in &b.subjects {
            affected_subjects(index, s, out);
        }
    }
}

/// Adds to `out` the subjects of those bindings among `bkeys` whose role
/// has a power, of a kind in `set`, that `hit` accepts for the binding's
/// scope (its namespace; `None` cluster-wide).
fn take_subjects<'a>(
    index: &'a Index,
    bkeys: impl IntoIterator<Item = &'a BindingKey>,
    set: DerivedSet,
    hit: impl Fn(&Derive, Option<&Name>) -> bool,
    out: &mut IdSet,
) {
    for bkey in bkeys {
        let Some(entry) = index.binding(bkey).and_then(|b| index.role(&b.role)) else {
            continue;
        };
        let scope = bkey.namespace.as_ref();
        if entry
            .derives
            .iter()
            .any(|d| set.contains(d.kind) && hit(d, scope))
        {
            take_binding(index, bkey, out);
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
        for bkey in index.bindings_of_role(&entry.role.key) {
            let scope = bkey.namespace.as_ref();
            if entry.derives.iter().filter(binds).any(|d| hit(d, scope)) {
                take_binding(index, bkey, out);
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
    every_sa: Vec<&'a BindingKey>,
    named_sa: HashMap<&'a Name, Vec<&'a BindingKey>>,
    /// Impersonation of ServiceAccounts, all or named: it reaches the
    /// ServiceAccount groups (R1.4).
    sa_impersonation: Vec<&'a BindingKey>,
    every_user: Vec<&'a BindingKey>,
    named_user: HashMap<&'a Name, Vec<&'a BindingKey>>,
    named_group: HashMap<&'a Name, Vec<&'a BindingKey>>,
}

impl<'a> ScopeActors<'a> {
    fn of(index: &'a Index, set: DerivedSet, scope: Option<&Name>) -> Self {
        let mut out = ScopeActors::default();
        for bkey in index.derivers_in(scope) {
            let Some(entry) = index.binding(bkey).and_then(|b| index.role(&b.role)) else {
                continue;
            };
            let (mut every_sa, mut sa_imp, mut every_user) = (false, false, false);
            let (mut sas, mut users, mut groups) =
                (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
            for d in entry.derives.iter().filter(|d| set.contains(d.kind)) {
                every_sa |= every_service_account(&d.power);
                match &d.power {
                    Power::Tokens(Targets::Named(n)) => sas.extend(n.iter()),
                    Power::ImpersonateServiceAccounts(t) => {
                        sa_imp = true;
                        if let Targets::Named(n) = t {
                            sas.extend(n.iter());
                        }
                    }
                    Power::ImpersonateUsers(Targets::All) => every_user = true,
                    Power::ImpersonateUsers(Targets::Named(n)) => users.extend(n.iter()),
                    Power::ImpersonateGroups(Targets::Named(n)) => groups.extend(n.iter()),
                    _ => {}
                }
            }
            if every_sa {
                out.every_sa.push(bkey);
            }
            if sa_imp {
                out.sa_impersonation.push(bkey);
            }
            if every_user {
                out.every_user.push(bkey);
            }
            for (names, map) in [
                (sas, &mut out.named_sa),
                (users, &mut out.named_user),
                (groups, &mut out.named_group),
            ] {
                for n in names {
                    map.entry(n).or_default().push(bkey);
                }
            }
        }
        out
    }

    fn bucket(&self, bucket: Bucket, name: Option<&Name>) -> &[&'a BindingKey] {
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

fn lookup<'m, 'a>(
    m: &'m HashMap<&'a Name, Vec<&'a BindingKey>>,
    name: Option<&Name>,
) -> &'m [&'a BindingKey] {
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
        for bkey in actors.bucket(bucket, name) {
            take_binding(index, bkey, out);
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
