use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use super::*;
use crate::decode::convert;
use crate::engine::evaluate;
use crate::engine::index::Index;

fn now() -> Timestamp {
    "2026-11-28T12:00:00Z".parse().unwrap()
}

fn policy(name: &str, extra: Value) -> Value {
    let mut spec = json!({"duties": [
        {"name": "secret-admin", "permissions": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]}]},
        {"name": "secret-use", "permissions": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}
    ]});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    json!({"apiVersion": "sodguard.io/v1alpha1", "kind": "SoDPolicy", "metadata": {"name": name}, "spec": spec})
}

fn sa(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}})
}

/// A Role holding both duties in `ns`, bound to ServiceAccount `ns/name`.
fn both_duties(ns: &str, name: &str) -> [Value; 3] {
    [
        sa(ns, name),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "both", "namespace": ns},
               "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "create"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": format!("b-{name}"), "namespace": ns},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "both"},
               "subjects": [{"kind": "ServiceAccount", "name": name}]}),
    ]
}

fn exception(name: &str, spec: Value, created: &str) -> Value {
    let mut s = json!({"policy": "p", "subject": {"kind": "ServiceAccount", "namespace": "pay", "name": "api"},
                       "justification": "migration", "requestedBy": "alice",
                       "expiresAt": "2026-11-28T18:00:00Z",
                       "approvals": [{"user": "bob", "at": "2026-11-28T10:00:00Z"}]});
    if let (Some(s), Some(e)) = (s.as_object_mut(), spec.as_object()) {
        s.extend(e.clone());
    }
    json!({"apiVersion": "sodguard.io/v1alpha1", "kind": "SoDException",
           "metadata": {"name": name, "creationTimestamp": created}, "spec": s})
}

fn index(objs: &[Value]) -> Index {
    Index::from_objects(objs.iter().map(|o| convert(o).unwrap().unwrap()))
}

fn run(objs: &[Value], at: Timestamp) -> Audit {
    let i = index(objs);
    let ev = evaluate(&i, at);
    audit(&i, &ev, at)
}

fn ns_results<'a>(a: &'a Audit, ns: &str) -> &'a [ReportResult] {
    a.results
        .get(&Some(Name::from(ns)))
        .map(Vec::as_slice)
        .unwrap_or_default()
}

#[test]
fn a_denied_violation_is_a_fail_result_in_its_namespace_report_with_the_paths() {
    let mut objs = vec![policy("p", json!({}))];
    objs.extend(both_duties("pay", "api"));
    let a = run(&objs, now());
    let rs = ns_results(&a, "pay");
    assert_eq!(rs.len(), 1);
    let r = &rs[0];
    assert_eq!(r.result, "fail");
    assert_eq!(&*r.policy, "p");
    assert_eq!(r.resources[0].kind, "ServiceAccount");
    assert_eq!(&*r.resources[0].name, "api");
    assert!(
        r.message.contains("RoleBinding pay/b-api → Role pay/both"),
        "{}",
        r.message
    );
    assert_eq!(
        r.properties.get("duties").map(|v| &**v),
        Some("secret-admin,secret-use")
    );
    let p = &a.policies["p"];
    assert_eq!((p.violations, p.excused), (1, 0));
    assert_eq!(p.by_action.get("Deny"), Some(&1));
    assert_eq!(a.events.len(), 1);
    assert_eq!(a.events[0].kind, EventKind::ViolationFound);
    assert_eq!(a.events[0].on.kind, "ServiceAccount");
    // Nothing cluster-wide: the cluster report exists and is empty.
    let reps = reports(a.results.clone(), ReportFormat::Openreports);
    assert_eq!(reps.len(), 2);
    assert_eq!(reps[0].kind, "ClusterReport");
    assert!(reps[0].results.is_empty());
    assert_eq!(reps[1].kind, "Report");
    assert_eq!(reps[1].metadata.namespace.as_deref(), Some("pay"));
    assert_eq!(reps[1].summary.fail, 1);
    assert_eq!(reps[1].metadata.labels[MANAGED_BY_LABEL], MANAGED_BY);
}

#[test]
fn warn_and_audit_violations_are_warn_results() {
    for action in ["Warn", "Audit"] {
        let mut objs = vec![policy("p", json!({"validationActions": [action]}))];
        objs.extend(both_duties("pay", "api"));
        let a = run(&objs, now());
        assert_eq!(ns_results(&a, "pay")[0].result, "warn");
        assert_eq!(a.policies["p"].by_action.get(action), Some(&1));
    }
}

#[test]
fn a_cluster_wide_violation_goes_to_the_cluster_report() {
    let objs = [
        policy("p", json!({})),
        sa("pay", "api"),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "both"},
               "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "create"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "crb"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "both"},
               "subjects": [{"kind": "ServiceAccount", "name": "api", "namespace": "pay"}]}),
    ];
    let a = run(&objs, now());
    let reps = reports(a.results.clone(), ReportFormat::Policyreport);
    assert_eq!(reps.len(), 1);
    assert_eq!(reps[0].kind, "ClusterPolicyReport");
    assert_eq!(reps[0].api_version, "wgpolicyk8s.io/v1alpha2");
    assert_eq!(
        reps[0].results[0].properties.get("namespace").map(|v| &**v),
        Some("*")
    );
}

#[test]
fn an_excused_violation_is_a_skip_naming_the_exception_and_its_expiry() {
    let mut objs = vec![policy("p", json!({}))];
    objs.extend(both_duties("pay", "api"));
    objs.push(exception("x", json!({}), "2026-11-28T09:00:00Z"));
    let a = run(&objs, now());
    let r = &ns_results(&a, "pay")[0];
    assert_eq!(r.result, "skip");
    assert_eq!(r.properties.get("exception").map(|v| &**v), Some("x"));
    assert_eq!(
        r.properties.get("expiresAt").map(|v| &**v),
        Some("2026-11-28T18:00:00Z")
    );
    assert_eq!(
        (a.policies["p"].violations, a.policies["p"].excused),
        (0, 1)
    );
    let x = &a.exceptions["x"];
    assert_eq!((x.phase, x.excused, x.reason.as_str()), ("Active", 1, ""));
    // Ends within 24 h: announced.
    assert!(
        a.events
            .iter()
            .any(|e| e.kind == EventKind::ExceptionExpiring)
    );
}

#[test]
fn exception_phases_and_reasons() {
    let mut objs = vec![policy("p", json!({}))];
    objs.extend(both_duties("pay", "api"));
    objs.push(exception(
        "pending",
        json!({"approvals": []}),
        "2026-11-28T09:00:00Z",
    ));
    objs.push(exception(
        "expired",
        json!({"expiresAt": "2026-11-28T11:00:00Z"}),
        "2026-11-28T09:00:00Z",
    ));
    objs.push(exception(
        "glass",
        json!({"approvals": [], "breakGlass": true}),
        "2026-11-28T11:00:00Z",
    ));
    let a = run(&objs, now());
    assert_eq!(a.exceptions["pending"].phase, "Pending");
    assert!(a.exceptions["pending"].reason.contains("approval"));
    assert_eq!(a.exceptions["expired"].phase, "Expired");
    assert_eq!(a.exceptions["glass"].phase, "Inactive");
    assert!(
        a.exceptions["glass"]
            .reason
            .contains("does not allow break-glass"),
        "{}",
        a.exceptions["glass"].reason
    );
    // The violation stands, and the expiry of "expired" an hour ago is news.
    assert_eq!(ns_results(&a, "pay")[0].result, "fail");
    assert!(
        a.events
            .iter()
            .any(|e| e.kind == EventKind::ExceptionExpired && e.key.starts_with("expired|"))
    );
    // A day later it is not announced again.
    let later = now() + SignedDuration::from_hours(26);
    let b = run(&objs, later);
    assert!(
        !b.events
            .iter()
            .any(|e| e.kind == EventKind::ExceptionExpired && e.key.starts_with("expired|"))
    );
}

#[test]
fn an_active_exception_that_covers_nothing_says_so() {
    let objs = [
        policy("p", json!({})),
        sa("pay", "api"),
        exception("x", json!({}), "2026-11-28T09:00:00Z"),
    ];
    let a = run(&objs, now());
    assert_eq!(a.exceptions["x"].phase, "Active");
    assert!(a.exceptions["x"].reason.contains("no current violation"));
}

fn token(ns: &str, name: &str, sa: &str, created: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
           "metadata": {"name": name, "namespace": ns, "creationTimestamp": created,
                        "annotations": {"kubernetes.io/service-account.name": sa}}})
}

#[test]
fn token_secrets_of_duty_holders_are_reported_and_stale_ones_fail() {
    let mut objs = vec![policy("p", json!({"credentials": {"maxAge": "1h"}}))];
    objs.extend(both_duties("pay", "api"));
    objs.push(token("pay", "old", "api", "2026-11-28T10:00:00Z"));
    objs.push(token("pay", "new", "api", "2026-11-28T11:30:00Z"));
    // A ServiceAccount that holds nothing: its token is no finding.
    objs.push(sa("pay", "idle"));
    objs.push(token("pay", "idle-token", "idle", "2026-11-28T10:00:00Z"));
    let a = run(&objs, now());
    let rs = ns_results(&a, "pay");
    let by_secret = |n: &str| {
        rs.iter().find(|r| {
            r.resources
                .iter()
                .any(|o| o.kind == "Secret" && &*o.name == n)
        })
    };
    let old = by_secret("old").unwrap();
    assert_eq!(
        (old.rule.as_deref(), &*old.result),
        (Some("stale-token"), "fail")
    );
    let new = by_secret("new").unwrap();
    assert_eq!(
        (new.rule.as_deref(), &*new.result),
        (Some("long-lived-token"), "warn")
    );
    assert!(by_secret("idle-token").is_none());
    // The finding does not change while the Secret only ages.
    let b = run(&objs, now() + SignedDuration::from_mins(10));
    assert_eq!(a.results, b.results);
}

#[test]
fn an_unreviewed_break_glass_window_is_a_finding_once_its_review_is_due() {
    let allow = json!({"exceptions": {"breakGlass": {"allowed": true, "reviewWithin": "2h"}}});
    let mut objs = vec![policy("p", allow)];
    objs.extend(both_duties("pay", "api"));
    objs.push(exception(
        "glass",
        json!({"approvals": [], "breakGlass": true, "expiresAt": "2026-11-28T10:00:00Z"}),
        "2026-11-28T08:00:00Z",
    ));
    let finding = |a: &Audit| {
        a.results
            .get(&None)
            .into_iter()
            .flatten()
            .any(|r| r.rule.as_deref() == Some("break-glass-review"))
    };
    // Ended at 10:00; review due by 12:00.
    assert!(!finding(&run(
        &objs,
        "2026-11-28T11:59:00Z".parse().unwrap()
    )));
    assert!(finding(&run(&objs, now())));
    let mut reviewed = objs.clone();
    reviewed.pop();
    reviewed.push(exception(
        "glass",
        json!({"approvals": [], "breakGlass": true, "expiresAt": "2026-11-28T10:00:00Z",
               "review": {"user": "carol", "at": "2026-11-28T10:30:00Z", "outcome": "Accepted"}}),
        "2026-11-28T08:00:00Z",
    ));
    assert!(!finding(&run(&reviewed, now())));
}

#[test]
fn reports_are_split_over_max_results_in_a_stable_order() {
    let mut objs = vec![policy("p", json!({}))];
    let n = MAX_RESULTS + 5;
    for i in 0..n {
        let [s, r, b] = both_duties("big", &format!("sa-{i:05}"));
        objs.extend([s, b]);
        if i == 0 {
            objs.push(r);
        }
    }
    let a = run(&objs, now());
    let reps = reports(a.results.clone(), ReportFormat::Openreports);
    let big: Vec<&Report> = reps
        .iter()
        .filter(|r| r.metadata.namespace.as_deref() == Some("big"))
        .collect();
    assert_eq!(big.len(), 2);
    assert_eq!(big[0].metadata.name, "sodguard");
    assert_eq!(big[1].metadata.name, "sodguard-2");
    assert_eq!(big[0].results.len(), MAX_RESULTS);
    assert_eq!(big[1].results.len(), 5);
    assert_eq!(big[0].summary.fail, MAX_RESULTS as i64);
    assert_eq!(big[0].results[0].resources[0].name, "sa-00000".into());
    assert_eq!(
        big[1].results[4].resources[0].name,
        format!("sa-{:05}", n - 1).into()
    );
    // The same state gives the same reports.
    assert_eq!(
        reps,
        reports(run(&objs, now()).results, ReportFormat::Openreports)
    );
}

#[test]
fn a_status_is_kept_as_stored_while_nothing_changes() {
    let mut objs = vec![policy("p", json!({}))];
    objs.extend(both_duties("pay", "api"));
    let a = run(&objs, now());
    let first = policy_status(None, Some(3), &a.policies["p"], now());
    assert_eq!(first.violations, Some(1));
    assert_eq!(first.last_audit.as_deref(), Some("2026-11-28T12:00:00Z"));
    let later = now() + SignedDuration::from_mins(5);
    let b = run(&objs, later);
    let again = policy_status(Some(&first), Some(3), &b.policies["p"], later);
    assert_eq!(
        again, first,
        "an unchanged audit must not rewrite the status"
    );
    // A new generation or new counts are written, keeping the Ready
    // condition's transition time (it stayed True).
    let bumped = policy_status(Some(&first), Some(4), &b.policies["p"], later);
    assert_ne!(bumped, first);
    assert_eq!(bumped.last_audit.as_deref(), Some("2026-11-28T12:05:00Z"));
    assert_eq!(
        bumped.conditions[0].last_transition_time,
        first.conditions[0].last_transition_time
    );
    let err = crate::crd::FieldError::new("spec.maxDuties", "too large");
    let invalid = invalid_policy_status(Some(&first), Some(5), &err, later);
    assert_eq!(invalid.conditions[1].type_, "Invalid");
    assert_eq!(invalid.conditions[1].status, "True");
    assert!(invalid.conditions[1].message.contains("spec.maxDuties"));
    assert_eq!(invalid.violations, None);
}

#[test]
fn an_exception_status_is_kept_while_nothing_changes() {
    let mut objs = vec![policy("p", json!({}))];
    objs.extend(both_duties("pay", "api"));
    objs.push(exception("x", json!({}), "2026-11-28T09:00:00Z"));
    let a = run(&objs, now());
    let s = exception_status(None, &a.exceptions["x"], now());
    assert_eq!(s.phase.as_deref(), Some("Active"));
    let later = now() + SignedDuration::from_mins(1);
    let b = run(&objs, later);
    assert_eq!(exception_status(Some(&s), &b.exceptions["x"], later), s);
    let expired_at = "2026-11-28T18:00:01Z".parse().unwrap();
    let c = run(&objs, expired_at);
    let e = exception_status(Some(&s), &c.exceptions["x"], expired_at);
    assert_eq!(e.phase.as_deref(), Some("Expired"));
    assert_eq!(e.conditions[0].status, "False");
}

#[test]
fn the_next_change_with_time_is_when_an_exception_ends_or_a_token_turns_stale() {
    let mut objs = vec![policy("p", json!({"credentials": {"maxAge": "2h"}}))];
    objs.extend(both_duties("pay", "api"));
    objs.push(exception("x", json!({}), "2026-11-28T09:00:00Z"));
    let a = run(&objs, now());
    // The exception ends at 18:00 (its expiry notice is already due).
    assert_eq!(a.next_change, Some("2026-11-28T18:00:00Z".parse().unwrap()));
    objs.push(token("pay", "t", "api", "2026-11-28T11:00:00Z"));
    let b = run(&objs, now());
    assert_eq!(b.next_change, Some("2026-11-28T13:00:01Z".parse().unwrap()));
}

#[test]
fn an_expired_grant_whose_binding_remains_fails_and_its_end_wakes_the_audit() {
    let objs = [
        sa("pay", "web"),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "reader", "namespace": "pay"},
               "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}),
        json!({"apiVersion": "sodguard.io/v1alpha1", "kind": "AccessGrantPolicy", "metadata": {"name": "oncall"},
               "spec": {"roles": ["reader"], "namespaces": ["pay"], "maxDuration": "4h", "approverGroups": ["leads"],
                        "breakGlass": {"allowed": true, "maxDuration": "1h"}}}),
        json!({"apiVersion": "sodguard.io/v1alpha1", "kind": "AccessGrant",
               "metadata": {"name": "g", "namespace": "pay", "creationTimestamp": "2026-11-28T11:00:00Z"},
               "spec": {"subject": {"kind": "ServiceAccount", "namespace": "pay", "name": "web"},
                        "roleRef": {"kind": "Role", "name": "reader"}, "duration": "30m", "reason": "r",
                        "requestedBy": "alice", "breakGlass": true}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "sodguard-grant-g", "namespace": "pay", "labels": {"sodguard.io/grant": "g"}},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
               "subjects": [{"kind": "ServiceAccount", "name": "web"}]}),
    ];
    let during = run(&objs, "2026-11-28T11:10:00Z".parse().unwrap());
    assert!(
        ns_results(&during, "pay")
            .iter()
            .all(|r| r.rule.as_deref() != Some("expired-grant-bound"))
    );
    assert_eq!(
        during.next_change,
        Some("2026-11-28T11:30:01Z".parse().unwrap())
    );
    let after = run(&objs, now());
    let r = ns_results(&after, "pay")
        .iter()
        .find(|r| r.rule.as_deref() == Some("expired-grant-bound"))
        .expect("a finding");
    assert_eq!(r.result, "fail");
    assert!(
        r.message.contains("RoleBinding pay/sodguard-grant-g") && r.message.contains("Expired"),
        "{}",
        r.message
    );
}

/// The note shares the result's whole message; what an Event carries is cut
/// to 1,000 bytes on a character boundary, whatever the message's length.
#[test]
fn an_event_note_is_the_message_cut_to_what_an_event_holds() {
    let objs = both_duties("pay", "api");
    let mut all = vec![policy("p", json!({}))];
    all.extend(objs);
    let a = run(&all, now());
    let e = &a.events[0];
    let r = &ns_results(&a, "pay")[0];
    assert!(std::sync::Arc::ptr_eq(&e.note, &r.message));
    assert_eq!(e.note_text(), *r.message);
    for len in [999, 1000, 1001, 4000] {
        let long = AuditEvent {
            note: "é".repeat(len / 2 + 1)[..].into(),
            ..e.clone()
        };
        let t = long.note_text();
        assert!(t.len() <= 1000 + '…'.len_utf8(), "{len}: {}", t.len());
        assert!(long.note.starts_with(t.trim_end_matches('…')));
    }
}

/// A fixed state's audit counts part by part what the whole audit counts:
/// violations by action, excused ones, and when they change with time.
#[test]
fn counts_in_parts_equal_the_audits() {
    let mut objs = vec![
        policy("p", json!({"credentials": {"maxAge": "2h"}})),
        policy("q", json!({"validationActions": ["Warn", "Audit"]})),
    ];
    for ns in ["a", "b", "c", "pay"] {
        for name in ["api", "ci", "web"] {
            // One Role `both` per namespace, bound to each.
            objs.extend(
                both_duties(ns, name)
                    .into_iter()
                    .filter(|o| o["kind"] != "Role" || name == "api"),
            );
        }
    }
    objs.push(sa("b", "idle"));
    objs.push(exception("x", json!({}), "2026-11-28T09:00:00Z"));
    objs.push(token("pay", "t", "api", "2026-11-28T11:00:00Z"));
    let i = index(&objs);
    let whole = audit(&i, &evaluate(&i, now()), now());
    assert_eq!(whole.policies["p"].excused, 1);
    assert!(whole.policies["q"].violations > 1);
    for per_part in [1, 2, 5, 1000] {
        let c = counts_in_parts(&i, now(), crate::engine::Budget::UNLIMITED, per_part).unwrap();
        assert_eq!(c.policies, whole.policies, "{per_part} subjects per part");
        assert_eq!(c.next_change, whole.next_change);
    }
    // The budget counts the parts together.
    let budget = crate::engine::Budget {
        violations: 3,
        time: None,
    };
    assert!(counts_in_parts(&i, now(), budget, 1).is_err());
    assert!(counts_in_parts(&i, now(), budget, 1000).is_err());
}
