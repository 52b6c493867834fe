//! Per role, which escalation paths (R9.1) its effective rules open. Like the
//! grants, they are computed when the role (or an aggregated member) changes,
//! so a holdings walk finds its derived edges without matching rules again.
//! They do not depend on policies: which kinds count is the walk's business.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, LazyLock};

use super::{CowMap, IdSet, Index};
use crate::model::{
    Binding, BindingKey, DerivedKind, DerivedSet, Identity, Name, Permission, RoleKey, Rule,
};
use crate::rbac;

/// Which objects a rule names: all of them, or its `resourceNames`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    All,
    Named(Vec<Name>),
}

impl Targets {
    fn of(rule: &Rule) -> Self {
        if rule.resource_names.is_empty() {
            Targets::All
        } else {
            Targets::Named(rule.resource_names.clone())
        }
    }
}

/// What one rule lets its holder obtain, in the scope of the binding that
/// grants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Power {
    /// Create Pods or workload controllers: run as every ServiceAccount of the
    /// namespace, and mount its Secrets and ConfigMaps.
    Workloads,
    /// Exec into, attach to or add ephemeral containers to Pods: act as every
    /// ServiceAccount whose Pods run in the namespace.
    Exec,
    /// Mint tokens of these ServiceAccounts of the namespace.
    Tokens(Targets),
    ImpersonateUsers(Targets),
    ImpersonateGroups(Targets),
    ImpersonateServiceAccounts(Targets),
    /// `bind` on roles (or clusterroles): half of a RoleGrant.
    Bind {
        cluster_roles: bool,
        targets: Targets,
    },
    CreateRoleBindings,
    CreateClusterRoleBindings,
    /// `escalate` on roles (or clusterroles): half of a RoleGrant.
    Escalate {
        cluster_roles: bool,
    },
    /// `create`, `update` or `patch` on roles (or clusterroles).
    WriteRoles {
        cluster_roles: bool,
    },
}

/// A power opened by rule `rule` of the role, or of its aggregated source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Derive {
    pub kind: DerivedKind,
    pub power: Power,
    pub source: Option<Name>,
    pub rule: u32,
}

fn perm(verbs: &[&str], group: &str, resources: &[&str]) -> Permission {
    let names = |xs: &[&str]| xs.iter().map(|x| Name::from(*x)).collect();
    Permission {
        verbs: names(verbs),
        api_groups: vec![Name::from(group)],
        resources: names(resources),
        ..Permission::default()
    }
}

const RBAC: &str = "rbac.authorization.k8s.io";
const WRITE: &[&str] = &["create", "update", "patch"];

struct Probes {
    workloads: [Permission; 4],
    exec: [Permission; 2],
    tokens: Permission,
    impersonate: [Permission; 3],
    bind: [Permission; 2],
    create_rb: Permission,
    create_crb: Permission,
    escalate: [Permission; 2],
    write: [Permission; 2],
    /// What a Pod's volumes can read (R9.1 WorkloadCreation).
    pub mounts: Permission,
}

static PROBES: LazyLock<Probes> = LazyLock::new(|| Probes {
    workloads: [
        perm(&["create"], "", &["pods"]),
        perm(
            WRITE,
            "apps",
            &["deployments", "replicasets", "statefulsets", "daemonsets"],
        ),
        perm(WRITE, "batch", &["jobs", "cronjobs"]),
        perm(WRITE, "", &["replicationcontrollers"]),
    ],
    exec: [
        perm(&["create"], "", &["pods/exec", "pods/attach"]),
        perm(&["update", "patch"], "", &["pods/ephemeralcontainers"]),
    ],
    tokens: perm(&["create"], "", &["serviceaccounts/token"]),
    impersonate: [
        perm(&["impersonate"], "", &["users"]),
        perm(&["impersonate"], "", &["groups"]),
        perm(&["impersonate"], "", &["serviceaccounts"]),
    ],
    bind: [
        perm(&["bind"], RBAC, &["roles"]),
        perm(&["bind"], RBAC, &["clusterroles"]),
    ],
    create_rb: perm(&["create"], RBAC, &["rolebindings"]),
    create_crb: perm(&["create"], RBAC, &["clusterrolebindings"]),
    escalate: [
        perm(&["escalate"], RBAC, &["roles"]),
        perm(&["escalate"], RBAC, &["clusterroles"]),
    ],
    write: [
        perm(WRITE, RBAC, &["roles"]),
        perm(WRITE, RBAC, &["clusterroles"]),
    ],
    mounts: perm(&["get"], "", &["secrets", "configmaps"]),
});

/// The rule a Pod's volumes amount to: `get` Secrets and ConfigMaps.
pub fn mount_rule() -> &'static Rule {
    static RULE: LazyLock<Rule> = LazyLock::new(|| {
        let p = &PROBES.mounts;
        Rule {
            verbs: p.verbs.clone(),
            api_groups: p.api_groups.clone(),
            resources: p.resources.clone(),
            ..Rule::default()
        }
    });
    &RULE
}

/// The powers one rule opens, in a fixed order.
pub fn powers(rule: &Rule) -> Vec<(DerivedKind, Power)> {
    let p = &*PROBES;
    let g = |x: &Permission| rbac::grants(rule, x);
    let mut out = Vec::new();
    if p.workloads.iter().any(g) {
        out.push((DerivedKind::WorkloadCreation, Power::Workloads));
    }
    if p.exec.iter().any(g) {
        out.push((DerivedKind::PodExec, Power::Exec));
    }
    if g(&p.tokens) {
        out.push((DerivedKind::TokenRequest, Power::Tokens(Targets::of(rule))));
    }
    let [users, groups, sas] = &p.impersonate;
    if g(users) {
        out.push((
            DerivedKind::Impersonation,
            Power::ImpersonateUsers(Targets::of(rule)),
        ));
    }
    if g(groups) {
        out.push((
            DerivedKind::Impersonation,
            Power::ImpersonateGroups(Targets::of(rule)),
        ));
    }
    if g(sas) {
        out.push((
            DerivedKind::Impersonation,
            Power::ImpersonateServiceAccounts(Targets::of(rule)),
        ));
    }
    for (i, cluster_roles) in [(0, false), (1, true)] {
        if g(&p.bind[i]) {
            out.push((
                DerivedKind::RoleGrant,
                Power::Bind {
                    cluster_roles,
                    targets: Targets::of(rule),
                },
            ));
        }
    }
    // Bindings are created under a name not known beforehand: a rule limited
    // to resourceNames cannot create one, but R3.3 counts it all the same
    // (never think a subject holds less).
    if g(&p.create_rb) {
        out.push((DerivedKind::RoleGrant, Power::CreateRoleBindings));
    }
    if g(&p.create_crb) {
        out.push((DerivedKind::RoleGrant, Power::CreateClusterRoleBindings));
    }
    for (i, cluster_roles) in [(0, false), (1, true)] {
        if g(&p.escalate[i]) {
            out.push((DerivedKind::RoleGrant, Power::Escalate { cluster_roles }));
        }
        if g(&p.write[i]) {
            out.push((DerivedKind::RoleGrant, Power::WriteRoles { cluster_roles }));
        }
    }
    out
}

/// Whether a permission is one a Pod's volumes give (R9.1).
pub fn mounts_grant(permission: &Permission) -> bool {
    rbac::grants(mount_rule(), permission)
}

/// What a Pod's volumes give, of every policy: (policy slot, permission)
/// pairs, the same in every namespace. Read through
/// [`Index::mount_pairs`], kept once per epoch, so that a walk and what a
/// kept summary adds for a binding agree on it.
pub(super) fn mount_pairs(index: &Index) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    for (slot, p) in index.policies() {
        for (pi, perm) in p.permissions.iter().enumerate() {
            if mounts_grant(perm) {
                out.push((slot, pi as u32));
            }
        }
    }
    out
}

impl Index {
    pub(super) fn compute_derives(&self, key: &RoleKey) -> Vec<Derive> {
        let mut out = Vec::new();
        for r in self.effective_rules(key) {
            for (kind, power) in powers(r.rule) {
                out.push(Derive {
                    kind,
                    power,
                    source: r.source.cloned(),
                    rule: r.index,
                });
            }
        }
        out
    }
}

/// The reverse of the derived edges, kept up to date one object at a time:
/// per scope (a namespace, or `None` for ClusterRoleBindings), the bindings
/// whose role opens at least one escalation path, each with whom its powers
/// reach. Who acts as an identity (R9.4) is found among these, never by
/// walking the whole cluster, and without looking up their bindings or
/// roles (those lookups were a third of a decision at 100k bindings).
/// Copy-on-write like the index's other maps: a snapshot shares the sets, and
/// a write copies only the set of the scope it changes.
#[derive(Debug, Default, Clone)]
pub struct Derivers {
    by_scope: CowMap<Option<Name>, Arc<BTreeMap<BindingKey, Deriver>>>,
    /// The roles with a `bind` power: who may bind a role to themselves is
    /// asked on every decision, and scanning all 20,000 roles for the one
    /// such role was a third of a decision at 100k bindings.
    binders: Arc<BTreeSet<RoleKey>>,
    /// The roles that impersonate ServiceAccounts they name: a decision on a
    /// binding that can grant roles asks whether one names a ServiceAccount
    /// that does not exist, and scanning every role for them took as long.
    sa_impersonators: Arc<BTreeSet<RoleKey>>,
}

/// A binding whose role opens an escalation path.
#[derive(Debug, Clone)]
pub struct Deriver {
    pub binding: Arc<Binding>,
    pub reach: Reach,
}

/// Whom the powers of a role reach, by the kind of each power (R9.1): what
/// the reverse lookups of R9.4 ask of a binding to it.
#[derive(Debug, Clone)]
pub struct Reach {
    /// The kinds of the powers that act as every ServiceAccount of the
    /// binding's scope (workloads, exec, tokens or impersonation of all).
    pub every_sa: DerivedSet,
    /// Whether workload creation is among them (its Pods mount).
    pub workloads: bool,
    /// Impersonation of ServiceAccounts, all or named: it reaches the
    /// ServiceAccount groups (R1.4).
    pub sa_impersonation: bool,
    pub every_user: bool,
    /// Who the powers limited to `resourceNames` reach, if any.
    pub named: Option<Box<Named>>,
}

/// The targets a role's powers name.
#[derive(Debug, Clone, Default)]
pub struct Named {
    /// ServiceAccounts whose tokens are minted or who are impersonated, with
    /// the kind of the power.
    pub service_accounts: Vec<(Name, DerivedKind)>,
    pub users: Vec<Name>,
    pub groups: Vec<Name>,
}

impl Reach {
    fn of(derives: &[Derive]) -> Reach {
        let mut r = Reach {
            every_sa: DerivedSet::NONE,
            workloads: false,
            sa_impersonation: false,
            every_user: false,
            named: None,
        };
        let mut named = Named::default();
        for d in derives {
            if every_service_account(&d.power) {
                r.every_sa = r.every_sa.with(d.kind);
                r.workloads |= d.power == Power::Workloads;
            }
            match &d.power {
                Power::Tokens(Targets::Named(n)) => named
                    .service_accounts
                    .extend(n.iter().map(|n| (n.clone(), d.kind))),
                Power::ImpersonateServiceAccounts(t) => {
                    r.sa_impersonation = true;
                    if let Targets::Named(n) = t {
                        named
                            .service_accounts
                            .extend(n.iter().map(|n| (n.clone(), d.kind)));
                    }
                }
                Power::ImpersonateUsers(Targets::All) => r.every_user = true,
                Power::ImpersonateUsers(Targets::Named(n)) => named.users.extend(n.iter().cloned()),
                Power::ImpersonateGroups(Targets::Named(n)) => {
                    named.groups.extend(n.iter().cloned())
                }
                _ => {}
            }
        }
        if !(named.service_accounts.is_empty() && named.users.is_empty() && named.groups.is_empty())
        {
            r.named = Some(Box::new(named));
        }
        r
    }
}

/// What the cluster-wide escalation bindings give any decision on one state
/// (R9.4): who acts as every ServiceAccount, whoever acts as them, and who
/// can bind a role to themselves. Gathering it on every decision was most of
/// a decision at 100k bindings (330 identities, and whoever acts as each);
/// it is computed once per state ([`Index::cluster_actors`]).
#[derive(Debug, Default)]
pub struct ClusterActors {
    /// The cluster-wide bindings whose role has a power of a kind some
    /// policy considers, by whom the power reaches.
    pub scope: ScopeActors,
    /// Who acts as every ServiceAccount of every namespace by a cluster-wide
    /// binding, in the walk of every policy, and among them those whose
    /// power is workload creation.
    pub every: IdSet,
    pub workloads: IdSet,
    /// Whoever can bind a role to themselves and whoever acts as them,
    /// transitively.
    pub binders: Closure,
    /// Whoever acts as every ServiceAccount by a cluster-wide binding, in the
    /// walk of some policy, and whoever acts as them, transitively.
    pub every_sa: Closure,
    /// The subjects of the cluster-wide bindings of each bucket that names
    /// no target, by the closures above they are in: the same for every
    /// decision on this state, filled on first use. Impersonating any
    /// ServiceAccount (a hundred bindings at 100k) reaches every
    /// namespace's ServiceAccount group, and hashing their subjects again
    /// on each decision, only to find them in the closures, was most of it.
    pub unnamed: [std::sync::OnceLock<ByClosure>; 2],
}

/// Identities split by which closures of a [`ClusterActors`] hold them.
#[derive(Debug, Default)]
pub struct ByClosure {
    /// In neither closure.
    pub outside: Vec<Identity>,
    /// In [`ClusterActors::every_sa`]'s only.
    pub every_sa: Vec<Identity>,
    /// In [`ClusterActors::binders`]' only.
    pub binders: Vec<Identity>,
    /// In both.
    pub both: Vec<Identity>,
}

impl ByClosure {
    pub fn new(c: &ClusterActors, ids: IdSet) -> ByClosure {
        let mut out = ByClosure::default();
        for x in ids {
            let list = match (
                c.every_sa.members.contains(&x),
                c.binders.members.contains(&x),
            ) {
                (false, false) => &mut out.outside,
                (true, false) => &mut out.every_sa,
                (false, true) => &mut out.binders,
                (true, true) => &mut out.both,
            };
            list.push(x);
        }
        out
    }
}

impl ClusterActors {
    /// Where [`ClusterActors::unnamed`] keeps `bucket`'s subjects; `None`
    /// for the buckets that name their targets, and for every
    /// ServiceAccount's (its closure is [`ClusterActors::every_sa`]).
    pub fn unnamed_slot(&self, bucket: Bucket) -> Option<&std::sync::OnceLock<ByClosure>> {
        match bucket {
            Bucket::AnyServiceAccountImpersonation => Some(&self.unnamed[0]),
            Bucket::EveryUser => Some(&self.unnamed[1]),
            Bucket::EveryServiceAccount | Bucket::ServiceAccount | Bucket::User | Bucket::Group => {
                None
            }
        }
    }
}

/// Who acts as every ServiceAccount of one namespace by a binding of that
/// namespace, in the walk of every policy, and among them those whose power
/// is workload creation ([`Index::ns_actors`]).
#[derive(Debug, Default)]
pub struct NsActors {
    pub all: IdSet,
    pub workloads: IdSet,
}

impl super::Weigh for NsActors {
    fn weight(&self) -> usize {
        self.all.len() + self.workloads.len()
    }
}

impl super::Weigh for ScopeActors {
    fn weight(&self) -> usize {
        let named =
            |m: &HashMap<Name, Vec<Arc<Binding>>>| m.values().map(|v| 1 + v.len()).sum::<usize>();
        self.every_sa.len()
            + self.sa_impersonation.len()
            + self.every_user.len()
            + named(&self.named_sa)
            + named(&self.named_user)
            + named(&self.named_group)
    }
}

/// A set of identities that holds whoever acts as any of them.
#[derive(Debug, Default)]
pub struct Closure {
    pub members: IdSet,
    /// The members some policy governs, sorted: only they can have a
    /// violation, and they are few (most actors are controllers' Users).
    pub governed: Vec<Identity>,
    /// The members each policy governs (by slot), sorted.
    pub by_policy: BTreeMap<u32, Vec<Identity>>,
    /// The governed members that are not in [`ClusterActors::every`],
    /// sorted: a decision that lets those in it off by what the policies
    /// their duties come from say still judges these.
    pub outside_every: Vec<Identity>,
}

impl Closure {
    pub fn new(index: &Index, members: IdSet, every: &IdSet) -> Closure {
        let mut sorted: Vec<&Identity> = members.iter().collect();
        sorted.sort_unstable();
        let mut governed = Vec::new();
        let mut by_policy: BTreeMap<u32, Vec<Identity>> = BTreeMap::new();
        for m in sorted {
            let mut any = false;
            for (slot, p) in index.policies() {
                if p.subjects.selects(m) {
                    by_policy.entry(slot).or_default().push(m.clone());
                    any = true;
                }
            }
            if any {
                governed.push(m.clone());
            }
        }
        let outside_every = governed
            .iter()
            .filter(|m| !every.contains(*m))
            .cloned()
            .collect();
        Closure {
            members,
            governed,
            by_policy,
            outside_every,
        }
    }
}

/// Whom the bindings in one list of [`ScopeActors`] reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    EveryServiceAccount,
    ServiceAccount,
    AnyServiceAccountImpersonation,
    EveryUser,
    User,
    Group,
}

/// The bindings of one scope whose role has a power of a kind in a set,
/// by whom the power reaches (R9.4).
#[derive(Debug, Default)]
pub struct ScopeActors {
    every_sa: Vec<Arc<Binding>>,
    named_sa: HashMap<Name, Vec<Arc<Binding>>>,
    /// Impersonation of ServiceAccounts, all or named: it reaches the
    /// ServiceAccount groups (R1.4).
    sa_impersonation: Vec<Arc<Binding>>,
    every_user: Vec<Arc<Binding>>,
    named_user: HashMap<Name, Vec<Arc<Binding>>>,
    named_group: HashMap<Name, Vec<Arc<Binding>>>,
}

impl ScopeActors {
    /// Read from what the index keeps of each binding's reach: no binding
    /// or role is looked up.
    pub fn of(index: &Index, set: DerivedSet, scope: Option<&Name>) -> Self {
        let impersonation = set.contains(DerivedKind::Impersonation);
        let mut out = ScopeActors::default();
        for d in index.derivers_in(scope) {
            let (b, r) = (&d.binding, &d.reach);
            if r.every_sa.intersects(set) {
                out.every_sa.push(b.clone());
            }
            if !impersonation && !set.contains(DerivedKind::TokenRequest) {
                continue;
            }
            if impersonation && r.sa_impersonation {
                out.sa_impersonation.push(b.clone());
            }
            if impersonation && r.every_user {
                out.every_user.push(b.clone());
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

    /// Every bucket's binding keys, sorted: two values with the same are
    /// equal whatever order their maps keep.
    #[cfg(test)]
    pub(crate) fn canonical(&self) -> String {
        let keys = |v: &[Arc<Binding>]| {
            let mut k: Vec<&BindingKey> = v.iter().map(|b| &b.key).collect();
            k.sort();
            format!("{k:?}")
        };
        let named = |m: &HashMap<Name, Vec<Arc<Binding>>>| {
            let mut n: Vec<(&Name, String)> = m.iter().map(|(n, v)| (n, keys(v))).collect();
            n.sort();
            format!("{n:?}")
        };
        format!(
            "every_sa {} sa_impersonation {} every_user {} named_sa {} named_user {} named_group {}",
            keys(&self.every_sa),
            keys(&self.sa_impersonation),
            keys(&self.every_user),
            named(&self.named_sa),
            named(&self.named_user),
            named(&self.named_group)
        )
    }

    pub fn bucket(&self, bucket: Bucket, name: Option<&Name>) -> &[Arc<Binding>] {
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
fn file(map: &mut HashMap<Name, Vec<Arc<Binding>>>, name: &Name, b: &Arc<Binding>) {
    let bindings = map.entry(name.clone()).or_default();
    if !bindings.last().is_some_and(|x| Arc::ptr_eq(x, b)) {
        bindings.push(b.clone());
    }
}

fn lookup<'m>(m: &'m HashMap<Name, Vec<Arc<Binding>>>, name: Option<&Name>) -> &'m [Arc<Binding>] {
    name.and_then(|n| m.get(n)).map_or(&[], Vec::as_slice)
}

/// Whether a power acts as every ServiceAccount of the namespace it is held
/// in (of every namespace when held cluster-wide), as the walk follows it.
pub fn every_service_account(p: &Power) -> bool {
    matches!(
        p,
        Power::Workloads
            | Power::Exec
            | Power::Tokens(Targets::All)
            | Power::ImpersonateServiceAccounts(Targets::All)
    )
}

impl Index {
    /// The bindings in `scope` (a namespace, or `None` for cluster-wide) whose
    /// role opens an escalation path.
    pub fn derivers_in(&self, scope: Option<&Name>) -> impl Iterator<Item = &Deriver> {
        self.derivers
            .by_scope
            .get(&scope.cloned())
            .into_iter()
            .flat_map(|set| set.values())
    }

    /// The roles with a `bind` power (R9.1 RoleGrant).
    pub fn bind_roles(&self) -> impl Iterator<Item = &RoleKey> {
        self.derivers.binders.iter()
    }

    /// The roles that impersonate ServiceAccounts they name (R9.1
    /// Impersonation with `resourceNames`).
    pub fn named_sa_impersonators(&self) -> impl Iterator<Item = &RoleKey> {
        self.derivers.sa_impersonators.iter()
    }

    /// Every binding whose role opens an escalation path.
    pub fn derivers(&self) -> impl Iterator<Item = &Deriver> {
        self.derivers.by_scope.values().flat_map(|set| set.values())
    }

    /// Whether `role` opens an escalation path (of any kind).
    pub fn role_derives(&self, role: &RoleKey) -> bool {
        self.roles.get(role).is_some_and(|e| !e.derives.is_empty())
    }

    pub(super) fn note_binding(&mut self, binding: &Arc<Binding>) {
        let Some(entry) = self.roles.get(&binding.role) else {
            return;
        };
        if entry.derives.is_empty() {
            return;
        }
        let reach = Reach::of(&entry.derives);
        self.touch();
        Arc::make_mut(
            self.derivers
                .by_scope
                .get_or_insert_with(binding.key.namespace.clone(), Default::default),
        )
        .insert(
            binding.key.clone(),
            Deriver {
                binding: binding.clone(),
                reach,
            },
        );
    }

    /// Whether `key` was among the derivers.
    pub(super) fn forget_binding(&mut self, key: &BindingKey) -> bool {
        let Some(set) = self.derivers.by_scope.get_mut(&key.namespace) else {
            return false;
        };
        if !set.contains_key(key) {
            return false;
        }
        let set = Arc::make_mut(set);
        set.remove(key);
        if set.is_empty() {
            self.derivers.by_scope.remove(&key.namespace);
        }
        true
    }

    /// After the derivations of `role` were recomputed: its bindings join or
    /// leave the derivers.
    pub(super) fn note_role_derives(&mut self, role: &RoleKey) {
        let has = |p: fn(&Power) -> bool| {
            self.roles
                .get(role)
                .is_some_and(|e| e.derives.iter().any(|d| p(&d.power)))
        };
        let binds = has(|p| matches!(p, Power::Bind { .. }));
        let impersonates =
            has(|p| matches!(p, Power::ImpersonateServiceAccounts(Targets::Named(_))));
        for (member, set) in [
            (binds, &mut self.derivers.binders),
            (impersonates, &mut self.derivers.sa_impersonators),
        ] {
            if member != set.contains(role) {
                let set = Arc::make_mut(set);
                if member {
                    set.insert(role.clone());
                } else {
                    set.remove(role);
                }
            }
        }
        let bindings: Vec<Arc<Binding>> = self
            .bindings_of_role(role)
            .iter()
            .filter_map(|k| self.bindings.get(k).cloned())
            .collect();
        for b in bindings {
            let _ = self.forget_binding(&b.key);
            self.note_binding(&b);
        }
    }
}
