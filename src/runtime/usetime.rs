//! Use-time answers (R13) on the confirmed state, without the decision
//! lock: a snapshot of the index per state (taken in microseconds, its maps
//! are copy-on-write) and, per identity and policy, the raw violations found
//! on it. Both are dropped as soon as a watch event changes the state;
//! exceptions are judged at every request's own time, so an exception's end
//! takes effect at once whatever is cached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use jiff::Timestamp;

use crate::engine::Violation;
use crate::engine::index::Index;
use crate::engine::usetime::{Access, Requester, UseTimeVerdict, decide_with};
use crate::model::Identity;

/// Past this many cached identities the cache starts over: a flood of
/// requests from distinct (or forged) users must not grow it without bound.
const MAX_ENTRIES: usize = 100_000;

type Key = (Identity, u32);

struct Generation {
    changes: u64,
    index: Arc<Index>,
    violations: Mutex<HashMap<Key, Arc<Vec<Violation>>>>,
}

#[derive(Default)]
pub struct UseTimeCache {
    current: RwLock<Option<Arc<Generation>>>,
}

impl std::fmt::Debug for UseTimeCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UseTimeCache")
    }
}

impl UseTimeCache {
    /// The cached generation if it is of state `changes`; else a new one from
    /// `snapshot` (called only then).
    fn generation(&self, changes: u64, snapshot: impl FnOnce() -> (Index, u64)) -> Arc<Generation> {
        if let Some(g) = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            && g.changes == changes
        {
            return g.clone();
        }
        let (index, changes) = snapshot();
        let g = Arc::new(Generation {
            changes,
            index: Arc::new(index),
            violations: Mutex::new(HashMap::new()),
        });
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        // Another request may have stored a newer state meanwhile.
        if current.as_ref().is_none_or(|c| c.changes <= changes) {
            *current = Some(g.clone());
        }
        g
    }

    /// Decides on `changes`, the state's current change count; `snapshot`
    /// gives the confirmed index with the count it is of.
    pub fn decide(
        &self,
        changes: u64,
        snapshot: impl FnOnce() -> (Index, u64),
        requester: &Requester,
        access: &Access,
        now: Timestamp,
    ) -> UseTimeVerdict {
        let g = self.generation(changes, snapshot);
        let mut violations_of = |index: &Index, id: &Identity, slot: u32| {
            let key = (id.clone(), slot);
            if let Some(v) = g
                .violations
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
            {
                return v.clone();
            }
            // Judged outside the lock: two requests of one new identity may
            // both judge it, and get the same answer.
            let v = Arc::new(crate::engine::subject_violations(index, id, Some(slot)));
            let mut map = g.violations.lock().unwrap_or_else(|p| p.into_inner());
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
            map.insert(key, v.clone());
            v
        };
        decide_with(&g.index, requester, access, now, &mut violations_of)
    }
}
