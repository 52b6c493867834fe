//! Who acts as whom, the other way round (R9.4): the subjects whose holdings a
//! change can alter include everyone who acts as an affected subject, or can
//! bind a changed role, transitively.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use super::budget::Ticker;
use super::holdings::IdSet;
use super::violations::affected_subjects;
use crate::engine::holdings::FastMap;
use crate::engine::index::FastSet;
pub(super) use crate::engine::index::every_service_account;
use crate::engine::index::{
    Bucket, ByClosure, Closure, ClusterActors, Derive, Deriver, Index, NsActors, Power,
    ScopeActors, Targets,
};
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

/// Who acts as every ServiceAccount of a namespace in the walk of every
/// policy, by a power of their own bindings (or their groups') held there
/// or cluster-wide, and among them those whose power is workload creation,
/// who hold what a Pod mounts there (R9.1) already
/// ([`acting_as_every_service_account`]).
#[derive(Debug)]
pub struct Every {
    cluster: Arc<ClusterActors>,
    ns: Arc<NsActors>,
}

impl Every {
    pub fn contains(&self, s: &Identity) -> bool {
        self.ns.all.contains(s) || self.cluster.every.contains(s)
    }

    /// Whether the cluster-wide actors that the policies in `slots` govern
    /// are many: letting them off one by one costs more than reading what
    /// the namespace's ServiceAccounts hold.
    pub fn many_actors(&self, slots: &BTreeSet<u32>) -> bool {
        let c = &self.cluster;
        let n: usize = [&c.binders, &c.every_sa]
            .into_iter()
            .flat_map(|c| slots.iter().filter_map(|s| c.by_policy.get(s)))
            .map(Vec::len)
            .sum();
        n > MANY_ACTORS
    }

    /// Whether `s` creates workloads, so its own Pods mount.
    pub fn creates(&self, s: &Identity) -> bool {
        self.ns.workloads.contains(s) || self.cluster.workloads.contains(s)
    }
}

/// See [`Every::many_actors`]. Under test always: the property tests then
/// hold the way that lets the actors off at once to the whole-state
/// standard.
const MANY_ACTORS: usize = if cfg!(test) { 0 } else { 16 };

/// Who acts as every ServiceAccount of `ns` ([`Every`]). Read from the
/// per-scope derivers, never by walking; the cluster-wide ones once per
/// state ([`cluster_actors`]), the namespace's once per state and namespace
/// ([`Index::ns_actors`]).
pub fn acting_as_every_service_account(index: &Index, ns: &Name) -> Every {
    Every {
        cluster: cluster_actors(index),
        ns: index.ns_actors(ns, || ns_actors(index, ns)),
    }
}

/// [`NsActors`] of `ns`, computed afresh.
pub(crate) fn ns_actors(index: &Index, ns: &Name) -> NsActors {
    let mut a = NsActors::default();
    every_in(index, Some(ns), &mut a.all, &mut a.workloads);
    a
}

/// Adds to `all` who acts as every ServiceAccount of `scope`'s namespaces by
/// a binding of `scope`, in the walk of every policy, and to `workloads`
/// those among them whose power is workload creation.
fn every_in(index: &Index, scope: Option<&Name>, all: &mut IdSet, workloads: &mut IdSet) {
    let set = common(index);
    if set.is_empty() {
        return;
    }
    let creates_kind = set.contains(DerivedKind::WorkloadCreation);
    for d in index.derivers_in(scope) {
        if !d.reach.every_sa.intersects(set) {
            continue;
        }
        let creates = creates_kind && d.reach.workloads;
        for s in &d.binding.subjects {
            affected_subjects(index, s, all);
            if creates {
                affected_subjects(index, s, workloads);
            }
        }
    }
}

/// What the cluster-wide escalation bindings give every decision on this
/// state ([`ClusterActors`]), computed once per state.
pub(super) fn cluster_actors(index: &Index) -> Arc<ClusterActors> {
    index.cluster_actors(|index| {
        let mut every = IdSet::default();
        let mut workloads = IdSet::default();
        every_in(index, None, &mut every, &mut workloads);
        let set = considered(index);
        let mut binders = IdSet::default();
        let mut every_sa = IdSet::default();
        if !set.is_empty() {
            if set.contains(DerivedKind::RoleGrant) {
                take_binders(index, set, |_, _| true, &mut binders);
            }
            for d in index.derivers_in(None) {
                if d.reach.every_sa.intersects(set) {
                    take_binding(index, &d.binding, &mut every_sa);
                }
            }
            binders = expand(index, set, &[], binders, None, None).0.local;
            every_sa = expand(index, set, &[], every_sa, None, None).0.local;
        }
        ClusterActors {
            scope: ScopeActors::of(index, set, None),
            binders: Closure::new(index, binders, &every),
            every_sa: Closure::new(index, every_sa, &every),
            every,
            workloads,
            unnamed: Default::default(),
        }
    })
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

/// The subjects a change affects: those gathered for it (`local`), and the
/// closures of cluster-wide actors it reaches, kept for every decision on
/// the state ([`ClusterActors`]).
#[derive(Debug)]
pub struct Affected {
    pub local: IdSet,
    cluster: Option<Arc<ClusterActors>>,
    binders: bool,
    every_sa: bool,
}

impl Affected {
    fn closures(&self) -> impl Iterator<Item = &Closure> {
        let c = self.cluster.as_deref();
        let binders = c.filter(|_| self.binders).map(|c| &c.binders);
        let every_sa = c.filter(|_| self.every_sa).map(|c| &c.every_sa);
        binders.into_iter().chain(every_sa)
    }

    #[cfg(test)]
    pub fn contains(&self, s: &Identity) -> bool {
        self.local.contains(s) || self.closures().any(|c| c.members.contains(s))
    }

    /// The affected subjects that a policy governs (among `slots`, when
    /// given): nobody else can have a violation (R5.5). Of the closures'
    /// members, those `pick` says.
    pub fn governed(self, index: &Index, slots: Option<&BTreeSet<u32>>, pick: Pick<'_>) -> IdSet {
        let wanted = |slot: u32| slots.is_none_or(|s| s.contains(&slot));
        let mut out = IdSet::default();
        for c in self.closures() {
            match pick.slots {
                None => out.extend(c.governed.iter().cloned()),
                Some(slots) => {
                    for slot in slots {
                        out.extend(c.by_policy.get(slot).into_iter().flatten().cloned());
                    }
                    if pick.outside_every {
                        out.extend(c.outside_every.iter().cloned());
                    }
                    if let Some((slots, every)) = pick.unless_every {
                        for slot in slots {
                            let ids = c.by_policy.get(slot).into_iter().flatten();
                            out.extend(ids.filter(|m| !every.cluster.every.contains(*m)).cloned());
                        }
                    }
                }
            }
        }
        let policies: Vec<_> = index.policies().filter(|(slot, _)| wanted(*slot)).collect();
        out.extend(
            self.local
                .into_iter()
                .filter(|s| policies.iter().any(|(_, p)| p.subjects.selects(s))),
        );
        out
    }
}

/// Which members of the closures of cluster-wide actors a decision judges.
#[derive(Debug, Clone, Copy)]
pub struct Pick<'a> {
    /// Those some policy among these governs (any policy when `None`).
    pub slots: Option<&'a BTreeSet<u32>>,
    /// With `slots`, those outside [`ClusterActors::every`] that any policy
    /// governs too.
    pub outside_every: bool,
    /// And those these policies govern that are not among the cluster-wide
    /// actors of every ServiceAccount of this state (the confirmed one in
    /// live mode, where the closures are the assumed state's).
    pub unless_every: Option<(&'a BTreeSet<u32>, &'a Every)>,
}

/// R9.4: `out` and everyone who acts as one of its identities, or can bind
/// one of `roles` to themselves, transitively. Only the bindings whose roles
/// open an escalation path are looked at ([`Index::derivers_in`]), in the
/// target's namespace and cluster-wide; who acts as the cluster-wide actors
/// is read from [`cluster_actors`].
///
/// Past `deadline` it stops, and says so (`false`): what it gives then is
/// less than the change affects.
pub fn add_actors(
    index: &Index,
    roles: &[RoleKey],
    out: IdSet,
    deadline: Option<Instant>,
) -> (Affected, bool) {
    let set = considered(index);
    if set.is_empty() {
        let affected = Affected {
            local: out,
            cluster: None,
            binders: false,
            every_sa: false,
        };
        return (affected, true);
    }
    expand(
        index,
        set,
        roles,
        out,
        Some(cluster_actors(index)),
        deadline,
    )
}

/// [`add_actors`] for the kinds in `set`; with `cluster`, the closures it
/// holds are taken whole, not walked.
fn expand(
    index: &Index,
    set: DerivedSet,
    roles: &[RoleKey],
    mut out: IdSet,
    cluster: Option<Arc<ClusterActors>>,
    deadline: Option<Instant>,
) -> (Affected, bool) {
    let mut queue: Vec<Identity> = out.iter().cloned().collect();
    // Sized for a typical decision (a few dozen identities, as many
    // lookups): growing these tables from empty was a fifth of gathering.
    out.reserve(GATHERED);
    let mut fresh = IdSet::with_capacity_and_hasher(GATHERED, Default::default());
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
    let mut actors = Actors {
        cluster: cluster.clone(),
        taken: FastSet::with_capacity_and_hasher(2 * GATHERED, Default::default()),
        ..Actors::default()
    };
    let mut clock = Ticker::new(deadline);
    let mut complete = true;
    loop {
        for x in std::mem::take(&mut fresh) {
            // Whoever acts as a member of a closure taken is in it.
            let shared = cluster.as_deref().is_some_and(|c| {
                (actors.binders && c.binders.members.contains(&x))
                    || (actors.every_sa && c.every_sa.members.contains(&x))
            });
            if !shared && out.insert(x.clone()) {
                queue.push(x);
            }
        }
        if !binders_taken && (!queue.is_empty() || !roles.is_empty()) {
            binders_taken = true;
            if cluster.is_some() {
                actors.binders = true;
            } else {
                take_binders(index, set, |_, _| true, &mut fresh);
            }
            continue;
        }
        let Some(t) = queue.pop() else { break };
        // Each step is a few lookups; a binding of every ServiceAccount
        // takes 50,000 of them.
        if clock.late() {
            complete = false;
            break;
        }
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
    let affected = Affected {
        local: out,
        cluster,
        binders: actors.binders,
        every_sa: actors.every_sa,
    };
    (affected, complete)
}

/// How many identities [`expand`] makes room for at once.
const GATHERED: usize = 32;

/// Who acts as an identity, read one scope (a namespace, or cluster-wide)
/// at a time. The bindings of a scope whose power reaches every
/// ServiceAccount there (Pods, exec, tokens or impersonation of all), or
/// every User, reach each of them alike: they are taken once per scope, not
/// once per target (50,000 ServiceAccounts and thousands of Users, each
/// against every cluster-wide binding, took minutes). Powers that name their
/// targets are looked up by name, each name once.
#[derive(Default)]
struct Actors {
    /// The namespaces' read once per decision, each kept by the index
    /// across decisions ([`Index::scope_actors`]).
    scopes: FastMap<Name, Arc<ScopeActors>>,
    /// The cluster-wide scope's, when `cluster` is not given.
    cluster_scope: Option<ScopeActors>,
    /// Per decision, like the identities it gathers ([`IdSet`]): hashed
    /// fast, with a seed of its own.
    taken: FastSet<(Option<Name>, Bucket, Option<Name>)>,
    /// When given, the cluster-wide scope is read from it, and who acts as
    /// the cluster-wide actors of every ServiceAccount from
    /// [`ClusterActors::every_sa`], rather than gathered.
    cluster: Option<Arc<ClusterActors>>,
    /// Whether that closure is among the affected.
    every_sa: bool,
    /// Whether [`ClusterActors::binders`] is.
    binders: bool,
}

impl Actors {
    /// Adds to `out`, once, the subjects of the bindings of `scope` in
    /// `bucket` (for `name`, for the named buckets).
    fn take(
        &mut self,
        index: &Index,
        set: DerivedSet,
        scope: Option<&Name>,
        bucket: Bucket,
        name: Option<&Name>,
        out: &mut IdSet,
    ) {
        if !self.taken.insert((scope.cloned(), bucket, name.cloned())) {
            return;
        }
        let actors = match (&self.cluster, scope) {
            (Some(_), None) if bucket == Bucket::EveryServiceAccount => {
                self.every_sa = true;
                return;
            }
            (Some(c), None) => match c.unnamed_slot(bucket) {
                Some(slot) => {
                    let split = slot.get_or_init(|| {
                        let mut ids = IdSet::default();
                        for b in c.scope.bucket(bucket, None) {
                            take_binding(index, b, &mut ids);
                        }
                        ByClosure::new(c, ids)
                    });
                    // Those a closure taken holds already are left out
                    // now, as `expand` would leave them out once taken.
                    let lists = [
                        (true, &split.outside),
                        (!self.every_sa, &split.every_sa),
                        (!self.binders, &split.binders),
                        (!self.every_sa && !self.binders, &split.both),
                    ];
                    for (_, ids) in lists.into_iter().filter(|(wanted, _)| *wanted) {
                        out.extend(ids.iter().cloned());
                    }
                    return;
                }
                None => &c.scope,
            },
            (None, None) => self
                .cluster_scope
                .get_or_insert_with(|| ScopeActors::of(index, set, None)),
            (_, Some(ns)) => self
                .scopes
                .entry(ns.clone())
                .or_insert_with(|| index.scope_actors(ns, set)),
        };
        for b in actors.bucket(bucket, name) {
            take_binding(index, b, out);
        }
    }

    /// Adds to `out` whoever acts as `t` (a ServiceAccount, a User, or a
    /// Group other than every ServiceAccount's) by a binding of its own
    /// namespace or a cluster-wide one, as [`reaches`] says.
    fn of(&mut self, index: &Index, set: DerivedSet, t: &Identity, out: &mut IdSet) {
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
