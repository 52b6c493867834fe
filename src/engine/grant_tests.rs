//! Grants (R10.1–R10.3) and TokenRequests (R8.4) at admission.

use serde_json::{Value, json};

use super::*;
use crate::decode::convert;
use crate::engine::index::Index;

fn now() -> jiff::Timestamp {
    "2026-11-28T12:00:00Z".parse().unwrap()
}

fn state(extra: &[Value]) -> Index {
    let mut objs = vec![
        json!({"apiVersion": "sodguard.io/v1alpha1", "kind": "SoDPolicy", "metadata": {"name": "p"},
            "spec": {"duties": [
                {"name": "secret-admin", "permissions": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]}]},
                {"name": "secret-use", "permissions": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}],
              "credentials": {"tokenRequests": {"action": "Deny", "maxExpiration": "1h", "requireBoundObject": true}}}}),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "pay"}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "api", "namespace": "pay"}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "web", "namespace": "pay"}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "writer", "namespace": "pay"},
               "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "reader", "namespace": "pay"},
               "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "w", "namespace": "pay"},
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "writer"},
           "subjects": [{"kind": "ServiceAccount", "name": "api"}]}),
    ];
    objs.extend(extra.iter().cloned());
    Index::from_objects(objs.iter().map(|o| convert(o).unwrap().unwrap()))
}

fn grant_policy(spec: Value) -> Value {
    json!({"apiVersion": "sodguard.io/v1alpha1", "kind": "AccessGrantPolicy",
        "metadata": {"name": "oncall"}, "spec": spec})
}

fn oncall() -> Value {
    grant_policy(
        json!({"roles": ["reader"], "namespaces": ["pay"], "maxDuration": "4h",
        "approverGroups": ["leads"], "breakGlass": {"allowed": true, "maxDuration": "1h"}}),
    )
}

fn grant(sa: &str, extra: Value) -> Value {
    let mut spec = json!({
        "subject": {"kind": "ServiceAccount", "namespace": "pay", "name": sa},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
        "duration": "2h", "reason": "rotate the key", "requestedBy": "alice"});
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    json!({"apiVersion": "sodguard.io/v1alpha1", "kind": "AccessGrant",
        "metadata": {"name": "g", "namespace": "pay"}, "spec": spec})
}

fn user(name: &str, groups: &[&str]) -> UserInfo {
    UserInfo {
        username: name.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

fn create(object: Value, u: UserInfo) -> Request {
    Request {
        object: Some(object),
        ..Request::new(Operation::Create, u)
    }
}

fn update(old: Value, new: Value, u: UserInfo) -> Request {
    Request {
        object: Some(new),
        old_object: Some(old),
        ..Request::new(Operation::Update, u)
    }
}

fn refusal(index: &mut Index, req: &Request) -> String {
    let r = review(index, req, now());
    assert!(!r.allowed, "allowed: {r:?}");
    r.refusal.unwrap_or_default()
}

fn approval(u: &str) -> Value {
    json!([{"user": u, "at": "2026-11-28T12:01:00Z"}])
}

#[test]
fn a_grant_no_grant_policy_allows_is_refused_naming_why() {
    let mut s = state(&[]);
    let msg = refusal(&mut s, &create(grant("web", json!({})), user("alice", &[])));
    assert!(
        msg.contains("no AccessGrantPolicy allows") && msg.contains("there is none"),
        "{msg}"
    );
    let cases = [
        (
            json!({"roleRef": {"kind": "Role", "name": "writer"}}),
            "Role pay/writer is not among its roles",
        ),
        (
            json!({"duration": "5h"}),
            "spec.duration 5h is more than its spec.maxDuration of 4h",
        ),
        (
            json!({"breakGlass": true}),
            "spec.duration 2h is more than its spec.breakGlass.maxDuration of 1h",
        ),
    ];
    let mut s = state(&[oncall()]);
    for (extra, want) in cases {
        let msg = refusal(&mut s, &create(grant("web", extra), user("alice", &[])));
        assert!(
            msg.contains("AccessGrantPolicy oncall: ") && msg.contains(want),
            "{msg}"
        );
    }
    let mut s = state(&[grant_policy(
        json!({"roles": ["reader"], "namespaces": ["other-*"],
        "maxDuration": "4h", "approverGroups": ["leads"]}),
    )]);
    let msg = refusal(&mut s, &create(grant("web", json!({})), user("alice", &[])));
    assert!(
        msg.contains("namespace pay is not among its namespaces"),
        "{msg}"
    );
}

#[test]
fn a_grant_whose_binding_completes_a_conflict_is_denied_like_the_binding() {
    let mut s = state(&[oncall()]);
    let r = review(
        &mut s,
        &create(grant("api", json!({})), user("alice", &[])),
        now(),
    );
    assert!(!r.allowed);
    let v = r.violations.first().expect("a violation");
    assert_eq!(v.subject.to_string(), "ServiceAccount:pay:api");
    let paths = format!("{v:?}");
    assert!(paths.contains("sodguard-grant-g"), "{paths}");
    // The grant did not stay in the state.
    assert_eq!(s.grants().count(), 0);
    let r = review(
        &mut s,
        &create(grant("web", json!({})), user("alice", &[])),
        now(),
    );
    assert!(r.allowed && r.violations.is_empty(), "{r:?}");
}

#[test]
fn requested_by_is_the_creating_user_and_approvals_come_later() {
    let mut s = state(&[oncall()]);
    let msg = refusal(
        &mut s,
        &create(grant("web", json!({})), user("mallory", &[])),
    );
    assert!(
        msg.contains("spec.requestedBy must be the user who creates"),
        "{msg}"
    );
    let msg = refusal(
        &mut s,
        &create(
            grant("web", json!({"approvals": approval("bob")})),
            user("alice", &[]),
        ),
    );
    assert!(
        msg.contains("spec.approvals must be empty at creation"),
        "{msg}"
    );
}

#[test]
fn approvals_are_by_distinct_approvers_other_than_requester_and_subject() {
    let mut s = state(&[oncall()]);
    let old = grant("web", json!({}));
    let leads = &["system:authenticated", "leads"];
    let cases = [
        (
            user("alice", leads),
            approval("alice"),
            "requested this grant",
        ),
        (
            user("bob", &["developers"]),
            approval("bob"),
            "is in none of the approver groups",
        ),
        (
            user("bob", leads),
            approval("carol"),
            "must be made by the approving user",
        ),
        (
            user("system:serviceaccount:pay:web", leads),
            approval("system:serviceaccount:pay:web"),
            "is its subject",
        ),
        (
            user("bob", leads),
            json!([{"user": "bob", "at": "2026-11-28T10:00:00Z"}]),
            "is not the time of this request",
        ),
    ];
    for (u, approvals, want) in cases {
        let new = grant("web", json!({"approvals": approvals}));
        let msg = refusal(&mut s, &update(old.clone(), new, u));
        assert!(msg.contains(want), "{want}: {msg}");
    }
    let once = grant("web", json!({"approvals": approval("bob")}));
    let r = review(
        &mut s,
        &update(old.clone(), once.clone(), user("bob", leads)),
        now(),
    );
    assert!(r.allowed, "{r:?}");
    let twice = grant(
        "web",
        json!({"approvals": [{"user": "bob", "at": "2026-11-28T12:01:00Z"}, {"user": "bob", "at": "2026-11-28T12:01:00Z"}]}),
    );
    let msg = refusal(&mut s, &update(once.clone(), twice, user("bob", leads)));
    assert!(msg.contains("has already approved"), "{msg}");
    // Frozen once approved, even for its requester.
    let changed = grant(
        "web",
        json!({"approvals": approval("bob"), "duration": "3h"}),
    );
    let msg = refusal(&mut s, &update(once.clone(), changed, user("alice", &[])));
    assert!(msg.contains("an approved grant is frozen"), "{msg}");
    // Approvals are append-only.
    let msg = refusal(&mut s, &update(once, old.clone(), user("alice", &[])));
    assert!(msg.contains("can only be appended to"), "{msg}");
    // Without the old object, fail closed.
    let req = Request {
        object: Some(grant("web", json!({"approvals": approval("bob")}))),
        ..Request::new(Operation::Update, user("bob", leads))
    };
    assert!(refusal(&mut s, &req).contains("oldObject is missing"));
}

#[test]
fn a_pending_grant_is_changed_only_by_its_requester_and_judged_again() {
    let mut s = state(&[oncall()]);
    let old = grant("web", json!({}));
    let msg = refusal(
        &mut s,
        &update(
            old.clone(),
            grant("web", json!({"duration": "1h"})),
            user("bob", &["leads"]),
        ),
    );
    assert!(msg.contains("only its requester"), "{msg}");
    // Retargeted at a subject it would make a violator: judged as a binding.
    let r = review(
        &mut s,
        &update(old, grant("api", json!({})), user("alice", &[])),
        now(),
    );
    assert!(!r.allowed && !r.violations.is_empty(), "{r:?}");
}

fn token_request(sa: &str, spec: Value) -> Request {
    Request {
        kind: Some(GroupVersionKind {
            group: "authentication.k8s.io".into(),
            version: "v1".into(),
            kind: "TokenRequest".into(),
        }),
        resource: Some(GroupVersionResource {
            group: String::new(),
            version: "v1".into(),
            resource: "serviceaccounts".into(),
        }),
        sub_resource: Some("token".into()),
        name: Some(sa.into()),
        namespace: Some("pay".into()),
        ..create(
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "metadata": {"name": sa, "namespace": "pay"}, "spec": spec}),
            user("ci", &["system:authenticated"]),
        )
    }
}

#[test]
fn token_requests_of_governed_serviceaccounts_keep_the_policy_limits() {
    let mut s = state(&[]);
    let pod = json!({"kind": "Pod", "apiVersion": "v1", "name": "p", "uid": "u"});
    let msg = refusal(
        &mut s,
        &token_request(
            "api",
            json!({"expirationSeconds": 86400, "boundObjectRef": pod}),
        ),
    );
    assert!(
        msg.contains("SoDPolicy p")
            && msg.contains("maxExpiration of 1h")
            && msg.contains("86400s"),
        "{msg}"
    );
    let msg = refusal(
        &mut s,
        &token_request("api", json!({"expirationSeconds": 600})),
    );
    assert!(msg.contains("requireBoundObject"), "{msg}");
    // Unset expirationSeconds is the API server's default of 1h: within.
    let r = review(
        &mut s,
        &token_request("api", json!({"boundObjectRef": pod})),
        now(),
    );
    assert!(r.allowed, "{r:?}");
    // A ServiceAccount holding no duty is not governed by the limits.
    let r = review(
        &mut s,
        &token_request("web", json!({"expirationSeconds": 86400})),
        now(),
    );
    assert!(r.allowed && r.warnings.is_empty(), "{r:?}");
    // A kubelet asking for a Pod-bound token is never refused.
    let mut req = token_request(
        "api",
        json!({"expirationSeconds": 86400, "boundObjectRef": pod}),
    );
    req.user_info = user("system:node:n1", &["system:nodes", "system:authenticated"]);
    assert!(review(&mut s, &req, now()).allowed);
    // ... but a node asking for an unbound one is judged like anyone.
    let mut req = token_request("api", json!({"expirationSeconds": 86400}));
    req.user_info = user("system:node:n1", &["system:nodes"]);
    assert!(!review(&mut s, &req, now()).allowed);
}

#[test]
fn token_request_action_warn_warns() {
    let warn = json!({"apiVersion": "sodguard.io/v1alpha1", "kind": "SoDPolicy", "metadata": {"name": "p"},
        "spec": {"duties": [
            {"name": "secret-admin", "permissions": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]}]},
            {"name": "secret-use", "permissions": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}],
          "credentials": {"tokenRequests": {"maxExpiration": "1h"}}}});
    let mut s = state(&[warn]);
    let r = review(
        &mut s,
        &token_request("api", json!({"expirationSeconds": 7200})),
        now(),
    );
    assert!(
        r.allowed && r.warnings.iter().any(|w| w.contains("maxExpiration of 1h")),
        "{r:?}"
    );
}

#[test]
fn only_the_grant_controller_touches_a_grant_binding() {
    let mut s = state(&[oncall()]);
    s.set_grant_controller(Some(
        "system:serviceaccount:sodguard-system:sodguard".into(),
    ));
    let b = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "sodguard-grant-g", "namespace": "pay", "labels": {"sodguard.io/grant": "g"}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "web", "namespace": "pay"}]});
    let msg = refusal(&mut s, &create(b.clone(), user("alice", &["leads"])));
    assert!(msg.contains("only sodguard's grant controller"), "{msg}");
    let controller = user("system:serviceaccount:sodguard-system:sodguard", &[]);
    assert!(review(&mut s, &create(b.clone(), controller.clone()), now()).allowed);
    // Deleting one (to end a grant early, or to hide it) is refused too:
    // the grant is revoked by deleting the grant.
    let del = Request {
        old_object: Some(b.clone()),
        ..Request::new(Operation::Delete, user("alice", &[]))
    };
    assert!(refusal(&mut s, &del).contains("only sodguard's grant controller"));
    let del = Request {
        old_object: Some(b.clone()),
        ..Request::new(Operation::Delete, controller)
    };
    assert!(review(&mut s, &del, now()).allowed);
    let gc = Request {
        old_object: Some(b.clone()),
        ..Request::new(
            Operation::Delete,
            user(
                "system:serviceaccount:kube-system:generic-garbage-collector",
                &[],
            ),
        )
    };
    assert!(review(&mut s, &gc, now()).allowed);
    // Removing the label is a change of a labelled binding.
    let mut unlabelled = b.clone();
    unlabelled["metadata"]["labels"] = json!({});
    let msg = refusal(&mut s, &update(b, unlabelled, user("alice", &[])));
    assert!(msg.contains("only sodguard's grant controller"), "{msg}");
    // Without a configured controller, nobody may.
    s.set_grant_controller(None);
    let b2 = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "x", "labels": {"sodguard.io/grant": "g"}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"}});
    assert!(
        !review(
            &mut s,
            &create(
                b2,
                user("system:serviceaccount:sodguard-system:sodguard", &[])
            ),
            now()
        )
        .allowed
    );
}
