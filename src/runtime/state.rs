//! The state the webhook decides on: what the watches have shown, what
//! admitted changes the watch has not shown yet add to it (R7.8), and
//! readiness.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use jiff::Timestamp;

use crate::engine::index::Index;
use crate::engine::{self, Assumption, Request, Review};
use crate::model::{Object, ObjectKey};
use crate::runtime::metrics::Metrics;

/// How the server learns about the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Watchers keep the confirmed state current; what admitted changes add
    /// is assumed until the watch shows them or the overlay TTL passes.
    Live,
    /// A fixed state read from files: every request is judged against it and
    /// nothing is kept.
    Static,
}

/// An admitted change that the watch has not confirmed yet.
#[derive(Debug)]
struct Pending {
    /// What the assumed state holds for it, kept to rebuild that state.
    merged: Object,
    /// What could not be united with `merged`, under keys only the assumed
    /// state has.
    shadows: Vec<Object>,
    deadline: Instant,
}

/// The states decisions are made on (R7.8). In live mode `confirmed` is what
/// the watches have shown and `assumed` is `confirmed` plus what admitted,
/// unconfirmed changes add; outside the overlay's keys the two are equal. In
/// static mode only `confirmed` is used.
#[derive(Debug)]
pub struct Engine {
    confirmed: Index,
    assumed: Index,
    overlay: HashMap<ObjectKey, Pending>,
}

impl Engine {
    /// The assumed state forgets what the overlay added under `key` and
    /// takes the confirmed object again.
    fn settle(&mut self, key: &ObjectKey) {
        let Some(p) = self.overlay.remove(key) else {
            return;
        };
        for s in &p.shadows {
            let _ = self.assumed.remove(&s.key());
        }
        let _ = match self.confirmed.get(key) {
            Some(o) => self.assumed.apply(o),
            None => self.assumed.remove(key),
        };
    }

    /// A watch event for `key`, already applied to the confirmed state. An
    /// event can predate an admitted change (the API server stores that one
    /// later, or stores an older write last), so it does not settle the entry
    /// by itself: the assumed state takes the confirmed object united with
    /// what the entry adds, and the entry goes only once the confirmed object
    /// holds all of that (or at its deadline).
    fn reconcile(&mut self, key: &ObjectKey) {
        let confirmed = self.confirmed.get(key);
        let _ = match &confirmed {
            Some(o) => self.assumed.apply(o.clone()),
            None => self.assumed.remove(key),
        };
        let Some(p) = self.overlay.get(key) else {
            return;
        };
        let Some(a) = engine::assumption(&self.assumed, p.merged.clone()) else {
            self.overlay.remove(key);
            return;
        };
        let holds_all = a.shadow.is_none()
            && p.shadows.is_empty()
            && confirmed.as_ref().is_some_and(|c| same(c, &a.merged));
        if holds_all {
            self.overlay.remove(key);
            return;
        }
        let _ = self.assumed.apply(a.merged.clone());
        let shadow = a.shadow.filter(|s| !p.shadows.iter().any(|o| same(o, s)));
        if let Some(s) = &shadow {
            let _ = self.assumed.apply(s.clone());
        }
        if let Some(p) = self.overlay.get_mut(key) {
            p.merged = a.merged;
            p.shadows.extend(shadow);
        }
    }

    fn assume(&mut self, a: Assumption, deadline: Instant) {
        if let Some(p) = self.overlay.get(&a.key())
            && a.shadow.is_some()
            && p.shadows.len() >= MAX_SHADOWS
        {
            // Only reviews that never reach storage pile up copies of one
            // object (a forged stream of label variants): past the cap, the
            // entry keeps what it has until its deadline.
            let _ = self.assumed.apply(a.merged.clone());
            if let Some(p) = self.overlay.get_mut(&a.key()) {
                p.merged = a.merged;
            }
            return;
        }
        let _ = self.assumed.apply(a.merged.clone());
        if let Some(shadow) = &a.shadow {
            let _ = self.assumed.apply(shadow.clone());
        }
        match self.overlay.entry(a.key()) {
            Entry::Occupied(mut o) => {
                let p = o.get_mut();
                p.merged = a.merged;
                // The first admission's deadline stands: reposting a change
                // does not keep it assumed for ever.
                p.shadows.extend(a.shadow);
            }
            Entry::Vacant(v) => {
                v.insert(Pending {
                    merged: a.merged,
                    shadows: a.shadow.into_iter().collect(),
                    deadline,
                });
            }
        }
    }

    /// After a panic while deciding, the assumed state may hold a request's
    /// object half-judged (replacing what was there): build it again from the
    /// confirmed state and the overlay.
    fn rebuild_assumed(&mut self) {
        let mut assumed = self.confirmed.clone();
        for p in self.overlay.values() {
            let _ = assumed.apply(p.merged.clone());
            for s in &p.shadows {
                let _ = assumed.apply(s.clone());
            }
        }
        self.assumed = assumed;
    }
}

/// Copies of one object the overlay keeps beside it at most (see `assume`).
const MAX_SHADOWS: usize = 16;

/// The confirmed object already holds everything `assumed` does.
fn same(confirmed: &Object, assumed: &Object) -> bool {
    match (confirmed, assumed) {
        (Object::Binding(c), Object::Binding(a)) => c == a,
        (Object::Role(c), Object::Role(a)) => c == a,
        (Object::Namespace(_), Object::Namespace(_))
        | (Object::ServiceAccount { .. }, Object::ServiceAccount { .. }) => {
            confirmed.key() == assumed.key()
        }
        _ => false,
    }
}

/// What [`AppState::attempt`] gave.
#[derive(Debug)]
pub enum Attempt {
    Decided(Review),
    /// The replica no longer leads: not decided, nothing changed.
    NotLeading,
    /// The work took longer than the attempt's time: not decided, nothing
    /// changed.
    Longer,
}

pub struct AppState {
    pub mode: Mode,
    /// One lock for decisions and watch events: two conflicting requests on
    /// one replica are decided one after the other, each on the state that
    /// includes the other if it was admitted.
    engine: std::sync::Mutex<Engine>,
    /// Whose turn it is to decide, awaited before the lock: decisions are
    /// one at a time anyway, and a request that waits for its turn on an
    /// async worker leaves that worker free to read and answer other
    /// connections. Blocked on the lock itself, the worker slept on a futex
    /// and was woken onto the decider's core, where it waited for the
    /// scheduler's tick (4 ms) while the other core idled: the tail of
    /// every answer under load.
    turns: Arc<tokio::sync::Semaphore>,
    ready: AtomicBool,
    overlay_ttl: Duration,
    /// What one decision may do (`--decision-budget`).
    decision_budget: engine::Budget,
    /// A fixed clock, for static states judged at a given time.
    clock: Option<Timestamp>,
    pub metrics: Metrics,
    /// Watch events applied so far: the audit runs again once it moves.
    changes: std::sync::atomic::AtomicU64,
    use_time: crate::runtime::usetime::UseTimeCache,
}

impl AppState {
    pub fn new(mode: Mode, index: Index, overlay_ttl: Duration, metrics: Metrics) -> Arc<Self> {
        let state = Arc::new(AppState {
            mode,
            engine: std::sync::Mutex::new(Engine {
                assumed: match mode {
                    Mode::Live => index.clone(),
                    Mode::Static => Index::new(),
                },
                confirmed: index,
                overlay: HashMap::new(),
            }),
            turns: Arc::new(tokio::sync::Semaphore::new(1)),
            ready: AtomicBool::new(mode == Mode::Static),
            overlay_ttl,
            decision_budget: engine::Budget::UNLIMITED,
            clock: None,
            metrics,
            changes: std::sync::atomic::AtomicU64::new(0),
            use_time: Default::default(),
        });
        state.refresh_object_metrics();
        state
    }

    /// Bounds every decision by `budget`.
    pub fn with_decision_budget(mut self: Arc<Self>, budget: engine::Budget) -> Arc<Self> {
        if let Some(s) = Arc::get_mut(&mut self) {
            s.decision_budget = budget;
        }
        self
    }

    pub fn decision_budget(&self) -> engine::Budget {
        self.decision_budget
    }

    /// Judges exceptions at `now` instead of the real time.
    pub fn with_clock(mut self: Arc<Self>, now: Option<Timestamp>) -> Arc<Self> {
        if let Some(s) = Arc::get_mut(&mut self) {
            s.clock = now;
        }
        self
    }

    pub fn now(&self) -> Timestamp {
        self.clock.unwrap_or_else(Timestamp::now)
    }

    /// Judged at a fixed time (`serve --state --now`), not the real one.
    pub fn has_fixed_clock(&self) -> bool {
        self.clock.is_some()
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// A poisoned lock means a panic happened while holding it. In live mode
    /// the assumed state may then hold the object of the request that was
    /// being judged in place of the assumed one, so it is rebuilt from the
    /// confirmed state (which only watch events change, one whole step at a
    /// time) and the overlay before anyone decides on it again.
    fn lock(&self) -> std::sync::MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|p| {
            let mut e = p.into_inner();
            if self.mode == Mode::Live {
                e.rebuild_assumed();
            }
            self.engine.clear_poison();
            e
        })
    }

    /// Waits, without holding an async worker, until no other request
    /// that took a turn is deciding; the turn lasts as long as the permit.
    /// Watch events and whole-state work take the lock without a turn: a
    /// turn only orders decisions among themselves.
    pub async fn decision_turn(&self) -> tokio::sync::OwnedSemaphorePermit {
        loop {
            // The semaphore is never closed: an error cannot happen, and
            // would only mean waiting for the next permit.
            if let Ok(p) = self.turns.clone().acquire_owned().await {
                return p;
            }
            tokio::task::yield_now().await;
        }
    }

    /// Decides on one request.
    pub fn decide(&self, req: &Request, now: Timestamp) -> Review {
        let mut e = self.lock();
        self.decide_locked(&mut e, req, now, self.decision_budget)
    }

    /// Decides on one request if `may` still says so once the lock is held,
    /// giving up when the work takes longer than `within` (when that is
    /// shorter than the decision budget): then nothing is decided and the
    /// state is as it was, for the caller to decide again where a long
    /// decision blocks nothing else (the blocking pool).
    pub fn attempt(
        &self,
        req: &Request,
        now: Timestamp,
        may: impl FnOnce() -> bool,
        within: Option<Duration>,
    ) -> Attempt {
        let mut e = self.lock();
        if !may() {
            return Attempt::NotLeading;
        }
        let full = self.decision_budget;
        let budget = match within {
            Some(t) if full.time.is_none_or(|f| t < f) => engine::Budget {
                time: Some(t),
                ..full
            },
            _ => full,
        };
        let review = self.decide_locked(&mut e, req, now, budget);
        // A decision stopped by time refuses without an assumption: the
        // whole budget may judge it differently, so it is not an answer.
        if budget != full
            && !review.allowed
            && matches!(review.stopped, Some(engine::Exhausted::Time { .. }))
        {
            return Attempt::Longer;
        }
        Attempt::Decided(review)
    }

    fn decide_locked(
        &self,
        e: &mut Engine,
        req: &Request,
        now: Timestamp,
        budget: engine::Budget,
    ) -> Review {
        match self.mode {
            Mode::Static => engine::review_within(&mut e.confirmed, req, now, budget),
            Mode::Live => {
                let Engine {
                    confirmed,
                    assumed,
                    overlay,
                } = &mut *e;
                // Outside the overlay's keys the two states are equal.
                let confirmed = (!overlay.is_empty()).then_some(&*confirmed);
                let (review, assumption) =
                    engine::review_against(confirmed, assumed, req, now, budget);
                if let Some(a) = assumption {
                    e.assume(a, Instant::now() + self.overlay_ttl);
                }
                review
            }
        }
    }

    /// Waits for a decision under way, if any, to end.
    pub fn decision_barrier(&self) {
        drop(self.lock());
    }

    /// A watch event: the confirmed state takes the API server's word; the
    /// assumed state keeps what admitted changes add beyond it (`reconcile`).
    pub fn watch_apply(&self, object: Object) {
        let mut e = self.lock();
        let key = object.key();
        let _ = e.confirmed.apply(object);
        if self.mode == Mode::Live {
            e.reconcile(&key);
        }
        self.changes.fetch_add(1, Ordering::Release);
    }

    pub fn watch_remove(&self, key: &ObjectKey) {
        let mut e = self.lock();
        let _ = e.confirmed.remove(key);
        if self.mode == Mode::Live {
            e.reconcile(key);
        }
        self.changes.fetch_add(1, Ordering::Release);
    }

    /// How many watch events the confirmed state has taken: a different
    /// number means the state may have changed.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    /// Forgets what admitted changes the watch never confirmed added (the
    /// request failed later in the API server, another webhook refused it,
    /// or it never came from the API server).
    pub fn expire_overlay(&self) -> usize {
        let now = Instant::now();
        let mut e = self.lock();
        let expired: Vec<ObjectKey> = e
            .overlay
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &expired {
            e.settle(k);
        }
        expired.len()
    }

    pub fn overlay_len(&self) -> usize {
        self.lock().overlay.len()
    }

    /// Runs `f` with what the cluster holds as the watches have shown it (the
    /// files in static mode): for status reports and metrics.
    pub fn with_index<T>(&self, f: impl FnOnce(&Index) -> T) -> T {
        f(&self.lock().confirmed)
    }

    /// What the watches have shown (the files in static mode), to read
    /// without the decision lock: whole-state work (the review-time audit,
    /// whose counts are the violations gauge) runs on this, so no decision
    /// waits for it. The clone takes microseconds under the lock (the index's maps are
    /// copy-on-write); later changes copy the parts they write, leaving the
    /// snapshot as it was.
    pub fn snapshot(&self) -> Index {
        self.lock().confirmed.clone()
    }

    /// The use-time decision (R13) on the confirmed state: what the watches
    /// have shown, never what admitted, unconfirmed changes add (a forged
    /// admission request must not make sodguard refuse anyone). Decided on a
    /// cached snapshot, so it never waits for an admission decision beyond
    /// the microseconds a snapshot takes after a change.
    pub fn authorize(
        &self,
        requester: &crate::engine::usetime::Requester,
        access: &crate::engine::usetime::Access,
        now: Timestamp,
    ) -> crate::engine::usetime::UseTimeVerdict {
        self.use_time.decide(
            self.changes(),
            || {
                let e = self.lock();
                (e.confirmed.clone(), self.changes())
            },
            requester,
            access,
            now,
        )
    }

    /// Runs `f` with the state later requests are judged on: in live mode the
    /// confirmed state plus what admitted, unconfirmed changes add.
    pub fn with_assumed<T>(&self, f: impl FnOnce(&Index) -> T) -> T {
        let e = self.lock();
        match self.mode {
            Mode::Live => f(&e.assumed),
            Mode::Static => f(&e.confirmed),
        }
    }

    pub fn refresh_object_metrics(&self) {
        let counts = self.with_index(Index::counts);
        self.metrics.set_index_counts(&counts);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::decode::convert;
    use crate::model::Identity;

    fn now() -> Timestamp {
        "2026-11-28T12:00:00Z".parse().unwrap()
    }

    fn policy(name: &str, scope: &str, kinds: Value) -> Value {
        json!({"apiVersion": "sodguard.io/v1alpha1", "kind": "SoDPolicy", "metadata": {"name": name},
               "spec": {"scope": scope, "subjects": {"kinds": kinds},
                        "exceptions": {"breakGlass": {"allowed": true, "maxDuration": "4h"}},
                        "duties": [
            {"name": "secret-admin", "permissions": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]}]},
            {"name": "secret-use", "permissions": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}]}})
    }

    fn binding(ns: &str, name: &str, role: &str, subject: Value) -> Value {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": name, "namespace": ns},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
               "subjects": [subject]})
    }

    /// Violators of both policies in every namespace, through
    /// ServiceAccounts, a User and a Group, one of them excused.
    fn state() -> Index {
        let mut objs = vec![
            policy(
                "in-namespace",
                "Namespace",
                json!(["ServiceAccount", "User", "Group"]),
            ),
            policy("cluster-wide", "Cluster", json!(["ServiceAccount"])),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "writer"},
                   "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]}]}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "reader"},
                   "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}),
            json!({"apiVersion": "sodguard.io/v1alpha1", "kind": "SoDException",
                   "metadata": {"name": "x", "creationTimestamp": "2026-11-28T11:00:00Z"},
                   "spec": {"policy": "in-namespace", "subject": {"kind": "ServiceAccount", "namespace": "n0", "name": "a0"},
                            "justification": "key rotation", "requestedBy": "alice",
                            "expiresAt": "2026-11-28T14:00:00Z", "approvals": [], "breakGlass": true}}),
        ];
        for n in 0..5 {
            let ns = format!("n{n}");
            objs.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}));
            for i in 0..10 {
                let sa =
                    json!({"kind": "ServiceAccount", "name": format!("a{i}"), "namespace": ns});
                objs.push(json!({"apiVersion": "v1", "kind": "ServiceAccount",
                                 "metadata": {"name": format!("a{i}"), "namespace": ns}}));
                if i % 2 == 0 {
                    objs.push(binding(&ns, &format!("w{i}"), "writer", sa.clone()));
                }
                if i % 3 == 0 {
                    objs.push(binding(&ns, &format!("r{i}"), "reader", sa));
                }
            }
        }
        // Both duties, in different namespaces: only the cluster-wide policy.
        let a1 = json!({"kind": "ServiceAccount", "name": "a1", "namespace": "n0"});
        objs.push(binding("n1", "w-a1", "writer", a1.clone()));
        objs.push(binding("n2", "r-a1", "reader", a1));
        for (ns, subject) in [
            ("n3", json!({"kind": "User", "name": "u"})),
            ("n4", json!({"kind": "Group", "name": "g"})),
        ] {
            objs.push(binding(ns, "w-other", "writer", subject.clone()));
            objs.push(binding(ns, "r-other", "reader", subject));
        }
        // A ServiceAccount that exists only because it is named, in an
        // unwatched namespace (R7.10), and namespaces without any.
        let late = json!({"kind": "ServiceAccount", "name": "late", "namespace": "ops"});
        objs.push(binding("n1", "w-late", "writer", late.clone()));
        objs.push(binding("n1", "r-late", "reader", late));
        objs.push(json!({"apiVersion": "v1", "kind": "ServiceAccount",
                         "metadata": {"name": "gone", "namespace": "n5"}}));
        let mut index = Index::from_objects(objs.iter().map(|o| convert(o).unwrap().unwrap()));
        let _ = index.remove(&ObjectKey::ServiceAccount {
            namespace: "n5".into(),
            name: "gone".into(),
        });
        index.set_unwatched_namespaces(["ops", "quiet"]);
        index
    }

    /// Issue 9: a long-running server's interned names follow the cluster:
    /// what the watches add and then delete leaves nothing behind, in the
    /// confirmed state nor in the assumed one (which holds the same names
    /// and shares them with it), snapshots taken meanwhile or not.
    #[test]
    fn watch_churn_leaves_no_names_behind() {
        for mode in [Mode::Static, Mode::Live] {
            let state = AppState::new(mode, state(), Duration::from_secs(60), Metrics::new());
            let sizes = || {
                (
                    state.with_index(Index::interned_names),
                    state.with_assumed(Index::interned_names),
                )
            };
            let start = sizes();
            let mut snapshots = Vec::new();
            for i in 0..200 {
                let ns = format!("churn-{i}");
                let objs = [
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
                    json!({"apiVersion": "v1", "kind": "ServiceAccount",
                           "metadata": {"name": format!("sa-{i}"), "namespace": ns}}),
                    binding(
                        &ns,
                        &format!("b-{i}"),
                        &format!("role-{i}"),
                        json!({"kind": "ServiceAccount", "name": format!("sa-{i}"), "namespace": ns}),
                    ),
                ]
                .map(|o| convert(&o).unwrap().unwrap());
                for o in &objs {
                    state.watch_apply(o.clone());
                }
                if i % 50 == 0 {
                    snapshots.push(state.snapshot());
                }
                for o in objs.iter().rev() {
                    state.watch_remove(&o.key());
                }
            }
            assert_eq!(sizes(), start, "{mode:?}");
            drop(snapshots);
            assert_eq!(sizes(), start, "{mode:?}");
        }
    }

    /// A decision given up on the async worker (`Attempt::Longer`) changes
    /// nothing, and the whole budget then answers as one decision does.
    #[test]
    fn an_attempt_given_up_changes_nothing() {
        let crb = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                         "metadata": {"name": "all"},
                         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "writer"},
                         "subjects": [{"kind": "Group", "name": "system:serviceaccounts"}]});
        let req = Request {
            object: Some(crb),
            ..Request::new(
                engine::Operation::Create,
                engine::UserInfo {
                    username: "alice".into(),
                    groups: vec![],
                },
            )
        };
        for mode in [Mode::Static, Mode::Live] {
            let fresh = || AppState::new(mode, state(), Duration::from_secs(60), Metrics::new());
            let s = fresh();
            let before = s.with_assumed(|i| engine::evaluate(i, now()));
            let a = s.attempt(&req, now(), || true, Some(Duration::ZERO));
            assert!(matches!(a, Attempt::Longer), "{mode:?}: {a:?}");
            assert_eq!(
                s.with_assumed(|i| engine::evaluate(i, now())),
                before,
                "{mode:?}"
            );
            assert_eq!(s.overlay_len(), 0, "{mode:?}");
            let Attempt::Decided(full) = s.attempt(&req, now(), || true, None) else {
                panic!("{mode:?}: not decided with the whole budget");
            };
            assert!(
                !full.allowed && full.stopped.is_none(),
                "{mode:?}: {full:?}"
            );
            assert_eq!(full, fresh().decide(&req, now()), "{mode:?}");
            // Done in time, it is the answer; not leading, nothing is done.
            let s = fresh();
            let quick = s.attempt(&req, now(), || true, Some(Duration::from_secs(600)));
            assert!(
                matches!(quick, Attempt::Decided(r) if r == full),
                "{mode:?}"
            );
            let s = fresh();
            assert!(matches!(
                s.attempt(&req, now(), || false, None),
                Attempt::NotLeading
            ));
            assert_eq!(
                s.with_assumed(|i| engine::evaluate(i, now())),
                before,
                "{mode:?}"
            );
        }
    }

    /// The snapshot keeps the state it was taken of while decisions and
    /// watch events change the server's, and changing it changes nothing
    /// there.
    #[test]
    fn a_snapshot_is_the_state_when_taken() {
        for mode in [Mode::Static, Mode::Live] {
            let state = AppState::new(mode, state(), Duration::from_secs(60), Metrics::new());
            let mut snapshot = state.snapshot();
            let before = engine::evaluate(&snapshot, now());
            let gone = ObjectKey::Binding(crate::model::BindingKey {
                namespace: Some("n0".into()),
                name: "w0".into(),
            });
            assert!(snapshot.get(&gone).is_some());
            state.watch_remove(&gone);
            let added = convert(&binding(
                "n0",
                "w-new",
                "writer",
                json!({"kind": "User", "name": "eve"}),
            ))
            .unwrap()
            .unwrap();
            state.watch_apply(added.clone());
            assert!(snapshot.get(&gone).is_some(), "{mode:?}");
            assert!(snapshot.get(&added.key()).is_none(), "{mode:?}");
            assert_eq!(engine::evaluate(&snapshot, now()), before, "{mode:?}");
            // And the other way.
            let _ = snapshot.remove(&added.key());
            let _ = snapshot.apply(
                convert(&binding(
                    "n3",
                    "x",
                    "reader",
                    json!({"kind": "User", "name": "mallory"}),
                ))
                .unwrap()
                .unwrap(),
            );
            state.with_index(|i| {
                assert!(i.get(&gone).is_none());
                assert!(i.get(&added.key()).is_some());
                assert!(
                    i.bindings_naming(&Identity::User("mallory".into()))
                        .is_empty()
                );
            });
        }
    }
}
