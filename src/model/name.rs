use std::sync::Arc;

/// A cheap-to-clone, immutable name. The index interns every name it stores
/// (`engine::index::Names`) so that a namespace or role name repeated across
/// 100k bindings is kept once.
pub type Name = Arc<str>;

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
