use std::collections::HashMap;
use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::decode::convert;
use crate::engine::evaluate;

fn now() -> Timestamp {
    "2026-11-28T12:00:00Z".parse().unwrap()
}

fn index(objs: &[Value]) -> Index {
    Index::from_objects(objs.iter().map(|o| convert(o).unwrap().unwrap()))
}

fn policy(name: &str, extra: Value) -> Value {
    let mut spec = json!({
        "duties": [
            {"name": "read", "permissions": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}]},
            {"name": "write", "permissions": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["update"]}]},
        ],
        "validationActions": ["Audit"],
        "useTime": {"action": "Deny"},
    });
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    json!({"apiVersion": "sodguard.io/v1alpha1", "kind": "SoDPolicy", "metadata": {"name": name}, "spec": spec})
}

fn sa(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}})
}

fn cluster_role(name: &str, verb: &str, resource: &str) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name},
           "rules": [{"apiGroups": [""], "resources": [resource], "verbs": [verb]}]})
}

fn rb(ns: &str, name: &str, role: &str, subject: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": name, "namespace": ns},
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
           "subjects": [subject]})
}

fn crb(name: &str, role: &str, subject: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
           "subjects": [subject]})
}

fn sa_subject(ns: &str, name: &str) -> Value {
    json!({"kind": "ServiceAccount", "name": name, "namespace": ns})
}

fn roles() -> Vec<Value> {
    vec![
        cluster_role("reader", "get", "secrets"),
        cluster_role("writer", "update", "secrets"),
        cluster_role("pod-creator", "create", "pods"),
    ]
}

/// pay/api reads and writes Secrets in pay (a violation); pay/innocent
/// only reads them.
fn base(policy_extra: Value) -> Vec<Value> {
    let mut objs = roles();
    objs.extend([
        policy("p", policy_extra),
        sa("pay", "api"),
        sa("pay", "innocent"),
        rb("pay", "api-read", "reader", sa_subject("pay", "api")),
        rb("pay", "api-write", "writer", sa_subject("pay", "api")),
        rb(
            "pay",
            "innocent-read",
            "reader",
            sa_subject("pay", "innocent"),
        ),
    ]);
    objs
}

fn sa_user(ns: &str, name: &str) -> Requester {
    Requester {
        user: format!("system:serviceaccount:{ns}:{name}"),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{ns}"),
            "system:authenticated".into(),
        ],
    }
}

fn res(verb: &str, ns: &str, resource: &str) -> Access {
    Access::Resource {
        verb: verb.into(),
        namespace: ns.into(),
        group: String::new(),
        resource: resource.into(),
        subresource: String::new(),
        name: String::new(),
    }
}

fn denied(v: &UseTimeVerdict) -> bool {
    v.reason().is_some()
}

#[test]
fn a_violator_is_refused_within_its_duties_in_the_violating_namespace() {
    let ix = index(&base(json!({})));
    let api = sa_user("pay", "api");
    let v = decide(&ix, &api, &res("get", "pay", "secrets"), now());
    let UseTimeVerdict::Deny(d) = &v else {
        panic!("{v:?}")
    };
    assert_eq!(&*d.duty, "read");
    let reason = d.reason();
    assert!(reason.contains("SoDPolicy p"), "{reason}");
    assert!(reason.contains("ServiceAccount:pay:api"), "{reason}");
    assert!(reason.contains("RoleBinding pay/api-write"), "{reason}");
    assert!(denied(&decide(
        &ix,
        &api,
        &res("update", "pay", "secrets"),
        now()
    )));
    // Another namespace, another duty, another resource: RBAC decides.
    assert_eq!(
        decide(&ix, &api, &res("get", "other", "secrets"), now()),
        UseTimeVerdict::NoOpinion(NoOpinion::NoViolation)
    );
    assert_eq!(
        decide(&ix, &api, &res("get", "pay", "configmaps"), now()),
        UseTimeVerdict::NoOpinion(NoOpinion::NoDuty)
    );
    assert_eq!(
        decide(&ix, &api, &res("watch", "pay", "secrets"), now()),
        UseTimeVerdict::NoOpinion(NoOpinion::NoDuty)
    );
    // Across all namespaces: pay's Secrets too.
    assert!(denied(&decide(
        &ix,
        &api,
        &res("list", "", "secrets"),
        now()
    )));
}

#[test]
fn an_innocent_identity_with_the_same_binding_is_untouched() {
    let ix = index(&base(json!({})));
    assert_eq!(
        decide(
            &ix,
            &sa_user("pay", "innocent"),
            &res("get", "pay", "secrets"),
            now()
        ),
        UseTimeVerdict::NoOpinion(NoOpinion::NoViolation)
    );
}

#[test]
fn off_and_unlisted_duties_have_no_opinion() {
    let ix = index(&base(json!({"useTime": {"action": "Off"}})));
    assert!(!enabled(&ix));
    assert_eq!(
        decide(
            &ix,
            &sa_user("pay", "api"),
            &res("get", "pay", "secrets"),
            now()
        ),
        UseTimeVerdict::NoOpinion(NoOpinion::NoDuty)
    );
    let ix = index(&base(
        json!({"useTime": {"action": "Deny", "duties": ["write"]}}),
    ));
    let api = sa_user("pay", "api");
    assert!(!denied(&decide(
        &ix,
        &api,
        &res("get", "pay", "secrets"),
        now()
    )));
    assert!(denied(&decide(
        &ix,
        &api,
        &res("update", "pay", "secrets"),
        now()
    )));
}

#[test]
fn exempt_identities_are_never_judged() {
    let ix = index(&base(json!({})));
    for g in EXEMPT_GROUPS {
        let mut r = sa_user("pay", "api");
        r.groups.push(g.into());
        assert_eq!(
            decide(&ix, &r, &res("get", "pay", "secrets"), now()),
            UseTimeVerdict::NoOpinion(NoOpinion::Exempt)
        );
    }
    let r = Requester {
        user: "system:apiserver".into(),
        groups: vec![],
    };
    assert_eq!(
        decide(&ix, &r, &res("get", "pay", "secrets"), now()),
        UseTimeVerdict::NoOpinion(NoOpinion::Exempt)
    );
}

fn exception(expires: &str) -> Value {
    json!({"apiVersion": "sodguard.io/v1alpha1", "kind": "SoDException", "metadata": {"name": "x"},
           "spec": {"policy": "p", "subject": {"kind": "ServiceAccount", "namespace": "pay", "name": "api"},
                    "justification": "rotation", "requestedBy": "alice",
                    "expiresAt": expires, "approvals": [{"user": "bob", "at": "2026-11-28T11:00:00Z"}]}})
}

#[test]
fn an_exception_excuses_until_it_ends_whatever_the_bindings_say() {
    let mut objs = base(json!({}));
    objs.push(exception("2026-11-28T14:00:00Z"));
    let ix = index(&objs);
    let api = sa_user("pay", "api");
    let get = res("get", "pay", "secrets");
    assert_eq!(
        decide(&ix, &api, &get, now()),
        UseTimeVerdict::NoOpinion(NoOpinion::NoViolation)
    );
    // Same state, same cached violations, later clock: refused at once.
    let later: Timestamp = "2026-11-28T14:00:01Z".parse().unwrap();
    let mut cache: HashMap<(Identity, u32), Arc<Vec<Violation>>> = HashMap::new();
    let mut memo = |ix: &Index, id: &Identity, slot: u32| {
        cache
            .entry((id.clone(), slot))
            .or_insert_with(|| Arc::new(subject_violations(ix, id, Some(slot))))
            .clone()
    };
    assert!(!denied(&decide_with(&ix, &api, &get, now(), &mut memo)));
    assert!(denied(&decide_with(&ix, &api, &get, later, &mut memo)));
}

#[test]
fn derived_duties_are_refused() {
    // ci creates Pods in pay, so it runs as pay/backup, which reads Secrets.
    let mut objs = roles();
    objs.extend([
        json!({"apiVersion": "sodguard.io/v1alpha1", "kind": "SoDPolicy", "metadata": {"name": "p"}, "spec": {
            "duties": [
                {"name": "deploy", "permissions": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]}]},
                {"name": "read", "permissions": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]},
            ],
            "validationActions": ["Audit"], "useTime": {"action": "Deny", "duties": ["deploy"]}}}),
        sa("pay", "ci"),
        sa("pay", "backup"),
        rb("pay", "ci-pods", "pod-creator", sa_subject("pay", "ci")),
        rb("pay", "backup-read", "reader", sa_subject("pay", "backup")),
    ]);
    let ix = index(&objs);
    let v = decide(
        &ix,
        &sa_user("pay", "ci"),
        &res("create", "pay", "pods"),
        now(),
    );
    let UseTimeVerdict::Deny(d) = &v else {
        panic!("{v:?}")
    };
    assert!(d.reason().contains("⇒"), "{}", d.reason());
    // backup reads Secrets and creates nothing: no violation.
    assert!(!denied(&decide(
        &ix,
        &sa_user("pay", "backup"),
        &res("get", "pay", "secrets"),
        now()
    )));
}

#[test]
fn users_and_groups_are_judged_by_name_and_groups() {
    let mut objs = roles();
    objs.extend([
        policy("p", json!({"subjects": {"kinds": ["User", "Group"]}})),
        crb(
            "ops-read",
            "reader",
            json!({"kind": "Group", "name": "ops"}),
        ),
        crb(
            "ops-write",
            "writer",
            json!({"kind": "Group", "name": "ops"}),
        ),
        crb(
            "carol-read",
            "reader",
            json!({"kind": "User", "name": "carol"}),
        ),
        crb(
            "carol-write",
            "writer",
            json!({"kind": "User", "name": "carol"}),
        ),
    ]);
    let ix = index(&objs);
    let who = |user: &str, groups: &[&str]| Requester {
        user: user.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    };
    // Cluster-wide violations cover every namespace.
    assert!(denied(&decide(
        &ix,
        &who("carol", &[]),
        &res("get", "any", "secrets"),
        now()
    )));
    assert!(denied(&decide(
        &ix,
        &who("bob", &["ops"]),
        &res("get", "pay", "secrets"),
        now()
    )));
    assert!(!denied(&decide(
        &ix,
        &who("bob", &["dev"]),
        &res("get", "pay", "secrets"),
        now()
    )));
    // A group name spoofed as a user name is a User, not the Group.
    assert!(!denied(&decide(
        &ix,
        &who("ops", &[]),
        &res("get", "pay", "secrets"),
        now()
    )));
}

#[test]
fn resource_names_subresources_and_urls_match_as_rbac() {
    let named = Permission {
        verbs: vec!["get".into()],
        api_groups: vec!["".into()],
        resources: vec!["secrets".into()],
        resource_names: vec!["db".into()],
        non_resource_urls: vec![],
    };
    let mut a = res("get", "pay", "secrets");
    assert!(!a.within(&named));
    if let Access::Resource { name, .. } = &mut a {
        *name = "db".into();
    }
    assert!(a.within(&named));
    let exec = Permission {
        verbs: vec!["create".into()],
        api_groups: vec!["".into()],
        resources: vec!["pods/exec".into()],
        ..Permission::default()
    };
    let mut a = res("create", "pay", "pods");
    assert!(!a.within(&exec));
    if let Access::Resource { subresource, .. } = &mut a {
        *subresource = "exec".into();
    }
    assert!(a.within(&exec));
    let metrics = Permission {
        verbs: vec!["get".into()],
        non_resource_urls: vec!["/metrics".into()],
        ..Permission::default()
    };
    let url = |p: &str| Access::NonResource {
        verb: "get".into(),
        path: p.into(),
    };
    assert!(url("/metrics").within(&metrics));
    assert!(!url("/healthz").within(&metrics));
    assert!(!res("get", "", "metrics").within(&metrics));
}

proptest! {
    /// Against the whole-state evaluation: a request is refused exactly when
    /// one of the requester's identities has an unexcused violation covering
    /// the request's namespace that includes a duty the request is within.
    #[test]
    fn matches_the_whole_state_evaluation(
        bindings in proptest::collection::vec((0usize..3, 0usize..3, 0usize..3, any::<bool>()), 0..8),
        verb in 0usize..3, ns in 0usize..3, who in 0usize..3,
    ) {
        let names = ["a", "b", "c"];
        let nss = ["x", "y", ""];
        let role = ["reader", "writer", "pod-creator"];
        let mut objs = roles();
        objs.push(policy("p", json!({})));
        for n in names { for s in ["x", "y"] { objs.push(sa(s, n)); } }
        for (i, (r, n, s, cluster)) in bindings.iter().enumerate() {
            let subject = sa_subject(["x", "y", "x"][*s], names[*n]);
            objs.push(if *cluster {
                crb(&format!("b{i}"), role[*r], subject)
            } else {
                rb(["x", "y", "x"][*s], &format!("b{i}"), role[*r], subject)
            });
        }
        let ix = index(&objs);
        let access = res(["get", "update", "create"][verb], nss[ns], ["secrets", "secrets", "pods"][verb]);
        let requester = sa_user("x", names[who]);
        let got = denied(&decide(&ix, &requester, &access, now()));
        let me = Identity::service_account("x", names[who]);
        let duty = match verb { 0 => Some("read"), 1 => Some("write"), _ => None };
        let want = evaluate(&ix, now()).violations.iter().any(|v| {
            v.subject == me
                && (&*v.namespace == "*" || nss[ns].is_empty() || &*v.namespace == nss[ns])
                && duty.is_some_and(|d| v.duties.iter().any(|x| &**x == d))
        });
        prop_assert_eq!(got, want);
    }
}

#[test]
fn an_ended_grant_is_refused_whatever_its_binding_says() {
    let mut objs = base(json!({}));
    objs.extend([
        sa("pay", "web"),
        json!({"apiVersion": "sodguard.io/v1alpha1", "kind": "AccessGrantPolicy", "metadata": {"name": "oncall"},
               "spec": {"roles": ["reader"], "namespaces": ["pay"], "maxDuration": "4h", "approverGroups": ["leads"]}}),
        json!({"apiVersion": "sodguard.io/v1alpha1", "kind": "AccessGrant", "metadata": {"name": "g", "namespace": "pay"},
               "spec": {"subject": {"kind": "ServiceAccount", "namespace": "pay", "name": "web"},
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "reader"},
                        "duration": "1h", "reason": "rotate the key", "requestedBy": "alice",
                        "approvals": [{"user": "bob", "at": "2026-11-28T10:00:00Z"},
                                      {"user": "carol", "at": "2026-11-28T10:00:00Z"}]}}),
        // The grant controller has not deleted the binding yet.
        rb("pay", "sodguard-grant-g", "reader", sa_subject("pay", "web")),
    ]);
    let ix = index(&objs);
    let web = sa_user("pay", "web");
    let get = res("get", "pay", "secrets");
    let during: Timestamp = "2026-11-28T10:30:00Z".parse().unwrap();
    assert_eq!(
        decide(&ix, &web, &get, during),
        UseTimeVerdict::NoOpinion(NoOpinion::NoViolation)
    );
    let v = decide(&ix, &web, &get, now());
    let UseTimeVerdict::GrantEnded(g) = &v else {
        panic!("{v:?}")
    };
    assert!(g.reason().contains("AccessGrant pay/g"), "{}", g.reason());
    assert!(
        g.reason().contains("RoleBinding pay/sodguard-grant-g"),
        "{}",
        g.reason()
    );
    // Outside the binding's namespace, or beyond its role: no opinion.
    assert!(!denied(&decide(
        &ix,
        &web,
        &res("get", "other", "secrets"),
        now()
    )));
    assert!(matches!(
        decide(&ix, &web, &res("update", "pay", "secrets"), now()),
        UseTimeVerdict::NoOpinion(_)
    ));
}
