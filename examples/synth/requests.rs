//! Admission requests for the benchmarks, chosen from a loaded synthetic
//! cluster so that they name Roles and ServiceAccounts that exist.

use std::collections::BTreeMap;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use sodguard::engine::{Operation, Request, UserInfo};
use sodguard::model::{Identity, Object};

/// The clock the benchmarks judge exceptions at (there are none: any fixed
/// time will do).
pub fn bench_now() -> jiff::Timestamp {
    "2026-01-15T12:00:00Z".parse().expect("a valid timestamp")
}

/// An admission request for `object` by an ordinary authenticated user, as
/// the API server sends it for a create or an update the engine judges on
/// the new object alone.
pub fn request(operation: Operation, object: Value) -> Request {
    let user = UserInfo {
        username: "alice@example.com".into(),
        groups: vec!["system:authenticated".into()],
    };
    Request {
        object: Some(object),
        ..Request::new(operation, user)
    }
}

/// A RoleBinding CREATE request binding ServiceAccount `ns/sa` to `kind/role`.
pub fn rolebinding_create(name: &str, ns: &str, sa: &str, kind: &str, role: &str) -> Request {
    request(
        Operation::Create,
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}],
        }),
    )
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
    let completing = completing_bindings(objects, &ns_roles);
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

/// (namespace, ServiceAccount, Role): ServiceAccounts bound alone to the
/// ClusterRole secret-writer or secret-reader in a namespace whose Role
/// `role` grants the other secret duty.
fn completing_bindings<'a>(
    objects: &'a [Object],
    ns_roles: &BTreeMap<&str, Vec<&str>>,
) -> Vec<(&'a str, &'a str, &'static str)> {
    let mut completing = Vec::new();
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
        let [Identity::ServiceAccount { namespace, name }] = b.subjects.as_slice() else {
            continue;
        };
        if namespace == ns && ns_roles.get(&**ns).is_some_and(|r| r.contains(&other)) {
            completing.push((&**ns, &**name, other));
        }
    }
    completing
}

/// Rarer, costlier admission requests, named: a ClusterRoleBinding that
/// names the group of all ServiceAccounts (every ServiceAccount is affected)
/// and UPDATEs of ClusterRoles that aggregation folds into `view` (hence
/// `edit` and `admin`) or into a team aggregator. All are allowed, but for
/// the ClusterRoleBinding of `edit` to every ServiceAccount.
pub fn heavy_requests(objects: &[Object]) -> Vec<(&'static str, Request)> {
    // A ClusterRoleBinding CREATE of ClusterRole `role` for every
    // ServiceAccount.
    let for_all_serviceaccounts = |role: &str| {
        request(
            Operation::Create,
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": format!("bench-all-serviceaccounts-{role}")},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:serviceaccounts"}],
            }),
        )
    };
    let mut out = vec![
        (
            "clusterrolebinding_group_all_serviceaccounts",
            for_all_serviceaccounts("view"),
        ),
        // Every ServiceAccount may then read and write Secrets, run Pods as
        // and impersonate every other one: each violates in every namespace.
        // The decision budget must end it (a denial), not the cluster's size.
        (
            "clusterrolebinding_group_all_serviceaccounts_edit",
            for_all_serviceaccounts("edit"),
        ),
    ];
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
        let labels: serde_json::Map<String, Value> = r
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
        out.push((name, request(Operation::Update, object)));
    }
    out
}
