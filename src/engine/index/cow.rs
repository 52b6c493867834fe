//! Copy-on-write maps: what lets the index be cloned in microseconds.
//!
//! Whole-state work (the review-time audit and its violations gauge) runs on a
//! snapshot of the index, taken under the decision lock and read without it.
//! A snapshot must therefore cost next to nothing to take, and a change made
//! while one is alive must copy only a small part of the state. A [`CowMap`]
//! splits its entries over a fixed number of shards, each behind an `Arc`:
//! a clone copies the shard pointers, and the first write to a shard that a
//! clone shares copies that shard alone. Large values are stored behind an
//! `Arc` by the index so that a shard copy copies pointers, not objects.
//!
//! A persistent map (a HAMT) would share more finely but allocates a node per
//! few entries; the sharded tables keep the memory of one hash table.

use std::borrow::Borrow;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use ahash::RandomState;
use hashbrown::HashTable;

use crate::model::Name;

/// Shards per map. At 100k bindings a shard holds ~1,600 of them: copying
/// one is tens of microseconds; cloning a map is 64 reference increments.
const SHARDS: usize = 64;

type Shard<K, V> = Arc<HashTable<(K, V)>>;

/// A hash map whose clones share their shards until one of them writes.
pub struct CowMap<K, V> {
    /// Keyed per map, shared by its clones: attacker-chosen names must not
    /// be able to pile into one bucket. aHash with random keys resists that
    /// as SipHash does, at a fraction of its cost on short names (a tenth
    /// of a decision's instructions went to SipHash).
    hasher: RandomState,
    shards: [Shard<K, V>; SHARDS],
    len: usize,
}

impl<K, V> Clone for CowMap<K, V> {
    fn clone(&self) -> Self {
        CowMap {
            hasher: self.hasher.clone(),
            shards: self.shards.clone(),
            len: self.len,
        }
    }
}

impl<K, V> Default for CowMap<K, V> {
    fn default() -> Self {
        CowMap {
            hasher: RandomState::new(),
            shards: std::array::from_fn(|_| Arc::new(HashTable::new())),
            len: 0,
        }
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for CowMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// The shard of a hash. hashbrown places entries by the low bits and tags
/// them with the top seven: the shard takes bits that neither uses, or
/// every entry of a shard would share its tag bits.
fn shard_of(hash: u64) -> usize {
    (hash >> 40) as usize % SHARDS
}

impl<K, V> CowMap<K, V> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.shards
            .iter()
            .flat_map(|s| s.iter().map(|(k, v)| (k, v)))
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }
}

impl<K: Hash + Eq + Clone, V: Clone> CowMap<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    fn hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The shard for `hash`, copied first if a clone shares it.
    fn shard_mut(&mut self, hash: u64) -> &mut HashTable<(K, V)> {
        Arc::make_mut(&mut self.shards[shard_of(hash)])
    }

    /// Whether a write for `key` may go to its shard: the shard is this
    /// map's alone, or it holds `key`. A shared shard is not copied for a
    /// write that would find nothing.
    fn holds_or_owns<Q>(&mut self, hash: u64, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let shard = &mut self.shards[shard_of(hash)];
        Arc::get_mut(shard).is_some() || shard.find(hash, |(k, _)| k.borrow() == key).is_some()
    }

    pub fn get_key_value<Q>(&self, key: &Q) -> Option<(&K, &V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        self.shards[shard_of(hash)]
            .find(hash, |(k, _)| k.borrow() == key)
            .map(|(k, v)| (k, v))
    }

    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get_key_value(key).map(|(_, v)| v)
    }

    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get_key_value(key).is_some()
    }

    /// The value of `key`, writable: copies its shard if a clone shares it,
    /// but only when the key is there.
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        if !self.holds_or_owns(hash, key) {
            return None;
        }
        self.shard_mut(hash)
            .find_mut(hash, |(k, _)| k.borrow() == key)
            .map(|(_, v)| v)
    }

    /// The stored key and its value, writable: [`get_mut`](Self::get_mut)
    /// that also gives the key.
    pub fn get_key_value_mut<Q>(&mut self, key: &Q) -> Option<(&K, &mut V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        if !self.holds_or_owns(hash, key) {
            return None;
        }
        self.shard_mut(hash)
            .find_mut(hash, |(k, _)| k.borrow() == key)
            .map(|(k, v)| (&*k, v))
    }

    /// The value of `key`, inserting `make()` first if there is none.
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        let hash = self.hash(&key);
        let hasher = &self.hasher;
        let shard = Arc::make_mut(&mut self.shards[shard_of(hash)]);
        let entry = shard.entry(hash, |(k, _)| *k == key, |(k, _)| hasher.hash_one(k));
        let entry = match entry {
            hashbrown::hash_table::Entry::Occupied(o) => o.into_mut(),
            hashbrown::hash_table::Entry::Vacant(v) => {
                self.len += 1;
                v.insert((key, make())).into_mut()
            }
        };
        &mut entry.1
    }

    /// Inserts `value` under `key`; the value it replaces, if any. The key
    /// already stored is kept.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let mut value = Some(value);
        let slot = self.get_or_insert_with(key, || value.take().expect("taken once"));
        value.map(|v| std::mem::replace(slot, v))
    }

    pub fn remove_entry<Q>(&mut self, key: &Q) -> Option<(K, V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        if !self.holds_or_owns(hash, key) {
            return None;
        }
        let (entry, _) = self
            .shard_mut(hash)
            .find_entry(hash, |(k, _)| k.borrow() == key)
            .ok()?
            .remove();
        self.len -= 1;
        Some(entry)
    }

    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.remove_entry(key).map(|(_, v)| v)
    }

    /// Every value, writable: copies every shard a clone shares.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.shards
            .iter_mut()
            .flat_map(|s| Arc::make_mut(s).iter_mut().map(|(_, v)| v))
    }
}

/// A set with the sharing of [`CowMap`].
#[derive(Clone, Default)]
pub struct CowSet<T>(CowMap<T, ()>);

impl<T: fmt::Debug> fmt::Debug for CowSet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl<T: Hash + Eq + Clone> CowSet<T> {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get<Q>(&self, value: &Q) -> Option<&T>
    where
        T: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.get_key_value(value).map(|(k, _)| k)
    }

    pub fn contains<Q>(&self, value: &Q) -> bool
    where
        T: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.contains_key(value)
    }

    /// Adds `value`, replacing an equal one: the one replaced, if any.
    pub fn replace(&mut self, value: T) -> Option<T> {
        let previous = self.0.remove_entry(&value).map(|(k, _)| k);
        self.0.insert(value, ());
        previous
    }

    pub fn take<Q>(&mut self, value: &Q) -> Option<T>
    where
        T: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.remove_entry(value).map(|(k, _)| k)
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.0.keys()
    }
}

/// Deduplicates the names the index stores, so that a namespace or role
/// name repeated across 100k bindings is kept once; shared with the index's
/// clones like its maps. Lookups borrow `&str`: interning an existing name
/// allocates nothing.
///
/// Each name counts the uses the index made of it ([`intern`](Self::intern)
/// and [`canon`](Self::canon) add one, [`release`](Self::release) takes one
/// away) and goes when none is left: what a watch deletes or replaces gives
/// its names back. Counting, not `Arc::strong_count`: the confirmed and the
/// assumed state, and every snapshot, hold the same `Arc`s, so a count of
/// holders would keep a name as long as any of them did.
#[derive(Debug, Clone, Default)]
pub struct Names(CowMap<Name, u32>);

impl Names {
    /// The interned copy of `s`, counted as one more use.
    pub fn intern(&mut self, s: &str) -> Name {
        if let Some((n, uses)) = self.0.get_key_value_mut(s) {
            *uses += 1;
            return n.clone();
        }
        let n: Name = Arc::from(s);
        self.0.insert(n.clone(), 1);
        n
    }

    /// Replaces `name` by the interned copy, counted as one more use.
    pub fn canon(&mut self, name: &mut Name) {
        match self.0.get_key_value_mut(&**name) {
            Some((n, uses)) => {
                *uses += 1;
                if !Arc::ptr_eq(n, name) {
                    *name = n.clone();
                }
            }
            None => {
                self.0.insert(name.clone(), 1);
            }
        }
    }

    /// One use of `name` fewer; the last one forgets it.
    pub fn release(&mut self, name: &str) {
        let Some(uses) = self.0.get_mut(name) else {
            return;
        };
        *uses = uses.saturating_sub(1);
        if *uses == 0 {
            self.0.remove(name);
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Name> {
        self.0.keys()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_clone_does_not_see_later_writes_and_vice_versa() {
        let mut a: CowMap<u32, Vec<u32>> = CowMap::new();
        for i in 0..1000 {
            a.insert(i, vec![i]);
        }
        let b = a.clone();
        a.insert(1000, vec![]);
        a.get_mut(&1).unwrap().push(7);
        a.remove(&2);
        a.get_or_insert_with(3, Vec::new).push(9);
        assert_eq!(b.len(), 1000);
        assert_eq!(b.get(&1), Some(&vec![1]));
        assert_eq!(b.get(&2), Some(&vec![2]));
        assert_eq!(b.get(&3), Some(&vec![3]));
        assert!(b.get(&1000).is_none());
        assert_eq!(a.len(), 1000);
        assert_eq!(a.get(&1), Some(&vec![1, 7]));
        assert_eq!(a.get(&3), Some(&vec![3, 9]));
        // Only the written shards were copied.
        let shared = a
            .shards
            .iter()
            .zip(&b.shards)
            .filter(|(x, y)| Arc::ptr_eq(x, y))
            .count();
        assert!(shared >= SHARDS - 4, "{shared}");
    }

    #[test]
    fn entries_spread_over_the_shards() {
        let mut m: CowMap<u32, ()> = CowMap::new();
        for i in 0..64_000 {
            m.insert(i, ());
        }
        for s in &m.shards {
            assert!((500..1500).contains(&s.len()), "{}", s.len());
        }
    }

    #[test]
    fn interning_shares_storage() {
        let mut i = Names::default();
        let a = i.intern("payments");
        let mut b: Name = Arc::from("payments");
        i.canon(&mut b);
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(i.len(), 1);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u16, u32),
        Remove(u16),
        Push(u16, u32),
        Mutate(u16),
        Snapshot,
    }

    fn op() -> impl Strategy<Value = Op> {
        // Few keys: removals and replacements hit existing entries.
        let k = 0u16..300;
        prop_oneof![
            (k.clone(), any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
            k.clone().prop_map(Op::Remove),
            (k.clone(), any::<u32>()).prop_map(|(k, v)| Op::Push(k, v)),
            k.prop_map(Op::Mutate),
            Just(Op::Snapshot),
        ]
    }

    fn same(m: &CowMap<u16, u32>, h: &HashMap<u16, u32>) -> bool {
        m.len() == h.len()
            && m.iter().count() == h.len()
            && h.iter().all(|(k, v)| m.get(k) == Some(v))
    }

    proptest! {
        /// Any sequence of writes, with snapshots taken along the way, gives
        /// what a `HashMap` gives, and every snapshot keeps what the map held
        /// when it was taken.
        #[test]
        fn behaves_like_a_hash_map(ops in proptest::collection::vec(op(), 0..400)) {
            let mut m: CowMap<u16, u32> = CowMap::new();
            let mut h: HashMap<u16, u32> = HashMap::new();
            let mut snapshots = Vec::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => prop_assert_eq!(m.insert(k, v), h.insert(k, v)),
                    Op::Remove(k) => prop_assert_eq!(m.remove(&k), h.remove(&k)),
                    Op::Push(k, v) => {
                        *m.get_or_insert_with(k, || 0) ^= v;
                        *h.entry(k).or_insert(0) ^= v;
                    }
                    Op::Mutate(k) => {
                        if let Some(v) = m.get_mut(&k) {
                            *v = v.wrapping_add(1);
                        }
                        if let Some(v) = h.get_mut(&k) {
                            *v = v.wrapping_add(1);
                        }
                    }
                    Op::Snapshot => snapshots.push((m.clone(), h.clone())),
                }
                prop_assert!(same(&m, &h));
            }
            for v in m.values_mut() {
                *v = v.wrapping_mul(3);
            }
            for v in h.values_mut() {
                *v = v.wrapping_mul(3);
            }
            prop_assert!(same(&m, &h));
            for (s, hs) in &snapshots {
                prop_assert!(same(s, hs));
            }
        }
    }
}
