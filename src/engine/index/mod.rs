//! The in-memory state of a cluster, kept up to date one object at a time.
//!
//! Besides the objects themselves the index maintains what makes a decision
//! cheap: which bindings name an identity, which bindings refer to a role, the
//! members of every aggregated ClusterRole (R2.4) and, per role, which policy
//! permissions its effective rules grant. No decision ever rebuilds any of it.

mod aggregation;
mod cow;
mod derive;
mod grants;
mod memo;
mod summary;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::Hash;
use std::sync::Arc;

pub use cow::{CowMap, CowSet, Names};
pub use derive::{
    Bucket, ByClosure, Closure, ClusterActors, Derive, Deriver, Derivers, Named, NsActors, Power,
    Reach, ScopeActors, Targets, every_service_account, mount_rule, mounts_grant,
};
pub use grants::Grant;
pub use memo::{Memo, MemoList, MemoMap, Weigh};
pub(crate) use summary::{Added, Covered, KeptBut, NotKept, SummaryKey};
pub use summary::{KeptSummary, SlotBits};

use crate::model::identity_groups::SERVICEACCOUNTS_OF;
use crate::model::{
    Binding, BindingKey, DerivedSet, Exception, GrantKey, GrantPolicy, Identity, JitGrant, Name,
    Object, ObjectKey, Policy, Role, RoleKey, TokenSecret,
};

/// A role and the policy permissions its effective rules grant.
#[derive(Debug, Clone)]
pub struct RoleEntry {
    pub role: Role,
    pub grants: Vec<Grant>,
    /// The escalation paths its effective rules open (R9.1).
    pub derives: Vec<Derive>,
}

pub(crate) type FastSet<K> = HashSet<K, foldhash::fast::RandomState>;
/// A map keyed by names an attacker may choose: keyed at random per map as
/// std's SipHash maps are (colliding keys cannot be made without the
/// keys), and several times faster on short names.
pub(crate) type KeyedMap<K, V> = HashMap<K, V, ahash::RandomState>;
/// Identities a decision gathers before it sorts the few it judges.
pub(crate) type IdSet = FastSet<Identity>;
/// (policy slot, permission) pairs: our own small numbers, not names
/// anyone chose, so the fast hash will do.
pub(crate) type Pairs = FastSet<(u32, u32)>;
impl Weigh for Pairs {
    fn weight(&self) -> usize {
        self.len()
    }
}

/// What the bindings naming one principal give it, no escalation path
/// followed: (policy slot, permission, namespace or `None` cluster-wide).
#[derive(Debug, Default)]
pub(crate) struct DirectPairs(pub Vec<(u32, u32, Option<Name>)>);

impl Weigh for DirectPairs {
    fn weight(&self) -> usize {
        self.0.len()
    }
}

/// [`Index::namespace_version`]: the epoch, the namespace's and the
/// cluster scope's.
pub(crate) type Version = (u64, u64, u64);

/// What [`Index::apply`] or [`Index::remove`] replaced, to put it back.
#[derive(Debug)]
#[must_use = "dropping an Undo makes the change permanent"]
pub struct Undo {
    key: ObjectKey,
    previous: Option<Object>,
    /// The index's epoch before the change and right after it.
    epochs: (u64, u64),
    /// The index's [`state`](Index::state) before the change and right
    /// after it.
    states: (u64, u64),
    /// The same of the change's scope ([`Index::scope_epoch`]).
    scope: (Scope, u64, u64),
    /// The epoch of the namespace a removal of its Namespace dropped.
    dropped: Option<(Name, u64)>,
}

impl Undo {
    /// Whether the change made an object where none was.
    pub(crate) fn created(&self) -> bool {
        self.previous.is_none()
    }

    /// The index's epoch before the change.
    pub(crate) fn epoch_before(&self) -> u64 {
        self.epochs.0
    }

    /// The index's [`state`](Index::state) before the change.
    pub(crate) fn state_before(&self) -> u64 {
        self.states.0
    }
}

/// Where an object lives, for [`Index::scope_epoch`]: its namespace, or
/// the cluster (`None`).
type Scope = Option<Name>;

/// The scope of an object: its namespace, or the cluster for cluster-scoped
/// objects (policies, exceptions and grants included).
fn scope_of(key: &ObjectKey) -> Scope {
    match key {
        ObjectKey::ServiceAccount { namespace, .. } | ObjectKey::TokenSecret { namespace, .. } => {
            Some(namespace.clone())
        }
        ObjectKey::Role(k) => k.namespace.clone(),
        ObjectKey::Binding(k) => k.namespace.clone(),
        ObjectKey::Namespace(_)
        | ObjectKey::Policy(_)
        | ObjectKey::Exception(_)
        | ObjectKey::Grant(_)
        | ObjectKey::GrantPolicy(_) => None,
    }
}

impl Undo {
    /// The object the change was made to.
    pub fn key(&self) -> &ObjectKey {
        &self.key
    }

    pub fn previous(&self) -> Option<&Object> {
        self.previous.as_ref()
    }
}

/// Counts of what the index holds, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub namespaces: usize,
    pub service_accounts: usize,
    pub roles: usize,
    pub cluster_roles: usize,
    pub role_bindings: usize,
    pub cluster_role_bindings: usize,
    pub policies: usize,
    pub exceptions: usize,
    pub token_secrets: usize,
}

/// A clone costs microseconds and shares everything until one side writes
/// (the maps are [`CowMap`]s): whole-state work runs on a clone taken under
/// the decision lock, and live mode keeps the confirmed and the assumed state
/// side by side (R7.8).
#[derive(Debug, Default, Clone)]
pub struct Index {
    names: Names,
    namespaces: CowSet<Name>,
    /// namespace → ServiceAccount names.
    service_accounts: CowMap<Name, BTreeSet<Name>>,
    roles: CowMap<RoleKey, Arc<RoleEntry>>,
    bindings: CowMap<BindingKey, Arc<Binding>>,
    /// The bindings themselves, not their keys: a walk visits the bindings
    /// of every subject it reaches, and a second lookup per binding was a
    /// tenth of an audit.
    by_subject: CowMap<Identity, Vec<Arc<Binding>>>,
    /// namespace → ServiceAccounts a binding names that do not exist:
    /// impersonating one needs no ServiceAccount object, and its bindings
    /// apply (R9.1), so an impersonator of them holds what they name.
    ghosts: CowMap<Name, BTreeSet<Name>>,
    /// The groups `system:serviceaccounts:NS` that a binding names, by NS: a
    /// cluster-wide impersonator of ServiceAccounts can be in any of them,
    /// and a walk asks for its ServiceAccount's without building the name.
    sa_groups: CowMap<Name, Name>,
    /// Shared lists: a ClusterRole may be bound tens of thousands of times,
    /// and a write copies only the list it changes.
    by_role: CowMap<RoleKey, Arc<Vec<BindingKey>>>,
    /// aggregated ClusterRole → the ClusterRoles its selectors match.
    members: HashMap<Name, BTreeSet<Name>>,
    /// Policies live in stable slots that role grants refer to.
    policy_slots: Vec<Option<Arc<Policy>>>,
    policy_by_name: BTreeMap<Name, u32>,
    exceptions: BTreeMap<Name, Arc<Exception>>,
    exceptions_by_subject: CowMap<Identity, BTreeSet<Name>>,
    token_secrets: CowMap<(Name, Name), TokenSecret>,
    /// Just-in-time grants and the policies that allow them (R10); no
    /// decision on RBAC reads them, only grant admission and the controller.
    grants: BTreeMap<GrantKey, Arc<JitGrant>>,
    grant_policies: BTreeMap<Name, Arc<GrantPolicy>>,
    /// Namespaces whose changes the webhook never sees (its configuration
    /// excludes them): configuration, not cluster state.
    unwatched: HashSet<Name>,
    /// The user sodguard acts as: the only one that may touch a binding
    /// labelled `sodguard.io/grant`. Configuration, not cluster state.
    grant_controller: Option<String>,
    /// During a bulk load grants are computed once at the end.
    deferred: bool,
    /// Bindings whose roles open escalation paths (R9.4).
    derivers: Derivers,
    /// Fresh ([`memo::fresh`]) on every change that can alter what
    /// [`cluster_actors`](Self::cluster_actors) reads: the escalation
    /// bindings and their reach, roles, policies, ServiceAccounts and
    /// namespaces, and which identities a binding names. A binding whose
    /// role opens no escalation path, naming identities already named, keeps
    /// it: most admitted changes are such.
    epoch: u64,
    /// Fresh ([`memo::fresh`]) on every change of any object, and back with
    /// it on an undo, like `epoch`: two indexes (clones) with the same
    /// state hold the same objects. 0 only for an index nothing was ever
    /// put in.
    state: u64,
    cluster_actors: Memo<ClusterActors>,
    /// What a Pod's volumes give ([`derive::mount_pairs`] of every
    /// policy): it reads the policies alone, which renew `epoch`.
    mounts: Memo<Vec<(u32, u32)>>,
    /// Per namespace, fresh ([`memo::fresh`]) on every change of an object
    /// in it, and back with its state on an undo, like `epoch`; absent for
    /// a namespace nothing has changed in since the index was made.
    scope_epochs: CowMap<Name, u64>,
    /// The same for the cluster-scoped objects.
    cluster_epoch: u64,
    /// Who acts as every ServiceAccount of a namespace by its own bindings
    /// ([`NsActors`]), per namespace: it reads only what renews `epoch`.
    ns_actors: MemoMap<Name, u64, NsActors>,
    /// A namespace's escalation bindings by whom they reach
    /// ([`ScopeActors`]), per namespace and set of paths: read only what
    /// renews `epoch`.
    scope_actors: MemoMap<Name, (u64, DerivedSet), ScopeActors>,
    /// What every ServiceAccount of a namespace holds there or
    /// cluster-wide by its own bindings, as (policy slot, permission), per
    /// namespace: it reads the namespace's bindings and the cluster's too,
    /// so it is kept by [`namespace_version`](Self::namespace_version).
    every_holds: MemoMap<Name, Version, Pairs>,
    /// What the bindings naming each principal give it ([`DirectPairs`]),
    /// per [`state`](Self::state): a decision reads them for every subject
    /// it selects among, and a group's for each member.
    direct: MemoMap<Identity, u64, DirectPairs>,
    /// What every ServiceAccount of a namespace holds, transitively, as
    /// bits ([`KeptSummary`]): each knows what it read, so a plain binding
    /// elsewhere does not discard it.
    ns_summaries: MemoList<SummaryKey, KeptSummary>,
}

impl Index {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds an index from many objects at once: the same as applying each,
    /// but role grants are computed once at the end.
    pub fn from_objects(objects: impl IntoIterator<Item = Object>) -> Self {
        let mut index = Index::new();
        index.extend(objects);
        index
    }

    pub fn extend(&mut self, objects: impl IntoIterator<Item = Object>) {
        self.begin_bulk();
        for o in objects {
            let _ = self.apply(o);
        }
        self.finish_bulk();
    }

    /// Starts a bulk load: until [`finish_bulk`](Self::finish_bulk), applied
    /// objects are indexed but role grants are not computed.
    pub fn begin_bulk(&mut self) {
        self.deferred = true;
    }

    /// Computes the grants a bulk load deferred, once.
    pub fn finish_bulk(&mut self) {
        self.deferred = false;
        self.recompute_all_grants();
        self.touch();
        self.state = memo::fresh();
    }

    /// A change that may alter what [`cluster_actors`](Self::cluster_actors)
    /// reads.
    fn touch(&mut self) {
        self.epoch = memo::fresh();
    }

    /// What the cluster-wide escalation bindings give every decision on this
    /// state, computed by `compute` once per state.
    pub(crate) fn cluster_actors(
        &self,
        compute: impl FnOnce(&Index) -> ClusterActors,
    ) -> Arc<ClusterActors> {
        self.cluster_actors.get_or(self.epoch, || compute(self))
    }

    /// [`derive::mount_pairs`] of every policy, computed once per epoch: every
    /// walk through a Pod creator asks.
    pub(crate) fn mount_pairs(&self) -> Arc<Vec<(u32, u32)>> {
        self.mounts.get_or(self.epoch, || derive::mount_pairs(self))
    }

    /// Who acts as every ServiceAccount of `ns` by a binding of `ns`,
    /// computed by `compute` once per state of what renews the epoch (the
    /// escalation bindings, roles, policies and who is named).
    pub(crate) fn ns_actors(&self, ns: &Name, compute: impl FnOnce() -> NsActors) -> Arc<NsActors> {
        self.ns_actors.get_or(ns, self.epoch, compute)
    }

    /// [`ScopeActors`] of namespace `ns` for the paths in `set`, computed
    /// once per state of what renews the epoch.
    pub(crate) fn scope_actors(&self, ns: &Name, set: DerivedSet) -> Arc<ScopeActors> {
        self.scope_actors.get_or(ns, (self.epoch, set), || {
            ScopeActors::of(self, set, Some(ns))
        })
    }

    /// What every ServiceAccount of `ns` holds there or cluster-wide by its
    /// own bindings, computed by `compute` once per
    /// [`namespace_version`](Self::namespace_version).
    pub(crate) fn every_holds(&self, ns: &Name, compute: impl FnOnce() -> Pairs) -> Arc<Pairs> {
        self.every_holds
            .get_or(ns, self.namespace_version(ns), compute)
    }

    /// What the bindings naming `principal` give it on this state,
    /// computed by `compute` once per state.
    pub(crate) fn direct_pairs(
        &self,
        principal: &Identity,
        compute: impl FnOnce() -> DirectPairs,
    ) -> Arc<DirectPairs> {
        self.direct.get_or(principal, self.state, compute)
    }

    /// A version of what a namespace's objects, the cluster-scoped ones and
    /// everything that renews the epoch make of it: two states with the
    /// same version of `ns` agree on all of them.
    pub(crate) fn namespace_version(&self, ns: &Name) -> Version {
        let scope = self.scope_epoch(Some(ns));
        (self.epoch, scope, self.cluster_epoch)
    }

    /// The epoch of one scope, as [`namespace_version`](Self::namespace_version) reads it.
    fn scope_epoch(&self, scope: Option<&Name>) -> u64 {
        match scope {
            None => self.cluster_epoch,
            Some(ns) => self.scope_epochs.get(ns).copied().unwrap_or(0),
        }
    }

    fn set_scope_epoch(&mut self, scope: &Scope, epoch: u64) {
        match scope {
            None => self.cluster_epoch = epoch,
            // A namespace whose changes were all undone is absent again,
            // so that decisions in made-up namespaces leave nothing.
            Some(ns) if epoch == 0 => {
                self.scope_epochs.remove(ns);
            }
            Some(ns) => {
                self.scope_epochs.insert(ns.clone(), epoch);
            }
        }
    }

    /// Gives the scope of `key` a fresh epoch: (the scope, its epoch
    /// before, after).
    fn touch_scope(&mut self, key: &ObjectKey) -> (Scope, u64, u64) {
        let scope = scope_of(key);
        let before = self.scope_epoch(scope.as_ref());
        if self.deferred {
            // A bulk load ends with a fresh epoch, which every version
            // holds: an epoch per namespace loaded would be 0.4 MiB at 100k
            // bindings for nothing.
            return (scope, before, before);
        }
        let after = memo::fresh();
        self.set_scope_epoch(&scope, after);
        (scope, before, after)
    }

    /// Declares the namespaces whose changes the webhook never sees (the
    /// namespaces its configuration excludes). A ServiceAccount's creation
    /// there is never checked, so such a ServiceAccount is governed as soon as
    /// a binding names it, whether or not it exists (R7.10).
    pub fn set_unwatched_namespaces<S: AsRef<str>>(
        &mut self,
        namespaces: impl IntoIterator<Item = S>,
    ) {
        for ns in std::mem::take(&mut self.unwatched) {
            self.names.release(&ns);
        }
        let wanted: BTreeSet<String> = namespaces
            .into_iter()
            .map(|ns| ns.as_ref().to_string())
            .collect();
        self.unwatched = wanted.iter().map(|ns| self.names.intern(ns)).collect();
        self.touch();
    }

    /// Declares the user sodguard's grant controller acts as (R10.4).
    pub fn set_grant_controller(&mut self, user: Option<String>) {
        self.grant_controller = user.filter(|u| !u.is_empty());
        self.state = memo::fresh();
    }

    /// This state's [`state`](Self::state) number.
    pub(crate) fn state(&self) -> u64 {
        self.state
    }

    pub fn grant_controller(&self) -> Option<&str> {
        self.grant_controller.as_deref()
    }

    /// Adds or replaces one object.
    pub fn apply(&mut self, object: Object) -> Undo {
        let key = object.key();
        let before = self.epoch;
        let state_before = std::mem::replace(&mut self.state, memo::fresh());
        if renews_epoch(&key) {
            self.touch();
        }
        let scope = self.touch_scope(&key);
        let previous = match object {
            Object::Namespace(mut n) => {
                self.names.canon(&mut n);
                self.namespaces.replace(n.clone()).map(Object::Namespace)
            }
            Object::ServiceAccount {
                mut namespace,
                mut name,
            } => {
                self.names.canon(&mut namespace);
                self.names.canon(&mut name);
                let set = self
                    .service_accounts
                    .get_or_insert_with(namespace.clone(), BTreeSet::new);
                let previous = set
                    .replace(name.clone())
                    .map(|name| Object::ServiceAccount {
                        namespace: namespace.clone(),
                        name,
                    });
                self.refresh_ghost(&namespace, &name);
                previous
            }
            Object::Role(role) => self.put_role(role).map(Object::Role),
            Object::Binding(binding) => self.put_binding(binding).map(Object::Binding),
            Object::Policy(policy) => self.put_policy(policy).map(Object::Policy),
            Object::Exception(exception) => self.put_exception(exception).map(Object::Exception),
            Object::TokenSecret(mut t) => {
                self.names.canon(&mut t.namespace);
                self.names.canon(&mut t.name);
                self.names.canon(&mut t.service_account);
                self.token_secrets
                    .insert((t.namespace.clone(), t.name.clone()), t)
                    .map(Object::TokenSecret)
            }
            Object::Grant(g) => self.grants.insert(g.key(), g).map(Object::Grant),
            Object::GrantPolicy(p) => self
                .grant_policies
                .insert(p.name.clone(), p)
                .map(Object::GrantPolicy),
        };
        if let Some(p) = &previous {
            self.release_names(p);
        }
        Undo {
            key,
            previous,
            epochs: (before, self.epoch),
            states: (state_before, self.state),
            scope,
            dropped: None,
        }
    }

    /// Removes one object; removing what is not there changes nothing.
    pub fn remove(&mut self, key: &ObjectKey) -> Undo {
        let before = self.epoch;
        let state_before = std::mem::replace(&mut self.state, memo::fresh());
        if renews_epoch(key) {
            self.touch();
        }
        let scope = self.touch_scope(key);
        // A deleted namespace's epoch goes with it (its objects are deleted
        // before it): a cluster that creates and deletes namespaces all day
        // must not keep one for each. The index's epoch is fresh, so no
        // version of the namespace kept before can be read again.
        let dropped = match key {
            ObjectKey::Namespace(ns) => self.scope_epochs.remove(ns).map(|e| (ns.clone(), e)),
            _ => None,
        };
        let previous = match key {
            ObjectKey::Namespace(n) => self.namespaces.take(n).map(Object::Namespace),
            ObjectKey::ServiceAccount { namespace, name } => {
                let removed = self
                    .service_accounts
                    .get_mut(namespace)
                    .and_then(|set| set.take(name));
                if self
                    .service_accounts
                    .get(namespace)
                    .is_some_and(BTreeSet::is_empty)
                {
                    self.service_accounts.remove(namespace);
                }
                self.refresh_ghost(namespace, name);
                removed.map(|name| Object::ServiceAccount {
                    namespace: namespace.clone(),
                    name,
                })
            }
            ObjectKey::Role(k) => self.take_role(k).map(Object::Role),
            ObjectKey::Binding(k) => self.take_binding(k).map(Object::Binding),
            ObjectKey::Policy(n) => self.take_policy(n).map(Object::Policy),
            ObjectKey::Exception(n) => self.take_exception(n).map(Object::Exception),
            ObjectKey::TokenSecret { namespace, name } => self
                .token_secrets
                .remove(&(namespace.clone(), name.clone()))
                .map(Object::TokenSecret),
            ObjectKey::Grant(k) => self.grants.remove(k).map(Object::Grant),
            ObjectKey::GrantPolicy(n) => self.grant_policies.remove(n).map(Object::GrantPolicy),
        };
        if let Some(p) = &previous {
            self.release_names(p);
        }
        Undo {
            key: key.clone(),
            previous,
            epochs: (before, self.epoch),
            states: (state_before, self.state),
            scope,
            dropped,
        }
    }

    /// Puts back what an [`apply`](Self::apply) or [`remove`](Self::remove)
    /// replaced. Undos must be undone in reverse order. The names only the
    /// undone object brought go with it (`apply` and `remove` release what
    /// they replace): every decision applies the request's object and most
    /// undo it, and a stream of requests with fresh names must not grow the
    /// interner.
    ///
    /// The epoch goes back with the state when nothing that touched it came
    /// after the change (or all of it was undone too).
    pub fn undo(&mut self, undo: Undo) {
        let Undo {
            key,
            previous,
            epochs: (before, after),
            states: (state_before, state_after),
            scope: (scope, scope_before, scope_after),
            dropped,
        } = undo;
        let restores = self.epoch == after;
        let restores_state = self.state == state_after;
        let restores_scope = self.scope_epoch(scope.as_ref()) == scope_after;
        let _ = match previous {
            Some(previous) => self.apply(previous),
            None => self.remove(&key),
        };
        if restores {
            self.epoch = before;
        }
        if restores_state {
            self.state = state_before;
        }
        if restores_scope {
            self.set_scope_epoch(&scope, scope_before);
        }
        if let Some((ns, e)) = dropped {
            self.scope_epochs.insert(ns, e);
        }
    }

    /// Gives back the uses of names that `apply` counted for `object`: one
    /// per name it canonicalised or interned, the same ones.
    fn release_names(&mut self, object: &Object) {
        let n = &mut self.names;
        match object {
            Object::Namespace(ns) => n.release(ns),
            Object::ServiceAccount { namespace, name } => {
                n.release(namespace);
                n.release(name);
            }
            Object::Binding(b) => {
                if let Some(ns) = &b.key.namespace {
                    n.release(ns);
                }
                n.release(&b.key.name);
                release_role_key(n, &b.role);
                for s in &b.subjects {
                    match s {
                        Identity::ServiceAccount { namespace, name } => {
                            n.release(namespace);
                            n.release(name);
                        }
                        Identity::User(name) | Identity::Group(name) => n.release(name),
                    }
                }
            }
            Object::Role(r) => {
                release_role_key(n, &r.key);
                for name in r.rules.iter().flat_map(|r| r.names()) {
                    n.release(name);
                }
            }
            Object::TokenSecret(t) => {
                n.release(&t.namespace);
                n.release(&t.name);
                n.release(&t.service_account);
            }
            // Interned by name once per put.
            Object::Policy(p) => n.release(&p.name),
            Object::Exception(e) => n.release(&e.name),
            // Grants keep their own names, never interned.
            Object::Grant(_) | Object::GrantPolicy(_) => {}
        }
    }

    // ---- bindings -------------------------------------------------------

    fn put_binding(&mut self, mut b: Binding) -> Option<Binding> {
        self.canon_binding(&mut b);
        let previous = self.take_binding(&b.key);
        let b = Arc::new(b);
        if b.subjects.iter().any(|s| !self.by_subject.contains_key(s)) {
            // Named for the first time: a group's known members change.
            self.touch();
        }
        for s in &b.subjects {
            self.by_subject
                .get_or_insert_with(s.clone(), Vec::new)
                .push(b.clone());
        }
        Arc::make_mut(
            self.by_role
                .get_or_insert_with(b.role.clone(), Default::default),
        )
        .push(b.key.clone());
        self.note_binding(&b);
        for s in &b.subjects {
            self.refresh_named(s);
        }
        self.bindings.insert(b.key.clone(), b);
        previous
    }

    /// Keeps `ghosts` and `sa_groups` right for a subject whose bindings
    /// changed.
    fn refresh_named(&mut self, s: &Identity) {
        match s {
            Identity::ServiceAccount { namespace, name } => self.refresh_ghost(namespace, name),
            Identity::Group(g) if g.starts_with(SERVICEACCOUNTS_OF) => {
                let ns = &g[SERVICEACCOUNTS_OF.len()..];
                if self.bindings_naming(s).is_empty() {
                    self.sa_groups.remove(ns);
                } else {
                    self.sa_groups.insert(Name::from(ns), g.clone());
                }
            }
            _ => {}
        }
    }

    /// Keeps `ghosts` right for one ServiceAccount after a change to its
    /// object or to a binding naming it.
    fn refresh_ghost(&mut self, namespace: &Name, name: &Name) {
        let id = Identity::ServiceAccount {
            namespace: namespace.clone(),
            name: name.clone(),
        };
        let ghost =
            !self.service_account_exists(namespace, name) && !self.bindings_naming(&id).is_empty();
        if ghost {
            self.ghosts
                .get_or_insert_with(namespace.clone(), BTreeSet::new)
                .insert(name.clone());
        } else if let Some(set) = self.ghosts.get_mut(namespace) {
            set.remove(name);
            if set.is_empty() {
                self.ghosts.remove(namespace);
            }
        }
    }

    fn take_binding(&mut self, key: &BindingKey) -> Option<Binding> {
        let b = self.bindings.remove(key)?;
        for s in &b.subjects {
            unlink(&mut self.by_subject, s, key);
        }
        for s in &b.subjects {
            self.refresh_named(s);
        }
        unlink(&mut self.by_role, &b.role, key);
        if self.forget_binding(key) || b.subjects.iter().any(|s| !self.by_subject.contains_key(s)) {
            self.touch();
        }
        Some(Arc::unwrap_or_clone(b))
    }

    fn canon_binding(&mut self, b: &mut Binding) {
        let n = &mut self.names;
        if let Some(ns) = &mut b.key.namespace {
            n.canon(ns);
        }
        n.canon(&mut b.key.name);
        canon_role_key(n, &mut b.role);
        for s in &mut b.subjects {
            match s {
                Identity::ServiceAccount { namespace, name } => {
                    n.canon(namespace);
                    n.canon(name);
                }
                Identity::User(name) | Identity::Group(name) => n.canon(name),
            }
        }
    }

    // ---- roles ----------------------------------------------------------

    fn put_role(&mut self, mut role: Role) -> Option<Role> {
        canon_role_key(&mut self.names, &mut role.key);
        for r in &mut role.rules {
            for name in r.names_mut() {
                self.names.canon(name);
            }
        }
        let key = role.key.clone();
        let before = self.aggregators_reaching(&key);
        let previous = self
            .roles
            .insert(
                key.clone(),
                Arc::new(RoleEntry {
                    role,
                    grants: Vec::new(),
                    derives: Vec::new(),
                }),
            )
            .map(|e| Arc::unwrap_or_clone(e).role);
        self.role_changed(&key, before);
        previous
    }

    fn take_role(&mut self, key: &RoleKey) -> Option<Role> {
        let before = self.aggregators_reaching(key);
        let previous = Arc::unwrap_or_clone(self.roles.remove(key)?).role;
        self.role_changed(key, before);
        Some(previous)
    }

    /// Brings aggregation and grants up to date after `key` changed.
    fn role_changed(&mut self, key: &RoleKey, mut stale: BTreeSet<Name>) {
        if key.namespace.is_none() {
            self.update_membership(&key.name);
            stale.extend(self.aggregators_reaching(key));
        }
        if self.deferred {
            return;
        }
        if self.roles.contains_key(key) {
            self.recompute_grants(key);
        } else {
            self.note_role_derives(key);
        }
        for agg in stale {
            let k = RoleKey {
                namespace: None,
                name: agg,
            };
            if self.roles.contains_key(&k) {
                self.recompute_grants(&k);
            }
        }
    }

    // ---- policies and exceptions -----------------------------------------

    fn put_policy(&mut self, policy: Arc<Policy>) -> Option<Arc<Policy>> {
        let name = self.names.intern(&policy.name);
        let (slot, previous) = match self.policy_by_name.get(&name) {
            Some(&slot) => (slot, self.policy_slots[slot as usize].replace(policy)),
            None => {
                let slot = match self.policy_slots.iter().position(Option::is_none) {
                    Some(free) => {
                        self.policy_slots[free] = Some(policy);
                        free
                    }
                    None => {
                        self.policy_slots.push(Some(policy));
                        self.policy_slots.len() - 1
                    }
                } as u32;
                self.policy_by_name.insert(name, slot);
                (slot, None)
            }
        };
        if !self.deferred {
            self.recompute_policy_grants(slot);
        }
        previous
    }

    fn take_policy(&mut self, name: &str) -> Option<Arc<Policy>> {
        let slot = self.policy_by_name.remove(name)?;
        let previous = self.policy_slots[slot as usize].take();
        for entry in self.roles.values_mut() {
            if entry.grants.iter().any(|g| g.policy == slot) {
                Arc::make_mut(entry).grants.retain(|g| g.policy != slot);
            }
        }
        previous
    }

    fn put_exception(&mut self, e: Arc<Exception>) -> Option<Arc<Exception>> {
        let name = self.names.intern(&e.name);
        let previous = self.take_exception(&name);
        self.exceptions_by_subject
            .get_or_insert_with(e.subject.clone(), BTreeSet::new)
            .insert(name.clone());
        self.exceptions.insert(name, e);
        previous
    }

    fn take_exception(&mut self, name: &str) -> Option<Arc<Exception>> {
        let e = self.exceptions.remove(name)?;
        if let Some(set) = self.exceptions_by_subject.get_mut(&e.subject) {
            set.remove(name);
            if set.is_empty() {
                self.exceptions_by_subject.remove(&e.subject);
            }
        }
        Some(e)
    }

    // ---- read access for the engine ---------------------------------------

    /// The object stored under `key`, as the index holds it.
    pub fn get(&self, key: &ObjectKey) -> Option<Object> {
        match key {
            ObjectKey::Namespace(n) => self.namespaces.get(n).cloned().map(Object::Namespace),
            ObjectKey::ServiceAccount { namespace, name } => self
                .service_accounts
                .get(namespace)
                .and_then(|set| set.get(name))
                .map(|name| Object::ServiceAccount {
                    namespace: namespace.clone(),
                    name: name.clone(),
                }),
            ObjectKey::Role(k) => self.roles.get(k).map(|e| Object::Role(e.role.clone())),
            ObjectKey::Binding(k) => self.bindings.get(k).map(|b| Object::Binding((**b).clone())),
            ObjectKey::Policy(n) => self.policy(n).cloned().map(Object::Policy),
            ObjectKey::Exception(n) => self.exceptions.get(n).cloned().map(Object::Exception),
            ObjectKey::TokenSecret { namespace, name } => self
                .token_secrets
                .get(&(namespace.clone(), name.clone()))
                .cloned()
                .map(Object::TokenSecret),
            ObjectKey::Grant(k) => self.grants.get(k).cloned().map(Object::Grant),
            ObjectKey::GrantPolicy(n) => {
                self.grant_policies.get(n).cloned().map(Object::GrantPolicy)
            }
        }
    }

    pub fn binding(&self, key: &BindingKey) -> Option<&Binding> {
        self.bindings.get(key).map(|b| &**b)
    }

    pub fn bindings(&self) -> impl Iterator<Item = &Binding> {
        self.bindings.values().map(|b| &**b)
    }

    /// The bindings that name `id` as a subject.
    pub fn bindings_naming(&self, id: &Identity) -> &[Arc<Binding>] {
        self.by_subject.get(id).map_or(&[], Vec::as_slice)
    }

    /// The bindings whose roleRef is `role`.
    pub fn bindings_of_role(&self, role: &RoleKey) -> &[BindingKey] {
        self.by_role.get(role).map_or(&[], |v| v.as_slice())
    }

    pub fn role(&self, key: &RoleKey) -> Option<&RoleEntry> {
        self.roles.get(key).map(|e| &**e)
    }

    pub fn roles(&self) -> impl Iterator<Item = &RoleEntry> {
        self.roles.values().map(|e| &**e)
    }

    pub fn namespace_exists(&self, ns: &str) -> bool {
        self.namespaces.contains(ns)
    }

    pub fn service_account_exists(&self, namespace: &str, name: &str) -> bool {
        self.service_accounts
            .get(namespace)
            .is_some_and(|s| s.contains(name))
    }

    /// The ServiceAccounts that exist for the engine (R1.5): the existing
    /// ones, and those of unwatched namespaces that a binding names (R7.10).
    pub fn service_accounts(&self) -> impl Iterator<Item = Identity> + '_ {
        self.service_accounts
            .iter()
            .flat_map(|(ns, names)| {
                names.iter().map(move |n| Identity::ServiceAccount {
                    namespace: ns.clone(),
                    name: n.clone(),
                })
            })
            .chain(self.latent_unwatched(None).cloned())
    }

    /// The namespaces whose [`service_accounts_in`](Self::service_accounts_in)
    /// together give [`service_accounts`](Self::service_accounts), each once.
    pub fn service_account_namespaces(&self) -> impl Iterator<Item = &Name> {
        self.service_accounts.keys().chain(
            self.unwatched
                .iter()
                .filter(|ns| !self.service_accounts.contains_key(*ns)),
        )
    }

    /// [`service_accounts`](Self::service_accounts) of one namespace.
    pub fn service_accounts_in<'a>(&'a self, ns: &str) -> impl Iterator<Item = Identity> + 'a {
        let latent = self
            .unwatched
            .get(ns)
            .into_iter()
            .flat_map(|ns| self.latent_unwatched(Some(ns)).cloned());
        let ns = self.service_accounts.get_key_value(ns);
        ns.into_iter()
            .flat_map(|(ns, names)| {
                names.iter().map(move |n| Identity::ServiceAccount {
                    namespace: ns.clone(),
                    name: n.clone(),
                })
            })
            .chain(latent)
    }

    /// ServiceAccounts of unwatched namespaces (or of `only`) that a binding
    /// names but that do not exist (R7.10).
    fn latent_unwatched<'a>(
        &'a self,
        only: Option<&'a Name>,
    ) -> impl Iterator<Item = &'a Identity> + 'a {
        // Without unwatched namespaces there is nothing to look for: skip
        // the walk over every named subject.
        let named = (!self.unwatched.is_empty()).then(|| self.by_subject.keys());
        named.into_iter().flatten().filter(move |id| match id {
            Identity::ServiceAccount { namespace, name } => {
                only.is_none_or(|o| o == namespace)
                    && self.unwatched.contains(namespace)
                    && !self.service_account_exists(namespace, name)
            }
            _ => false,
        })
    }

    /// ServiceAccounts that a binding names but that do not exist, of `ns`
    /// or (`None`) of every namespace: nobody runs Pods or mints tokens as
    /// them, but impersonating them needs no object (R9.1).
    pub fn ghost_service_accounts<'a>(
        &'a self,
        ns: Option<&'a str>,
    ) -> impl Iterator<Item = Identity> + 'a {
        let one = ns.map(|ns| self.ghosts.get_key_value(ns));
        let pick: Box<dyn Iterator<Item = (&Name, &BTreeSet<Name>)> + 'a> = match one {
            Some(kv) => Box::new(kv.into_iter()),
            None => Box::new(self.ghosts.iter()),
        };
        pick.flat_map(|(ns, names)| {
            names.iter().map(move |n| Identity::ServiceAccount {
                namespace: ns.clone(),
                name: n.clone(),
            })
        })
    }

    /// The namespaces where a ServiceAccount named `name` is a ghost
    /// ([`ghost_service_accounts`](Self::ghost_service_accounts)).
    pub fn ghost_namespaces_of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Name> + 'a {
        self.ghosts
            .iter()
            .filter(move |(_, names)| names.contains(name))
            .map(|(ns, _)| ns)
    }

    /// The groups `system:serviceaccounts:NS` that a binding names.
    pub fn service_account_groups(&self) -> impl Iterator<Item = &Name> {
        self.sa_groups.values()
    }

    /// The group `system:serviceaccounts:NS` of namespace `ns`, if a binding
    /// names it: a group no binding names gives nothing.
    pub fn named_service_account_group(&self, ns: &str) -> Option<&Name> {
        self.sa_groups.get(ns)
    }

    /// Users and Groups named by at least one binding (R1.5).
    pub fn named_users_and_groups(&self) -> impl Iterator<Item = &Identity> {
        self.by_subject
            .iter()
            .filter(|(id, keys)| !matches!(id, Identity::ServiceAccount { .. }) && !keys.is_empty())
            .map(|(id, _)| id)
    }

    /// Whether a new binding naming `id` leaves what the index knows of
    /// who exists the same: a binding names it already, or it is a
    /// ServiceAccount that exists (being named makes it no ghost, no
    /// known group member and no User). Only its bindings change, which a
    /// kept summary that reached it reads ([`Added`]).
    pub(crate) fn knows(&self, id: &Identity) -> bool {
        !self.bindings_naming(id).is_empty()
            || matches!(id, Identity::ServiceAccount { namespace, name }
                if self.service_account_exists(namespace, name))
    }

    /// Whether `id` is a subject that exists (R1.5), or a ServiceAccount of
    /// an unwatched namespace that a binding names (R7.10).
    pub fn exists(&self, id: &Identity) -> bool {
        match id {
            Identity::ServiceAccount { namespace, name } => {
                self.service_account_exists(namespace, name)
                    || (self.unwatched.contains(&**namespace)
                        && !self.bindings_naming(id).is_empty())
            }
            _ => !self.bindings_naming(id).is_empty(),
        }
    }

    pub fn policies(&self) -> impl Iterator<Item = (u32, &Arc<Policy>)> {
        self.policy_slots
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_ref().map(|p| (i as u32, p)))
    }

    pub fn policy(&self, name: &str) -> Option<&Arc<Policy>> {
        let slot = *self.policy_by_name.get(name)?;
        self.policy_slots[slot as usize].as_ref()
    }

    pub fn policy_slot(&self, slot: u32) -> Option<&Arc<Policy>> {
        self.policy_slots.get(slot as usize)?.as_ref()
    }

    pub fn policy_slot_of(&self, name: &str) -> Option<u32> {
        self.policy_by_name.get(name).copied()
    }

    pub fn exception(&self, name: &str) -> Option<&Arc<Exception>> {
        self.exceptions.get(name)
    }

    pub fn exceptions(&self) -> impl Iterator<Item = &Arc<Exception>> {
        self.exceptions.values()
    }

    pub fn exceptions_for(&self, id: &Identity) -> impl Iterator<Item = &Arc<Exception>> {
        self.exceptions_by_subject
            .get(id)
            .into_iter()
            .flatten()
            .filter_map(|n| self.exceptions.get(n))
    }

    /// Long-lived token Secrets, for review time (R8.3).
    pub fn token_secrets(&self) -> impl Iterator<Item = &TokenSecret> {
        self.token_secrets.values()
    }

    /// AccessGrants and ClusterAccessGrants (R10).
    pub fn grants(&self) -> impl Iterator<Item = &Arc<JitGrant>> {
        self.grants.values()
    }

    pub fn grant(&self, key: &GrantKey) -> Option<&Arc<JitGrant>> {
        self.grants.get(key)
    }

    pub fn grant_policies(&self) -> impl Iterator<Item = &Arc<GrantPolicy>> {
        self.grant_policies.values()
    }

    /// Distinct names interned: those of the objects held (and of the
    /// unwatched namespaces), nothing more.
    pub fn interned_names(&self) -> usize {
        self.names.len()
    }

    pub fn counts(&self) -> Counts {
        let (roles, cluster_roles) = count_split(self.roles.keys().map(|k| k.namespace.is_some()));
        let (rbs, crbs) = count_split(self.bindings.keys().map(|k| k.namespace.is_some()));
        Counts {
            namespaces: self.namespaces.len(),
            service_accounts: self.service_accounts.values().map(BTreeSet::len).sum(),
            roles,
            cluster_roles,
            role_bindings: rbs,
            cluster_role_bindings: crbs,
            policies: self.policy_by_name.len(),
            exceptions: self.exceptions.len(),
            token_secrets: self.token_secrets.len(),
        }
    }
}

fn count_split(it: impl Iterator<Item = bool>) -> (usize, usize) {
    it.fold((0, 0), |(a, b), x| if x { (a + 1, b) } else { (a, b + 1) })
}

fn release_role_key(n: &mut Names, k: &RoleKey) {
    if let Some(ns) = &k.namespace {
        n.release(ns);
    }
    n.release(&k.name);
}

fn canon_role_key(n: &mut Names, k: &mut RoleKey) {
    if let Some(ns) = &mut k.namespace {
        n.canon(ns);
    }
    n.canon(&mut k.name);
}

/// Whether any change of an object of this kind gives the index a fresh
/// epoch. A binding does only when it is an escalation binding or names an
/// identity first or last ([`Index::put_binding`], [`Index::take_binding`]);
/// the other kinds never touch what the epoch guards.
fn renews_epoch(key: &ObjectKey) -> bool {
    matches!(
        key,
        ObjectKey::Namespace(_)
            | ObjectKey::ServiceAccount { .. }
            | ObjectKey::Role(_)
            | ObjectKey::Policy(_)
    )
}

/// A list of bindings by key: the bindings themselves, or their keys shared.
trait Linked: Clone {
    /// Takes `b` out of the list (the order of the others may change).
    fn unlink(&mut self, b: &BindingKey);
    fn is_empty(&self) -> bool;
}

impl Linked for Vec<Arc<Binding>> {
    fn unlink(&mut self, b: &BindingKey) {
        if let Some(i) = self.iter().position(|x| x.key == *b) {
            self.swap_remove(i);
        }
    }

    fn is_empty(&self) -> bool {
        Vec::is_empty(self)
    }
}

impl Linked for Arc<Vec<BindingKey>> {
    fn unlink(&mut self, b: &BindingKey) {
        if let Some(i) = self.iter().position(|x| x == b) {
            Arc::make_mut(self).swap_remove(i);
        }
    }

    fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }
}

fn unlink<K: Hash + Eq + Clone, V: Linked>(map: &mut CowMap<K, V>, k: &K, b: &BindingKey) {
    if let Some(v) = map.get_mut(k) {
        v.unlink(b);
        if v.is_empty() {
            map.remove(k);
        }
    }
}

#[cfg(test)]
mod tests;
