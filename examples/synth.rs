//! Synthetic cluster generator and measurement driver for sodguard.
//!
//! ```text
//! cargo run --release --example synth -- --out DIR [--seed N] [--scale F]
//! cargo run --release --example synth -- --measure DIR [--iterations N] [--requests N]
//! ```
//!
//! `--out` writes a synthetic cluster as multi-document YAML files into DIR
//! (one set of files per kind, chunked at 10,000 documents per file). At
//! `--scale 1` it holds 5,000 Namespaces, 50,000 ServiceAccounts, 20,000
//! Roles, 500 ClusterRoles (20 of them aggregated), 100,000 RoleBindings,
//! 2,000 ClusterRoleBindings and 3 SoDPolicies. The output is a pure function
//! of `--seed` and `--scale`.
//!
//! Everything a ServiceAccount can hold comes from a small set of shapes whose
//! duties are known, so that the violations are planted rather than accidental:
//! the Roles of one namespace never conflict with each other, RoleBindings of
//! ServiceAccounts to ClusterRoles use ClusterRoles without any duty, and about
//! 0.5% of the ServiceAccounts are given a real secret-admin + secret-use
//! conflict (through the aggregated `edit`/`admin`, two ClusterRoles, a Role
//! and a ClusterRole, or a ClusterRoleBinding plus a RoleBinding). Another
//! 0.5% hold exactly one secret duty through a ClusterRole in a namespace whose
//! Role grants the other one: binding them to that Role is a request that must
//! be denied, which the benchmarks use.
//!
//! `--measure` loads a generated folder the way `sodguard check` does, and
//! prints the resident memory before and after building the index, the build
//! and evaluation times, and the latency distribution of admission reviews.
//!
//! This file is also compiled into `benches/engine.rs` as a module (through
//! `#[path]`), which is why it allows dead code.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use sodguard::decode::convert;
use sodguard::engine::index::Index;
use sodguard::engine::{self, Operation, Request, UserInfo};
use sodguard::model::Object;

// ---------------------------------------------------------------------------
// Configuration and summary
// ---------------------------------------------------------------------------

/// Documents per file: a RoleBinding file of 10,000 documents is about 5 MB.
pub const DOCS_PER_FILE: usize = 10_000;

#[derive(Debug, Clone, Copy)]
pub struct Config {
    pub seed: u64,
    pub scale: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            seed: 42,
            scale: 1.0,
        }
    }
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub namespaces: usize,
    pub service_accounts: usize,
    pub roles: usize,
    pub cluster_roles: usize,
    pub aggregated_cluster_roles: usize,
    pub role_bindings: usize,
    pub cluster_role_bindings: usize,
    pub policies: usize,
    /// ServiceAccounts given a real secret-admin + secret-use conflict.
    pub planted_secret: usize,
    /// ServiceAccounts given all three release-train duties.
    pub planted_release: usize,
    /// ServiceAccounts holding one secret duty, one binding away from both.
    pub half_secret: usize,
    pub files: usize,
    pub bytes: u64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "namespaces={} serviceaccounts={} roles={} clusterroles={} (aggregated {}) \
             rolebindings={} clusterrolebindings={} sodpolicies={} | planted: secret={} \
             release-train={} half-secret={} | files={} size={:.1} MiB",
            self.namespaces,
            self.service_accounts,
            self.roles,
            self.cluster_roles,
            self.aggregated_cluster_roles,
            self.role_bindings,
            self.cluster_role_bindings,
            self.policies,
            self.planted_secret,
            self.planted_release,
            self.half_secret,
            self.files,
            self.bytes as f64 / (1024.0 * 1024.0),
        )
    }
}

pub type Error = Box<dyn std::error::Error + Send + Sync>;

// ---------------------------------------------------------------------------
// Shapes
// ---------------------------------------------------------------------------

const SA_NAMES: [&str; 10] = [
    "default", "api", "web", "worker", "batch", "deployer", "monitor", "ci", "backup", "cache",
];

const NS_WORDS: [&str; 16] = [
    "checkout", "payments", "catalog", "search", "billing", "identity", "ledger", "media",
    "orders", "pricing", "profile", "reports", "shipping", "support", "tracking", "wallet",
];

/// A namespaced Role shape.
struct Tpl {
    name: &'static str,
    weight: u32,
    /// Grants a duty of the secret policy.
    secret: bool,
    rules: &'static str,
}

const TPL_SECRET_READER: usize = 4;
const TPL_SECRET_WRITER: usize = 5;

const TEMPLATES: [Tpl; 11] = [
    Tpl {
        name: "config-reader",
        weight: 20,
        secret: false,
        rules: "- apiGroups: [\"\"]\n  resources: [configmaps]\n  verbs: [get, list, watch]\n",
    },
    Tpl {
        name: "pod-manager",
        weight: 16,
        secret: false,
        rules: "- apiGroups: [\"\"]\n  resources: [pods]\n  verbs: [get, list, watch, create, delete]\n\
                - apiGroups: [\"\"]\n  resources: [pods/log]\n  verbs: [get]\n",
    },
    Tpl {
        // release-train: build + deploy (two duties, within maxDuties 2).
        name: "deployer",
        weight: 14,
        secret: false,
        rules: "- apiGroups: [apps]\n  resources: [deployments]\n  verbs: [get, list, watch, update, patch]\n\
                - apiGroups: [batch]\n  resources: [jobs]\n  verbs: [create, get, list]\n",
    },
    Tpl {
        name: "service-editor",
        weight: 10,
        secret: false,
        rules: "- apiGroups: [\"\"]\n  resources: [services, endpoints]\n  verbs: [get, list, watch, update, patch]\n\
                - apiGroups: [networking.k8s.io]\n  resources: [ingresses]\n  verbs: [get, list]\n",
    },
    Tpl {
        name: "secret-reader",
        weight: 9,
        secret: true,
        rules: "- apiGroups: [\"\"]\n  resources: [secrets]\n  verbs: [get, list, watch]\n\
                - apiGroups: [\"\"]\n  resources: [configmaps]\n  verbs: [get, list]\n",
    },
    Tpl {
        name: "secret-writer",
        weight: 6,
        secret: true,
        rules: "- apiGroups: [\"\"]\n  resources: [secrets]\n  verbs: [create, update, patch, delete]\n",
    },
    Tpl {
        // release-train: build.
        name: "job-runner",
        weight: 8,
        secret: false,
        rules: "- apiGroups: [batch]\n  resources: [jobs, cronjobs]\n  verbs: [create, get, list, watch, delete]\n",
    },
    Tpl {
        // rbac-admin-vs-workload: workload-exec.
        name: "debugger",
        weight: 5,
        secret: false,
        rules: "- apiGroups: [\"\"]\n  resources: [pods]\n  verbs: [get, list]\n\
                - apiGroups: [\"\"]\n  resources: [pods/exec, pods/portforward]\n  verbs: [create]\n",
    },
    Tpl {
        // release-train: approve.
        name: "release-approver",
        weight: 3,
        secret: false,
        rules: "- apiGroups: [example.com]\n  resources: [approvals]\n  verbs: [get, list, update]\n",
    },
    Tpl {
        // rbac-admin-vs-workload: access-admin.
        name: "access-manager",
        weight: 3,
        secret: false,
        rules: "- apiGroups: [rbac.authorization.k8s.io]\n  resources: [rolebindings]\n  verbs: [get, list, create, delete]\n",
    },
    Tpl {
        name: "autoscaler",
        weight: 6,
        secret: false,
        rules: "- apiGroups: [autoscaling]\n  resources: [horizontalpodautoscalers]\n  verbs: [get, list, update, patch]\n\
                - apiGroups: [apps]\n  resources: [deployments/scale]\n  verbs: [get, update]\n",
    },
];

/// Templates that must not meet in one namespace (they would conflict).
const CONFLICTS: [(usize, usize); 3] = [(4, 5), (7, 9), (2, 8)];

/// Rules that grant no duty of any of the three policies.
const NEUTRAL_RULES: [&str; 14] = [
    "- apiGroups: [\"\"]\n  resources: [events]\n  verbs: [get, list, watch]\n",
    "- apiGroups: [\"\"]\n  resources: [persistentvolumeclaims]\n  verbs: [get, list, create]\n",
    "- apiGroups: [\"\"]\n  resources: [endpoints]\n  verbs: [get]\n",
    "- apiGroups: [policy]\n  resources: [poddisruptionbudgets]\n  verbs: [get, list]\n",
    "- apiGroups: [coordination.k8s.io]\n  resources: [leases]\n  verbs: [get, create, update]\n",
    "- apiGroups: [metrics.k8s.io]\n  resources: [pods, nodes]\n  verbs: [get, list]\n",
    "- apiGroups: [\"\"]\n  resources: [nodes, namespaces]\n  verbs: [get, list, watch]\n",
    "- apiGroups: [monitoring.coreos.com]\n  resources: [servicemonitors, prometheusrules]\n  verbs: [get, list, watch, create, update]\n",
    "- apiGroups: [cert-manager.io]\n  resources: [certificates, certificaterequests]\n  verbs: [get, list, update]\n",
    "- apiGroups: [apiextensions.k8s.io]\n  resources: [customresourcedefinitions]\n  verbs: [get, list]\n",
    "- apiGroups: [storage.k8s.io]\n  resources: [storageclasses, volumeattachments]\n  verbs: [get, list, watch]\n",
    "- apiGroups: [\"\"]\n  resources: [configmaps]\n  verbs: [get]\n  resourceNames: [app-config, feature-flags]\n",
    "- nonResourceURLs: [/metrics, /healthz]\n  verbs: [get]\n",
    "- apiGroups: [apps]\n  resources: [deployments, statefulsets, daemonsets]\n  verbs: [get, list, watch]\n",
];

/// Rules that grant a duty: only in ClusterRoles bound to Users and Groups.
const DUTY_RULES: [&str; 8] = [
    "- apiGroups: [\"\"]\n  resources: [secrets]\n  verbs: [get, list]\n",
    "- apiGroups: [\"\"]\n  resources: [secrets]\n  verbs: [create, update]\n",
    "- apiGroups: [batch]\n  resources: [jobs]\n  verbs: [create]\n",
    "- apiGroups: [\"\"]\n  resources: [pods/exec]\n  verbs: [create]\n",
    "- apiGroups: [rbac.authorization.k8s.io]\n  resources: [rolebindings, roles]\n  verbs: [create, update]\n",
    "- apiGroups: [apps]\n  resources: [deployments]\n  verbs: [update, patch]\n",
    "- apiGroups: [example.com]\n  resources: [approvals]\n  verbs: [update]\n",
    "- apiGroups: [\"*\"]\n  resources: [\"*\"]\n  verbs: [get, list, watch]\n",
];

const PRODUCTS: [&str; 12] = [
    "prometheus",
    "grafana",
    "argo",
    "flux",
    "cert-manager",
    "ingress-nginx",
    "external-dns",
    "velero",
    "istio",
    "kyverno",
    "keda",
    "vault",
];
const CR_ROLES: [&str; 6] = [
    "reader",
    "operator",
    "controller",
    "viewer",
    "agent",
    "manager",
];

const N_TEAM_AGGREGATORS: usize = 17;

const POLICIES: &str = r#"apiVersion: sodguard.io/v1alpha1
kind: SoDPolicy
metadata:
  name: secret-admin-vs-secret-use
spec:
  description: A workload identity must not both administer Secrets and read them.
  duties:
  - name: secret-admin
    permissions:
    - apiGroups: ['']
      resources: [secrets]
      verbs: [create, update, patch, delete, deletecollection]
  - name: secret-use
    permissions:
    - apiGroups: ['']
      resources: [secrets]
      verbs: [get, list, watch]
  maxDuties: 1
  scope: Namespace
  subjects:
    kinds: [ServiceAccount]
    exclude:
    - kind: ServiceAccount
      namespace: kube-system
      name: '*'
    - kind: ServiceAccount
      namespace: sodguard-system
      name: '*'
  validationActions: [Deny]
  credentials:
    longLivedTokens: Warn
    maxAge: 720h
---
apiVersion: sodguard.io/v1alpha1
kind: SoDPolicy
metadata:
  name: release-train
spec:
  description: Nobody builds, approves and deploys a release alone.
  duties:
  - name: build
    permissions:
    - apiGroups: [batch]
      resources: [jobs]
      verbs: [create]
  - name: approve
    permissions:
    - apiGroups: [example.com]
      resources: [approvals]
      verbs: [update]
  - name: deploy
    permissions:
    - apiGroups: [apps]
      resources: [deployments]
      verbs: [update]
  maxDuties: 2
  scope: Namespace
  validationActions: [Deny]
---
apiVersion: sodguard.io/v1alpha1
kind: SoDPolicy
metadata:
  name: rbac-admin-vs-workload
spec:
  description: Whoever grants access must not also exec into workloads.
  duties:
  - name: access-admin
    permissions:
    - apiGroups: [rbac.authorization.k8s.io]
      resources: [rolebindings]
      verbs: [create]
  - name: workload-exec
    permissions:
    - apiGroups: ['']
      resources: [pods/exec]
      verbs: [create]
  maxDuties: 1
  scope: Namespace
  subjects:
    kinds: [ServiceAccount, User]
    exclude:
    - kind: ServiceAccount
      namespace: kube-system
      name: '*'
  validationActions: [Warn, Audit]
"#;

/// (name, labels, aggregation selectors as YAML, rules as YAML).
type ClusterRoleSpec = (String, Vec<(String, String)>, Option<String>, String);

/// Fixed ClusterRoles.
fn builtin_cluster_roles() -> Vec<ClusterRoleSpec> {
    let l = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let boot = ("kubernetes.io/bootstrapping", "rbac-defaults");
    let sel = |label: &str| format!("- matchLabels:\n    {label}: \"true\"\n");
    vec![
        (
            "cluster-admin".into(),
            l(&[boot]),
            None,
            "- apiGroups: [\"*\"]\n  resources: [\"*\"]\n  verbs: [\"*\"]\n\
             - nonResourceURLs: [\"*\"]\n  verbs: [\"*\"]\n"
                .into(),
        ),
        (
            "admin".into(),
            l(&[boot]),
            Some(sel("rbac.authorization.k8s.io/aggregate-to-admin")),
            String::new(),
        ),
        (
            "edit".into(),
            l(&[boot, ("rbac.authorization.k8s.io/aggregate-to-admin", "true")]),
            Some(sel("rbac.authorization.k8s.io/aggregate-to-edit")),
            String::new(),
        ),
        (
            "view".into(),
            l(&[boot, ("rbac.authorization.k8s.io/aggregate-to-edit", "true")]),
            Some(sel("rbac.authorization.k8s.io/aggregate-to-view")),
            String::new(),
        ),
        (
            "system:aggregate-to-admin".into(),
            l(&[boot, ("rbac.authorization.k8s.io/aggregate-to-admin", "true")]),
            None,
            "- apiGroups: [authorization.k8s.io]\n  resources: [localsubjectaccessreviews]\n  verbs: [create]\n\
             - apiGroups: [rbac.authorization.k8s.io]\n  resources: [rolebindings, roles]\n  \
             verbs: [create, delete, deletecollection, get, list, patch, update, watch]\n"
                .into(),
        ),
        (
            "system:aggregate-to-edit".into(),
            l(&[boot, ("rbac.authorization.k8s.io/aggregate-to-edit", "true")]),
            None,
            "- apiGroups: [\"\"]\n  resources: [pods/attach, pods/exec, pods/portforward, pods/proxy, secrets, services/proxy]\n  \
             verbs: [get, list, watch]\n\
             - apiGroups: [\"\"]\n  resources: [serviceaccounts]\n  verbs: [impersonate]\n\
             - apiGroups: [\"\"]\n  resources: [pods, pods/attach, pods/exec, pods/portforward, pods/proxy]\n  \
             verbs: [create, delete, deletecollection, patch, update]\n\
             - apiGroups: [\"\"]\n  resources: [configmaps, events, persistentvolumeclaims, secrets, serviceaccounts, services]\n  \
             verbs: [create, delete, deletecollection, patch, update]\n\
             - apiGroups: [apps]\n  resources: [daemonsets, deployments, deployments/scale, replicasets, statefulsets]\n  \
             verbs: [create, delete, deletecollection, patch, update]\n\
             - apiGroups: [batch]\n  resources: [cronjobs, jobs]\n  verbs: [create, delete, deletecollection, patch, update]\n"
                .into(),
        ),
        (
            "system:aggregate-to-view".into(),
            l(&[boot, ("rbac.authorization.k8s.io/aggregate-to-view", "true")]),
            None,
            "- apiGroups: [\"\"]\n  resources: [configmaps, endpoints, persistentvolumeclaims, pods, pods/log, services, events]\n  \
             verbs: [get, list, watch]\n\
             - apiGroups: [apps]\n  resources: [daemonsets, deployments, replicasets, statefulsets]\n  verbs: [get, list, watch]\n\
             - apiGroups: [batch]\n  resources: [cronjobs, jobs]\n  verbs: [get, list, watch]\n"
                .into(),
        ),
        (
            "system:basic-user".into(),
            l(&[boot]),
            None,
            "- apiGroups: [authorization.k8s.io]\n  resources: [selfsubjectaccessreviews, selfsubjectrulesreviews]\n  verbs: [create]\n"
                .into(),
        ),
        (
            "system:discovery".into(),
            l(&[boot]),
            None,
            "- nonResourceURLs: [/api, /api/*, /apis, /apis/*, /healthz, /livez, /openapi, /openapi/*, /readyz, /version, /version/]\n  verbs: [get]\n"
                .into(),
        ),
        (
            "system:public-info-viewer".into(),
            l(&[boot]),
            None,
            "- nonResourceURLs: [/healthz, /livez, /readyz, /version, /version/]\n  verbs: [get]\n".into(),
        ),
        (
            "secret-reader".into(),
            l(&[("app.kubernetes.io/part-of", "platform")]),
            None,
            "- apiGroups: [\"\"]\n  resources: [secrets]\n  verbs: [get, list, watch]\n".into(),
        ),
        (
            "secret-writer".into(),
            l(&[("app.kubernetes.io/part-of", "platform")]),
            None,
            "- apiGroups: [\"\"]\n  resources: [secrets]\n  verbs: [create, update, patch, delete]\n".into(),
        ),
        (
            "release-manager".into(),
            l(&[("app.kubernetes.io/part-of", "platform")]),
            None,
            "- apiGroups: [batch]\n  resources: [jobs]\n  verbs: [create]\n\
             - apiGroups: [example.com]\n  resources: [approvals]\n  verbs: [update]\n\
             - apiGroups: [apps]\n  resources: [deployments]\n  verbs: [update, patch]\n"
                .into(),
        ),
    ]
}

fn team_label(k: usize) -> String {
    format!("platform.example.com/aggregate-to-team-{k:02}")
}

fn team_aggregator(k: usize) -> String {
    format!("platform:team-{k:02}")
}

// ---------------------------------------------------------------------------
// YAML output
// ---------------------------------------------------------------------------

/// A plain YAML scalar when that is safe, else a double-quoted one.
fn q(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | '@'))
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
        );
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).expect("a string serialises")
    }
}

/// Documents of one kind, flushed to `prefix-NNN.yaml` every
/// [`DOCS_PER_FILE`] documents.
struct Chunked<'a> {
    dir: &'a Path,
    prefix: &'static str,
    buf: String,
    docs: usize,
    total: usize,
    file: usize,
    files: usize,
    bytes: u64,
}

impl<'a> Chunked<'a> {
    fn new(dir: &'a Path, prefix: &'static str) -> Self {
        Chunked {
            dir,
            prefix,
            buf: String::with_capacity(8 << 20),
            docs: 0,
            total: 0,
            file: 0,
            files: 0,
            bytes: 0,
        }
    }

    /// Starts a document; the caller writes its body into the returned buffer.
    fn doc(&mut self) -> Result<&mut String, Error> {
        if self.docs == DOCS_PER_FILE {
            self.flush()?;
        }
        if self.docs > 0 {
            self.buf.push_str("---\n");
        }
        self.docs += 1;
        self.total += 1;
        Ok(&mut self.buf)
    }

    fn flush(&mut self) -> Result<(), Error> {
        if self.docs == 0 {
            return Ok(());
        }
        let path = self
            .dir
            .join(format!("{}-{:03}.yaml", self.prefix, self.file));
        std::fs::write(&path, self.buf.as_bytes())?;
        self.bytes += self.buf.len() as u64;
        self.files += 1;
        self.file += 1;
        self.buf.clear();
        self.docs = 0;
        Ok(())
    }

    /// Flushes the rest; returns (documents, files, bytes).
    fn finish(mut self) -> Result<(usize, usize, u64), Error> {
        self.flush()?;
        Ok((self.total, self.files, self.bytes))
    }
}

/// Writes `metadata:` with the bookkeeping fields a `kubectl get -o yaml`
/// dump carries (except managedFields).
fn metadata(
    out: &mut String,
    rng: &mut SmallRng,
    name: &str,
    namespace: Option<&str>,
    labels: &[(String, String)],
) {
    let uid: u128 = rng.random();
    let rv: u32 = rng.random_range(1_000..90_000_000);
    let day = rng.random_range(1..=28);
    let month = rng.random_range(1..=12);
    let secs = rng.random_range(0..86_400);
    let _ = writeln!(out, "metadata:\n  name: {}", q(name));
    if let Some(ns) = namespace {
        let _ = writeln!(out, "  namespace: {}", q(ns));
    }
    let _ = writeln!(
        out,
        "  uid: {:08x}-{:04x}-{:04x}-{:04x}-{:012x}\n  resourceVersion: \"{rv}\"\n  \
         creationTimestamp: \"2025-{month:02}-{day:02}T{:02}:{:02}:{:02}Z\"",
        (uid >> 96) as u32,
        (uid >> 80) as u16,
        (uid >> 64) as u16,
        (uid >> 48) as u16,
        uid & 0xffff_ffff_ffff,
        secs / 3600,
        (secs / 60) % 60,
        secs % 60,
    );
    if !labels.is_empty() {
        out.push_str("  labels:\n");
        for (k, v) in labels {
            let _ = writeln!(out, "    {}: {}", q(k), q(v));
        }
    }
}

#[derive(Debug, Clone)]
enum Subj {
    /// `with_ns: false` leaves the namespace to the RoleBinding's (R1.2).
    Sa {
        ns: String,
        name: String,
        with_ns: bool,
    },
    User(String),
    Group(String),
}

#[allow(clippy::too_many_arguments)]
fn binding_doc(
    out: &mut String,
    rng: &mut SmallRng,
    namespace: Option<&str>,
    name: &str,
    role_kind: &str,
    role_name: &str,
    subjects: &[Subj],
    labels: &[(String, String)],
) {
    let kind = if namespace.is_some() {
        "RoleBinding"
    } else {
        "ClusterRoleBinding"
    };
    let _ = writeln!(
        out,
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: {kind}"
    );
    metadata(out, rng, name, namespace, labels);
    let _ = writeln!(
        out,
        "roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: {role_kind}\n  name: {}\nsubjects:",
        q(role_name)
    );
    for s in subjects {
        match s {
            Subj::Sa { ns, name, with_ns } => {
                let _ = writeln!(out, "- kind: ServiceAccount\n  name: {}", q(name));
                if *with_ns {
                    let _ = writeln!(out, "  namespace: {}", q(ns));
                }
            }
            Subj::User(u) => {
                let _ = writeln!(
                    out,
                    "- apiGroup: rbac.authorization.k8s.io\n  kind: User\n  name: {}",
                    q(u)
                );
            }
            Subj::Group(g) => {
                let _ = writeln!(
                    out,
                    "- apiGroup: rbac.authorization.k8s.io\n  kind: Group\n  name: {}",
                    q(g)
                );
            }
        }
    }
}

fn role_doc(
    out: &mut String,
    rng: &mut SmallRng,
    namespace: Option<&str>,
    name: &str,
    labels: &[(String, String)],
    aggregation: Option<&str>,
    rules: &str,
) {
    let kind = if namespace.is_some() {
        "Role"
    } else {
        "ClusterRole"
    };
    let _ = writeln!(
        out,
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: {kind}"
    );
    metadata(out, rng, name, namespace, labels);
    if let Some(sel) = aggregation {
        out.push_str("aggregationRule:\n  clusterRoleSelectors:\n");
        for line in sel.lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    if rules.is_empty() {
        out.push_str("rules: []\n");
    } else {
        out.push_str("rules:\n");
        out.push_str(rules);
    }
}

// ---------------------------------------------------------------------------
// The generator
// ---------------------------------------------------------------------------

fn scaled(base: usize, scale: f64, min: usize) -> usize {
    ((base as f64 * scale).round() as usize).max(min)
}

fn pick_weighted(rng: &mut SmallRng, weights: &[u32]) -> usize {
    let total: u32 = weights.iter().sum();
    let mut x = rng.random_range(0..total);
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    weights.len() - 1
}

/// Four compatible Role templates for one namespace.
fn namespace_templates(rng: &mut SmallRng) -> Vec<usize> {
    let weights: Vec<u32> = TEMPLATES.iter().map(|t| t.weight).collect();
    let mut chosen: Vec<usize> = Vec::with_capacity(4);
    while chosen.len() < 4 {
        let t = pick_weighted(rng, &weights);
        let clash = chosen.contains(&t)
            || CONFLICTS
                .iter()
                .any(|&(a, b)| (t == a && chosen.contains(&b)) || (t == b && chosen.contains(&a)));
        if !clash {
            chosen.push(t);
        }
    }
    chosen
}

/// Removes the files an earlier run wrote into `dir`.
fn clean(dir: &Path) -> Result<(), Error> {
    const PREFIXES: [&str; 7] = [
        "namespaces-",
        "serviceaccounts-",
        "roles-",
        "clusterroles-",
        "rolebindings-",
        "clusterrolebindings-",
        "sodpolicies-",
    ];
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.ends_with(".yaml") && PREFIXES.iter().any(|pre| name.starts_with(pre)) {
            std::fs::remove_file(&p)?;
        }
    }
    Ok(())
}

/// Writes the synthetic cluster into `dir` (created if needed).
pub fn generate(dir: &Path, cfg: &Config) -> Result<Summary, Error> {
    std::fs::create_dir_all(dir)?;
    clean(dir)?;
    let mut rng = SmallRng::seed_from_u64(cfg.seed);
    let s = cfg.scale;
    let n_ns = scaled(5_000, s, 2);
    let n_sa = n_ns * SA_NAMES.len();
    let n_rb = n_ns * 20;
    let n_users = scaled(1_000, s, 10);
    let builtin = builtin_cluster_roles();
    let n_cr = scaled(500, s, builtin.len() + N_TEAM_AGGREGATORS + 10);
    let n_crb = scaled(2_000, s, 20);

    let ns_names: Vec<String> = (0..n_ns)
        .map(|i| format!("{}-{i:04}", NS_WORDS[i % NS_WORDS.len()]))
        .collect();
    let ns_tpl: Vec<Vec<usize>> = (0..n_ns).map(|_| namespace_templates(&mut rng)).collect();
    let secret_tpl =
        |ns: usize| -> Option<usize> { ns_tpl[ns].iter().copied().find(|&t| TEMPLATES[t].secret) };
    let sa_ns = |sa: usize| sa / SA_NAMES.len();
    let sa_name = |sa: usize| SA_NAMES[sa % SA_NAMES.len()];
    let user = |rng: &mut SmallRng| format!("dev-{}@example.com", rng.random_range(0..n_users));

    // ---- who violates on purpose --------------------------------------------
    let mut order: Vec<usize> = (0..n_sa).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    let n_planted = ((n_sa as f64 * 0.005).round() as usize).max(1);
    let n_half = ((n_sa as f64 * 0.005).round() as usize).max(1);
    let n_release = ((n_sa as f64 * 0.001).round() as usize).max(1);
    let planted: Vec<usize> = order[..n_planted].to_vec();
    let release: Vec<usize> = order[n_planted..n_planted + n_release].to_vec();
    let half: Vec<usize> = order[n_planted + n_release..]
        .iter()
        .copied()
        .filter(|&sa| secret_tpl(sa_ns(sa)).is_some())
        .take(n_half)
        .collect();
    let half_set: HashSet<usize> = half.iter().copied().collect();

    // (namespace index, name, role kind, role name, subjects) of the special
    // RoleBindings, and the special ClusterRoleBindings.
    let mut extra_rb: Vec<(usize, String, &str, String, Vec<Subj>)> = Vec::new();
    let mut extra_crb: Vec<(String, String, Vec<Subj>)> = Vec::new();
    let sa_subj = |sa: usize| Subj::Sa {
        ns: ns_names[sa_ns(sa)].clone(),
        name: sa_name(sa).to_string(),
        with_ns: true,
    };
    for (i, &sa) in planted.iter().enumerate() {
        let ns = sa_ns(sa);
        let who = sa_name(sa);
        let p: f64 = rng.random();
        if p < 0.35 {
            extra_rb.push((
                ns,
                format!("{who}-edit"),
                "ClusterRole",
                "edit".into(),
                vec![sa_subj(sa)],
            ));
        } else if p < 0.50 {
            extra_rb.push((
                ns,
                format!("{who}-admin"),
                "ClusterRole",
                "admin".into(),
                vec![sa_subj(sa)],
            ));
        } else if p < 0.85 {
            match secret_tpl(ns) {
                Some(TPL_SECRET_READER) => {
                    extra_rb.push((
                        ns,
                        format!("{who}-secrets-read"),
                        "Role",
                        "secret-reader".into(),
                        vec![sa_subj(sa)],
                    ));
                    extra_rb.push((
                        ns,
                        format!("{who}-secrets-write"),
                        "ClusterRole",
                        "secret-writer".into(),
                        vec![sa_subj(sa)],
                    ));
                }
                Some(_) => {
                    extra_rb.push((
                        ns,
                        format!("{who}-secrets-write"),
                        "Role",
                        "secret-writer".into(),
                        vec![sa_subj(sa)],
                    ));
                    extra_rb.push((
                        ns,
                        format!("{who}-secrets-read"),
                        "ClusterRole",
                        "secret-reader".into(),
                        vec![sa_subj(sa)],
                    ));
                }
                None => {
                    extra_rb.push((
                        ns,
                        format!("{who}-secrets-read"),
                        "ClusterRole",
                        "secret-reader".into(),
                        vec![sa_subj(sa)],
                    ));
                    extra_rb.push((
                        ns,
                        format!("{who}-secrets-write"),
                        "ClusterRole",
                        "secret-writer".into(),
                        vec![sa_subj(sa)],
                    ));
                }
            }
        } else {
            // Reads Secrets everywhere, writes them in its own namespace.
            extra_crb.push((
                format!("secret-sync-{i}"),
                "secret-reader".into(),
                vec![sa_subj(sa)],
            ));
            extra_rb.push((
                ns,
                format!("{who}-secrets-write"),
                "ClusterRole",
                "secret-writer".into(),
                vec![sa_subj(sa)],
            ));
        }
    }
    for &sa in &release {
        let who = sa_name(sa);
        extra_rb.push((
            sa_ns(sa),
            format!("{who}-release-manager"),
            "ClusterRole",
            "release-manager".into(),
            vec![sa_subj(sa)],
        ));
    }
    for &sa in &half {
        let ns = sa_ns(sa);
        let who = sa_name(sa);
        // The opposite of the namespace's secret Role: binding it completes a conflict.
        let cr = if secret_tpl(ns) == Some(TPL_SECRET_READER) {
            "secret-writer"
        } else {
            "secret-reader"
        };
        extra_rb.push((
            ns,
            format!("{who}-{cr}-cluster"),
            "ClusterRole",
            cr.into(),
            vec![sa_subj(sa)],
        ));
    }

    // ---- ClusterRoles ---------------------------------------------------------
    let mut summary = Summary {
        planted_secret: planted.len(),
        planted_release: release.len(),
        half_secret: half.len(),
        ..Summary::default()
    };
    let mut crs = Chunked::new(dir, "clusterroles");
    // ClusterRoles without any duty: safe to bind to ServiceAccounts.
    let mut safe_crs: Vec<String> = vec!["view".into()];
    let mut all_crs: Vec<String> = Vec::new();
    for (name, labels, agg, rules) in &builtin {
        let out = crs.doc()?;
        role_doc(out, &mut rng, None, name, labels, agg.as_deref(), rules);
        all_crs.push(name.clone());
        if agg.is_some() {
            summary.aggregated_cluster_roles += 1;
        }
    }
    for k in 0..N_TEAM_AGGREGATORS {
        let mut sel = format!("- matchLabels:\n    {}: \"true\"\n", team_label(k));
        if k % 4 == 0 {
            sel.push_str(
                "- matchExpressions:\n  - key: platform.example.com/tier\n    operator: In\n    values: [read-only]\n  - key: platform.example.com/deprecated\n    operator: DoesNotExist\n",
            );
        }
        let mut labels = vec![(
            "app.kubernetes.io/part-of".to_string(),
            "platform".to_string(),
        )];
        // Some team roles aggregate into the next one: chains and, with the
        // last, a cycle that must be cut.
        if k % 5 == 0 {
            labels.push((team_label((k + 1) % N_TEAM_AGGREGATORS), "true".into()));
        }
        if k == N_TEAM_AGGREGATORS - 1 {
            labels.push((team_label(0), "true".into()));
        }
        let name = team_aggregator(k);
        let out = crs.doc()?;
        role_doc(out, &mut rng, None, &name, &labels, Some(&sel), "");
        summary.aggregated_cluster_roles += 1;
        safe_crs.push(name.clone());
        all_crs.push(name);
    }
    let n_custom = n_cr - builtin.len() - N_TEAM_AGGREGATORS;
    for i in 0..n_custom {
        let product = PRODUCTS[rng.random_range(0..PRODUCTS.len())];
        let role = CR_ROLES[rng.random_range(0..CR_ROLES.len())];
        let name = format!("{product}-{role}-{i:03}");
        let duty = rng.random_bool(0.15);
        let mut labels = vec![("app.kubernetes.io/part-of".to_string(), product.to_string())];
        let n_rules = rng.random_range(1..=4);
        let mut rules = String::new();
        for r in 0..n_rules {
            if duty && r == 0 {
                rules.push_str(DUTY_RULES[rng.random_range(0..DUTY_RULES.len())]);
            } else {
                rules.push_str(NEUTRAL_RULES[rng.random_range(0..NEUTRAL_RULES.len())]);
            }
        }
        if !duty {
            if rng.random_bool(0.4) {
                labels.push((
                    team_label(rng.random_range(0..N_TEAM_AGGREGATORS)),
                    "true".into(),
                ));
            }
            if rng.random_bool(0.1) {
                labels.push((
                    "rbac.authorization.k8s.io/aggregate-to-view".into(),
                    "true".into(),
                ));
            }
            let tier = if rng.random_bool(0.5) {
                "read-only"
            } else {
                "read-write"
            };
            labels.push(("platform.example.com/tier".into(), tier.into()));
            if rng.random_bool(0.05) {
                labels.push(("platform.example.com/deprecated".into(), "true".into()));
            }
            safe_crs.push(name.clone());
        }
        let out = crs.doc()?;
        role_doc(out, &mut rng, None, &name, &labels, None, &rules);
        all_crs.push(name);
    }
    let (n, files, bytes) = crs.finish()?;
    summary.cluster_roles = n;
    summary.files += files;
    summary.bytes += bytes;

    // ---- Namespaces, ServiceAccounts, Roles -----------------------------------
    let mut nss = Chunked::new(dir, "namespaces");
    let mut sas = Chunked::new(dir, "serviceaccounts");
    let mut roles = Chunked::new(dir, "roles");
    for (i, ns) in ns_names.iter().enumerate() {
        let team = ns.split('-').next().unwrap_or_default().to_string();
        let out = nss.doc()?;
        out.push_str("apiVersion: v1\nkind: Namespace\n");
        metadata(out, &mut rng, ns, None, &[("team".into(), team.clone())]);
        out.push_str("spec:\n  finalizers: [kubernetes]\nstatus:\n  phase: Active\n");
        for sa in SA_NAMES {
            let out = sas.doc()?;
            out.push_str("apiVersion: v1\nkind: ServiceAccount\n");
            metadata(out, &mut rng, sa, Some(ns), &[]);
        }
        for &t in &ns_tpl[i] {
            let tpl = &TEMPLATES[t];
            let mut rules = tpl.rules.to_string();
            for _ in 0..rng.random_range(0..=2) {
                rules.push_str(NEUTRAL_RULES[rng.random_range(0..NEUTRAL_RULES.len())]);
            }
            let out = roles.doc()?;
            let labels = [
                (
                    "app.kubernetes.io/managed-by".to_string(),
                    "Helm".to_string(),
                ),
                ("team".to_string(), team.clone()),
            ];
            role_doc(out, &mut rng, Some(ns), tpl.name, &labels, None, &rules);
        }
    }
    for c in [nss, sas, roles] {
        let prefix = c.prefix;
        let (n, files, bytes) = c.finish()?;
        match prefix {
            "namespaces" => summary.namespaces = n,
            "serviceaccounts" => summary.service_accounts = n,
            _ => summary.roles = n,
        }
        summary.files += files;
        summary.bytes += bytes;
    }

    // ---- RoleBindings ---------------------------------------------------------
    let mut rbs = Chunked::new(dir, "rolebindings");
    let mut per_ns_counter = vec![0u32; n_ns];
    let helm = [(
        "app.kubernetes.io/managed-by".to_string(),
        "Helm".to_string(),
    )];
    for (ns, name, kind, role, subjects) in &extra_rb {
        per_ns_counter[*ns] += 1;
        let out = rbs.doc()?;
        binding_doc(
            out,
            &mut rng,
            Some(&ns_names[*ns]),
            name,
            kind,
            role,
            subjects,
            &[],
        );
    }
    let n_normal = n_rb.saturating_sub(extra_rb.len());
    for i in 0..n_normal {
        let ns = i % n_ns;
        let nsname = &ns_names[ns];
        let r: f64 = rng.random();
        // The role: mostly one of the namespace's Roles, else a ClusterRole
        // without duties; a few point at nothing (R2.3).
        let (kind, role, tpl) = if rng.random_bool(0.002) {
            ("Role", "retired-role".to_string(), None)
        } else if rng.random_bool(0.8) {
            let t = ns_tpl[ns][rng.random_range(0..4)];
            ("Role", TEMPLATES[t].name.to_string(), Some(t))
        } else {
            (
                "ClusterRole",
                safe_crs[rng.random_range(0..safe_crs.len())].clone(),
                None,
            )
        };
        let secret = tpl.is_some_and(|t| TEMPLATES[t].secret);
        let subjects = if r < 0.95 {
            let n = if rng.random_bool(0.3) { 2 } else { 1 };
            let mut subjects = Vec::with_capacity(n);
            for _ in 0..n {
                let mut sa_ns_i = ns;
                if rng.random_bool(0.01) {
                    sa_ns_i = rng.random_range(0..n_ns);
                }
                let mut sa = sa_ns_i * SA_NAMES.len() + rng.random_range(0..SA_NAMES.len());
                // A half-violator must not get the Role that completes its conflict.
                while secret && half_set.contains(&sa) {
                    sa = sa_ns_i * SA_NAMES.len() + (sa + 1) % SA_NAMES.len();
                }
                let name = if rng.random_bool(0.003) {
                    // Names a ServiceAccount that does not exist (latent, R1.5).
                    format!("legacy-{}", rng.random_range(0..100))
                } else {
                    sa_name(sa).to_string()
                };
                subjects.push(Subj::Sa {
                    ns: ns_names[sa_ns_i].clone(),
                    name,
                    with_ns: sa_ns_i != ns || rng.random_bool(0.8),
                });
            }
            subjects
        } else if r < 0.975 {
            vec![Subj::Group(format!("system:serviceaccounts:{nsname}"))]
        } else {
            vec![Subj::User(user(&mut rng))]
        };
        // Groups reach every ServiceAccount of the namespace: never a secret Role.
        let (kind, role) = if secret && matches!(subjects[0], Subj::Group(_)) {
            ("ClusterRole", "view".to_string())
        } else {
            (kind, role)
        };
        per_ns_counter[ns] += 1;
        let name = format!("{}-{}", role.replace(':', "-"), per_ns_counter[ns]);
        let labels: &[(String, String)] = if rng.random_bool(0.6) { &helm } else { &[] };
        let out = rbs.doc()?;
        binding_doc(
            out,
            &mut rng,
            Some(nsname),
            &name,
            kind,
            &role,
            &subjects,
            labels,
        );
    }
    let (n, files, bytes) = rbs.finish()?;
    summary.role_bindings = n;
    summary.files += files;
    summary.bytes += bytes;

    // ---- ClusterRoleBindings ----------------------------------------------------
    let mut crbs = Chunked::new(dir, "clusterrolebindings");
    let boot = [(
        "kubernetes.io/bootstrapping".to_string(),
        "rbac-defaults".to_string(),
    )];
    let fixed: [(&str, &str, Vec<Subj>); 4] = [
        (
            "cluster-admin",
            "cluster-admin",
            vec![Subj::Group("system:masters".into())],
        ),
        (
            "system:basic-user",
            "system:basic-user",
            vec![Subj::Group("system:authenticated".into())],
        ),
        (
            "system:discovery",
            "system:discovery",
            vec![Subj::Group("system:authenticated".into())],
        ),
        (
            "system:public-info-viewer",
            "system:public-info-viewer",
            vec![
                Subj::Group("system:authenticated".into()),
                Subj::Group("system:unauthenticated".into()),
            ],
        ),
    ];
    for (name, role, subjects) in &fixed {
        let out = crbs.doc()?;
        binding_doc(
            out,
            &mut rng,
            None,
            name,
            "ClusterRole",
            role,
            subjects,
            &boot,
        );
    }
    for (name, role, subjects) in &extra_crb {
        let out = crbs.doc()?;
        binding_doc(
            out,
            &mut rng,
            None,
            name,
            "ClusterRole",
            role,
            subjects,
            &[],
        );
    }
    let n_rest = n_crb.saturating_sub(fixed.len() + extra_crb.len());
    for i in 0..n_rest {
        let r: f64 = rng.random();
        let (role, subjects) = if r < 0.9 {
            // People: any ClusterRole, now and then a very powerful one.
            let p: f64 = rng.random();
            let role = if p < 0.01 {
                "cluster-admin".to_string()
            } else if p < 0.04 {
                "admin".to_string()
            } else if p < 0.08 {
                "edit".to_string()
            } else if p < 0.13 {
                "view".to_string()
            } else {
                all_crs[rng.random_range(0..all_crs.len())].clone()
            };
            let subjects = if r < 0.7 {
                (0..rng.random_range(1..=3))
                    .map(|_| Subj::User(user(&mut rng)))
                    .collect()
            } else {
                vec![Subj::Group(format!(
                    "oidc:team-{}",
                    rng.random_range(0..50)
                ))]
            };
            (role, subjects)
        } else {
            // Controllers: a ServiceAccount with a ClusterRole without duties.
            let sa = rng.random_range(0..n_sa);
            (
                safe_crs[rng.random_range(0..safe_crs.len())].clone(),
                vec![sa_subj(sa)],
            )
        };
        let name = format!("{}-{i}", role.replace(':', "-"));
        let out = crbs.doc()?;
        binding_doc(
            out,
            &mut rng,
            None,
            &name,
            "ClusterRole",
            &role,
            &subjects,
            &[],
        );
    }
    let (n, files, bytes) = crbs.finish()?;
    summary.cluster_role_bindings = n;
    summary.files += files;
    summary.bytes += bytes;

    // ---- Policies ---------------------------------------------------------------
    let path = dir.join("sodpolicies-000.yaml");
    std::fs::write(&path, POLICIES)?;
    summary.policies = POLICIES.matches("kind: SoDPolicy").count();
    summary.files += 1;
    summary.bytes += POLICIES.len() as u64;
    Ok(summary)
}

// ---------------------------------------------------------------------------
// Loading and measuring
// ---------------------------------------------------------------------------

/// Parses every document under `dir` as `sodguard check` does (one file at a
/// time, the JSON values dropped after each file). Returns the objects and
/// the number of documents.
pub fn load_objects(dir: &Path) -> Result<(Vec<Object>, usize), Error> {
    let mut objects = Vec::new();
    let mut docs = 0;
    for file in sodguard::load::files(&[dir.to_path_buf()])? {
        for doc in sodguard::load::read_file(&file)? {
            docs += 1;
            if let Some(o) = convert(&doc.value).map_err(|e| format!("{}: {e}", doc.source))? {
                objects.push(o);
            }
        }
    }
    Ok((objects, docs))
}

/// `VmRSS` and `VmHWM` of this process, in KiB.
pub fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The clock the benchmarks judge exceptions at (there are none: any fixed
/// time will do).
pub fn bench_now() -> jiff::Timestamp {
    "2026-01-15T12:00:00Z".parse().expect("a valid timestamp")
}

/// A RoleBinding CREATE request binding ServiceAccount `ns/sa` to `kind/role`.
pub fn rolebinding_create(name: &str, ns: &str, sa: &str, kind: &str, role: &str) -> Request {
    Request {
        operation: Operation::Create,
        user_info: UserInfo {
            username: "alice@example.com".into(),
            groups: vec!["system:authenticated".into()],
        },
        object: Some(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}],
        })),
        old_object: None,
        dry_run: false,
        kind: None,
        resource: None,
        sub_resource: None,
        name: None,
        namespace: None,
    }
}

/// `n` RoleBinding CREATE requests, each binding an existing ServiceAccount
/// to an existing Role of its namespace. About a third complete a secret
/// conflict (a ServiceAccount that holds one secret duty through a
/// ClusterRole, bound to the namespace's Role with the other) and should be
/// denied; the rest bind random ServiceAccounts to random Roles.
pub fn prepare_requests(objects: &[Object], n: usize, seed: u64) -> Vec<Request> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut ns_roles: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut ns_sas: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for o in objects {
        match o {
            Object::Role(r) => {
                if let Some(ns) = &r.key.namespace {
                    ns_roles.entry(&**ns).or_default().push(&*r.key.name);
                }
            }
            Object::ServiceAccount { namespace, name } => {
                ns_sas.entry(&**namespace).or_default().push(&**name);
            }
            _ => {}
        }
    }
    // ServiceAccounts bound (alone) to ClusterRole secret-writer / secret-reader
    // in a namespace whose Role grants the other secret duty.
    let mut completing: Vec<(&str, &str, &str)> = Vec::new();
    for o in objects {
        let Object::Binding(b) = o else { continue };
        let (Some(ns), None) = (&b.key.namespace, &b.role.namespace) else {
            continue;
        };
        let other = match &*b.role.name {
            "secret-writer" => "secret-reader",
            "secret-reader" => "secret-writer",
            _ => continue,
        };
        let [sodguard::model::Identity::ServiceAccount { namespace, name }] = b.subjects.as_slice()
        else {
            continue;
        };
        if namespace == ns && ns_roles.get(&**ns).is_some_and(|r| r.contains(&other)) {
            completing.push((&**ns, &**name, other));
        }
    }
    let with_both: Vec<(&str, &Vec<&str>, &Vec<&str>)> = ns_sas
        .iter()
        .filter_map(|(ns, sas)| ns_roles.get(ns).map(|roles| (*ns, sas, roles)))
        .collect();
    assert!(
        !with_both.is_empty(),
        "no namespace with both Roles and ServiceAccounts"
    );
    (0..n)
        .map(|i| {
            let name = format!("bench-{i}");
            if i % 3 == 2 && !completing.is_empty() {
                let (ns, sa, role) = completing[rng.random_range(0..completing.len())];
                rolebinding_create(&name, ns, sa, "Role", role)
            } else {
                let (ns, sas, roles) = with_both[rng.random_range(0..with_both.len())];
                let sa = sas[rng.random_range(0..sas.len())];
                let role = roles[rng.random_range(0..roles.len())];
                rolebinding_create(&name, ns, sa, "Role", role)
            }
        })
        .collect()
}

/// Rarer, costlier admission requests, named: a ClusterRoleBinding that
/// names the group of all ServiceAccounts (every ServiceAccount is affected)
/// and UPDATEs of ClusterRoles that aggregation folds into `view` (hence
/// `edit` and `admin`) or into a team aggregator. All are allowed.
pub fn heavy_requests(objects: &[Object]) -> Vec<(&'static str, Request)> {
    let user = UserInfo {
        username: "alice@example.com".into(),
        groups: vec!["system:authenticated".into()],
    };
    let mut out = vec![(
        "clusterrolebinding_group_all_serviceaccounts",
        Request {
            operation: Operation::Create,
            user_info: user.clone(),
            object: Some(json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "bench-all-serviceaccounts-view"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:serviceaccounts"}],
            })),
            old_object: None,
            dry_run: false,
            kind: None,
            resource: None,
            sub_resource: None,
            name: None,
            namespace: None,
        },
    )];
    let member = |label: &str| {
        objects.iter().find_map(|o| match o {
            Object::Role(r)
                if r.key.namespace.is_none()
                    && r.aggregation.is_none()
                    && r.labels.keys().any(|k| k.starts_with(label)) =>
            {
                Some(r)
            }
            _ => None,
        })
    };
    let cases = [
        (
            "clusterrole_update_view_member",
            "rbac.authorization.k8s.io/aggregate-to-view",
        ),
        (
            "clusterrole_update_team_member",
            "platform.example.com/aggregate-to-team",
        ),
    ];
    for (name, label) in cases {
        let Some(r) = member(label) else { continue };
        let labels: serde_json::Map<String, serde_json::Value> = r
            .labels
            .iter()
            .map(|(k, v)| (k.to_string(), json!(&**v)))
            .collect();
        let object = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": &*r.key.name, "labels": labels},
            "rules": [
                {"apiGroups": [""], "resources": ["configmaps", "events"], "verbs": ["get", "list", "watch"]},
                {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list"]},
            ],
        });
        out.push((
            name,
            Request {
                operation: Operation::Update,
                user_info: user.clone(),
                object: Some(object),
                old_object: None,
                dry_run: false,
                kind: None,
                resource: None,
                sub_resource: None,
                name: None,
                namespace: None,
            },
        ));
    }
    out
}

/// Latency distribution of individual admission reviews.
#[derive(Debug, Clone)]
pub struct Latency {
    pub calls: usize,
    pub allowed: usize,
    pub denied: usize,
    pub mean: Duration,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub p999: Duration,
    pub max: Duration,
}

impl std::fmt::Display for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} reviews ({} allowed, {} denied): mean {:.1?} p50 {:.1?} p90 {:.1?} p99 {:.1?} p99.9 {:.1?} max {:.1?}",
            self.calls,
            self.allowed,
            self.denied,
            self.mean,
            self.p50,
            self.p90,
            self.p99,
            self.p999,
            self.max
        )
    }
}

/// Times `calls` individual `engine::review` calls, round-robin over `reqs`,
/// after one untimed pass to warm up.
pub fn measure_latency(index: &mut Index, reqs: &[Request], calls: usize) -> Latency {
    let now = bench_now();
    time_reviews(reqs, calls, |r| engine::review(index, r, now))
}

/// The same in live mode (R7.8) with something pending: judged on the
/// confirmed state before and the assumed state after; what an admitted
/// request adds is not kept, so that every call sees the same state.
pub fn measure_latency_live(
    confirmed: &Index,
    assumed: &mut Index,
    reqs: &[Request],
    calls: usize,
) -> Latency {
    let now = bench_now();
    time_reviews(reqs, calls, |r| {
        engine::review_against(Some(confirmed), assumed, r, now).0
    })
}

fn time_reviews(
    reqs: &[Request],
    calls: usize,
    mut review: impl FnMut(&Request) -> engine::Review,
) -> Latency {
    for r in reqs {
        std::hint::black_box(review(r));
    }
    let mut times = Vec::with_capacity(calls);
    let (mut allowed, mut denied) = (0, 0);
    for i in 0..calls {
        let r = &reqs[i % reqs.len()];
        let t = Instant::now();
        let review = review(r);
        let dt = t.elapsed();
        times.push(dt);
        if review.allowed {
            allowed += 1;
        } else {
            denied += 1;
        }
        std::hint::black_box(review);
    }
    let total: Duration = times.iter().sum();
    times.sort_unstable();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    Latency {
        calls,
        allowed,
        denied,
        mean: total / calls.max(1) as u32,
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        p999: at(0.999),
        max: *times.last().unwrap_or(&Duration::ZERO),
    }
}

/// Times 20,000 watch events, each timed alone: an update (apply) and the
/// update back (undo), as the watch delivers them one at a time.
fn time_events(index: &mut Index, make: impl Fn() -> Object) -> String {
    let mut times = Vec::with_capacity(20_000);
    for _ in 0..10_000 {
        let o = make();
        let t = Instant::now();
        let u = index.apply(o);
        times.push(t.elapsed());
        let t = Instant::now();
        index.undo(u);
        times.push(t.elapsed());
    }
    times.sort_unstable();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    format!(
        "p50 {:.2?} p99 {:.2?} p99.9 {:.2?} max {:.2?}",
        at(0.5),
        at(0.99),
        at(0.999),
        times[times.len() - 1]
    )
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Live heap bytes, counted by a global allocator that forwards to the
/// system allocator. It counts only in the `synth` example itself: when this
/// file is compiled into the benchmarks (crate `engine`) it is a plain
/// forwarder, so that the benchmarks time the same allocator as production.
pub mod heap {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering::Relaxed};

    const fn same(a: &str, b: &str) -> bool {
        let (a, b) = (a.as_bytes(), b.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        let mut i = 0;
        while i < a.len() {
            if a[i] != b[i] {
                return false;
            }
            i += 1;
        }
        true
    }

    pub const COUNTING: bool = same(env!("CARGO_CRATE_NAME"), "synth");

    /// Bytes requested and not yet freed.
    static LIVE: AtomicIsize = AtomicIsize::new(0);
    /// The same with glibc's chunk overhead: 8 bytes of header, rounded up to
    /// 16, at least 32 (an estimate of what the blocks really take).
    static CHUNKS: AtomicIsize = AtomicIsize::new(0);
    /// Live allocations.
    static BLOCKS: AtomicIsize = AtomicIsize::new(0);

    fn chunk(size: usize) -> isize {
        (size.saturating_add(8 + 15) & !15).max(32) as isize
    }

    /// Counting can be paused at run time (for timings).
    static ON: AtomicBool = AtomicBool::new(true);

    pub fn pause(paused: bool) {
        ON.store(!paused, Relaxed);
    }

    fn count(size: usize, sign: isize) {
        if COUNTING && ON.load(Relaxed) {
            LIVE.fetch_add(sign * size as isize, Relaxed);
            CHUNKS.fetch_add(sign * chunk(size), Relaxed);
            BLOCKS.fetch_add(sign, Relaxed);
        }
    }

    pub struct Counting;

    // SAFETY: every call is forwarded unchanged to `System`, which upholds
    // the `GlobalAlloc` contract; the counters have no effect on memory.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: forwarded with the caller's guarantees.
            let p = unsafe { System.alloc(layout) };
            if !p.is_null() {
                count(layout.size(), 1);
            }
            p
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // SAFETY: forwarded with the caller's guarantees.
            let p = unsafe { System.alloc_zeroed(layout) };
            if !p.is_null() {
                count(layout.size(), 1);
            }
            p
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.dealloc(ptr, layout) };
            count(layout.size(), -1);
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: forwarded with the caller's guarantees.
            let p = unsafe { System.realloc(ptr, layout, new_size) };
            if !p.is_null() {
                count(layout.size(), -1);
                count(new_size, 1);
            }
            p
        }
    }

    #[global_allocator]
    static GLOBAL: Counting = Counting;

    /// (bytes requested, bytes with chunk overhead, allocations) now live.
    pub fn live() -> (u64, u64, u64) {
        let g = |a: &AtomicIsize| a.load(Relaxed).max(0) as u64;
        (g(&LIVE), g(&CHUNKS), g(&BLOCKS))
    }
}

fn mib_b(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// `--measure DIR`: memory and time of loading, indexing, evaluating and
/// reviewing, printed to stdout.
fn measure(dir: &Path, calls: usize, n_requests: usize) -> Result<(), Error> {
    let (rss0, _) = rss_kib();
    let heap0 = heap::live();
    let t = Instant::now();
    let (objects, docs) = load_objects(dir)?;
    let t_load = t.elapsed();
    let (rss1, hwm1) = rss_kib();
    let heap1 = heap::live();
    println!(
        "load:     {docs} documents -> {} objects in {t_load:.2?}; VmRSS {:.1} MiB (VmHWM {:.1} MiB); \
         live heap of the parsed objects {:.1} MiB ({:.1} MiB with chunk overhead, {} blocks)",
        objects.len(),
        mib(rss1),
        mib(hwm1),
        mib_b(heap1.0 - heap0.0),
        mib_b(heap1.1 - heap0.1),
        heap1.2 - heap0.2,
    );
    // Requests are prepared before the objects go into the index.
    let reqs = prepare_requests(&objects, n_requests, 7);
    let heavy = heavy_requests(&objects);
    let heap_reqs = heap::live();

    let t = Instant::now();
    let mut index = Index::from_objects(objects);
    let t_build = t.elapsed();
    let (rss2, hwm2) = rss_kib();
    let heap2 = heap::live();
    println!(
        "index:    built in {t_build:.2?}; VmRSS {:.1} MiB (VmHWM {:.1} MiB); {:?}",
        mib(rss2),
        mib(hwm2),
        index.counts()
    );
    let idx = (
        heap2.0 - (heap_reqs.0 - heap1.0) - heap0.0,
        heap2.1 - (heap_reqs.1 - heap1.1) - heap0.1,
        heap2.2 - (heap_reqs.2 - heap1.2) - heap0.2,
    );
    if heap::COUNTING {
        println!(
            "memory:   index alone: live heap {:.1} MiB ({:.1} MiB with chunk overhead, {} blocks); \
             VmRSS grew {:.1} MiB from the start (parse garbage the allocator keeps included)",
            mib_b(idx.0),
            mib_b(idx.1),
            idx.2,
            mib(rss2.saturating_sub(rss0)),
        );
    }

    // A live server keeps a second copy, the assumed state (R7.8).
    let heap3 = heap::live();
    let mut assumed = index.clone();
    let heap4 = heap::live();
    if heap::COUNTING {
        println!(
            "memory:   the live server's assumed state, a clone of the index: live heap {:.1} MiB \
             ({:.1} MiB with chunk overhead); names are shared with the index",
            mib_b(heap4.0 - heap3.0),
            mib_b(heap4.1 - heap3.1),
        );
    }

    // Timings below run without the allocation counter.
    heap::pause(true);
    let now = bench_now();
    let t = Instant::now();
    let ev = engine::evaluate(&index, now);
    let t_eval = t.elapsed();
    let mut by_policy: BTreeMap<&str, usize> = BTreeMap::new();
    for v in &ev.violations {
        *by_policy.entry(&*v.policy).or_default() += 1;
    }
    let subjects: HashSet<&sodguard::model::Identity> =
        ev.violations.iter().map(|v| &v.subject).collect();
    println!(
        "evaluate: {} violations of {} subjects in {t_eval:.2?}; by policy {by_policy:?}",
        ev.violations.len(),
        subjects.len()
    );
    drop(ev);

    let lat = measure_latency(&mut index, &reqs, calls);
    println!("review:   {lat}");
    let lat = measure_latency_live(&index, &mut assumed, &reqs, calls);
    println!("review:   live (confirmed before, assumed after): {lat}");
    drop(assumed);
    for (name, req) in &heavy {
        let n = 5;
        let first = engine::review(&mut index, req, now);
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(engine::review(&mut index, req, now));
        }
        println!(
            "review:   {name}: {:.2?} each (allowed: {}, {} new violation(s))",
            t.elapsed() / n,
            first.allowed,
            first.violations.len()
        );
    }

    // Watch events: one RoleBinding and one Role update, applied and undone.
    let sample = index
        .bindings()
        .find(|b| b.key.namespace.is_some() && b.role.namespace.is_some())
        .cloned();
    if let Some(b) = sample {
        let mut b2 = b.clone();
        b2.subjects.push(sodguard::model::Identity::service_account(
            b.key.namespace.as_deref().unwrap_or_default(),
            "extra",
        ));
        let times = time_events(&mut index, || Object::Binding(b2.clone()));
        println!("update:   {} ({}) one watch event: {times}", b.key, b.role);
    }
    let sample = index
        .roles()
        .find(|r| r.role.key.namespace.is_some())
        .map(|r| r.role.clone());
    if let Some(mut r) = sample {
        let key = r.key.clone();
        r.rules.truncate(1);
        let times = time_events(&mut index, || Object::Role(r.clone()));
        println!("update:   {key} one watch event: {times}");
    }
    drop(index);
    let (rss3, _) = rss_kib();
    println!(
        "dropped:  VmRSS {:.1} MiB after dropping the index (the allocator keeps freed pages)",
        mib(rss3)
    );
    Ok(())
}

/// `--measure DIR --breakdown`: the live heap of an index built from each
/// kind's files alone (names shared between kinds are counted in each).
fn memory_breakdown(dir: &Path) -> Result<(), Error> {
    let groups: [(&str, &[&str]); 4] = [
        (
            "Namespaces + ServiceAccounts",
            &["namespaces-", "serviceaccounts-"],
        ),
        (
            "Roles + ClusterRoles (+ SoDPolicies)",
            &["roles-", "clusterroles-", "sodpolicies-"],
        ),
        (
            "RoleBindings + ClusterRoleBindings",
            &["rolebindings-", "clusterrolebindings-"],
        ),
        ("everything", &[""]),
    ];
    let all = sodguard::load::files(&[dir.to_path_buf()])?;
    for (label, prefixes) in groups {
        let before = heap::live();
        let mut objects = Vec::new();
        for f in &all {
            let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if !prefixes.iter().any(|p| name.starts_with(p)) {
                continue;
            }
            for doc in sodguard::load::read_file(f)? {
                if let Some(o) = convert(&doc.value).map_err(|e| format!("{}: {e}", doc.source))? {
                    objects.push(o);
                }
            }
        }
        let n = objects.len();
        let parsed = heap::live();
        let index = Index::from_objects(objects);
        let after = heap::live();
        println!(
            "{label:<38} {n:>7} objects: parsed {:>6.1} MiB, index {:>6.1} MiB live heap \
             ({:>6.1} MiB with chunk overhead, {:>7} blocks)",
            mib_b(parsed.0.saturating_sub(before.0)),
            mib_b(after.0.saturating_sub(before.0)),
            mib_b(after.1.saturating_sub(before.1)),
            after.2.saturating_sub(before.2),
        );
        drop(index);
    }
    Ok(())
}

fn usage() -> ! {
    eprintln!(
        "usage: synth --out DIR [--seed N] [--scale F]\n       \
         synth --measure DIR [--iterations N] [--requests N]\n       \
         synth --measure DIR --breakdown"
    );
    std::process::exit(2)
}

fn main() {
    let mut out: Option<PathBuf> = None;
    let mut measure_dir: Option<PathBuf> = None;
    let mut cfg = Config::default();
    let mut calls = 100_000;
    let mut n_requests = 300;
    let mut breakdown = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--out" => out = Some(val().into()),
            "--measure" => measure_dir = Some(val().into()),
            "--seed" => cfg.seed = val().parse().unwrap_or_else(|_| usage()),
            "--scale" => cfg.scale = val().parse().unwrap_or_else(|_| usage()),
            "--iterations" => calls = val().parse().unwrap_or_else(|_| usage()),
            "--requests" => n_requests = val().parse().unwrap_or_else(|_| usage()),
            "--breakdown" => breakdown = true,
            "-h" | "--help" => usage(),
            _ => usage(),
        }
    }
    let result = match (out, measure_dir) {
        (Some(dir), None) => {
            if !(cfg.scale > 0.0 && cfg.scale.is_finite()) {
                usage()
            }
            let t = Instant::now();
            generate(&dir, &cfg).map(|s| println!("{s} | {:.2?} -> {}", t.elapsed(), dir.display()))
        }
        (None, Some(dir)) if breakdown => memory_breakdown(&dir),
        (None, Some(dir)) => measure(&dir, calls, n_requests),
        _ => usage(),
    };
    if let Err(e) = result {
        eprintln!("synth: {e}");
        std::process::exit(1);
    }
}
