//! Domain types: what the engine keeps of Kubernetes objects, and nothing more.

mod derived;
mod grant;
mod identity;
mod name;
mod object;
mod pattern;
mod permission;
pub mod policy;
mod rule;
mod selector;

pub use derived::{DerivedKind, DerivedSet};
pub use grant::{GRANT_LABEL, GrantKey, GrantPolicy, JitGrant};
pub use identity::{Identity, IdentityParseError};

/// The groups the cluster itself assigns (R1.4).
pub mod identity_groups {
    pub use super::identity::{ALL_AUTHENTICATED, ALL_SERVICEACCOUNTS, SERVICEACCOUNTS_OF};
}
pub use name::{Name, is_dns_label};
pub use object::{Binding, BindingKey, Object, ObjectKey, Role, RoleKey, TokenSecret};
pub use pattern::Pattern;
pub use permission::Permission;
pub use policy::{
    Actions, Approval, CLUSTER_WIDE, Duty, Exception, ExceptionReview, Policy, PolicyScope,
    ReviewOutcome, SubjectSelector, TokenAction, UseTime,
};
pub use rule::Rule;
pub use selector::{LabelSelector, Requirement};
