use std::collections::HashSet;
use std::sync::Arc;

/// A cheap-to-clone, immutable name. The index interns every name it stores so
/// that a namespace or role name repeated across 100k bindings is kept once.
pub type Name = Arc<str>;

/// Deduplicates names. Lookups borrow `&str`, so interning an existing name
/// allocates nothing.
#[derive(Debug, Default, Clone)]
pub struct Interner {
    names: HashSet<Name>,
}

impl Interner {
    pub fn intern(&mut self, s: &str) -> Name {
        if let Some(n) = self.names.get(s) {
            return n.clone();
        }
        let n: Name = Arc::from(s);
        self.names.insert(n.clone());
        n
    }

    /// Replaces `name` by the interned copy.
    pub fn canon(&mut self, name: &mut Name) {
        if let Some(n) = self.names.get(&**name) {
            if !Arc::ptr_eq(n, name) {
                *name = n.clone();
            }
        } else {
            self.names.insert(name.clone());
        }
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// An RFC 1123 label, as Kubernetes names namespaces and API versions: at
/// most 63 lower-case letters, digits and '-', not starting or ending with '-'.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_shares_storage() {
        let mut i = Interner::default();
        let a = i.intern("payments");
        let mut b: Name = Arc::from("payments");
        i.canon(&mut b);
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(i.len(), 1);
    }
}
