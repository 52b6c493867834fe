use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use super::{GrantKey, GrantPolicy, Identity, JitGrant, Name};
use crate::model::policy::{Exception, Policy};
use crate::model::{LabelSelector, Rule};

/// A Role (`namespace: Some`) or ClusterRole (`namespace: None`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoleKey {
    pub namespace: Option<Name>,
    pub name: Name,
}

impl RoleKey {
    pub fn cluster(name: &str) -> Self {
        RoleKey {
            namespace: None,
            name: Name::from(name),
        }
    }
    pub fn kind(&self) -> &'static str {
        if self.namespace.is_some() {
            "Role"
        } else {
            "ClusterRole"
        }
    }
}

/// `KIND ns/name`, or `KIND name` for a cluster-scoped object. In pieces,
/// not through a format string: every explanation path is written with
/// keys, ~200,000 of them per audit at 100k bindings.
fn write_key(f: &mut fmt::Formatter<'_>, kind: &str, ns: Option<&str>, name: &str) -> fmt::Result {
    f.write_str(kind)?;
    f.write_str(" ")?;
    if let Some(ns) = ns {
        f.write_str(ns)?;
        f.write_str("/")?;
    }
    f.write_str(name)
}

impl fmt::Display for RoleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_key(f, self.kind(), self.namespace.as_deref(), &self.name)
    }
}

/// A RoleBinding (`namespace: Some`) or ClusterRoleBinding (`namespace: None`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BindingKey {
    pub namespace: Option<Name>,
    pub name: Name,
}

impl BindingKey {
    pub fn kind(&self) -> &'static str {
        if self.namespace.is_some() {
            "RoleBinding"
        } else {
            "ClusterRoleBinding"
        }
    }
}

impl fmt::Display for BindingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_key(f, self.kind(), self.namespace.as_deref(), &self.name)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Role {
    pub key: RoleKey,
    /// Labels matter only for ClusterRoles, which aggregation selects by them.
    pub labels: BTreeMap<Name, Name>,
    pub rules: Vec<Rule>,
    /// `aggregationRule.clusterRoleSelectors`, for ClusterRoles that have one.
    pub aggregation: Option<Vec<LabelSelector>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    pub key: BindingKey,
    /// The role the binding refers to, resolved: a RoleBinding's `Role`
    /// reference lives in the binding's namespace.
    pub role: RoleKey,
    pub subjects: Vec<Identity>,
}

/// Everything the index holds, each reduced to what the engine needs.
#[derive(Clone, Debug)]
pub enum Object {
    Namespace(Name),
    ServiceAccount {
        namespace: Name,
        name: Name,
    },
    Role(Role),
    Binding(Binding),
    Policy(Arc<Policy>),
    Exception(Arc<Exception>),
    /// A `kubernetes.io/service-account-token` Secret: only who it issues a
    /// token for and when it was made, never its payload (R8).
    TokenSecret(TokenSecret),
    /// An AccessGrant or ClusterAccessGrant (R10).
    Grant(Arc<JitGrant>),
    GrantPolicy(Arc<GrantPolicy>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenSecret {
    pub namespace: Name,
    pub name: Name,
    pub service_account: Name,
    pub created: Option<jiff::Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKey {
    Namespace(Name),
    ServiceAccount { namespace: Name, name: Name },
    Role(RoleKey),
    Binding(BindingKey),
    Policy(Name),
    Exception(Name),
    TokenSecret { namespace: Name, name: Name },
    Grant(GrantKey),
    GrantPolicy(Name),
}

impl Object {
    pub fn key(&self) -> ObjectKey {
        match self {
            Object::Namespace(n) => ObjectKey::Namespace(n.clone()),
            Object::ServiceAccount { namespace, name } => ObjectKey::ServiceAccount {
                namespace: namespace.clone(),
                name: name.clone(),
            },
            Object::Role(r) => ObjectKey::Role(r.key.clone()),
            Object::Binding(b) => ObjectKey::Binding(b.key.clone()),
            Object::Policy(p) => ObjectKey::Policy(p.name.clone()),
            Object::Exception(e) => ObjectKey::Exception(e.name.clone()),
            Object::TokenSecret(t) => ObjectKey::TokenSecret {
                namespace: t.namespace.clone(),
                name: t.name.clone(),
            },
            Object::Grant(g) => ObjectKey::Grant(g.key()),
            Object::GrantPolicy(p) => ObjectKey::GrantPolicy(p.name.clone()),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObjectKey::Namespace(n) => write!(f, "Namespace {n}"),
            ObjectKey::ServiceAccount { namespace, name } => {
                write!(f, "ServiceAccount {namespace}/{name}")
            }
            ObjectKey::Role(r) => r.fmt(f),
            ObjectKey::Binding(b) => b.fmt(f),
            ObjectKey::Policy(n) => write!(f, "SoDPolicy {n}"),
            ObjectKey::Exception(n) => write!(f, "SoDException {n}"),
            ObjectKey::TokenSecret { namespace, name } => write!(f, "Secret {namespace}/{name}"),
            ObjectKey::Grant(k) => k.fmt(f),
            ObjectKey::GrantPolicy(n) => write!(f, "AccessGrantPolicy {n}"),
        }
    }
}
