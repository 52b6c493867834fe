//! Kubernetes and sodguard objects as JSON values, and writing them to files.
//! The builders set only the fields every test needs; a test that needs more
//! sets them on the value it gets back.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tempfile::TempDir;

use super::manifest_dir;

pub const RBAC: &str = "rbac.authorization.k8s.io/v1";
const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
const SODGUARD: &str = "sodguard.io/v1alpha1";

/// One RBAC rule on core Secrets.
pub fn secrets_rule(verbs: &[&str]) -> Value {
    json!({"apiGroups": [""], "resources": ["secrets"], "verbs": verbs})
}

pub fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

pub fn service_account(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}})
}

pub fn config_map(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}})
}

/// A ServiceAccount as the subject of a binding or an exception.
pub fn sa(ns: &str, name: &str) -> Value {
    json!({"kind": "ServiceAccount", "name": name, "namespace": ns})
}

/// A Role; `rules` is a JSON list.
pub fn role(ns: &str, name: &str, rules: Value) -> Value {
    json!({"apiVersion": RBAC, "kind": "Role", "metadata": {"name": name, "namespace": ns},
           "rules": rules})
}

/// A ClusterRole; `rules` is a JSON list.
pub fn cluster_role(name: &str, rules: Value) -> Value {
    json!({"apiVersion": RBAC, "kind": "ClusterRole", "metadata": {"name": name}, "rules": rules})
}

/// A RoleBinding to a Role or ClusterRole (`role_kind`).
pub fn role_binding(
    ns: &str,
    name: &str,
    role_kind: &str,
    role: &str,
    subjects: &[Value],
) -> Value {
    json!({"apiVersion": RBAC, "kind": "RoleBinding", "metadata": {"name": name, "namespace": ns},
           "roleRef": {"apiGroup": RBAC_GROUP, "kind": role_kind, "name": role},
           "subjects": subjects})
}

pub fn cluster_role_binding(name: &str, role: &str, subjects: &[Value]) -> Value {
    json!({"apiVersion": RBAC, "kind": "ClusterRoleBinding", "metadata": {"name": name},
           "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role},
           "subjects": subjects})
}

/// A duty of a SoDPolicy; `permissions` is a JSON list of rules.
pub fn duty(name: &str, permissions: Value) -> Value {
    json!({"name": name, "permissions": permissions})
}

pub fn policy(name: &str, duties: &[Value], actions: &[&str]) -> Value {
    json!({"apiVersion": SODGUARD, "kind": "SoDPolicy", "metadata": {"name": name},
           "spec": {"duties": duties, "validationActions": actions}})
}

/// A policy with the two duties most tests use: `secret-admin` (writing
/// Secrets) and `secret-use` (reading them).
pub fn secret_policy(name: &str, actions: &[&str]) -> Value {
    policy(
        name,
        &[
            duty(
                "secret-admin",
                json!([secrets_rule(&[
                    "create",
                    "update",
                    "patch",
                    "delete",
                    "deletecollection"
                ])]),
            ),
            duty(
                "secret-use",
                json!([secrets_rule(&["get", "list", "watch"])]),
            ),
        ],
        actions,
    )
}

/// An SoDException requested by alice; `approvals` is a JSON list.
pub fn exception(
    name: &str,
    policy: &str,
    subject: Value,
    expires_at: &str,
    approvals: Value,
) -> Value {
    json!({"apiVersion": SODGUARD, "kind": "SoDException", "metadata": {"name": name},
           "spec": {"policy": policy, "subject": subject, "expiresAt": expires_at,
                    "justification": "j", "requestedBy": "alice", "approvals": approvals}})
}

/// A value as block YAML (serde-saphyr is a dependency of the crate).
pub fn to_yaml(v: &Value) -> String {
    serde_saphyr::to_string(v).expect("YAML serialisation")
}

/// Documents as one multi-document YAML stream.
pub fn yaml_stream(docs: &[Value]) -> String {
    docs.iter()
        .map(|d| format!("---\n{}", to_yaml(d)))
        .collect::<String>()
}

/// Writes `dir/name` (creating the folders it needs) and returns its path.
pub fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&p, bytes).unwrap();
    p
}

/// `docs` as `state.yaml` in a new temporary folder (gone when dropped).
pub fn fixture(docs: &[Value]) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "state.yaml", yaml_stream(docs));
    (dir, f)
}

/// `examples/`: a small cluster (`cluster/`) and its policies (`policies/`).
pub fn examples_dir() -> PathBuf {
    manifest_dir().join("examples")
}

/// The example manifests: those of `cluster/`, then those of `policies/`,
/// each in name order.
pub fn example_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["cluster", "policies"] {
        let mut fs: Vec<PathBuf> = std::fs::read_dir(examples_dir().join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        fs.sort();
        files.extend(fs);
    }
    assert!(files.len() >= 8, "examples missing: {files:?}");
    files
}
