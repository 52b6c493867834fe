//! The shapes the synthetic cluster is made of: names, Role templates whose
//! duties are known, rules with and without duties, the SoDPolicies and the
//! fixed ClusterRoles.

pub(crate) const SA_NAMES: [&str; 10] = [
    "default", "api", "web", "worker", "batch", "deployer", "monitor", "ci", "backup", "cache",
];

pub(crate) const NS_WORDS: [&str; 16] = [
    "checkout", "payments", "catalog", "search", "billing", "identity", "ledger", "media",
    "orders", "pricing", "profile", "reports", "shipping", "support", "tracking", "wallet",
];

/// A namespaced Role shape.
pub(crate) struct Tpl {
    pub(crate) name: &'static str,
    pub(crate) weight: u32,
    /// Grants a duty of the secret policy.
    pub(crate) secret: bool,
    pub(crate) rules: &'static str,
}

pub(crate) const TPL_SECRET_READER: usize = 4;

pub(crate) const TEMPLATES: [Tpl; 11] = [
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
pub(crate) const CONFLICTS: [(usize, usize); 3] = [(4, 5), (7, 9), (2, 8)];

/// Rules that grant no duty of any of the three policies.
pub(crate) const NEUTRAL_RULES: [&str; 14] = [
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
pub(crate) const DUTY_RULES: [&str; 8] = [
    "- apiGroups: [\"\"]\n  resources: [secrets]\n  verbs: [get, list]\n",
    "- apiGroups: [\"\"]\n  resources: [secrets]\n  verbs: [create, update]\n",
    "- apiGroups: [batch]\n  resources: [jobs]\n  verbs: [create]\n",
    "- apiGroups: [\"\"]\n  resources: [pods/exec]\n  verbs: [create]\n",
    "- apiGroups: [rbac.authorization.k8s.io]\n  resources: [rolebindings, roles]\n  verbs: [create, update]\n",
    "- apiGroups: [apps]\n  resources: [deployments]\n  verbs: [update, patch]\n",
    "- apiGroups: [example.com]\n  resources: [approvals]\n  verbs: [update]\n",
    "- apiGroups: [\"*\"]\n  resources: [\"*\"]\n  verbs: [get, list, watch]\n",
];

pub(crate) const PRODUCTS: [&str; 12] = [
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
pub(crate) const CR_ROLES: [&str; 6] = [
    "reader",
    "operator",
    "controller",
    "viewer",
    "agent",
    "manager",
];

pub(crate) const N_TEAM_AGGREGATORS: usize = 17;

pub(crate) const POLICIES: &str = r#"apiVersion: sodguard.io/v1alpha1
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
pub(crate) type ClusterRoleSpec = (String, Vec<(String, String)>, Option<String>, String);

/// Fixed ClusterRoles.
pub(crate) fn builtin_cluster_roles() -> Vec<ClusterRoleSpec> {
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

pub(crate) fn team_label(k: usize) -> String {
    format!("platform.example.com/aggregate-to-team-{k:02}")
}

pub(crate) fn team_aggregator(k: usize) -> String {
    format!("platform:team-{k:02}")
}
