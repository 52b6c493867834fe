use serde_json::{Value, json};

use super::*;
use crate::decode::convert;
use crate::engine::budget::Meter;
use crate::engine::index::Index;

fn now() -> jiff::Timestamp {
    "2026-11-28T12:00:00Z".parse().unwrap()
}

fn policy(spec: Value) -> Value {
    json!({"apiVersion": "sodguard.io/v1alpha1", "kind": "SoDPolicy", "metadata": {"name": "p"}, "spec": spec})
}

fn duties() -> Value {
    json!([
        {"name": "secret-admin", "permissions": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]}]},
        {"name": "secret-use", "permissions": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}
    ])
}

fn state() -> Index {
    let objs = [
        policy(json!({"duties": duties()})),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "api", "namespace": "pay"}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "agg"},
               "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"to-agg": "true"}}]}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "src", "labels": {"to-agg": "true"}},
               "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "w", "namespace": "pay"},
               "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}, {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]}]}),
        rb("w", "Role", "w"),
    ];
    Index::from_objects(objs.iter().map(|o| convert(o).unwrap().unwrap()))
}

fn rb(name: &str, kind: &str, role: &str) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": name, "namespace": "pay"},
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
           "subjects": [{"kind": "ServiceAccount", "name": "api"}]})
}

fn create(object: Value, user: &str) -> Request {
    Request {
        object: Some(object),
        ..Request::new(
            Operation::Create,
            UserInfo {
                username: user.into(),
                groups: vec![],
            },
        )
    }
}

#[test]
fn invalid_policies_are_refused_with_the_field_path() {
    let one = json!([{"name": "a", "permissions": [{"apiGroups": [""], "resources": ["x"], "verbs": ["get"]}]}]);
    let cases = [
        (json!({"duties": one}), "spec.duties:"),
        (json!({"duties": [one[0], one[0]]}), "spec.duties[1].name"),
        (
            json!({"duties": [one[0], {"name": "b", "permissions": []}]}),
            "spec.duties[1].permissions",
        ),
        (
            json!({"duties": duties(), "maxDuties": 2}),
            "spec.maxDuties",
        ),
        (
            json!({"duties": duties(), "validationActions": ["Deny", "Warn"]}),
            "spec.validationActions",
        ),
        (
            json!({"duties": duties(), "exceptions": {"maxDuration": "soon"}}),
            "spec.exceptions.maxDuration",
        ),
        (
            json!({"duties": duties(), "subjects": {"namespaces": ["[x"]}}),
            "spec.subjects.namespaces[0]",
        ),
        (json!({"duties": duties(), "scope": "Galaxy"}), "spec.scope"),
    ];
    for (spec, path) in cases {
        let mut index = state();
        let r = review(&mut index, &create(policy(spec.clone()), "alice"), now());
        assert!(!r.allowed, "{spec}");
        let why = r.refusal.unwrap_or_default();
        assert!(why.contains(path), "{spec}: {why}");
    }
}

#[test]
fn a_denial_explains_binding_role_and_aggregated_rule() {
    let mut index = state();
    let before = evaluate(&index, now());
    let r = review(
        &mut index,
        &create(rb("r", "ClusterRole", "agg"), "alice"),
        now(),
    );
    assert!(!r.allowed);
    assert_eq!(r.violations.len(), 1);
    let v = &r.violations[0];
    let paths: Vec<String> = v
        .explanation
        .iter()
        .flat_map(|d| d.paths.iter().map(|p| p.to_string()))
        .collect();
    assert_eq!(
        paths,
        [
            "RoleBinding pay/w → Role pay/w → rules[1]: create secrets",
            "RoleBinding pay/r → ClusterRole agg → ClusterRole src → rules[0]: get secrets",
        ]
    );
    // The review left the state as it was.
    assert_eq!(evaluate(&index, now()), before);
}

#[test]
fn review_and_apply_keeps_only_admitted_real_changes() {
    let mut index = state();
    let (r, undo) = review_and_apply(
        &mut index,
        &create(rb("r", "ClusterRole", "agg"), "alice"),
        now(),
    );
    assert!(!r.allowed && undo.is_none());
    assert!(evaluate(&index, now()).violations.is_empty());

    let mut dry = create(rb("harmless", "Role", "w"), "alice");
    dry.dry_run = true;
    let (r, undo) = review_and_apply(&mut index, &dry, now());
    assert!(r.allowed && undo.is_none());
    assert_eq!(index.counts().role_bindings, 1);

    let (r, undo) = review_and_apply(
        &mut index,
        &create(rb("harmless", "Role", "w"), "alice"),
        now(),
    );
    assert!(r.allowed && undo.is_some());
    assert_eq!(index.counts().role_bindings, 2);
    index.undo(undo.unwrap());
    assert_eq!(index.counts().role_bindings, 1);
}

#[test]
fn unreadable_objects_are_denied_with_the_reason() {
    let mut index = state();
    let bad = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "x", "namespace": "pay"}, "subjects": []});
    let r = review(&mut index, &create(bad, "alice"), now());
    assert!(!r.allowed);
    assert!(r.refusal.unwrap().contains("roleRef"));
    let none = Request {
        object: None,
        ..create(json!({}), "alice")
    };
    assert!(!review(&mut index, &none, now()).allowed);
}

fn exception(approvals: Value, requested_by: &str) -> Value {
    json!({"apiVersion": "sodguard.io/v1alpha1", "kind": "SoDException", "metadata": {"name": "x"},
           "spec": {"policy": "p", "subject": {"kind": "ServiceAccount", "namespace": "pay", "name": "api"},
                    "justification": "rotation", "requestedBy": requested_by,
                    "expiresAt": "2026-11-28T20:00:00Z", "approvals": approvals}})
}

#[test]
fn exception_rules_say_which_rule_was_broken() {
    let mut index = state();
    let r = review(
        &mut index,
        &create(exception(json!([]), "mallory"), "alice"),
        now(),
    );
    assert!(r.refusal.unwrap().contains("spec.requestedBy"));

    let self_approved = json!([{"user": "alice", "at": "2026-11-28T11:00:00Z"}]);
    let r = review(
        &mut index,
        &create(exception(self_approved.clone(), "alice"), "alice"),
        now(),
    );
    assert!(r.refusal.unwrap().contains("cannot approve"));

    let created = create(exception(json!([]), "alice"), "alice");
    assert!(review(&mut index, &created, now()).allowed);
    let _ = index.apply(convert(&exception(json!([]), "alice")).unwrap().unwrap());
    let approve = |user: &str, approvals: Value| Request {
        object: Some(exception(approvals, "alice")),
        old_object: Some(exception(json!([]), "alice")),
        ..Request::new(
            Operation::Update,
            UserInfo {
                username: user.into(),
                groups: vec![],
            },
        )
    };
    let by_bob = json!([{"user": "bob", "at": "2026-11-28T12:00:00Z"}]);
    assert!(review(&mut index, &approve("bob", by_bob.clone()), now()).allowed);
    let r = review(&mut index, &approve("carol", by_bob), now());
    assert!(r.refusal.unwrap().contains("made by the approving user"));
    let by_subject =
        json!([{"user": "system:serviceaccount:pay:api", "at": "2026-11-28T12:00:00Z"}]);
    let r = review(
        &mut index,
        &approve("system:serviceaccount:pay:api", by_subject),
        now(),
    );
    assert!(r.refusal.unwrap().contains("is its subject"));
}

/// R7.10: a ServiceAccount of a namespace the webhook never sees is governed
/// as soon as a binding names it; elsewhere it stays latent until it exists
/// (R1.5), because its creation will be checked.
#[test]
fn serviceaccounts_of_unwatched_namespaces_are_governed_when_named() {
    let binding = |name: &str, role: &str, sa_ns: &str| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": name, "namespace": "pay"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
               "subjects": [{"kind": "ServiceAccount", "name": "late", "namespace": sa_ns}]})
    };
    let role = |name: &str, verb: &str| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": name, "namespace": "pay"},
               "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": [verb]}]})
    };
    let objs = [
        policy(json!({"duties": duties()})),
        role("writer", "create"),
        role("reader", "get"),
        binding("ops-writes", "writer", "ops"),
        binding("team-writes", "writer", "team"),
    ];
    let mut index = Index::from_objects(objs.iter().map(|o| convert(o).unwrap().unwrap()));
    let late = |ns: &str| crate::model::Identity::ServiceAccount {
        namespace: ns.into(),
        name: "late".into(),
    };

    // Before the namespaces are known, both are latent.
    let r = review(
        &mut index,
        &create(binding("ops-reads", "reader", "ops"), "alice"),
        now(),
    );
    assert!(r.allowed, "{:?}", r.violations);

    index.set_unwatched_namespaces(["ops", "kube-system"]);
    assert!(index.exists(&late("ops")) && !index.exists(&late("team")));
    assert!(index.service_accounts().any(|s| s == late("ops")));
    assert!(index.service_accounts_in("ops").any(|s| s == late("ops")));
    assert!(!index.service_accounts().any(|s| s == late("team")));

    let r = review(
        &mut index,
        &create(binding("ops-reads", "reader", "ops"), "alice"),
        now(),
    );
    assert!(!r.allowed);
    assert_eq!(r.violations.len(), 1);
    assert_eq!(r.violations[0].subject, late("ops"));
    assert_eq!(
        r.violations[0]
            .duties
            .iter()
            .map(|d| &**d)
            .collect::<Vec<_>>(),
        ["secret-admin", "secret-use"]
    );

    // In a watched namespace the binding stays latent: the ServiceAccount's
    // creation will be checked.
    let r = review(
        &mut index,
        &create(binding("team-reads", "reader", "team"), "alice"),
        now(),
    );
    assert!(r.allowed, "{:?}", r.violations);

    // A whole-state evaluation reports the unwatched one (state made behind
    // the webhook's back), not the watched one.
    let _ = index.apply(
        convert(&binding("ops-reads", "reader", "ops"))
            .unwrap()
            .unwrap(),
    );
    let _ = index.apply(
        convert(&binding("team-reads", "reader", "team"))
            .unwrap()
            .unwrap(),
    );
    let ev = evaluate(&index, now());
    let subjects: Vec<_> = ev.violations.iter().map(|v| v.subject.clone()).collect();
    assert_eq!(subjects, [late("ops")]);

    // Once no binding names it, it is gone again.
    for name in ["ops-writes", "ops-reads"] {
        let _ = index.remove(&crate::model::ObjectKey::Binding(
            crate::model::BindingKey {
                namespace: Some("pay".into()),
                name: name.into(),
            },
        ));
    }
    assert!(!index.exists(&late("ops")));
    assert!(evaluate(&index, now()).violations.is_empty());
}

#[test]
fn objects_must_be_of_the_requests_kind() {
    let mut index = state();
    let binding = rb("r", "ClusterRole", "agg");
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "r", "namespace": "pay"}});
    let rb_kind = GroupVersionKind {
        group: "rbac.authorization.k8s.io".into(),
        version: "v1".into(),
        kind: "RoleBinding".into(),
    };
    let user = UserInfo {
        username: "alice".into(),
        groups: vec![],
    };
    // UPDATE: the old object must be of the same kind as the new one.
    let update = Request {
        object: Some(binding.clone()),
        old_object: Some(cm.clone()),
        ..Request::new(Operation::Update, user.clone())
    };
    let r = review(&mut index, &update, now());
    assert!(r.refusal.unwrap().contains("oldObject is v1/ConfigMap"));
    // DELETE: the old object is checked against request.kind.
    let delete = Request {
        old_object: Some(cm),
        kind: Some(rb_kind.clone()),
        ..Request::new(Operation::Delete, user.clone())
    };
    assert!(!review(&mut index, &delete, now()).allowed);
    // A group without a version, or a version that is not one.
    for api_version in [
        "rbac.authorization.k8s.io",
        "rbac.authorization.k8s.io/",
        "/v1",
        "v1/x/y",
    ] {
        let mut o = binding.clone();
        o["apiVersion"] = api_version.into();
        let r = review(&mut index, &create(o, "alice"), now());
        assert!(
            r.refusal.unwrap_or_default().contains("apiVersion"),
            "{api_version}"
        );
    }
    // The right kind is judged on its merits (this binding completes a conflict).
    let ok = Request {
        kind: Some(rb_kind),
        ..create(binding, "alice")
    };
    let r = review(&mut index, &ok, now());
    assert!(!r.allowed && r.refusal.is_none() && r.violations.len() == 1);
}

fn crb(name: &str, role: &str, subject: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
           "subjects": [subject]})
}

fn all_serviceaccounts() -> Value {
    json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:serviceaccounts"})
}

fn cluster_role(name: &str, resource: &str, verb: &str) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name},
           "rules": [{"apiGroups": [""], "resources": [resource], "verbs": [verb]}]})
}

fn apply(index: &mut Index, object: Value) {
    let _ = index.apply(convert(&object).unwrap().unwrap());
}

/// Bindings whose roles grant no duty skip re-checking the subjects they
/// reach; these are the cases where the role does grant one and the binding
/// must still be denied.
#[test]
fn a_binding_for_every_serviceaccount_is_judged_when_its_role_grants_a_duty() {
    let mut index = state();
    apply(&mut index, cluster_role("configmaps", "configmaps", "get"));
    // `agg` has no rules of its own: what it grants (get secrets) comes from
    // the ClusterRole it aggregates.
    let r = review(
        &mut index,
        &create(crb("all", "agg", all_serviceaccounts()), "alice"),
        now(),
    );
    assert!(!r.allowed);
    assert_eq!(r.violations.len(), 1);
    assert_eq!(
        r.violations[0].subject.to_string(),
        "ServiceAccount:pay:api"
    );

    // A role that grants nothing the policies name: admitted.
    let r = review(
        &mut index,
        &create(crb("all", "configmaps", all_serviceaccounts()), "alice"),
        now(),
    );
    assert!(r.allowed && r.violations.is_empty(), "{:?}", r.violations);
    // Also when its subjects already violate: nothing new.
    apply(&mut index, rb("r", "ClusterRole", "agg"));
    assert_eq!(evaluate(&index, now()).violations.len(), 1);
    let r = review(
        &mut index,
        &create(crb("all", "configmaps", all_serviceaccounts()), "alice"),
        now(),
    );
    assert!(r.allowed && r.violations.is_empty(), "{:?}", r.violations);
}

#[test]
fn a_binding_update_is_judged_when_its_new_role_grants_a_duty() {
    let mut index = state();
    apply(&mut index, cluster_role("configmaps", "configmaps", "get"));
    apply(&mut index, crb("all", "configmaps", all_serviceaccounts()));
    let mut update = create(crb("all", "agg", all_serviceaccounts()), "alice");
    update.operation = Operation::Update;
    update.old_object = Some(crb("all", "configmaps", all_serviceaccounts()));
    let r = review(&mut index, &update, now());
    assert!(!r.allowed);
    assert_eq!(
        r.violations[0].subject.to_string(),
        "ServiceAccount:pay:api"
    );
}

#[test]
fn a_duty_joining_a_role_through_aggregation_is_judged() {
    let mut index = state();
    // Bound while it grants nothing: admitted, and kept.
    apply(
        &mut index,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "team"},
           "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"to-team": "true"}}]}}),
    );
    let (r, undo) = review_and_apply(
        &mut index,
        &create(crb("all", "team", all_serviceaccounts()), "alice"),
        now(),
    );
    assert!(r.allowed && undo.is_some());
    // A ClusterRole that joins it with a duty: denied.
    let mut member = cluster_role("reads-secrets", "secrets", "get");
    member["metadata"]["labels"] = json!({"to-team": "true"});
    let r = review(&mut index, &create(member, "alice"), now());
    assert!(!r.allowed);
    assert_eq!(
        r.violations[0].subject.to_string(),
        "ServiceAccount:pay:api"
    );
}

#[test]
fn a_binding_to_a_missing_role_is_judged_when_the_role_comes() {
    let mut index = state();
    let (r, undo) = review_and_apply(
        &mut index,
        &create(crb("all", "later", all_serviceaccounts()), "alice"),
        now(),
    );
    assert!(r.allowed && undo.is_some());
    let r = review(
        &mut index,
        &create(cluster_role("later", "secrets", "get"), "alice"),
        now(),
    );
    assert!(!r.allowed);
    assert_eq!(
        r.violations[0].subject.to_string(),
        "ServiceAccount:pay:api"
    );
}

/// A User or Group exists once a binding names it (R1.5), and a
/// ServiceAccount of an unwatched namespace too (R7.10): what their implicit
/// groups hold counts from then on, whatever the binding's role grants.
#[test]
fn a_harmless_binding_that_makes_a_subject_exist_is_judged() {
    let mut objs = vec![
        policy(json!({"duties": duties(), "subjects": {"kinds": ["ServiceAccount", "User"]}})),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "both"},
               "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "create"]}]}),
        cluster_role("configmaps", "configmaps", "get"),
        crb(
            "everyone",
            "both",
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:authenticated"}),
        ),
    ];
    objs.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "pay"}}));
    let mut index = Index::from_objects(objs.iter().map(|o| convert(o).unwrap().unwrap()));
    index.set_unwatched_namespaces(["ops"]);
    assert!(evaluate(&index, now()).violations.is_empty());
    for (subject, who) in [
        (
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "newbie"}),
            "User:newbie",
        ),
        (
            json!({"kind": "ServiceAccount", "name": "late", "namespace": "ops"}),
            "ServiceAccount:ops:late",
        ),
    ] {
        let r = review(
            &mut index,
            &create(crb("harmless", "configmaps", subject), "alice"),
            now(),
        );
        assert!(!r.allowed, "{who}");
        assert_eq!(r.violations.len(), 1);
        assert_eq!(r.violations[0].subject.to_string(), who);
    }
}

/// A ClusterRole with both duties of `state()`'s policy, bound to every
/// ServiceAccount of `namespaces` namespaces of `per` ServiceAccounts each:
/// every one of them violates.
fn crowded(namespaces: usize, per: usize) -> Index {
    let mut index = state();
    for n in 0..namespaces {
        for s in 0..per {
            apply(
                &mut index,
                json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": format!("sa{s}"), "namespace": format!("ns{n}")}}),
            );
        }
    }
    apply(
        &mut index,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "both"},
               "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "create"]}]}),
    );
    index
}

/// A change that gives every subject a violation is decided within the
/// budget: denied as soon as more than the budget's new violations include
/// one under Deny, the rest not judged; past its time, refused (fail
/// closed) unless already denied.
#[test]
fn a_change_too_large_for_the_decision_budget_is_refused_not_judged_to_the_end() {
    let mut index = crowded(4, 5);
    let req = create(crb("all", "both", all_serviceaccounts()), "alice");
    let full = review(&mut index, &req, now());
    assert!(!full.allowed && full.refusal.is_none());
    assert_eq!(
        full.violations.len(),
        21,
        "every ServiceAccount, pay:api too"
    );
    assert!(full.warnings.is_empty(), "{:?}", full.warnings);

    let few = Budget {
        violations: 3,
        time: None,
    };
    let r = review_within(&mut index, &req, now(), few);
    assert!(!r.allowed && r.refusal.is_none());
    assert_eq!(r.violations.len(), 4, "stops once more than 3 are kept");
    assert!(r.violations.iter().all(|v| full.violations.contains(v)));
    assert!(
        r.warnings[0].contains("judging stopped") && r.warnings[0].contains("judged 4 of 21"),
        "{:?}",
        r.warnings
    );

    // No time at all: nothing is judged, and the change is refused.
    let none = Budget {
        violations: usize::MAX,
        time: Some(std::time::Duration::ZERO),
    };
    let r = review_within(&mut index, &req, now(), none);
    assert!(!r.allowed && r.violations.is_empty());
    let why = r.refusal.unwrap();
    assert!(
        // Stopped while listing them: 21 ServiceAccounts and the group.
        why.contains("affects 22 subjects") && why.contains("--decision-budget"),
        "{why}"
    );
    // A change no subject needs judging for is still decided.
    let harmless = create(crb("all", "configmaps", all_serviceaccounts()), "alice");
    apply(&mut index, cluster_role("configmaps", "configmaps", "get"));
    assert!(review_within(&mut index, &harmless, now(), none).allowed);
    // The state is left as it was.
    assert_eq!(review(&mut index, &req, now()), full);
}

/// Letting off the subjects a change cannot give a new violation walks
/// each one's bindings (50,000 walks for a binding of
/// `system:serviceaccounts` at 100k bindings): the selection itself stops
/// when the time is up, so no decision holds the lock for it past its
/// budget.
#[test]
fn the_selection_stops_when_the_time_is_up() {
    let mut index = crowded(4, 20);
    let object = convert(&crb("all", "both", all_serviceaccounts()))
        .unwrap()
        .unwrap();
    let none = Budget {
        violations: usize::MAX,
        time: Some(std::time::Duration::ZERO),
    }
    .start();
    let e = admission::select(&mut index, None, &object, &none).unwrap_err();
    // Stopped while listing who acts as them: the 81 ServiceAccounts and
    // the group named.
    assert_eq!(
        e,
        Exhausted::Time {
            limit: std::time::Duration::ZERO,
            judged: 0,
            subjects: 82,
        }
    );
    let (all, _) = admission::select(&mut index, None, &object, &Meter::unlimited()).unwrap();
    assert_eq!(all.len(), 81, "every ServiceAccount, pay:api too");
}

/// Under Warn nothing is refused: past the budget's count, new violations
/// are counted, not kept, and judging goes on to the end.
#[test]
fn new_violations_past_the_budget_that_refuse_nothing_are_counted_not_kept() {
    let mut index = crowded(2, 3);
    let warn = policy(json!({"duties": duties(), "validationActions": ["Warn"]}));
    apply(&mut index, warn);
    let req = create(crb("all", "both", all_serviceaccounts()), "alice");
    let few = Budget {
        violations: 2,
        time: None,
    };
    let r = review_within(&mut index, &req, now(), few);
    assert!(r.allowed, "{:?}", r.refusal);
    assert_eq!(r.violations.len(), 2);
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("5 more new violation(s)")),
        "{:?}",
        r.warnings
    );
}

/// An evaluation within a budget stops once it holds more violations than
/// allowed, and says how far it got.
#[test]
fn an_evaluation_past_its_budget_stops_and_says_so() {
    let mut index = crowded(3, 4);
    apply(&mut index, crb("all", "both", all_serviceaccounts()));
    let all = evaluate(&index, now());
    assert_eq!(all.violations.len(), 13);
    let (ev, stopped) = evaluate_within(&index, now(), Budget::UNLIMITED);
    assert_eq!((ev, stopped), (all.clone(), None));
    let few = Budget {
        violations: 5,
        time: None,
    };
    let (ev, stopped) = evaluate_within(&index, now(), few);
    let stopped = stopped.expect("stopped");
    assert_eq!(
        stopped.to_string(),
        "more than 5 violations (judged 6 of 13 subjects)"
    );
    assert_eq!(stopped.metric_label(), "violations");
    assert_eq!(ev.violations.len(), 6);
}

/// One subject's walk stops at its deadline and says so: a decision then
/// counts nothing judged on it.
#[test]
fn a_walk_past_its_deadline_stops_and_says_so() {
    let mut index = crowded(2, 2);
    apply(&mut index, crb("all", "both", all_serviceaccounts()));
    let sa = crate::model::Identity::service_account("ns0", "sa0");
    let unhurried = holdings::Shared::until(None);
    let all = subject_violations_shared(&index, &sa, None, &unhurried);
    assert!(!unhurried.interrupted());
    assert_eq!(all.len(), 1);
    let late = holdings::Shared::until(Some(std::time::Instant::now()));
    let cut = subject_violations_shared(&index, &sa, None, &late);
    assert!(late.interrupted());
    assert!(cut.len() < all.len(), "{cut:?}");
}

/// A new policy is admitted whatever it finds; counting what it finds is
/// whole-state work, bounded like any decision: past the budget it says so
/// instead of listing them.
#[test]
fn a_new_policy_counts_existing_violations_within_the_budget() {
    let mut index = crowded(2, 3);
    apply(&mut index, crb("all", "both", all_serviceaccounts()));
    let mut second = policy(json!({"duties": duties()}));
    second["metadata"]["name"] = "q".into();
    let req = create(second, "alice");
    let full = review(&mut index, &req, now());
    assert!(full.allowed);
    assert_eq!(full.violations.len(), 7);
    assert!(
        full.warnings[0].contains("7 subject(s) already violate it"),
        "{:?}",
        full.warnings
    );
    let few = Budget {
        violations: 2,
        time: None,
    };
    let r = review_within(&mut index, &req, now(), few);
    assert!(r.allowed && r.violations.is_empty());
    assert!(
        r.warnings[0].contains("more than sodguard counts within a decision")
            && r.warnings[0].contains("more than 2 violations"),
        "{:?}",
        r.warnings
    );
    assert!(r.stopped.is_some());
}

/// The subjects a RoleBinding of `pay` for ServiceAccount `pay/web` to
/// `role` makes admission judge, on `state()` with `extra` objects.
fn judged_for(extra: &[Value], role: &str) -> Vec<String> {
    judged_with_pending(extra, &[], role)
}

/// [`judged_for`] in live mode (R7.8), with `pending` admitted and assumed
/// but not yet shown by the watches (none: a single state).
fn judged_with_pending(extra: &[Value], pending: &[Value], role: &str) -> Vec<String> {
    let mut index = state();
    apply(
        &mut index,
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "web", "namespace": "pay"}}),
    );
    for o in extra {
        apply(&mut index, o.clone());
    }
    let mut binding = rb("new", "Role", role);
    binding["subjects"] = json!([{"kind": "ServiceAccount", "name": "web"}]);
    let object = convert(&binding).unwrap().unwrap();
    let subjects = if pending.is_empty() {
        admission::select(&mut index, None, &object, &Meter::unlimited())
            .unwrap()
            .0
    } else {
        let mut assumed = index.clone();
        for o in pending {
            let a = assumption(&assumed, convert(o).unwrap().unwrap()).unwrap();
            let _ = assumed.apply(a.merged);
            if let Some(shadow) = a.shadow {
                let _ = assumed.apply(shadow);
            }
        }
        admission::select(&mut assumed, Some(&index), &object, &Meter::unlimited())
            .unwrap()
            .0
    };
    subjects.iter().map(ToString::to_string).collect()
}

fn role(name: &str, rules: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": name, "namespace": "pay"},
           "rules": rules})
}

/// ServiceAccount `ctl/ops`, that creates Jobs in every namespace: it acts
/// as every ServiceAccount (R9.1).
fn ops_creates_jobs() -> [Value; 3] {
    [
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "ops", "namespace": "ctl"}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "jobs"},
               "rules": [{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create"]}]}),
        crb("ops-jobs", "jobs", ops()),
    ]
}

fn ops() -> Value {
    json!({"kind": "ServiceAccount", "name": "ops", "namespace": "ctl"})
}

const OPS: &str = "ServiceAccount:ctl:ops";

/// Role `pay/writer`: creates Secrets.
fn writer() -> Value {
    role(
        "writer",
        json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]}]),
    )
}

/// A binding that is already there, with the same role and subjects (an
/// update of its labels, or the CREATE of one that exists), changes
/// nobody's holdings: nobody is judged. Judging whoever an escalation
/// binding reaches took seconds at 100k bindings. Not while the binding is
/// only assumed (live mode, R7.8): on the confirmed state it is new.
#[test]
fn a_binding_that_is_there_already_judges_nobody() {
    // Runs Pods in `pay`: an escalation path (R9.1).
    let runner = role(
        "runner",
        json!([{"apiGroups": [""], "resources": ["pods", "secrets"], "verbs": ["create"]}]),
    );
    let mut bound = rb("new", "Role", "runner");
    bound["subjects"] = json!([{"kind": "ServiceAccount", "name": "web"}]);
    let mut there = ops_creates_jobs().to_vec();
    there.push(runner);
    let web = "ServiceAccount:pay:web".to_string();
    let judged = judged_for(&there, "runner");
    assert!(judged.contains(&web), "{judged:?}");
    there.push(bound.clone());
    assert_eq!(judged_for(&there, "runner"), Vec::<String>::new());
    there.pop();
    let judged = judged_with_pending(&there, &[bound], "runner");
    assert!(judged.contains(&web), "{judged:?}");
}

/// A ServiceAccount that creates Jobs everywhere acts as `pay/web` already:
/// a grant to `pay/web` is its grant too, but one it holds in `pay` already
/// (its own bindings give it, or those of a ServiceAccount of `pay` it acts
/// as) gives it nothing new, and it is not judged (judging each such
/// subject walked what every ServiceAccount holds, twice per decision). A
/// grant it lacks makes it judged.
#[test]
fn who_acts_as_the_bound_serviceaccount_is_judged_only_for_grants_it_lacks() {
    // Its Pods mount the Secrets (`get`); creating them it lacks, once
    // `pay/api` no longer creates them either.
    let api_configmaps = role(
        "w",
        json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]),
    );
    let mut ops_jobs = ops_creates_jobs().to_vec();
    ops_jobs.push(writer());
    let mut lacks = ops_jobs.clone();
    lacks.push(api_configmaps.clone());
    let judged = judged_for(&lacks, "writer");
    assert!(judged.contains(&OPS.to_string()), "{judged:?}");
    assert!(
        judged.contains(&"ServiceAccount:pay:web".to_string()),
        "{judged:?}"
    );

    // `ops` creates Secrets everywhere itself: the binding adds nothing to it.
    let mut holds = lacks.clone();
    holds.push(cluster_role("secret-creator", "secrets", "create"));
    holds.push(crb("ops-creates", "secret-creator", ops()));
    let judged = judged_for(&holds, "writer");
    assert!(!judged.contains(&OPS.to_string()), "{judged:?}");
    assert!(
        judged.contains(&"ServiceAccount:pay:web".to_string()),
        "{judged:?}"
    );

    // `pay/api` creates Secrets in `pay` (`state()`), and `ops` acts as it.
    let judged = judged_for(&ops_jobs, "writer");
    assert!(!judged.contains(&OPS.to_string()), "{judged:?}");
}

/// Half of a RoleGrant (R9.1: `create rolebindings` without `bind` or
/// `escalate`) gives nothing by itself: who acts as the ServiceAccount it is
/// bound to is judged only when that ServiceAccount holds the other half.
#[test]
fn half_a_role_grant_makes_nobody_acting_as_its_subject_judged() {
    let access = role(
        "access",
        json!([{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["rolebindings"], "verbs": ["create"]}]),
    );
    let mut ops_jobs = ops_creates_jobs().to_vec();
    ops_jobs.push(access);
    let judged = judged_for(&ops_jobs, "access");
    assert!(!judged.contains(&OPS.to_string()), "{judged:?}");

    // With `bind` on roles, `pay/web` can now bind any Role of `pay`.
    let mut pairs = ops_jobs;
    pairs.push(role(
        "binder",
        json!([{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["bind"]}]),
    ));
    let mut b = rb("web-binds", "Role", "binder");
    b["subjects"] = json!([{"kind": "ServiceAccount", "name": "web"}]);
    pairs.push(b);
    let judged = judged_for(&pairs, "access");
    assert!(judged.contains(&OPS.to_string()), "{judged:?}");
}

/// With admitted changes pending (R7.8), a holding lets a subject off a
/// grant only when no pending change touches the binding and role that give
/// it: a narrowing pending would take it away, and the grant judged would
/// then be new.
#[test]
fn with_changes_pending_only_holdings_they_do_not_touch_let_a_subject_off() {
    let mut ops_jobs = ops_creates_jobs().to_vec();
    ops_jobs.push(writer());
    let unrelated = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "other", "namespace": "ctl"}});
    // `pay/api` creates Secrets in `pay` through Role `w`, and `ops` acts
    // as it: with an unrelated change pending, still let off.
    let judged = judged_with_pending(&ops_jobs, std::slice::from_ref(&unrelated), "writer");
    assert!(!judged.contains(&OPS.to_string()), "{judged:?}");
    // `w` narrowed to ConfigMaps, not yet shown by the watch: judged.
    let narrowed = role(
        "w",
        json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]),
    );
    let judged = judged_with_pending(&ops_jobs, &[narrowed], "writer");
    assert!(judged.contains(&OPS.to_string()), "{judged:?}");
    // The Jobs `ops` creates everywhere narrowed away: judged.
    let no_jobs = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "jobs"},
               "rules": [{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get"]}]});
    let judged = judged_with_pending(&ops_jobs, &[no_jobs], "writer");
    assert!(judged.contains(&OPS.to_string()), "{judged:?}");
}

/// What a subject's own bindings give, kept across decisions, is of the
/// state it was read on: after a binding of it goes, a decision must not
/// let it off for a grant that binding gave.
#[test]
fn own_bindings_read_by_an_earlier_decision_are_read_again_after_a_change() {
    let mut index = state();
    // `api` creates Secrets in `pay` (`state()`) and now reads them too.
    apply(&mut index, rb("use-1", "ClusterRole", "src"));
    let again = create(rb("use-2", "ClusterRole", "src"), "alice");
    assert!(
        review(&mut index, &again, now()).allowed,
        "nothing new: it reads them already"
    );
    let _ = index.remove(&crate::model::ObjectKey::Binding(
        crate::model::BindingKey {
            namespace: Some("pay".into()),
            name: "use-1".into(),
        },
    ));
    assert!(evaluate(&index, now()).violations.is_empty());
    let r = review(&mut index, &again, now());
    assert!(!r.allowed, "reading them again is new: {r:?}");
}
