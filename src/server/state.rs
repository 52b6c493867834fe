//! The state the webhook decides on: what the watches have shown, what
//! admitted changes the watch has not shown yet add to it (R7.8), and
//! readiness.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use jiff::Timestamp;

use super::metrics::Metrics;
use crate::engine::{self, Assumption, Request, Review};
use crate::index::Index;
use crate::model::{Object, ObjectKey};

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

    fn assume(&mut self, a: Assumption, deadline: Instant) {
        let _ = self.assumed.apply(a.merged.clone());
        if let Some(shadow) = &a.shadow {
            let _ = self.assumed.apply(shadow.clone());
        }
        match self.overlay.entry(a.key()) {
            Entry::Occupied(mut o) => {
                let p = o.get_mut();
                p.merged = a.merged;
                p.shadows.extend(a.shadow);
                p.deadline = deadline;
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

pub struct AppState {
    pub mode: Mode,
    /// One lock for decisions and watch events: two conflicting requests on
    /// one replica are decided one after the other, each on the state that
    /// includes the other if it was admitted.
    engine: std::sync::Mutex<Engine>,
    ready: AtomicBool,
    overlay_ttl: Duration,
    /// A fixed clock, for static states judged at a given time.
    clock: Option<Timestamp>,
    pub metrics: Metrics,
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
            ready: AtomicBool::new(mode == Mode::Static),
            overlay_ttl,
            clock: None,
            metrics,
        });
        state.refresh_object_metrics();
        state
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

    /// Decides on one request.
    pub fn decide(&self, req: &Request, now: Timestamp) -> Review {
        let mut e = self.lock();
        match self.mode {
            Mode::Static => engine::review(&mut e.confirmed, req, now),
            Mode::Live => {
                let Engine {
                    confirmed,
                    assumed,
                    overlay,
                } = &mut *e;
                // Outside the overlay's keys the two states are equal.
                let confirmed = (!overlay.is_empty()).then_some(&*confirmed);
                let (review, assumption) = engine::review_against(confirmed, assumed, req, now);
                if let Some(a) = assumption {
                    e.assume(a, Instant::now() + self.overlay_ttl);
                }
                review
            }
        }
    }

    /// A watch event: the API server's word replaces whatever the overlay
    /// assumed for that object.
    pub fn watch_apply(&self, object: Object) {
        let mut e = self.lock();
        let key = object.key();
        if self.mode == Mode::Live {
            let _ = e.assumed.apply(object.clone());
        }
        let _ = e.confirmed.apply(object);
        e.settle(&key);
    }

    pub fn watch_remove(&self, key: &ObjectKey) {
        let mut e = self.lock();
        if self.mode == Mode::Live {
            let _ = e.assumed.remove(key);
        }
        let _ = e.confirmed.remove(key);
        e.settle(key);
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
