use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::exception::{compile_approvals, compile_review};
use super::{ApprovalSpec, FieldError, ReviewSpec, SubjectRef, glob, parse_duration};
use crate::model::{GrantPolicy, JitGrant, Name, RoleKey};

/// What an AccessGrant or ClusterAccessGrant asks for (R10.1).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "sodguard.io",
    version = "v1alpha1",
    kind = "AccessGrant",
    namespaced,
    doc = "AccessGrant asks for a role in its namespace for a bounded time; sodguard binds it once approved by others and unbinds it at expiry.",
    shortname = "grant",
    status = "AccessGrantStatus",
    printcolumn = r#"{"name":"Kind","type":"string","jsonPath":".spec.subject.kind"}"#,
    printcolumn = r#"{"name":"Subject","type":"string","jsonPath":".spec.subject.name"}"#,
    printcolumn = r#"{"name":"Role","type":"string","jsonPath":".spec.roleRef.name"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Expires","type":"string","jsonPath":".status.expiresAt"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AccessGrantSpec {
    pub subject: SubjectRef,
    /// A Role of the grant's namespace or a ClusterRole.
    pub role_ref: GrantRoleRef,
    /// How long the binding lasts once active, like "2h".
    pub duration: String,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    /// The user who asked for it; set by that user at creation.
    pub requested_by: String,
    /// Emergency access: active at once, reviewed afterwards.
    #[serde(default)]
    pub break_glass: bool,
    /// Appended by each approving user themself; append-only. After the
    /// first approval the rest of the spec is frozen.
    #[serde(default)]
    pub approvals: Vec<ApprovalSpec>,
    /// The post-review of a break-glass grant, by someone who is neither the
    /// requester nor the subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<ReviewSpec>,
}

/// What a ClusterAccessGrant asks for: a ClusterRole, cluster-wide.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "sodguard.io",
    version = "v1alpha1",
    kind = "ClusterAccessGrant",
    doc = "ClusterAccessGrant asks for a ClusterRole cluster-wide for a bounded time; sodguard binds it once approved by others and unbinds it at expiry.",
    shortname = "cgrant",
    status = "AccessGrantStatus",
    printcolumn = r#"{"name":"Kind","type":"string","jsonPath":".spec.subject.kind"}"#,
    printcolumn = r#"{"name":"Subject","type":"string","jsonPath":".spec.subject.name"}"#,
    printcolumn = r#"{"name":"Role","type":"string","jsonPath":".spec.roleRef.name"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Expires","type":"string","jsonPath":".status.expiresAt"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterAccessGrantSpec {
    pub subject: SubjectRef,
    pub role_ref: GrantRoleRef,
    pub duration: String,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    pub requested_by: String,
    #[serde(default)]
    pub break_glass: bool,
    #[serde(default)]
    pub approvals: Vec<ApprovalSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<ReviewSpec>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrantRoleRef {
    #[serde(default = "rbac_group")]
    pub api_group: String,
    /// Role or ClusterRole.
    pub kind: String,
    pub name: String,
}

fn rbac_group() -> String {
    "rbac.authorization.k8s.io".into()
}

/// Written by the grant controller with server-side apply.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessGrantStatus {
    /// Pending, Active, Expired, Revoked or Refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub activated_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub expires_at: Option<String>,
    /// Why it is not active, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The binding sodguard created for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<String>,
}

/// What may be granted, to whom, by whose approval (R10.2).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "sodguard.io",
    version = "v1alpha1",
    kind = "AccessGrantPolicy",
    doc = "AccessGrantPolicy says which roles may be granted just in time, where, for how long, and who approves.",
    shortname = "grantpolicy",
    printcolumn = r#"{"name":"Max","type":"string","jsonPath":".spec.maxDuration"}"#,
    printcolumn = r#"{"name":"Approvals","type":"integer","jsonPath":".spec.approvalsRequired"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AccessGrantPolicySpec {
    /// Role or ClusterRole names (globs) that may be granted.
    pub roles: Vec<String>,
    /// Namespaces (globs) where they may be granted.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Whether ClusterAccessGrants (cluster-wide bindings) are allowed.
    #[serde(default)]
    pub cluster_wide: bool,
    pub max_duration: String,
    #[serde(default = "two")]
    pub approvals_required: u32,
    /// An approver's groups must include one of these.
    pub approver_groups: Vec<String>,
    #[serde(default)]
    pub break_glass: GrantBreakGlassSpec,
}

fn two() -> u32 {
    2
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrantBreakGlassSpec {
    #[serde(default)]
    pub allowed: bool,
    #[serde(default = "one_hour")]
    pub max_duration: String,
    #[serde(default = "hours_72")]
    pub review_within: String,
}

impl Default for GrantBreakGlassSpec {
    fn default() -> Self {
        GrantBreakGlassSpec {
            allowed: false,
            max_duration: one_hour(),
            review_within: hours_72(),
        }
    }
}

fn one_hour() -> String {
    "1h".into()
}

fn hours_72() -> String {
    "72h".into()
}

/// The fields both grant kinds share, borrowed.
struct GrantFields<'a> {
    subject: &'a SubjectRef,
    role_ref: &'a GrantRoleRef,
    duration: &'a str,
    reason: &'a str,
    ticket: &'a Option<String>,
    requested_by: &'a str,
    break_glass: bool,
    approvals: &'a [ApprovalSpec],
    review: &'a Option<ReviewSpec>,
}

/// Validates an AccessGrant (`namespace: Some`) and compiles it.
pub fn compile_grant(
    namespace: &str,
    name: &str,
    spec: &AccessGrantSpec,
) -> Result<JitGrant, FieldError> {
    compile(
        Some(namespace),
        name,
        GrantFields {
            subject: &spec.subject,
            role_ref: &spec.role_ref,
            duration: &spec.duration,
            reason: &spec.reason,
            ticket: &spec.ticket,
            requested_by: &spec.requested_by,
            break_glass: spec.break_glass,
            approvals: &spec.approvals,
            review: &spec.review,
        },
    )
}

/// Validates a ClusterAccessGrant and compiles it.
pub fn compile_cluster_grant(
    name: &str,
    spec: &ClusterAccessGrantSpec,
) -> Result<JitGrant, FieldError> {
    compile(
        None,
        name,
        GrantFields {
            subject: &spec.subject,
            role_ref: &spec.role_ref,
            duration: &spec.duration,
            reason: &spec.reason,
            ticket: &spec.ticket,
            requested_by: &spec.requested_by,
            break_glass: spec.break_glass,
            approvals: &spec.approvals,
            review: &spec.review,
        },
    )
}

fn compile(namespace: Option<&str>, name: &str, f: GrantFields) -> Result<JitGrant, FieldError> {
    if f.requested_by.is_empty() {
        return Err(FieldError::new(
            "spec.requestedBy",
            "must name the requesting user",
        ));
    }
    if f.reason.trim().is_empty() {
        return Err(FieldError::new(
            "spec.reason",
            "must say why the access is needed",
        ));
    }
    let subject = f.subject.identity("spec.subject")?;
    if f.role_ref.api_group != rbac_group() {
        return Err(FieldError::new(
            "spec.roleRef.apiGroup",
            format!("must be {}", rbac_group()),
        ));
    }
    if f.role_ref.name.is_empty() {
        return Err(FieldError::new("spec.roleRef.name", "must not be empty"));
    }
    let role = match (f.role_ref.kind.as_str(), namespace) {
        ("Role", Some(ns)) => RoleKey {
            namespace: Some(Name::from(ns)),
            name: Name::from(f.role_ref.name.as_str()),
        },
        ("ClusterRole", _) => RoleKey::cluster(&f.role_ref.name),
        ("Role", None) => {
            return Err(FieldError::new(
                "spec.roleRef.kind",
                "a ClusterAccessGrant grants a ClusterRole",
            ));
        }
        (k, _) => {
            return Err(FieldError::new(
                "spec.roleRef.kind",
                format!("must be Role or ClusterRole, not {k:?}"),
            ));
        }
    };
    let duration = parse_duration("spec.duration", f.duration)?;
    let approvals = compile_approvals(f.approvals)?;
    let review = compile_review(f.review.as_ref())?;
    Ok(JitGrant {
        namespace: namespace.map(Name::from),
        name: Name::from(name),
        subject,
        role,
        duration,
        reason: f.reason.to_string(),
        ticket: f.ticket.clone(),
        requested_by: f.requested_by.to_string(),
        break_glass: f.break_glass,
        approvals,
        review,
        created: None,
    })
}

/// Validates an AccessGrantPolicy and compiles its globs and durations.
pub fn compile_grant_policy(
    name: &str,
    spec: &AccessGrantPolicySpec,
) -> Result<GrantPolicy, FieldError> {
    if spec.roles.is_empty() {
        return Err(FieldError::new(
            "spec.roles",
            "must name at least one role (or glob)",
        ));
    }
    if spec.approver_groups.is_empty() {
        return Err(FieldError::new(
            "spec.approverGroups",
            "must name at least one group whose members approve",
        ));
    }
    if spec.approvals_required == 0 {
        return Err(FieldError::new(
            "spec.approvalsRequired",
            "must be at least 1 (break-glass is the path without approvals)",
        ));
    }
    let globs = |field: &str, xs: &[String]| {
        xs.iter()
            .enumerate()
            .map(|(i, p)| glob(&format!("{field}[{i}]"), p))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(GrantPolicy {
        name: Name::from(name),
        roles: globs("spec.roles", &spec.roles)?,
        namespaces: globs("spec.namespaces", &spec.namespaces)?,
        cluster_wide: spec.cluster_wide,
        max_duration: parse_duration("spec.maxDuration", &spec.max_duration)?,
        approvals_required: spec.approvals_required,
        approver_groups: spec.approver_groups.clone(),
        break_glass_allowed: spec.break_glass.allowed,
        break_glass_max_duration: parse_duration(
            "spec.breakGlass.maxDuration",
            &spec.break_glass.max_duration,
        )?,
        break_glass_review_within: parse_duration(
            "spec.breakGlass.reviewWithin",
            &spec.break_glass.review_within,
        )?,
    })
}
