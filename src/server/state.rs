//! The state the webhook decides on: the index, the overlay of admitted
//! changes the watch has not shown yet, and readiness.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use jiff::Timestamp;

use super::metrics::Metrics;
use crate::engine::{self, Request, Review};
use crate::index::{Index, Undo};
use crate::model::{Object, ObjectKey};

/// How the server learns about the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Watchers keep the index current; admitted changes are held in the
    /// overlay until the watch shows them.
    Live,
    /// A fixed state read from files: every request is judged against it and
    /// nothing is kept.
    Static,
}

/// An admitted change that the watch has not confirmed yet.
#[derive(Debug)]
struct Pending {
    /// Restores the state the watch last reported.
    undo: Undo,
    deadline: Instant,
}

#[derive(Debug)]
pub struct Engine {
    pub index: Index,
    overlay: HashMap<ObjectKey, Pending>,
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
                index,
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

    /// A poisoned lock means a panic happened while holding it; the index
    /// itself is only changed through whole apply/undo steps, so keep going.
    fn lock(&self) -> std::sync::MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Decides on one request.
    pub fn decide(&self, req: &Request, now: Timestamp) -> Review {
        let mut e = self.lock();
        self.decide_locked(&mut e, req, now)
    }

    /// Decides on one request if `may` still says so once the decision lock
    /// is held (None: not decided, nothing changed). A replica that lost the
    /// lead while the request waited must not decide it.
    pub fn decide_if(
        &self,
        req: &Request,
        now: Timestamp,
        may: impl FnOnce() -> bool,
    ) -> Option<Review> {
        let mut e = self.lock();
        may().then(|| self.decide_locked(&mut e, req, now))
    }

    fn decide_locked(&self, e: &mut Engine, req: &Request, now: Timestamp) -> Review {
        match self.mode {
            Mode::Static => engine::review(&mut e.index, req, now),
            Mode::Live => {
                let (review, undo) = engine::review_and_apply(&mut e.index, req, now);
                if let Some(undo) = undo {
                    let key = undo.key().clone();
                    let deadline = Instant::now() + self.overlay_ttl;
                    match e.overlay.get_mut(&key) {
                        // Keep the oldest undo: it restores what the watch said.
                        Some(p) => {
                            p.deadline = deadline;
                            drop(undo);
                        }
                        None => {
                            e.overlay.insert(key, Pending { undo, deadline });
                        }
                    }
                }
                review
            }
        }
    }

    /// Waits for a decision under way, if any, to end.
    pub fn decision_barrier(&self) {
        drop(self.lock());
    }

    /// A watch event: the API server's word replaces whatever the overlay
    /// assumed for that object.
    pub fn watch_apply(&self, object: Object) {
        let mut e = self.lock();
        e.overlay.remove(&object.key());
        let _ = e.index.apply(object);
    }

    pub fn watch_remove(&self, key: &ObjectKey) {
        let mut e = self.lock();
        e.overlay.remove(key);
        let _ = e.index.remove(key);
    }

    /// Reverts admitted changes the watch never confirmed (the request failed
    /// later in the API server, or another webhook refused it).
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
            if let Some(p) = e.overlay.remove(k) {
                e.index.undo(p.undo);
            }
        }
        expired.len()
    }

    pub fn overlay_len(&self) -> usize {
        self.lock().overlay.len()
    }

    /// Runs `f` with the index (for status reports and tests).
    pub fn with_index<T>(&self, f: impl FnOnce(&Index) -> T) -> T {
        f(&self.lock().index)
    }

    pub fn refresh_object_metrics(&self) {
        let counts = self.with_index(Index::counts);
        self.metrics.set_index_counts(&counts);
    }
}
