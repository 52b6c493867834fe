//! Values computed from the whole index and kept across decisions while the
//! state they read stays the same.
//!
//! Every change that can alter such a value gives the index a fresh epoch,
//! drawn from one process-wide counter: two states with the same epoch are
//! the same state (a clone shares its original's until either changes). An
//! undo that puts the state back puts its epoch back too, so the decisions
//! that apply their object and undo it keep what was computed before them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

static NEXT: AtomicU64 = AtomicU64::new(1);

/// An epoch no state has had.
pub(super) fn fresh() -> u64 {
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// One value, with the epoch of the state it was computed on.
pub struct Memo<T> {
    slot: Mutex<Option<(u64, Arc<T>)>>,
}

impl<T> Memo<T> {
    /// The value computed on the state of `epoch`, or `compute`'s, kept.
    /// Computed outside the lock: two readers of one state may both compute
    /// it, and either result is the same value.
    pub(super) fn get_or(&self, epoch: u64, compute: impl FnOnce() -> T) -> Arc<T> {
        if let Some((e, v)) = &*self.lock()
            && *e == epoch
        {
            return v.clone();
        }
        let v = Arc::new(compute());
        *self.lock() = Some((epoch, v.clone()));
        v
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(u64, Arc<T>)>> {
        // Nothing runs under the lock that can panic halfway: the slot is
        // always whole.
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T> Default for Memo<T> {
    fn default() -> Self {
        Memo {
            slot: Mutex::new(None),
        }
    }
}

impl<T> Clone for Memo<T> {
    fn clone(&self) -> Self {
        Memo {
            slot: Mutex::new(self.lock().clone()),
        }
    }
}

impl<T> std::fmt::Debug for Memo<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let epoch = self.lock().as_ref().map(|(e, _)| *e);
        f.debug_struct("Memo").field("epoch", &epoch).finish()
    }
}
