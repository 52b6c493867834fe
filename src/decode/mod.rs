//! The boundary: Kubernetes objects (as JSON values) in, domain objects out.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1 as rbac;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::crd::{
    self, AccessGrant, AccessGrantPolicy, ClusterAccessGrant, FieldError, SoDException, SoDPolicy,
};
use crate::model::{
    Binding, BindingKey, Identity, LabelSelector, Name, Object, Requirement, Role, RoleKey, Rule,
    TokenSecret,
};

pub mod kinds;
pub mod strict;

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// `apiVersion` and `kind` of a document, whatever else it holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TypeMeta {
    pub api_version: String,
    pub kind: String,
}

impl TypeMeta {
    pub fn of(v: &Value) -> Self {
        let s = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        TypeMeta {
            api_version: s("apiVersion"),
            kind: s("kind"),
        }
    }

    /// Whether this is `kind` of the core API group (`apiVersion: v1`).
    pub fn is_core(&self, kind: &str) -> bool {
        self.kind == kind && self.group().is_empty()
    }

    pub fn group(&self) -> &str {
        self.api_version.rsplit_once('/').map_or("", |(g, _)| g)
    }
}

/// Names an object in messages: `RoleBinding payments/api-reads`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectRef {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl ObjectRef {
    pub fn of(v: &Value) -> Self {
        let meta = v.get("metadata");
        let s = |k: &str| {
            meta.and_then(|m| m.get(k))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        ObjectRef {
            kind: TypeMeta::of(v).kind,
            namespace: s("namespace"),
            name: s("name"),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.kind.is_empty() {
            "object"
        } else {
            &self.kind
        };
        match (&self.namespace, &self.name) {
            (Some(ns), Some(n)) => write!(f, "{kind} {ns}/{n}"),
            (None, Some(n)) => write!(f, "{kind} {n}"),
            (_, None) => write!(f, "{kind} (without metadata.name)"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    #[error("{object}: {message}")]
    Malformed { object: ObjectRef, message: String },
    #[error("{object} is invalid: {error}")]
    Invalid {
        object: ObjectRef,
        error: FieldError,
    },
}

impl ConvertError {
    pub fn object(&self) -> &ObjectRef {
        match self {
            ConvertError::Malformed { object, .. } | ConvertError::Invalid { object, .. } => object,
        }
    }
}

/// Reduces one Kubernetes object to what the engine keeps. `Ok(None)` for
/// kinds the engine has no use for.
pub fn convert(v: &Value) -> Result<Option<Object>, ConvertError> {
    let tm = TypeMeta::of(v);
    let object = ObjectRef::of(v);
    let malformed = |message: String| object.malformed(message);
    if let Some(m) = strict::group_mismatch(&tm.api_version, &tm.kind) {
        return Err(malformed(m));
    }
    let obj = match (tm.group(), tm.kind.as_str()) {
        // Only the name matters, so nothing else of a Namespace is read.
        ("", "Namespace") => Object::Namespace(Name::from(object.required_name()?.as_str())),
        ("", "ServiceAccount") => parse::<ServiceAccount>(v, &object)?.decode()?,
        ("", "Secret") => {
            if token_secret_owner(v).is_none() {
                return Ok(None);
            }
            let meta: ObjectMeta = match v.get("metadata") {
                Some(m) => parse(m, &object)?,
                None => ObjectMeta::default(),
            };
            match token_secret(&meta)? {
                Some(t) => Object::TokenSecret(t),
                None => return Ok(None),
            }
        }
        (RBAC_GROUP, "Role") => parse::<rbac::Role>(v, &object)?.decode()?,
        (RBAC_GROUP, "ClusterRole") => parse::<rbac::ClusterRole>(v, &object)?.decode()?,
        (RBAC_GROUP, "RoleBinding") => {
            require_role_ref(v, &malformed)?;
            parse::<rbac::RoleBinding>(v, &object)?.decode()?
        }
        (RBAC_GROUP, "ClusterRoleBinding") => {
            require_role_ref(v, &malformed)?;
            parse::<rbac::ClusterRoleBinding>(v, &object)?.decode()?
        }
        (crd::GROUP, "SoDPolicy") => parse::<SoDPolicy>(v, &object)?.decode()?,
        (crd::GROUP, "SoDException") => parse::<SoDException>(v, &object)?.decode()?,
        (crd::GROUP, "AccessGrant") => parse::<AccessGrant>(v, &object)?.decode()?,
        (crd::GROUP, "ClusterAccessGrant") => parse::<ClusterAccessGrant>(v, &object)?.decode()?,
        (crd::GROUP, "AccessGrantPolicy") => parse::<AccessGrantPolicy>(v, &object)?.decode()?,
        _ => return Ok(None),
    };
    Ok(Some(obj))
}

/// A typed Kubernetes object reduced to what the engine keeps: the one
/// conversion shared by files, admission requests, the snapshot and the
/// watchers (which hand over typed objects, never JSON to parse again).
pub trait Decode {
    fn decode(&self) -> Result<Object, ConvertError>;
}

/// The metadata checks every conversion shares, with the same messages
/// whatever the source (JSON or a typed object).
impl ObjectRef {
    /// Names a typed object in messages, as [`ObjectRef::of`] names its JSON.
    fn of_meta(kind: &str, meta: &ObjectMeta) -> Self {
        let s = |x: &Option<String>| x.clone().filter(|s| !s.is_empty());
        ObjectRef {
            kind: kind.to_string(),
            namespace: s(&meta.namespace),
            name: s(&meta.name),
        }
    }

    fn malformed(&self, message: String) -> ConvertError {
        ConvertError::Malformed {
            object: self.clone(),
            message,
        }
    }

    fn invalid(&self, error: FieldError) -> ConvertError {
        ConvertError::Invalid {
            object: self.clone(),
            error,
        }
    }

    fn required_name(&self) -> Result<String, ConvertError> {
        self.name
            .clone()
            .ok_or_else(|| self.malformed("metadata.name is missing".into()))
    }

    fn required_namespace(&self) -> Result<String, ConvertError> {
        self.namespace
            .clone()
            .ok_or_else(|| self.malformed("metadata.namespace is missing".into()))
    }
}

impl Decode for Namespace {
    fn decode(&self) -> Result<Object, ConvertError> {
        let m = ObjectRef::of_meta("Namespace", &self.metadata);
        Ok(Object::Namespace(Name::from(m.required_name()?.as_str())))
    }
}

impl Decode for ServiceAccount {
    fn decode(&self) -> Result<Object, ConvertError> {
        let m = ObjectRef::of_meta("ServiceAccount", &self.metadata);
        Ok(Object::ServiceAccount {
            namespace: Name::from(m.required_namespace()?.as_str()),
            name: Name::from(m.required_name()?.as_str()),
        })
    }
}

impl Decode for rbac::Role {
    fn decode(&self) -> Result<Object, ConvertError> {
        let m = ObjectRef::of_meta("Role", &self.metadata);
        let key = RoleKey {
            namespace: Some(m.required_namespace()?.into()),
            name: m.required_name()?.into(),
        };
        Ok(Object::Role(role(key, self.rules.as_deref(), None, None)))
    }
}

impl Decode for rbac::ClusterRole {
    fn decode(&self) -> Result<Object, ConvertError> {
        let m = ObjectRef::of_meta("ClusterRole", &self.metadata);
        let key = RoleKey {
            namespace: None,
            name: m.required_name()?.into(),
        };
        let aggregation = self
            .aggregation_rule
            .as_ref()
            .map(|a| {
                a.cluster_role_selectors
                    .iter()
                    .flatten()
                    .map(label_selector)
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()
            .map_err(|e| m.malformed(format!("aggregationRule: {e}")))?;
        Ok(Object::Role(role(
            key,
            self.rules.as_deref(),
            self.metadata.labels.as_ref(),
            aggregation,
        )))
    }
}

impl Decode for rbac::RoleBinding {
    fn decode(&self) -> Result<Object, ConvertError> {
        let m = ObjectRef::of_meta("RoleBinding", &self.metadata);
        let ns = m.required_namespace()?;
        let role = match self.role_ref.kind.as_str() {
            "Role" => RoleKey {
                namespace: Some(ns.as_str().into()),
                name: self.role_ref.name.as_str().into(),
            },
            "ClusterRole" => RoleKey::cluster(&self.role_ref.name),
            k => {
                return Err(m.malformed(format!(
                    "roleRef.kind must be Role or ClusterRole, not {k:?}"
                )));
            }
        };
        binding(
            BindingKey {
                namespace: Some(ns.as_str().into()),
                name: m.required_name()?.into(),
            },
            role,
            &self.role_ref,
            self.subjects.as_deref(),
            &|message| m.malformed(message),
        )
    }
}

impl Decode for rbac::ClusterRoleBinding {
    fn decode(&self) -> Result<Object, ConvertError> {
        let m = ObjectRef::of_meta("ClusterRoleBinding", &self.metadata);
        if self.role_ref.kind != "ClusterRole" {
            return Err(m.malformed(format!(
                "roleRef.kind of a ClusterRoleBinding must be ClusterRole, not {:?}",
                self.role_ref.kind
            )));
        }
        binding(
            BindingKey {
                namespace: None,
                name: m.required_name()?.into(),
            },
            RoleKey::cluster(&self.role_ref.name),
            &self.role_ref,
            self.subjects.as_deref(),
            &|message| m.malformed(message),
        )
    }
}

impl Decode for SoDPolicy {
    fn decode(&self) -> Result<Object, ConvertError> {
        let m = ObjectRef::of_meta("SoDPolicy", &self.metadata);
        let policy =
            crd::compile_policy(&m.required_name()?, &self.spec).map_err(|e| m.invalid(e))?;
        Ok(Object::Policy(Arc::new(policy)))
    }
}

impl Decode for SoDException {
    fn decode(&self) -> Result<Object, ConvertError> {
        let m = ObjectRef::of_meta("SoDException", &self.metadata);
        let mut exception =
            crd::compile_exception(&m.required_name()?, &self.spec).map_err(|e| m.invalid(e))?;
        exception.created = self.metadata.creation_timestamp.as_ref().map(|t| t.0);
        Ok(Object::Exception(Arc::new(exception)))
    }
}

impl Decode for AccessGrant {
    fn decode(&self) -> Result<Object, ConvertError> {
        let m = ObjectRef::of_meta("AccessGrant", &self.metadata);
        let mut g = crd::compile_grant(&m.required_namespace()?, &m.required_name()?, &self.spec)
            .map_err(|e| m.invalid(e))?;
        g.created = self.metadata.creation_timestamp.as_ref().map(|t| t.0);
        Ok(Object::Grant(Arc::new(g)))
    }
}

impl Decode for ClusterAccessGrant {
    fn decode(&self) -> Result<Object, ConvertError> {
        let m = ObjectRef::of_meta("ClusterAccessGrant", &self.metadata);
        let mut g = crd::compile_cluster_grant(&m.required_name()?, &self.spec)
            .map_err(|e| m.invalid(e))?;
        g.created = self.metadata.creation_timestamp.as_ref().map(|t| t.0);
        Ok(Object::Grant(Arc::new(g)))
    }
}

impl Decode for AccessGrantPolicy {
    fn decode(&self) -> Result<Object, ConvertError> {
        let m = ObjectRef::of_meta("AccessGrantPolicy", &self.metadata);
        let p =
            crd::compile_grant_policy(&m.required_name()?, &self.spec).map_err(|e| m.invalid(e))?;
        Ok(Object::GrantPolicy(Arc::new(p)))
    }
}

/// A `kubernetes.io/service-account-token` Secret, from its metadata alone
/// (the caller has checked the type): `None` without the ServiceAccount
/// annotation. The watch reads only metadata, so this is all there is.
pub fn token_secret(meta: &ObjectMeta) -> Result<Option<TokenSecret>, ConvertError> {
    let m = ObjectRef::of_meta("Secret", meta);
    let Some(sa) = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(SA_NAME_ANNOTATION))
        .filter(|s| !s.is_empty())
    else {
        return Ok(None);
    };
    Ok(Some(TokenSecret {
        namespace: Name::from(m.required_namespace()?.as_str()),
        name: Name::from(m.required_name()?.as_str()),
        service_account: Name::from(sa.as_str()),
        created: meta.creation_timestamp.as_ref().map(|t| t.0),
    }))
}

/// k8s-openapi fills a missing required struct with defaults; a binding
/// without its roleRef is malformed, and says so.
fn require_role_ref(
    v: &Value,
    malformed: &dyn Fn(String) -> ConvertError,
) -> Result<(), ConvertError> {
    match v.get("roleRef") {
        None | Some(Value::Null) => Err(malformed("roleRef is missing".into())),
        Some(Value::Object(r)) => {
            for f in ["kind", "name"] {
                if r.get(f).and_then(Value::as_str).is_none_or(str::is_empty) {
                    return Err(malformed(format!("roleRef.{f} is missing")));
                }
            }
            Ok(())
        }
        Some(_) => Err(malformed(
            "roleRef must be an object with apiGroup, kind and name".into(),
        )),
    }
}

/// Deserialises with the path of the failing field in the message. The
/// path is tracked only on a second pass over input that failed: tracking
/// it costs a third of the decoding of every admission request.
fn parse<T: DeserializeOwned>(v: &Value, object: &ObjectRef) -> Result<T, ConvertError> {
    if let Ok(t) = T::deserialize(v) {
        return Ok(t);
    }
    serde_path_to_error::deserialize(v).map_err(|e| {
        let mut path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // A field missing at the top has the root path `.`: name the field.
        if path == "." {
            path = inner
                .strip_prefix("missing field `")
                .and_then(|r| r.split_once('`'))
                .map_or_else(String::new, |(f, _)| f.to_string());
        }
        let message = if path.is_empty() || path == "." {
            inner
        } else {
            format!("{path}: {inner}")
        };
        if object.kind.starts_with("SoD") || object.kind.contains("AccessGrant") {
            ConvertError::Invalid {
                object: object.clone(),
                error: FieldError::new(path, inner_msg(&message)),
            }
        } else {
            ConvertError::Malformed {
                object: object.clone(),
                message,
            }
        }
    })
}

fn inner_msg(m: &str) -> String {
    m.split_once(": ").map_or(m, |(_, r)| r).to_string()
}

fn role(
    key: RoleKey,
    rules: Option<&[rbac::PolicyRule]>,
    labels: Option<&BTreeMap<String, String>>,
    aggregation: Option<Vec<LabelSelector>>,
) -> Role {
    Role {
        key,
        labels: labels
            .into_iter()
            .flatten()
            .map(|(k, v)| (Name::from(k.as_str()), Name::from(v.as_str())))
            .collect(),
        rules: rules.unwrap_or_default().iter().map(rule).collect(),
        aggregation,
    }
}

fn binding(
    key: BindingKey,
    role: RoleKey,
    role_ref: &rbac::RoleRef,
    subjects: Option<&[rbac::Subject]>,
    malformed: &dyn Fn(String) -> ConvertError,
) -> Result<Object, ConvertError> {
    if role_ref.name.is_empty() {
        return Err(malformed("roleRef.name is empty".into()));
    }
    if role_ref.api_group != RBAC_GROUP {
        return Err(malformed(format!(
            "roleRef.apiGroup must be {RBAC_GROUP}, not {:?}",
            role_ref.api_group
        )));
    }
    let ns = key.namespace.as_deref();
    let subjects = subjects.unwrap_or_default();
    if let Some(i) = subjects
        .iter()
        .position(|s| s.kind.is_empty() || s.name.is_empty())
    {
        return Err(malformed(format!("subjects[{i}] needs a kind and a name")));
    }
    let mut ids: Vec<Identity> = subjects
        .iter()
        .filter_map(|s| Identity::from_subject(&s.kind, &s.name, s.namespace.as_deref(), ns))
        .collect();
    ids.sort();
    ids.dedup();
    Ok(Object::Binding(Binding {
        key,
        role,
        subjects: ids,
    }))
}

pub const TOKEN_TYPE: &str = "kubernetes.io/service-account-token";
pub const SA_NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";

/// The ServiceAccount a token Secret issues a token for, if it is one. Reads
/// only `type` and metadata: the payload is never looked at.
pub fn token_secret_owner(secret: &Value) -> Option<Identity> {
    if secret.get("type").and_then(Value::as_str) != Some(TOKEN_TYPE) {
        return None;
    }
    let meta = secret.get("metadata")?;
    let ns = meta
        .get("namespace")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())?;
    let sa = meta
        .get("annotations")
        .and_then(|a| a.get(SA_NAME_ANNOTATION))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())?;
    Some(Identity::service_account(ns, sa))
}

/// A PolicyRule as the engine keeps it.
fn rule(r: &k8s_openapi::api::rbac::v1::PolicyRule) -> Rule {
    let v = |xs: &Option<Vec<String>>| -> Vec<Name> {
        xs.iter()
            .flatten()
            .map(|s| Name::from(s.as_str()))
            .collect()
    };
    Rule {
        verbs: r.verbs.iter().map(|s| Name::from(s.as_str())).collect(),
        api_groups: v(&r.api_groups),
        resources: v(&r.resources),
        resource_names: v(&r.resource_names),
        non_resource_urls: v(&r.non_resource_urls),
    }
}

/// `None` for an operator the API server would have refused.
fn label_selector(
    s: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
) -> Result<LabelSelector, String> {
    let mut requirements = Vec::new();
    for (k, v) in s.match_labels.iter().flatten() {
        requirements.push(Requirement::In(
            Name::from(k.as_str()),
            vec![Name::from(v.as_str())],
        ));
    }
    for e in s.match_expressions.iter().flatten() {
        let key = Name::from(e.key.as_str());
        let values: Vec<Name> = e
            .values
            .iter()
            .flatten()
            .map(|v| Name::from(v.as_str()))
            .collect();
        requirements.push(match e.operator.as_str() {
            "In" => Requirement::In(key, values),
            "NotIn" => Requirement::NotIn(key, values),
            "Exists" => Requirement::Exists(key),
            "DoesNotExist" => Requirement::DoesNotExist(key),
            other => return Err(format!("unknown label selector operator {other:?}")),
        });
    }
    Ok(LabelSelector { requirements })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn rolebinding_without_roleref_names_the_object() {
        let v = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "b", "namespace": "ns"}, "subjects": []});
        let err = convert(&v).unwrap_err().to_string();
        assert!(
            err.contains("RoleBinding ns/b") && err.contains("roleRef"),
            "{err}"
        );
    }

    #[test]
    fn nameless_objects_are_refused() {
        let v = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {}});
        assert!(
            convert(&v)
                .unwrap_err()
                .to_string()
                .contains("metadata.name is missing")
        );
    }

    #[test]
    fn invalid_policy_names_the_field() {
        let v = json!({"apiVersion": "sodguard.io/v1alpha1", "kind": "SoDPolicy",
            "metadata": {"name": "p"},
            "spec": {"duties": [{"name": "a", "permissions": [{"apiGroups": [""], "resources": ["x"], "verbs": ["get"]}]},
                                {"name": "a", "permissions": [{"apiGroups": [""], "resources": ["y"], "verbs": ["get"]}]}]}});
        match convert(&v).unwrap_err() {
            ConvertError::Invalid { error, .. } => assert_eq!(error.path, "spec.duties[1].name"),
            e => panic!("{e}"),
        }
        let v = json!({"apiVersion": "sodguard.io/v1alpha1", "kind": "SoDPolicy",
            "metadata": {"name": "p"}, "spec": {"duties": [], "maxDuties": "x"}});
        match convert(&v).unwrap_err() {
            ConvertError::Invalid { error, .. } => assert_eq!(error.path, "spec.maxDuties"),
            e => panic!("{e}"),
        }
    }

    #[test]
    fn unknown_kinds_are_not_errors() {
        let v = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}});
        assert!(convert(&v).unwrap().is_none());
    }
}

#[cfg(test)]
mod grant_tests {
    use serde_json::json;

    use super::*;

    fn grant(spec: Value) -> Value {
        json!({"apiVersion": "sodguard.io/v1alpha1", "kind": "AccessGrant",
            "metadata": {"name": "g", "namespace": "payments"}, "spec": spec})
    }

    #[test]
    fn an_access_grant_binds_its_role_in_its_namespace() {
        let v = grant(json!({
            "subject": {"kind": "ServiceAccount", "namespace": "payments", "name": "web"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
            "duration": "2h", "reason": "r", "requestedBy": "alice"}));
        let Some(Object::Grant(g)) = convert(&v).unwrap() else {
            panic!("not a grant")
        };
        assert_eq!(g.role.to_string(), "Role payments/reader");
        assert_eq!(
            g.binding_key().to_string(),
            "RoleBinding payments/sodguard-grant-g"
        );
        assert_eq!(g.duration, jiff::SignedDuration::from_hours(2));
    }

    #[test]
    fn invalid_grants_and_grant_policies_name_the_field() {
        let v = grant(json!({
            "subject": {"kind": "User", "name": "bob"},
            "roleRef": {"kind": "Secret", "name": "x"},
            "duration": "2h", "reason": "r", "requestedBy": "alice"}));
        match convert(&v).unwrap_err() {
            ConvertError::Invalid { error, .. } => assert_eq!(error.path, "spec.roleRef.kind"),
            e => panic!("{e}"),
        }
        let v = grant(json!({
            "subject": {"kind": "User", "name": "bob"},
            "roleRef": {"kind": "Role", "name": "x"},
            "duration": "soon", "reason": "r", "requestedBy": "alice"}));
        match convert(&v).unwrap_err() {
            ConvertError::Invalid { error, .. } => assert_eq!(error.path, "spec.duration"),
            e => panic!("{e}"),
        }
        let v = json!({"apiVersion": "sodguard.io/v1alpha1", "kind": "AccessGrantPolicy",
            "metadata": {"name": "p"},
            "spec": {"roles": ["r"], "maxDuration": "4h", "approverGroups": []}});
        match convert(&v).unwrap_err() {
            ConvertError::Invalid { error, .. } => assert_eq!(error.path, "spec.approverGroups"),
            e => panic!("{e}"),
        }
        let v = json!({"apiVersion": "sodguard.io/v1alpha1", "kind": "ClusterAccessGrant",
            "metadata": {"name": "c"},
            "spec": {"subject": {"kind": "User", "name": "bob"},
                "roleRef": {"kind": "Role", "name": "x"},
                "duration": "1h", "reason": "r", "requestedBy": "alice"}});
        match convert(&v).unwrap_err() {
            ConvertError::Invalid { error, .. } => assert_eq!(error.path, "spec.roleRef.kind"),
            e => panic!("{e}"),
        }
    }
}
