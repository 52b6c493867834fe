//! Policies and exceptions as the engine uses them: validated, with globs
//! compiled and durations parsed. Built from the CRDs by [`crate::crd`].

use std::ops::Range;

use jiff::{SignedDuration, Timestamp};

use super::{DerivedSet, Identity, Name, Pattern};
use crate::model::Permission;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyScope {
    Namespace,
    Cluster,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Actions {
    pub deny: bool,
    pub warn: bool,
    pub audit: bool,
}

impl Actions {
    pub fn names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.deny {
            v.push("Deny");
        }
        if self.warn {
            v.push("Warn");
        }
        if self.audit {
            v.push("Audit");
        }
        v
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenAction {
    Allow,
    Warn,
    Deny,
}

#[derive(Debug, Clone)]
pub struct Duty {
    pub name: Name,
    pub description: Option<String>,
    pub match_all: bool,
    /// The duty's permissions, as a range of [`Policy::permissions`].
    pub permissions: Range<usize>,
}

impl Duty {
    /// Whether this duty is held, `has` telling which of the policy's
    /// permissions (by index) are: all of the duty's, or one of them, as
    /// `match_all` says.
    pub fn held(&self, has: impl Fn(usize) -> bool) -> bool {
        let mut ps = self.permissions.clone();
        if self.match_all {
            ps.all(has)
        } else {
            ps.any(has)
        }
    }
}

#[derive(Debug, Clone)]
pub struct Exclude {
    pub kind: String,
    pub namespace: Option<Pattern>,
    pub name: Pattern,
}

#[derive(Debug, Clone)]
pub struct SubjectSelector {
    pub service_accounts: bool,
    pub users: bool,
    pub groups: bool,
    /// Globs on a ServiceAccount's namespace; `None` is all namespaces.
    pub namespaces: Option<Vec<Pattern>>,
    pub exclude: Vec<Exclude>,
}

impl SubjectSelector {
    /// R5.5. Existence (R1.5) is the index's business, not the selector's.
    pub fn selects(&self, id: &Identity) -> bool {
        let kind_ok = match id {
            Identity::ServiceAccount { namespace, .. } => {
                self.service_accounts
                    && self
                        .namespaces
                        .as_ref()
                        .is_none_or(|globs| globs.iter().any(|g| g.is_match(namespace)))
            }
            Identity::User(_) => self.users,
            Identity::Group(_) => self.groups,
        };
        kind_ok
            && !self.exclude.iter().any(|e| {
                e.kind == id.kind()
                    && e.name.is_match(id.name())
                    && match (&e.namespace, id.namespace()) {
                        (None, _) => true,
                        (Some(g), Some(ns)) => g.is_match(ns),
                        (Some(_), None) => false,
                    }
            })
    }
}

#[derive(Debug, Clone)]
pub struct ExceptionRules {
    pub approvals_required: u32,
    pub max_duration: SignedDuration,
    pub break_glass_allowed: bool,
    pub break_glass_max_duration: SignedDuration,
    pub break_glass_cooldown: SignedDuration,
    pub break_glass_review_within: SignedDuration,
}

#[derive(Debug, Clone)]
pub struct Credentials {
    pub long_lived_tokens: TokenAction,
    pub max_age: Option<SignedDuration>,
    pub token_requests: TokenRequestRules,
}

/// R8.4: limits on short-lived tokens.
#[derive(Debug, Clone)]
pub struct TokenRequestRules {
    pub action: TokenAction,
    pub max_expiration: Option<SignedDuration>,
    pub require_bound_object: bool,
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub name: Name,
    pub description: String,
    pub duties: Vec<Duty>,
    /// Every duty's permissions, flattened; each duty owns a range.
    pub permissions: Vec<Permission>,
    /// For each permission, the duty it belongs to.
    pub permission_duty: Vec<usize>,
    pub max_duties: usize,
    pub scope: PolicyScope,
    pub subjects: SubjectSelector,
    pub actions: Actions,
    pub exceptions: ExceptionRules,
    pub credentials: Credentials,
    /// The escalation paths whose holdings count (R9.2).
    pub derived: DerivedSet,
    pub use_time: UseTime,
}

/// R13: whether the authorization webhook refuses a violator's requests, and
/// within which duties.
#[derive(Debug, Clone, Default)]
pub struct UseTime {
    pub deny: bool,
    /// For each duty of the policy (by index), whether its requests are
    /// refused while a violation that includes it stands.
    pub refused: Vec<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub user: String,
    pub at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewOutcome {
    Accepted,
    Rejected,
}

/// The post-review of a break-glass window (R6.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExceptionReview {
    pub user: String,
    pub at: Timestamp,
    pub outcome: ReviewOutcome,
    pub notes: String,
}

/// The namespace of violations that hold cluster-wide.
pub const CLUSTER_WIDE: &str = "*";

#[derive(Debug, Clone)]
pub struct Exception {
    pub name: Name,
    pub policy: Name,
    pub subject: Identity,
    pub duties: Option<Vec<Name>>,
    pub namespaces: Option<Vec<Name>>,
    pub justification: String,
    pub ticket: Option<String>,
    pub requested_by: String,
    pub not_before: Option<Timestamp>,
    pub expires_at: Timestamp,
    pub break_glass: bool,
    pub approvals: Vec<Approval>,
    pub review: Option<ExceptionReview>,
    /// `metadata.creationTimestamp`, when known.
    pub created: Option<Timestamp>,
}

impl Exception {
    /// R6.1: whether this exception covers duties held in `namespace`.
    pub fn covers(&self, namespace: &str, duties: &[Name]) -> bool {
        self.namespaces
            .as_ref()
            .is_none_or(|nss| nss.iter().any(|n| &**n == namespace))
            && self
                .duties
                .as_ref()
                .is_none_or(|ds| duties.iter().all(|d| ds.contains(d)))
    }
}
