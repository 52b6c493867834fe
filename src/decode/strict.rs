//! Policy hygiene on the JSON of sodguard's own kinds (R12.1, R12.2):
//! what serde's defaults would silently accept. `excludes:` for `exclude:`
//! deserialises to "no exclusions"; `resources: [secret]` compiles to a
//! permission no request can match. Offline these are refused or warned
//! about (`load`); the webhook warns (`admission`).

use std::collections::BTreeSet;
use std::sync::OnceLock;

use kube::CustomResourceExt;
use serde_json::Value;

use crate::crd::{self, SoDException, SoDPolicy};
use crate::rbac::builtin;

/// sodguard's API group.
pub const GROUP: &str = crd::GROUP;

/// The versions of sodguard's group this build reads.
pub const VERSIONS: &[&str] = &["v1alpha1"];

/// The kinds of sodguard's group this build reads.
pub const KINDS: &[&str] = &["SoDPolicy", "SoDException"];

/// Why a document of sodguard's group cannot be read at all: a version this
/// build does not serve (read as v1alpha1 it could mean something else), or
/// a kind spelled differently from one of [`KINDS`]. `None` otherwise.
pub fn group_mismatch(api_version: &str, kind: &str) -> Option<String> {
    let (group, version) = api_version.rsplit_once('/')?;
    if group != crd::GROUP {
        return None;
    }
    if !VERSIONS.contains(&version) {
        return Some(format!(
            "apiVersion {api_version:?}: this sodguard reads {} only",
            VERSIONS
                .iter()
                .map(|v| format!("{}/{v}", crd::GROUP))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if let Some(k) = KINDS
        .iter()
        .find(|k| !KINDS.contains(&kind) && k.eq_ignore_ascii_case(kind))
    {
        return Some(format!(
            "kind {kind:?} is not a kind of {}: did you mean {k}?",
            crd::GROUP
        ));
    }
    None
}

/// The paths of the fields of a SoDPolicy or SoDException that its schema
/// does not know (as `kubectl apply --validate=strict` reports them), in
/// document order. Empty for other kinds.
pub fn unknown_fields(v: &Value) -> Vec<String> {
    let Some(schema) = schema_of(v) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let Some(obj) = v.as_object() else {
        return out;
    };
    for (k, child) in obj {
        match k.as_str() {
            "apiVersion" | "kind" => {}
            "metadata" => {
                if let Some(m) = child.as_object() {
                    for key in m.keys() {
                        if !OBJECT_META.contains(&key.as_str()) {
                            out.push(format!("metadata.{key}"));
                        }
                    }
                }
            }
            _ => match schema.get("properties").and_then(|p| p.get(k)) {
                Some(s) => walk(s, child, k, &mut out),
                None => out.push(k.clone()),
            },
        }
    }
    out
}

/// The fields of ObjectMeta (metadata is not in a CRD's schema).
const OBJECT_META: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

fn schema_of(v: &Value) -> Option<&'static Value> {
    static SCHEMAS: OnceLock<Vec<(&'static str, Value)>> = OnceLock::new();
    let tm = super::TypeMeta::of(v);
    if tm.group() != crd::GROUP {
        return None;
    }
    let schemas = SCHEMAS.get_or_init(|| {
        let of = |crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition| {
            crd.spec
                .versions
                .first()
                .and_then(|v| v.schema.as_ref())
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .and_then(|s| serde_json::to_value(s).ok())
                .unwrap_or(Value::Null)
        };
        vec![
            ("SoDPolicy", of(SoDPolicy::crd())),
            ("SoDException", of(SoDException::crd())),
        ]
    });
    schemas.iter().find(|(k, _)| *k == tm.kind).map(|(_, s)| s)
}

fn walk(schema: &Value, v: &Value, path: &str, out: &mut Vec<String>) {
    let preserve = schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if preserve {
        return;
    }
    match v {
        Value::Object(m) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            for (k, child) in m {
                let p = format!("{path}.{k}");
                match (props.and_then(|ps| ps.get(k)), additional) {
                    (Some(s), _) => walk(s, child, &p, out),
                    (None, Some(Value::Object(_))) => {
                        walk(additional.unwrap_or(&Value::Null), child, &p, out)
                    }
                    (None, Some(Value::Bool(true))) => {}
                    // A schema that says nothing of its fields (a free
                    // object) cannot call one unknown.
                    (None, _) if props.is_none() => {}
                    (None, _) => out.push(p),
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, child) in items.iter().enumerate() {
                    walk(s, child, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// The (group, resource) pairs a CustomResourceDefinition document serves,
/// with the subresources it declares.
pub fn crd_serves(v: &Value) -> Vec<(String, String)> {
    let tm = super::TypeMeta::of(v);
    if tm.kind != "CustomResourceDefinition" || tm.group() != "apiextensions.k8s.io" {
        return Vec::new();
    }
    let spec = &v["spec"];
    let (Some(group), Some(plural)) = (spec["group"].as_str(), spec["names"]["plural"].as_str())
    else {
        return Vec::new();
    };
    let mut out = vec![(group.to_string(), plural.to_string())];
    for version in spec["versions"].as_array().into_iter().flatten() {
        if let Some(subs) = version["subresources"].as_object() {
            for sub in subs.keys() {
                out.push((group.to_string(), format!("{plural}/{sub}")));
            }
        }
    }
    out
}

/// The groups and resources the state serves besides Kubernetes' own.
#[derive(Debug, Clone, Default)]
pub struct Served {
    pub extra: BTreeSet<(String, String)>,
    /// Whether groups Kubernetes does not serve may still be served: the
    /// webhook's state holds no CustomResourceDefinitions, so there only
    /// what is wrong within Kubernetes' own groups can be told.
    pub any_other_group: bool,
}

impl Served {
    /// What the webhook can judge without the CRDs of the cluster.
    pub fn without_crds() -> Self {
        Served {
            extra: BTreeSet::new(),
            any_other_group: true,
        }
    }

    fn has_group(&self, g: &str) -> bool {
        builtin::has_group(g)
            || (self.any_other_group && may_be_custom(g))
            || self.extra.iter().any(|(eg, _)| eg == g)
    }

    /// Whether `group` serves `resource` (`*`, `x/*` and `*/sub` as RBAC
    /// reads them).
    fn serves(&self, group: &str, resource: &str) -> bool {
        let (base, sub) = match resource.split_once('/') {
            Some((b, s)) => (b, Some(s)),
            None => (resource, None),
        };
        let fits = |r: &str| {
            let (rb, rs) = match r.split_once('/') {
                Some((b, s)) => (b, Some(s)),
                None => (r, None),
            };
            (base == "*" || base == rb)
                && match (sub, rs) {
                    (None, None) => true,
                    (Some("*"), Some(_)) => true,
                    (Some(s), Some(x)) => s == x,
                    _ => false,
                }
        };
        if self.any_other_group && (group == "*" || may_be_custom(group)) {
            return true;
        }
        let all_groups = group == "*";
        let builtin = builtin::GROUPS
            .iter()
            .filter(|(g, _)| all_groups || *g == group)
            .any(|(_, rs)| rs.iter().any(|r| fits(r)));
        builtin
            || self
                .extra
                .iter()
                .any(|(g, r)| (all_groups || g == group) && fits(r))
    }
}

/// Whether a CustomResourceDefinition could serve `group`: the API server
/// requires a domain with a dot (so never `core` or `v1`).
fn may_be_custom(group: &str) -> bool {
    group.contains('.') && !builtin::has_group(group)
}

/// R12.2: the permissions of a SoDPolicy document that can never match a
/// request, each message naming its field. Empty for other kinds.
pub fn impossible_permissions(v: &Value, served: &Served) -> Vec<String> {
    let tm = super::TypeMeta::of(v);
    if tm.group() != crd::GROUP || tm.kind != "SoDPolicy" {
        return Vec::new();
    }
    let mut out = Vec::new();
    let strings = |p: &Value, k: &str| -> Vec<String> {
        p[k].as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    };
    for (d, duty) in v["spec"]["duties"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        for (i, p) in duty["permissions"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let at = format!("spec.duties[{d}].permissions[{i}]");
            for (j, verb) in strings(p, "verbs").iter().enumerate() {
                if !builtin::VERBS.contains(&verb.as_str()) {
                    out.push(format!(
                        "{at}.verbs[{j}]: {verb:?} is not a Kubernetes verb ({})",
                        builtin::VERBS.join(" ")
                    ));
                }
            }
            let groups = strings(p, "apiGroups");
            let resources = strings(p, "resources");
            let mut known_groups = Vec::new();
            for (j, g) in groups.iter().enumerate() {
                if g == "*" || served.has_group(g) {
                    known_groups.push(g.as_str());
                    continue;
                }
                let hint = if g == "core" || g == "v1" {
                    " (the core group is written \"\")"
                } else {
                    ""
                };
                out.push(format!(
                    "{at}.apiGroups[{j}]: {g:?} is served neither by Kubernetes {} nor by a CustomResourceDefinition in the input{hint}",
                    builtin::KUBERNETES_VERSION
                ));
            }
            if known_groups.is_empty() {
                continue;
            }
            for (j, r) in resources.iter().enumerate() {
                if r == "*" || known_groups.iter().any(|g| served.serves(g, r)) {
                    continue;
                }
                let plural = format!("{r}s");
                let hint = if known_groups.iter().any(|g| served.serves(g, &plural)) {
                    format!(" (did you mean {plural:?}?)")
                } else {
                    String::new()
                };
                out.push(format!(
                    "{at}.resources[{j}]: no group listed in apiGroups serves {r:?} in Kubernetes {} or a CustomResourceDefinition in the input{hint}",
                    builtin::KUBERNETES_VERSION
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn policy(spec: Value) -> Value {
        json!({"apiVersion": "sodguard.io/v1alpha1", "kind": "SoDPolicy",
            "metadata": {"name": "p", "labels": {"a": "b"}}, "spec": spec})
    }

    #[test]
    fn unknown_fields_are_named_by_path() {
        let v = policy(json!({
            "duties": [{"name": "a", "permissions": [{"verbs": ["get"], "resource": ["x"]}]}],
            "subjects": {"excludes": []},
        }));
        assert_eq!(
            unknown_fields(&v),
            vec![
                "spec.duties[0].permissions[0].resource",
                "spec.subjects.excludes"
            ]
        );
        let mut v = v;
        v["metadata"]["lables"] = json!({});
        v["extra"] = json!(1);
        assert!(unknown_fields(&v).contains(&"metadata.lables".to_string()));
        assert!(unknown_fields(&v).contains(&"extra".to_string()));
    }

    #[test]
    fn known_fields_pass() {
        let v = policy(json!({
            "description": "d",
            "duties": [{"name": "a", "match": "All", "permissions": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["x"]}]}],
            "subjects": {"exclude": [{"kind": "ServiceAccount", "name": "x"}]},
        }));
        assert_eq!(unknown_fields(&v), Vec::<String>::new());
    }

    #[test]
    fn impossible_permissions_name_the_field() {
        let v = policy(json!({"duties": [{"name": "a", "permissions": [
            {"apiGroups": [""], "resources": ["secret", "secrets", "pods/exec", "*"], "verbs": ["lsit", "get", "*"]},
            {"apiGroups": ["core"], "resources": ["secrets"], "verbs": ["get"]},
            {"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get"]},
        ]}]}));
        let w = impossible_permissions(&v, &Served::default());
        assert_eq!(w.len(), 4, "{w:#?}");
        assert!(w[0].starts_with("spec.duties[0].permissions[0].verbs[0]"));
        assert!(
            w[1].starts_with("spec.duties[0].permissions[0].resources[0]")
                && w[1].contains("\"secrets\"?")
        );
        assert!(w[2].starts_with("spec.duties[0].permissions[1].apiGroups[0]"));
        assert!(w[3].starts_with("spec.duties[0].permissions[2].apiGroups[0]"));
        let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "spec": {"group": "example.com", "names": {"plural": "widgets"}, "versions": [{"subresources": {"status": {}}}]}});
        let served = Served {
            extra: crd_serves(&crd).into_iter().collect(),
            any_other_group: false,
        };
        assert_eq!(impossible_permissions(&v, &served).len(), 3);
        // Without the CRDs, only Kubernetes' own groups are judged.
        assert_eq!(impossible_permissions(&v, &Served::without_crds()).len(), 3);
    }

    #[test]
    fn versions_and_kinds_of_the_group() {
        assert!(group_mismatch("sodguard.io/v1", "SoDPolicy").is_some());
        assert!(group_mismatch("sodguard.io/v1beta7", "SoDPolicy").is_some());
        assert!(
            group_mismatch("sodguard.io/v1alpha1", "SodPolicy")
                .unwrap()
                .contains("SoDPolicy")
        );
        assert!(group_mismatch("sodguard.io/v1alpha1", "SoDPolicy").is_none());
        assert!(group_mismatch("example.com/v1", "SodPolicy").is_none());
    }
}
