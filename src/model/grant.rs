//! Just-in-time grants (R10) as the engine uses them.

use jiff::{SignedDuration, Timestamp};

use super::policy::{Approval, ExceptionReview};
use super::{BindingKey, Identity, Name, Pattern, RoleKey};

/// An AccessGrant (`namespace: Some`) or ClusterAccessGrant (`namespace: None`).
#[derive(Debug, Clone)]
pub struct JitGrant {
    pub namespace: Option<Name>,
    pub name: Name,
    pub subject: Identity,
    pub role: RoleKey,
    pub duration: SignedDuration,
    pub reason: String,
    pub ticket: Option<String>,
    pub requested_by: String,
    pub break_glass: bool,
    pub approvals: Vec<Approval>,
    pub review: Option<ExceptionReview>,
    /// `metadata.creationTimestamp`, when known.
    pub created: Option<Timestamp>,
}

/// The label sodguard puts on the binding it creates for a grant; its value
/// is the grant's name.
pub const GRANT_LABEL: &str = "sodguard.io/grant";

impl JitGrant {
    pub fn key(&self) -> GrantKey {
        GrantKey {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    pub fn kind(&self) -> &'static str {
        if self.namespace.is_some() {
            "AccessGrant"
        } else {
            "ClusterAccessGrant"
        }
    }

    /// The binding sodguard creates for this grant: a RoleBinding in the
    /// grant's namespace, or a ClusterRoleBinding.
    pub fn binding_key(&self) -> BindingKey {
        BindingKey {
            namespace: self.namespace.clone(),
            name: Name::from(format!("sodguard-grant-{}", self.name).as_str()),
        }
    }

    /// Everything but approvals, review and creation: what freezes after
    /// the first approval.
    pub fn same_request(&self, other: &JitGrant) -> bool {
        self.namespace == other.namespace
            && self.name == other.name
            && self.subject == other.subject
            && self.role == other.role
            && self.duration == other.duration
            && self.reason == other.reason
            && self.ticket == other.ticket
            && self.requested_by == other.requested_by
            && self.break_glass == other.break_glass
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GrantKey {
    pub namespace: Option<Name>,
    pub name: Name,
}

impl std::fmt::Display for GrantKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "JitGrant {ns}/{}", self.name),
            None => write!(f, "ClusterAccessGrant {}", self.name),
        }
    }
}

/// An AccessGrantPolicy (R10.2).
#[derive(Debug, Clone)]
pub struct GrantPolicy {
    pub name: Name,
    pub roles: Vec<Pattern>,
    pub namespaces: Vec<Pattern>,
    pub cluster_wide: bool,
    pub max_duration: SignedDuration,
    pub approvals_required: u32,
    pub approver_groups: Vec<String>,
    pub break_glass_allowed: bool,
    pub break_glass_max_duration: SignedDuration,
    pub break_glass_review_within: SignedDuration,
}

impl GrantPolicy {
    /// Why this policy does not allow `g`, or `None` when it does.
    pub fn refuses(&self, g: &JitGrant) -> Option<String> {
        if !self.roles.iter().any(|r| r.is_match(&g.role.name)) {
            return Some(format!("{} is not among its roles", g.role));
        }
        match &g.namespace {
            Some(ns) => {
                if !self.namespaces.iter().any(|n| n.is_match(ns)) {
                    return Some(format!("namespace {ns} is not among its namespaces"));
                }
            }
            None => {
                if !self.cluster_wide {
                    return Some("it does not allow cluster-wide grants (spec.clusterWide)".into());
                }
            }
        }
        let (max, field) = if g.break_glass {
            if !self.break_glass_allowed {
                return Some("it does not allow break-glass (spec.breakGlass.allowed)".into());
            }
            (self.break_glass_max_duration, "breakGlass.maxDuration")
        } else {
            (self.max_duration, "maxDuration")
        };
        if g.duration > max {
            return Some(format!(
                "spec.duration {:#} is more than its spec.{field} of {max:#}",
                g.duration
            ));
        }
        None
    }

    /// Whether a user with `groups` may approve grants under this policy.
    pub fn approver(&self, groups: &[String]) -> bool {
        groups.iter().any(|g| self.approver_groups.contains(g))
    }
}
