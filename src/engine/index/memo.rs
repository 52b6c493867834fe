//! Values computed from the whole index and kept across decisions while the
//! state they read stays the same.
//!
//! Every change that can alter such a value gives the index a fresh epoch,
//! drawn from one process-wide counter: two states with the same epoch are
//! the same state (a clone shares its original's until either changes). An
//! undo that puts the state back puts its epoch back too, so the decisions
//! that apply their object and undo it keep what was computed before them.

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::KeyedMap;

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

/// Values computed per namespace (or any key), each kept with the version of
/// the state it read (`E`: an epoch, or a tuple of them, that differs
/// between any two states where the value may differ). Shared by the clones
/// of an index: a snapshot or the assumed state reads the same values while
/// its versions match, and writes its own under the same key when they do
/// not.
pub struct MemoMap<K, E, V> {
    slots: Arc<Mutex<Kept<K, E, V>>>,
}

/// Each key's value, with the version it was computed at and its weight,
/// and the weights' sum.
struct Kept<K, E, V> {
    slots: KeyedMap<K, (E, Arc<V>, usize)>,
    weight: usize,
}

impl<K, E, V> Default for Kept<K, E, V> {
    fn default() -> Self {
        Kept {
            slots: KeyedMap::default(),
            weight: 0,
        }
    }
}

/// How many items (identities, bindings, pairs) a kept value holds: what
/// a [`MemoMap`] bounds, since one namespace's value can hold every
/// ServiceAccount of the cluster (a binding there for
/// `system:serviceaccounts` that creates Pods).
pub trait Weigh {
    fn weight(&self) -> usize;
}

/// The most values a [`MemoMap`] keeps: past it, those of states gone by
/// are dropped, and all of them when that is not enough. Each key is a
/// namespace a decision was made in; at 100k bindings there are 5,000.
const MEMO_MAP_CAP: usize = 16_384;

/// The most items a [`MemoMap`] keeps in all (a few MiB), the same way.
const MEMO_MAP_WEIGHT: usize = 1 << 16;

/// A value heavier than this is computed afresh each time, as before
/// values were kept: a few such namespaces would crowd out the others.
const MEMO_MAP_HEAVY: usize = MEMO_MAP_WEIGHT / 16;

impl<K: Eq + Hash + Clone, E: Eq + Copy, V: Weigh> MemoMap<K, E, V> {
    /// The value for `key` computed on a state of version `version`, or
    /// `compute`'s, kept unless it is heavy. Computed outside the lock, as
    /// [`Memo::get_or`].
    pub(super) fn get_or(&self, key: &K, version: E, compute: impl FnOnce() -> V) -> Arc<V> {
        if let Some((e, v, _)) = self.lock().slots.get(key)
            && *e == version
        {
            return v.clone();
        }
        let v = Arc::new(compute());
        let w = v.weight();
        if w > MEMO_MAP_HEAVY {
            return v;
        }
        let mut kept = self.lock();
        if let Some((_, _, old)) = kept.slots.remove(key) {
            kept.weight -= old;
        }
        if kept.slots.len() >= MEMO_MAP_CAP || kept.weight + w > MEMO_MAP_WEIGHT {
            // Versions are never reused, so a value that is not of this
            // version is of an older state or a diverged clone: either may
            // be read again, but rarely.
            kept.slots.retain(|_, (e, _, _)| *e == version);
            kept.weight = kept.slots.values().map(|(_, _, w)| w).sum();
            if kept.slots.len() >= MEMO_MAP_CAP || kept.weight + w > MEMO_MAP_WEIGHT {
                *kept = Kept::default();
            }
        }
        kept.weight += w;
        kept.slots.insert(key.clone(), (version, v.clone(), w));
        v
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().slots.len()
    }

    #[cfg(test)]
    pub(super) fn weight(&self) -> usize {
        self.lock().weight
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept<K, E, V>> {
        // As in `Memo::lock`: nothing under the lock panics halfway.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<K, E, V> Default for MemoMap<K, E, V> {
    fn default() -> Self {
        MemoMap {
            slots: Arc::default(),
        }
    }
}

impl<K, E, V> Clone for MemoMap<K, E, V> {
    fn clone(&self) -> Self {
        MemoMap {
            slots: self.slots.clone(),
        }
    }
}

impl<K, E, V> std::fmt::Debug for MemoMap<K, E, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kept = self
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .slots
            .len();
        f.debug_struct("MemoMap").field("kept", &kept).finish()
    }
}

/// Values that know themselves whether they still hold on a state (they
/// keep what they read, and [`MemoList::get`] asks them), a few per key:
/// a decision reads one on the state before its change and another on the
/// state after, and neither should push the other out.
pub struct MemoList<K, V> {
    slots: Arc<Mutex<KeptList<K, V>>>,
}

struct KeptList<K, V> {
    /// Newest first, at most [`MEMO_LIST_PER_KEY`] each.
    slots: KeyedMap<K, Vec<(Arc<V>, usize)>>,
    weight: usize,
    count: usize,
}

impl<K, V> Default for KeptList<K, V> {
    fn default() -> Self {
        KeptList {
            slots: KeyedMap::default(),
            weight: 0,
            count: 0,
        }
    }
}

/// Values kept per key of a [`MemoList`]: the state before a change and
/// the state after it.
const MEMO_LIST_PER_KEY: usize = 2;

impl<K: Eq + Hash + Clone, V: Weigh> MemoList<K, V> {
    /// The newest value kept for `key` that `valid` accepts. Asked outside
    /// the lock: `valid` reads the state, and two decisions may ask at once.
    pub(crate) fn get(&self, key: &K, valid: impl Fn(&V) -> bool) -> Option<Arc<V>> {
        let kept: Vec<Arc<V>> = self
            .lock()
            .slots
            .get(key)
            .map(|l| l.iter().map(|(v, _)| v.clone()).collect())
            .unwrap_or_default();
        kept.into_iter().find(|v| valid(v))
    }

    /// Keeps `v` as the newest value for `key`, unless it is heavy (as in
    /// [`MemoMap::get_or`]) or, when `only_first`, something is kept for
    /// `key` already; past the bounds everything kept goes. A state that
    /// lasts one decision keeps its value `only_first`: each decision's
    /// would push out the value of the state that lasts.
    pub(crate) fn put(&self, key: &K, v: Arc<V>, only_first: bool) {
        let w = v.weight();
        if w > MEMO_MAP_HEAVY {
            return;
        }
        let mut kept = self.lock();
        if only_first && kept.slots.get(key).is_some_and(|l| !l.is_empty()) {
            return;
        }
        if kept.count >= MEMO_MAP_CAP || kept.weight + w > MEMO_MAP_WEIGHT {
            *kept = KeptList::default();
        }
        let list = kept.slots.entry(key.clone()).or_default();
        list.insert(0, (v, w));
        let dropped: Vec<(Arc<V>, usize)> =
            list.drain(MEMO_LIST_PER_KEY.min(list.len())..).collect();
        let gone: usize = dropped.iter().map(|(_, w)| w).sum();
        kept.weight = kept.weight + w - gone;
        kept.count = kept.count + 1 - dropped.len();
    }

    /// Whether something is kept for `key` (valid on some state or not).
    pub(crate) fn has(&self, key: &K) -> bool {
        self.lock().slots.get(key).is_some_and(|l| !l.is_empty())
    }

    #[cfg(test)]
    pub(super) fn weight(&self) -> usize {
        self.lock().weight
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, KeptList<K, V>> {
        // As in `Memo::lock`: nothing under the lock panics halfway.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<K, V> Default for MemoList<K, V> {
    fn default() -> Self {
        MemoList {
            slots: Arc::default(),
        }
    }
}

impl<K, V> Clone for MemoList<K, V> {
    fn clone(&self) -> Self {
        MemoList {
            slots: self.slots.clone(),
        }
    }
}

impl<K, V> std::fmt::Debug for MemoList<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kept = self.lock_count();
        f.debug_struct("MemoList").field("kept", &kept).finish()
    }
}

impl<K, V> MemoList<K, V> {
    fn lock_count(&self) -> usize {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Weigh for u32 {
        fn weight(&self) -> usize {
            1
        }
    }

    impl Weigh for Vec<u8> {
        fn weight(&self) -> usize {
            self.len()
        }
    }

    #[test]
    fn a_memo_map_keeps_a_value_per_key_and_version_and_stays_bounded() {
        let m: MemoMap<u32, u64, u32> = MemoMap::default();
        let mut computed = 0;
        let mut get = |key, version| {
            *m.get_or(&key, version, || {
                computed += 1;
                key * 10
            })
        };
        assert_eq!(get(1, 7), 10);
        assert_eq!(get(1, 7), 10);
        assert_eq!(get(2, 7), 20);
        assert_eq!(get(1, 8), 10, "another version computes again");
        assert_eq!(computed, 3);
        // Shared by clones.
        let c = m.clone();
        assert_eq!(*c.get_or(&2, 7, || unreachable!()), 20);
        // Past the cap, what other versions kept goes first, and all of
        // it when that is not enough.
        let last = MEMO_MAP_CAP as u32 + 10;
        for k in 3..=last {
            let _ = m.get_or(&k, 9, || k);
        }
        assert!(m.len() <= MEMO_MAP_CAP);
        assert_eq!(*m.get_or(&last, 9, || unreachable!()), last);
        let m: MemoMap<u32, u64, u32> = MemoMap::default();
        for k in 0..MEMO_MAP_CAP as u32 - 1 {
            let _ = m.get_or(&k, 1, || k);
        }
        let _ = m.get_or(&u32::MAX, 2, || 0);
        let _ = m.get_or(&(u32::MAX - 1), 2, || 0);
        assert_eq!(m.len(), 2, "the values of version 1 went");
    }

    #[test]
    fn a_memo_map_bounds_the_items_it_keeps() {
        let m: MemoMap<u32, u64, Vec<u8>> = MemoMap::default();
        let computed = std::cell::Cell::new(0);
        let get = |key: u32, len: usize| {
            m.get_or(&key, 1, || {
                computed.set(computed.get() + 1);
                vec![0; len]
            })
            .len()
        };
        // A heavy value is handed out, not kept.
        assert_eq!(get(0, MEMO_MAP_HEAVY + 1), MEMO_MAP_HEAVY + 1);
        assert_eq!(get(0, MEMO_MAP_HEAVY + 1), MEMO_MAP_HEAVY + 1);
        assert_eq!(computed.get(), 2);
        // Values of one version up to the weight bound, then a fresh start.
        let per = MEMO_MAP_HEAVY;
        for k in 1..=(MEMO_MAP_WEIGHT / per) as u32 {
            get(k, per);
        }
        assert_eq!(m.weight(), MEMO_MAP_WEIGHT);
        get(1, per);
        assert_eq!(
            computed.get(),
            2 + MEMO_MAP_WEIGHT / per,
            "kept, not computed again"
        );
        get(1_000, per);
        assert!(m.weight() <= MEMO_MAP_WEIGHT);
        assert_eq!(m.weight(), per);
        // Replacing a key's value counts its weight once.
        get(1_000, per);
        m.get_or(&1_000, 2, || vec![0; 3]);
        assert_eq!(m.weight(), 3);
    }

    #[test]
    fn a_memo_list_keeps_the_newest_values_that_still_hold() {
        let m: MemoList<u32, Vec<u8>> = MemoList::default();
        assert!(m.get(&1, |_| true).is_none());
        m.put(&1, Arc::new(vec![1]), true);
        m.put(&1, Arc::new(vec![9]), true);
        m.put(&1, Arc::new(vec![2]), false);
        assert_eq!(*m.get(&1, |_| true).unwrap(), vec![2], "the newest first");
        assert!(m.get(&1, |v| v[0] == 9).is_none(), "only the first");
        assert_eq!(*m.get(&1, |v| v[0] == 1).unwrap(), vec![1]);
        m.put(&1, Arc::new(vec![3]), false);
        assert!(m.get(&1, |v| v[0] == 1).is_none(), "two per key");
        assert_eq!(m.weight(), 2);
        // Shared by clones.
        assert_eq!(*m.clone().get(&1, |_| true).unwrap(), vec![3]);
        // Heavy values are not kept; past the weight bound all goes.
        m.put(&2, Arc::new(vec![0; MEMO_MAP_HEAVY + 1]), false);
        assert!(m.get(&2, |_| true).is_none());
        for k in 10..10 + (MEMO_MAP_WEIGHT / MEMO_MAP_HEAVY) as u32 {
            m.put(&k, Arc::new(vec![0; MEMO_MAP_HEAVY]), false);
        }
        assert!(m.weight() <= MEMO_MAP_WEIGHT);
        assert!(m.get(&1, |_| true).is_none(), "dropped to make room");
    }
}
