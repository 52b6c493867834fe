use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{FieldError, SubjectKind, parse_time};
use crate::model::{Approval, Exception, ExceptionReview, Identity, Name, ReviewOutcome};

/// A time-bound, approved exemption of one subject from one policy.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "sodguard.io",
    version = "v1alpha1",
    kind = "SoDException",
    doc = "SoDException excuses one subject from one SoDPolicy for a bounded time, once approved by someone else.",
    shortname = "sodx",
    status = "SoDExceptionStatus",
    printcolumn = r#"{"name":"Policy","type":"string","jsonPath":".spec.policy"}"#,
    printcolumn = r#"{"name":"Kind","type":"string","jsonPath":".spec.subject.kind"}"#,
    printcolumn = r#"{"name":"Subject","type":"string","jsonPath":".spec.subject.name"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Expires","type":"string","jsonPath":".spec.expiresAt"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SoDExceptionSpec {
    /// The SoDPolicy this exception applies to.
    pub policy: String,
    pub subject: SubjectRef,
    /// The duties it excuses, by their names in the policy; all of the
    /// policy's when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duties: Option<Vec<String>>,
    /// The namespaces it excuses, as literal names (`*` for cluster-wide
    /// holdings); all when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<Vec<String>>,
    pub justification: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    /// The user who asked for it; set by that user at creation.
    pub requested_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub not_before: Option<String>,
    #[schemars(extend("format" = "date-time"))]
    pub expires_at: String,
    /// Emergency access: active without approvals, reviewed afterwards.
    #[serde(default)]
    pub break_glass: bool,
    /// Appended by each approving user themself; append-only. After the
    /// first approval the rest of the spec is frozen.
    #[serde(default)]
    pub approvals: Vec<ApprovalSpec>,
    /// The post-review of a break-glass window, written once it has started
    /// by someone who is neither the requester nor the subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<ReviewSpec>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct ReviewSpec {
    pub user: String,
    #[schemars(extend("format" = "date-time"))]
    pub at: String,
    pub outcome: ReviewOutcomeSpec,
    #[serde(default)]
    pub notes: String,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ReviewOutcomeSpec {
    Accepted,
    Rejected,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubjectRef {
    pub kind: SubjectKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct ApprovalSpec {
    pub user: String,
    #[schemars(extend("format" = "date-time"))]
    pub at: String,
}

/// Written by the review-time audit (R11.1) with server-side apply, only when
/// its content changes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SoDExceptionStatus {
    /// Pending, Active, Expired or Inactive (it breaks a rule and excuses
    /// nothing until replaced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Why it excuses nothing, when it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it stops excusing: `expiresAt`, or earlier where the policy's
    /// current limits cut the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_until: Option<String>,
    /// Violations it excuses now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excused: Option<i64>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

impl SubjectRef {
    pub fn identity(&self, path: &str) -> Result<Identity, FieldError> {
        if self.name.is_empty() {
            return Err(FieldError::new(format!("{path}.name"), "must not be empty"));
        }
        match self.kind {
            SubjectKind::ServiceAccount => match self.namespace.as_deref() {
                Some(ns) if !ns.is_empty() => Ok(Identity::service_account(ns, &self.name)),
                _ => Err(FieldError::new(
                    format!("{path}.namespace"),
                    "a ServiceAccount subject needs its namespace",
                )),
            },
            SubjectKind::User => Ok(Identity::user(&self.name)),
            SubjectKind::Group => Ok(Identity::Group(Name::from(self.name.as_str()))),
        }
    }
}

/// Validates an exception's own fields and compiles it for the engine. The
/// integrity rules (R6.4, R6.5) need the policy, the other exceptions or the
/// request, and live in the engine: offline they make an exception inactive
/// rather than unreadable.
pub fn compile_exception(name: &str, spec: &SoDExceptionSpec) -> Result<Exception, FieldError> {
    if spec.policy.is_empty() {
        return Err(FieldError::new("spec.policy", "must name an SoDPolicy"));
    }
    if spec.requested_by.is_empty() {
        return Err(FieldError::new(
            "spec.requestedBy",
            "must name the requesting user",
        ));
    }
    if spec.justification.trim().is_empty() {
        return Err(FieldError::new(
            "spec.justification",
            "must say why the exception is needed",
        ));
    }
    let subject = spec.subject.identity("spec.subject")?;
    let expires_at = parse_time("spec.expiresAt", &spec.expires_at)?;
    let not_before = spec
        .not_before
        .as_deref()
        .map(|s| parse_time("spec.notBefore", s))
        .transpose()?;
    if let Some(nb) = not_before
        && nb >= expires_at
    {
        return Err(FieldError::new(
            "spec.expiresAt",
            "must be after spec.notBefore",
        ));
    }
    let approvals = compile_approvals(&spec.approvals)?;
    let review = compile_review(spec.review.as_ref())?;
    Ok(Exception {
        name: Name::from(name),
        policy: Name::from(spec.policy.as_str()),
        subject,
        duties: spec
            .duties
            .as_ref()
            .map(|ds| ds.iter().map(|d| Name::from(d.as_str())).collect()),
        namespaces: spec
            .namespaces
            .as_ref()
            .map(|ns| ns.iter().map(|n| Name::from(n.as_str())).collect()),
        justification: spec.justification.clone(),
        ticket: spec.ticket.clone(),
        requested_by: spec.requested_by.clone(),
        not_before,
        expires_at,
        break_glass: spec.break_glass,
        approvals,
        review,
        created: None,
    })
}

/// `spec.approvals` of an exception or a grant (the same rules, R6.4).
pub(super) fn compile_approvals(approvals: &[ApprovalSpec]) -> Result<Vec<Approval>, FieldError> {
    approvals
        .iter()
        .enumerate()
        .map(|(i, a)| {
            if a.user.is_empty() {
                return Err(FieldError::new(
                    format!("spec.approvals[{i}].user"),
                    "must not be empty",
                ));
            }
            Ok(Approval {
                user: a.user.clone(),
                at: parse_time(&format!("spec.approvals[{i}].at"), &a.at)?,
            })
        })
        .collect()
}

/// `spec.review` of an exception or a grant (R6.5).
pub(super) fn compile_review(
    review: Option<&ReviewSpec>,
) -> Result<Option<ExceptionReview>, FieldError> {
    review
        .map(|r| {
            if r.user.is_empty() {
                return Err(FieldError::new("spec.review.user", "must not be empty"));
            }
            Ok(ExceptionReview {
                user: r.user.clone(),
                at: parse_time("spec.review.at", &r.at)?,
                outcome: match r.outcome {
                    ReviewOutcomeSpec::Accepted => ReviewOutcome::Accepted,
                    ReviewOutcomeSpec::Rejected => ReviewOutcome::Rejected,
                },
                notes: r.notes.clone(),
            })
        })
        .transpose()
}
