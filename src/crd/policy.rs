use std::collections::HashSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{FieldError, glob, parse_duration};
use crate::model::Permission;
use crate::model::policy::{Credentials, ExceptionRules, Exclude, TokenRequestRules, UseTime};
use crate::model::{
    Actions, DerivedKind, Duty, Name, Policy, PolicyScope, SubjectSelector, TokenAction,
};

/// Duties that one identity must not combine.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "sodguard.io",
    version = "v1alpha1",
    kind = "SoDPolicy",
    doc = "SoDPolicy names duties that one identity must not combine, and how sodguard enforces that.",
    shortname = "sodp",
    status = "SoDPolicyStatus",
    printcolumn = r#"{"name":"Scope","type":"string","jsonPath":".spec.scope"}"#,
    printcolumn = r#"{"name":"Actions","type":"string","jsonPath":".spec.validationActions"}"#,
    printcolumn = r#"{"name":"Violations","type":"integer","jsonPath":".status.violations"}"#,
    printcolumn = r#"{"name":"Excused","type":"integer","jsonPath":".status.excused"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SoDPolicySpec {
    /// What the policy protects against, for people.
    #[serde(default)]
    pub description: String,
    /// The incompatible duties (at least two).
    #[schemars(length(min = 2))]
    pub duties: Vec<DutySpec>,
    /// How many of the duties one subject may hold in one scope unit.
    #[serde(default = "one")]
    #[schemars(range(min = 1))]
    pub max_duties: i64,
    #[serde(default)]
    pub scope: Scope,
    #[serde(default)]
    pub subjects: SubjectsSpec,
    #[serde(default = "deny_only")]
    pub validation_actions: Vec<ValidationAction>,
    #[serde(default)]
    pub exceptions: ExceptionsSpec,
    #[serde(default)]
    pub credentials: CredentialsSpec,
    /// The escalation paths (R9) whose holdings count for this policy: what a
    /// subject can obtain by running Pods as a ServiceAccount, exec into Pods,
    /// minting tokens, impersonating, or binding and escalating roles. All
    /// five when unset; `[]` turns derivation off.
    #[serde(default = "all_derived")]
    pub derived: Vec<DerivedPath>,
    /// Use-time enforcement (R13): with `action: Deny`, sodguard's
    /// authorization webhook refuses a violator's requests that exercise the
    /// violated duties, for as long as the violation stands unexcused.
    #[serde(default)]
    pub use_time: UseTimeSpec,
}

/// What the authorization webhook does with the requests of a violator (R13).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UseTimeSpec {
    #[serde(default)]
    pub action: UseTimeAction,
    /// The duties whose requests are refused while a violation stands; all
    /// the duties of the violation when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duties: Option<Vec<String>>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum UseTimeAction {
    /// Refuse a violator's requests within its violated duties.
    Deny,
    /// No opinion on any request: RBAC alone decides.
    #[default]
    Off,
}

/// An escalation path (R9.1).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum DerivedPath {
    /// `create` pods or a workload controller: runs as every ServiceAccount of
    /// the namespace and reads its Secrets and ConfigMaps.
    WorkloadCreation,
    /// `create` pods/exec or pods/attach, or `update`/`patch`
    /// pods/ephemeralcontainers: runs as every ServiceAccount of the namespace.
    PodExec,
    /// `create` serviceaccounts/token: acts as those ServiceAccounts.
    TokenRequest,
    /// `impersonate` users, groups or serviceaccounts: acts as them.
    Impersonation,
    /// `bind` with `create` rolebindings, or `escalate` with writing roles.
    RoleGrant,
}

fn all_derived() -> Vec<DerivedPath> {
    vec![
        DerivedPath::WorkloadCreation,
        DerivedPath::PodExec,
        DerivedPath::TokenRequest,
        DerivedPath::Impersonation,
        DerivedPath::RoleGrant,
    ]
}

impl DerivedPath {
    fn kind(self) -> DerivedKind {
        match self {
            DerivedPath::WorkloadCreation => DerivedKind::WorkloadCreation,
            DerivedPath::PodExec => DerivedKind::PodExec,
            DerivedPath::TokenRequest => DerivedKind::TokenRequest,
            DerivedPath::Impersonation => DerivedKind::Impersonation,
            DerivedPath::RoleGrant => DerivedKind::RoleGrant,
        }
    }
}

fn one() -> i64 {
    1
}

fn deny_only() -> Vec<ValidationAction> {
    vec![ValidationAction::Deny]
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DutySpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `Any`: one permission is enough to hold the duty; `All`: every one.
    #[serde(default, rename = "match")]
    pub match_mode: MatchMode,
    #[schemars(length(min = 1))]
    pub permissions: Vec<PermissionSpec>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PermissionSpec {
    #[serde(default)]
    pub api_groups: Vec<String>,
    #[serde(default)]
    pub resources: Vec<String>,
    pub verbs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_names: Option<Vec<String>>,
    #[serde(
        default,
        rename = "nonResourceURLs",
        skip_serializing_if = "Option::is_none"
    )]
    pub non_resource_urls: Option<Vec<String>>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum MatchMode {
    #[default]
    Any,
    All,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum Scope {
    #[default]
    Namespace,
    Cluster,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum SubjectKind {
    ServiceAccount,
    User,
    Group,
}

impl SubjectKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            SubjectKind::ServiceAccount => "ServiceAccount",
            SubjectKind::User => "User",
            SubjectKind::Group => "Group",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubjectsSpec {
    #[serde(default = "service_accounts_only")]
    pub kinds: Vec<SubjectKind>,
    /// Globs on a ServiceAccount's namespace; all namespaces when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<Vec<String>>,
    #[serde(default)]
    pub exclude: Vec<ExcludeSpec>,
}

impl Default for SubjectsSpec {
    fn default() -> Self {
        SubjectsSpec {
            kinds: service_accounts_only(),
            namespaces: None,
            exclude: Vec::new(),
        }
    }
}

fn service_accounts_only() -> Vec<SubjectKind> {
    vec![SubjectKind::ServiceAccount]
}

/// Subjects that the policy does not govern; `namespace` and `name` are globs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExcludeSpec {
    pub kind: SubjectKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ValidationAction {
    Deny,
    Warn,
    Audit,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExceptionsSpec {
    #[serde(default = "one_i32")]
    #[schemars(range(min = 1))]
    pub approvals_required: i32,
    #[serde(default = "hours_24")]
    pub max_duration: String,
    #[serde(default)]
    pub break_glass: BreakGlassSpec,
}

impl Default for ExceptionsSpec {
    fn default() -> Self {
        ExceptionsSpec {
            approvals_required: 1,
            max_duration: hours_24(),
            break_glass: BreakGlassSpec::default(),
        }
    }
}

fn one_i32() -> i32 {
    1
}

fn hours_24() -> String {
    "24h".into()
}

fn hours_4() -> String {
    "4h".into()
}

fn hours_72() -> String {
    "72h".into()
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BreakGlassSpec {
    #[serde(default)]
    pub allowed: bool,
    /// The longest break-glass window; also caps windows already granted.
    #[serde(default = "hours_4")]
    pub max_duration: String,
    /// For one subject, the least time between the end of a break-glass
    /// window and the start of the next.
    #[serde(default = "hours_24")]
    pub cooldown: String,
    /// A window that ended longer ago than this without a `review` is a
    /// review-time finding.
    #[serde(default = "hours_72")]
    pub review_within: String,
}

impl Default for BreakGlassSpec {
    fn default() -> Self {
        BreakGlassSpec {
            allowed: false,
            max_duration: hours_4(),
            cooldown: hours_24(),
            review_within: hours_72(),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum TokenPolicy {
    Allow,
    #[default]
    Warn,
    Deny,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSpec {
    #[serde(default)]
    pub long_lived_tokens: TokenPolicy,
    /// Token Secrets older than this are reported as stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<String>,
    /// Short-lived tokens (TokenRequest) of governed ServiceAccounts (R8.4).
    #[serde(default)]
    pub token_requests: TokenRequestsSpec,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenRequestsSpec {
    /// What a TokenRequest beyond these limits gets.
    #[serde(default)]
    pub action: TokenPolicy,
    /// The longest `spec.expirationSeconds` allowed, like "1h".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_expiration: Option<String>,
    /// Whether a token must be bound to a Pod or Secret (`spec.boundObjectRef`).
    #[serde(default)]
    pub require_bound_object: bool,
}

/// Written by the review-time audit (R11.1) with server-side apply; rewritten
/// only when its content changes, so `lastAudit` is the audit that found it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SoDPolicyStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (audited) and `Invalid` (the spec cannot be enforced).
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Violations that no exception excuses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub violations: Option<i64>,
    /// The same violations counted under each of the policy's actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub violations_by_action: Option<std::collections::BTreeMap<String, i64>>,
    /// Violations an active exception excuses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excused: Option<i64>,
    /// When the audit found what this status says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_audit: Option<String>,
}

fn names(xs: &[String]) -> Vec<Name> {
    xs.iter().map(|s| Name::from(s.as_str())).collect()
}

/// Validates a policy (R7.5) and compiles it for the engine. Every error names
/// the offending field.
pub fn compile_policy(name: &str, spec: &SoDPolicySpec) -> Result<Policy, FieldError> {
    let n = spec.duties.len();
    if n < 2 {
        return Err(FieldError::new(
            "spec.duties",
            format!("a policy needs at least two duties to separate, found {n}"),
        ));
    }
    let mut seen = HashSet::new();
    let mut duties = Vec::with_capacity(n);
    let mut permissions = Vec::new();
    let mut permission_duty = Vec::new();
    for (i, d) in spec.duties.iter().enumerate() {
        if d.name.trim().is_empty() {
            return Err(FieldError::new(
                format!("spec.duties[{i}].name"),
                "must not be empty",
            ));
        }
        if !seen.insert(d.name.as_str()) {
            return Err(FieldError::new(
                format!("spec.duties[{i}].name"),
                format!("duplicate duty name {:?}", d.name),
            ));
        }
        if d.permissions.is_empty() {
            return Err(FieldError::new(
                format!("spec.duties[{i}].permissions"),
                "a duty needs at least one permission",
            ));
        }
        let start = permissions.len();
        for (j, p) in d.permissions.iter().enumerate() {
            let path = format!("spec.duties[{i}].permissions[{j}]");
            if p.verbs.is_empty() {
                return Err(FieldError::new(
                    format!("{path}.verbs"),
                    "must name at least one verb",
                ));
            }
            let urls = p.non_resource_urls.as_deref().unwrap_or_default();
            if p.resources.is_empty() && urls.is_empty() {
                return Err(FieldError::new(
                    path,
                    "must name resources or nonResourceURLs",
                ));
            }
            if !p.resources.is_empty() && p.api_groups.is_empty() {
                return Err(FieldError::new(
                    format!("{path}.apiGroups"),
                    "must name at least one API group ('' is the core group)",
                ));
            }
            permissions.push(Permission {
                verbs: names(&p.verbs),
                api_groups: names(&p.api_groups),
                resources: names(&p.resources),
                resource_names: names(p.resource_names.as_deref().unwrap_or_default()),
                non_resource_urls: names(urls),
            });
            permission_duty.push(i);
        }
        duties.push(Duty {
            name: Name::from(d.name.as_str()),
            description: d.description.clone(),
            match_all: d.match_mode == MatchMode::All,
            permissions: start..permissions.len(),
        });
    }
    if spec.max_duties < 1 || spec.max_duties >= n as i64 {
        return Err(FieldError::new(
            "spec.maxDuties",
            format!(
                "must be at least 1 and less than the number of duties ({n}), found {}",
                spec.max_duties
            ),
        ));
    }
    let mut actions = Actions::default();
    for a in &spec.validation_actions {
        match a {
            ValidationAction::Deny => actions.deny = true,
            ValidationAction::Warn => actions.warn = true,
            ValidationAction::Audit => actions.audit = true,
        }
    }
    if actions.deny && actions.warn {
        return Err(FieldError::new(
            "spec.validationActions",
            "Deny and Warn together are contradictory: choose one",
        ));
    }
    if spec.exceptions.approvals_required < 1 {
        return Err(FieldError::new(
            "spec.exceptions.approvalsRequired",
            "must be at least 1: an exception needs someone other than its requester to approve it (or breakGlass)",
        ));
    }
    if spec.validation_actions.is_empty() {
        return Err(FieldError::new(
            "spec.validationActions",
            "must name at least one action",
        ));
    }
    Ok(Policy {
        name: Name::from(name),
        description: spec.description.clone(),
        duties,
        permissions,
        permission_duty,
        max_duties: spec.max_duties as usize,
        scope: match spec.scope {
            Scope::Namespace => PolicyScope::Namespace,
            Scope::Cluster => PolicyScope::Cluster,
        },
        subjects: compile_subjects(&spec.subjects)?,
        actions,
        exceptions: ExceptionRules {
            approvals_required: spec.exceptions.approvals_required as u32,
            max_duration: parse_duration(
                "spec.exceptions.maxDuration",
                &spec.exceptions.max_duration,
            )?,
            break_glass_allowed: spec.exceptions.break_glass.allowed,
            break_glass_max_duration: parse_duration(
                "spec.exceptions.breakGlass.maxDuration",
                &spec.exceptions.break_glass.max_duration,
            )?,
            break_glass_cooldown: parse_duration(
                "spec.exceptions.breakGlass.cooldown",
                &spec.exceptions.break_glass.cooldown,
            )?,
            break_glass_review_within: parse_duration(
                "spec.exceptions.breakGlass.reviewWithin",
                &spec.exceptions.break_glass.review_within,
            )?,
        },
        credentials: Credentials {
            long_lived_tokens: token_action(spec.credentials.long_lived_tokens),
            max_age: spec
                .credentials
                .max_age
                .as_deref()
                .map(|s| parse_duration("spec.credentials.maxAge", s))
                .transpose()?,
            token_requests: TokenRequestRules {
                action: token_action(spec.credentials.token_requests.action),
                max_expiration: spec
                    .credentials
                    .token_requests
                    .max_expiration
                    .as_deref()
                    .map(|s| parse_duration("spec.credentials.tokenRequests.maxExpiration", s))
                    .transpose()?,
                require_bound_object: spec.credentials.token_requests.require_bound_object,
            },
        },
        derived: spec.derived.iter().map(|d| d.kind()).collect(),
        use_time: compile_use_time(&spec.use_time, &duties_of(spec))?,
    })
}

fn duties_of(spec: &SoDPolicySpec) -> Vec<&str> {
    spec.duties.iter().map(|d| d.name.as_str()).collect()
}

/// R13: the duty names must be the policy's; an empty list refuses nothing
/// and is an error rather than a silent no-op (omit it for all duties).
fn compile_use_time(u: &UseTimeSpec, duties: &[&str]) -> Result<UseTime, FieldError> {
    let refused = match &u.duties {
        None => vec![true; duties.len()],
        Some(names) => {
            if names.is_empty() && u.action == UseTimeAction::Deny {
                return Err(FieldError::new(
                    "spec.useTime.duties",
                    "must name at least one duty; leave it unset to refuse all the duties of a violation",
                ));
            }
            let mut refused = vec![false; duties.len()];
            for (i, n) in names.iter().enumerate() {
                match duties.iter().position(|d| d == n) {
                    Some(j) => refused[j] = true,
                    None => {
                        return Err(FieldError::new(
                            format!("spec.useTime.duties[{i}]"),
                            format!(
                                "{n:?} is not a duty of this policy (its duties: {})",
                                duties.join(", ")
                            ),
                        ));
                    }
                }
            }
            refused
        }
    };
    Ok(UseTime {
        deny: u.action == UseTimeAction::Deny,
        refused,
    })
}

fn token_action(p: TokenPolicy) -> TokenAction {
    match p {
        TokenPolicy::Allow => TokenAction::Allow,
        TokenPolicy::Warn => TokenAction::Warn,
        TokenPolicy::Deny => TokenAction::Deny,
    }
}

fn compile_subjects(s: &SubjectsSpec) -> Result<SubjectSelector, FieldError> {
    if s.kinds.is_empty() {
        return Err(FieldError::new(
            "spec.subjects.kinds",
            "must name at least one kind",
        ));
    }
    let namespaces = s
        .namespaces
        .as_ref()
        .map(|nss| {
            nss.iter()
                .enumerate()
                .map(|(i, g)| glob(&format!("spec.subjects.namespaces[{i}]"), g))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let exclude = s
        .exclude
        .iter()
        .enumerate()
        .map(|(i, e)| {
            Ok(Exclude {
                kind: e.kind.as_str().to_string(),
                namespace: e
                    .namespace
                    .as_deref()
                    .map(|g| glob(&format!("spec.subjects.exclude[{i}].namespace"), g))
                    .transpose()?,
                name: glob(&format!("spec.subjects.exclude[{i}].name"), &e.name)?,
            })
        })
        .collect::<Result<Vec<_>, FieldError>>()?;
    Ok(SubjectSelector {
        service_accounts: s.kinds.contains(&SubjectKind::ServiceAccount),
        users: s.kinds.contains(&SubjectKind::User),
        groups: s.kinds.contains(&SubjectKind::Group),
        namespaces,
        exclude,
    })
}
