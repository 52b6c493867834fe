//! The `sodguard.io/v1alpha1` custom resources, defined once here; the YAML
//! under `manifests/crds/` is generated from these types.

mod exception;
mod grant;
mod policy;

pub use exception::{
    ApprovalSpec, ReviewOutcomeSpec, ReviewSpec, SoDException, SoDExceptionSpec,
    SoDExceptionStatus, SubjectRef, compile_exception,
};
pub use grant::{
    AccessGrant, AccessGrantPolicy, AccessGrantPolicySpec, AccessGrantSpec, AccessGrantStatus,
    ClusterAccessGrant, ClusterAccessGrantSpec, GrantBreakGlassSpec, GrantRoleRef,
    compile_cluster_grant, compile_grant, compile_grant_policy,
};
pub use policy::{
    BreakGlassSpec, CredentialsSpec, DutySpec, ExceptionsSpec, ExcludeSpec, MatchMode,
    PermissionSpec, Scope, SoDPolicy, SoDPolicySpec, SoDPolicyStatus, SubjectKind, SubjectsSpec,
    TokenPolicy, TokenRequestsSpec, ValidationAction, compile_policy,
};

use kube::CustomResourceExt;

pub const GROUP: &str = "sodguard.io";
pub const API_VERSION: &str = "sodguard.io/v1alpha1";

/// A field of an invalid object, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            message: message.into(),
        }
    }
}

fn all_crds()
-> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    vec![
        SoDPolicy::crd(),
        SoDException::crd(),
        AccessGrant::crd(),
        ClusterAccessGrant::crd(),
        AccessGrantPolicy::crd(),
    ]
}

/// Every CRD as one multi-document YAML stream, as committed under
/// `manifests/crds/`.
pub fn crds_yaml() -> String {
    let mut out = String::new();
    for crd in all_crds() {
        out.push_str("---\n");
        // Serialising our own CRD types cannot fail.
        out.push_str(&serde_saphyr::to_string(&crd).unwrap_or_default());
    }
    out
}

/// The file name each CRD is committed under.
pub fn crd_files() -> Vec<(String, String)> {
    all_crds()
        .into_iter()
        .map(|crd| {
            let name = format!("{}.yaml", crd.spec.names.plural);
            (name, serde_saphyr::to_string(&crd).unwrap_or_default())
        })
        .collect()
}

/// Parses a Kubernetes duration ("24h", "90m", "1h30m").
pub(crate) fn parse_duration(path: &str, s: &str) -> Result<jiff::SignedDuration, FieldError> {
    let d: jiff::SignedDuration = s.trim().parse().map_err(|_| {
        FieldError::new(
            path,
            format!("{s:?} is not a duration (write it like \"24h\" or \"90m\")"),
        )
    })?;
    if d <= jiff::SignedDuration::ZERO {
        return Err(FieldError::new(
            path,
            format!("{s:?} must be a positive duration"),
        ));
    }
    Ok(d)
}

pub(crate) fn parse_time(path: &str, s: &str) -> Result<jiff::Timestamp, FieldError> {
    s.parse().map_err(|_| {
        FieldError::new(
            path,
            format!("{s:?} is not an RFC 3339 time (like 2026-11-28T12:00:00Z)"),
        )
    })
}

pub(crate) fn glob(path: &str, pattern: &str) -> Result<crate::model::Pattern, FieldError> {
    globset::Glob::new(pattern)
        .map(|g| crate::model::Pattern::from(g.compile_matcher()))
        .map_err(|e| FieldError::new(path, format!("invalid glob {pattern:?}: {}", e.kind())))
}
