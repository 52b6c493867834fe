use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{FieldError, SubjectKind, glob, parse_time};
use crate::model::{Approval, Exception, Identity, Name};

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
    /// The duties it excuses; all of the policy's when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duties: Option<Vec<String>>,
    /// The namespaces it excuses (`*` for cluster-wide); all when unset.
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
    #[serde(default)]
    pub approvals: Vec<ApprovalSpec>,
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

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SoDExceptionStatus {
    /// Pending, Active or Expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
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

/// Validates an exception's own fields and compiles it for the engine. Rules
/// that need the policy or the requester are checked at admission.
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
    let approvals = spec
        .approvals
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
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(nss) = &spec.namespaces {
        for (i, ns) in nss.iter().enumerate() {
            // Namespaces are plain names or `*`; reject what no namespace can match.
            glob(&format!("spec.namespaces[{i}]"), ns)?;
        }
    }
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
    })
}
