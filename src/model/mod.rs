//! Domain types: what the engine keeps of Kubernetes objects, and nothing more.

mod convert;
mod identity;
mod name;
mod object;
pub mod policy;

pub use convert::{ConvertError, ObjectRef, TypeMeta, convert};
pub use identity::{Identity, IdentityParseError};

/// The groups the cluster itself assigns (R1.4).
pub mod identity_groups {
    pub use super::identity::{ALL_AUTHENTICATED, ALL_SERVICEACCOUNTS, SERVICEACCOUNTS_OF};
}
pub use name::{Interner, Name, is_dns_label};
pub use object::{Binding, BindingKey, Object, ObjectKey, Role, RoleKey, TokenSecret};
pub use policy::{
    Actions, Approval, Duty, Exception, ExceptionReview, Policy, PolicyScope, ReviewOutcome,
    SubjectSelector, TokenAction,
};
