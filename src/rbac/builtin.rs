//! What Kubernetes itself serves, for R12.2: a permission naming a verb,
//! group or resource outside this (and outside the CRDs of the state) can
//! never match a request, so a policy built on it protects nothing.
//!
//! The table is Kubernetes 1.33's, the version the CRDs target (the
//! `v1_33` feature of k8s-openapi in Cargo.toml): move both together.

/// The Kubernetes version of [`GROUPS`].
pub const KUBERNETES_VERSION: &str = "1.33";

/// Every verb the API server and the RBAC authorizer know (R12.2).
pub const VERBS: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
    "impersonate",
    "bind",
    "escalate",
    "use",
    "approve",
    "sign",
    "proxy",
    "*",
];

/// Built-in API groups and the resources each serves (subresources after a
/// slash). Includes what only authorization checks name (`users`, `groups`,
/// `signers`, the kubelet's `nodes/*`), since RBAC rules name them too.
pub const GROUPS: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "bindings",
            "componentstatuses",
            "configmaps",
            "endpoints",
            "events",
            "limitranges",
            "namespaces",
            "namespaces/finalize",
            "namespaces/status",
            "nodes",
            "nodes/configz",
            "nodes/healthz",
            "nodes/log",
            "nodes/metrics",
            "nodes/pods",
            "nodes/proxy",
            "nodes/spec",
            "nodes/stats",
            "nodes/status",
            "persistentvolumeclaims",
            "persistentvolumeclaims/status",
            "persistentvolumes",
            "persistentvolumes/status",
            "pods",
            "pods/attach",
            "pods/binding",
            "pods/ephemeralcontainers",
            "pods/eviction",
            "pods/exec",
            "pods/log",
            "pods/portforward",
            "pods/proxy",
            "pods/resize",
            "pods/status",
            "podtemplates",
            "replicationcontrollers",
            "replicationcontrollers/scale",
            "replicationcontrollers/status",
            "resourcequotas",
            "resourcequotas/status",
            "secrets",
            "serviceaccounts",
            "serviceaccounts/token",
            "services",
            "services/proxy",
            "services/status",
            // Impersonation (`impersonate` on users, groups, uids).
            "users",
            "groups",
        ],
    ),
    (
        "admissionregistration.k8s.io",
        &[
            "mutatingadmissionpolicies",
            "mutatingadmissionpolicybindings",
            "mutatingwebhookconfigurations",
            "validatingadmissionpolicies",
            "validatingadmissionpolicies/status",
            "validatingadmissionpolicybindings",
            "validatingwebhookconfigurations",
        ],
    ),
    (
        "apiextensions.k8s.io",
        &[
            "customresourcedefinitions",
            "customresourcedefinitions/status",
        ],
    ),
    (
        "apiregistration.k8s.io",
        &["apiservices", "apiservices/status"],
    ),
    (
        "apps",
        &[
            "controllerrevisions",
            "daemonsets",
            "daemonsets/status",
            "deployments",
            "deployments/scale",
            "deployments/status",
            "replicasets",
            "replicasets/scale",
            "replicasets/status",
            "statefulsets",
            "statefulsets/scale",
            "statefulsets/status",
        ],
    ),
    (
        "authentication.k8s.io",
        &["selfsubjectreviews", "tokenreviews", "userextras", "uids"],
    ),
    (
        "authorization.k8s.io",
        &[
            "localsubjectaccessreviews",
            "selfsubjectaccessreviews",
            "selfsubjectrulesreviews",
            "subjectaccessreviews",
        ],
    ),
    (
        "autoscaling",
        &[
            "horizontalpodautoscalers",
            "horizontalpodautoscalers/status",
        ],
    ),
    (
        "batch",
        &["cronjobs", "cronjobs/status", "jobs", "jobs/status"],
    ),
    (
        "certificates.k8s.io",
        &[
            "certificatesigningrequests",
            "certificatesigningrequests/approval",
            "certificatesigningrequests/status",
            "clustertrustbundles",
            "signers",
        ],
    ),
    ("coordination.k8s.io", &["leasecandidates", "leases"]),
    ("discovery.k8s.io", &["endpointslices"]),
    ("events.k8s.io", &["events"]),
    (
        "flowcontrol.apiserver.k8s.io",
        &[
            "flowschemas",
            "flowschemas/status",
            "prioritylevelconfigurations",
            "prioritylevelconfigurations/status",
        ],
    ),
    (
        "internal.apiserver.k8s.io",
        &["storageversions", "storageversions/status"],
    ),
    (
        "networking.k8s.io",
        &[
            "ingressclasses",
            "ingresses",
            "ingresses/status",
            "ipaddresses",
            "networkpolicies",
            "servicecidrs",
            "servicecidrs/status",
        ],
    ),
    ("node.k8s.io", &["runtimeclasses"]),
    (
        "policy",
        &["poddisruptionbudgets", "poddisruptionbudgets/status"],
    ),
    (
        "rbac.authorization.k8s.io",
        &[
            "clusterrolebindings",
            "clusterroles",
            "rolebindings",
            "roles",
        ],
    ),
    (
        "resource.k8s.io",
        &[
            "deviceclasses",
            "resourceclaims",
            "resourceclaims/status",
            "resourceclaimtemplates",
            "resourceslices",
        ],
    ),
    ("scheduling.k8s.io", &["priorityclasses"]),
    (
        "storage.k8s.io",
        &[
            "csidrivers",
            "csinodes",
            "csistoragecapacities",
            "storageclasses",
            "volumeattachments",
            "volumeattachments/status",
            "volumeattributesclasses",
        ],
    ),
    (
        "storagemigration.k8s.io",
        &[
            "storageversionmigrations",
            "storageversionmigrations/status",
        ],
    ),
];

/// Whether Kubernetes serves `group`.
pub fn has_group(group: &str) -> bool {
    GROUPS.iter().any(|(g, _)| *g == group)
}

/// The built-in resources of `group` (empty for an unknown group).
pub fn resources(group: &str) -> &'static [&'static str] {
    GROUPS
        .iter()
        .find(|(g, _)| *g == group)
        .map_or(&[], |(_, rs)| rs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_listed_once_and_resources_are_lowercase_plurals() {
        let mut seen = std::collections::BTreeSet::new();
        for (g, rs) in GROUPS {
            assert!(seen.insert(*g), "{g} twice");
            for r in *rs {
                assert_eq!(r.to_lowercase(), *r, "{g}/{r}");
            }
        }
        assert!(resources("").contains(&"secrets"));
        assert!(!has_group("core"));
    }
}
