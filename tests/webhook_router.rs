//! The webhook router in process: AdmissionReview fixtures (tests/fixtures)
//! for each kind and operation, and every kind of bad request.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use sodguard::admission::http::{DEFAULT_MAX_BODY, guard};
use sodguard::engine::index::Index;
use sodguard::runtime::metrics::Metrics;
use sodguard::runtime::state::{AppState, Mode};
use tower::ServiceExt;

mod common;

use common::objects::{
    self, cluster_role as bare_cluster_role, duty, policy as bare_policy, role as bare_role,
    role_binding, sa, secrets_rule, service_account,
};
use common::webhook::{
    admission_request, admission_review, create_review, fixture_index, fixture_review, fixtures,
    live, post, state, validate_request,
};

struct Expect {
    fixture: &'static str,
    allowed: bool,
    message: &'static [&'static str],
    warnings: &'static [&'static str],
    audit: bool,
}

const fn e(fixture: &'static str, allowed: bool) -> Expect {
    Expect {
        fixture,
        allowed,
        message: &[],
        warnings: &[],
        audit: false,
    }
}

const SECRET_DENIAL: &[&str] = &[
    "SoDPolicy secret-admin-vs-use: ServiceAccount:payments:api would hold secret-admin + secret-use in namespace payments",
    "secret-admin: RoleBinding payments/api-writes → Role payments/secret-writer → rules[0]: create,update secrets",
];

fn expectations() -> Vec<Expect> {
    vec![
        Expect {
            message: &[
                "SoDPolicy secret-admin-vs-use: ServiceAccount:payments:api would hold secret-admin + secret-use in namespace payments",
                "secret-admin: RoleBinding payments/api-writes → Role payments/secret-writer → rules[0]: create,update secrets",
                "secret-use: RoleBinding payments/api-reads → Role payments/secret-reader → rules[0]: get,list secrets",
            ],
            ..e("rolebinding-create-denied", false)
        },
        Expect {
            message: SECRET_DENIAL,
            ..e("rolebinding-create-dry-run-denied", false)
        },
        e("rolebinding-create-allowed", true),
        Expect {
            message: SECRET_DENIAL,
            ..e("rolebinding-update-denied", false)
        },
        e("rolebinding-delete-allowed", true),
        Expect {
            message: &[
                "secret-use: ClusterRoleBinding api-reads-all → ClusterRole secret-reader-cluster → rules[0]: get secrets",
            ],
            ..e("clusterrolebinding-create-denied", false)
        },
        Expect {
            message: &[
                "ServiceAccount:payments:web would hold secret-admin + secret-use in namespace payments",
                "secret-admin: RoleBinding payments/web-config → Role payments/cm-writer → rules[0]: update * (…)",
            ],
            ..e("role-update-denied", false)
        },
        Expect {
            message: &[
                "RoleBinding payments/api-team → ClusterRole team → ClusterRole team-secrets → rules[0]: list secrets",
            ],
            ..e("clusterrole-joins-aggregate-denied", false)
        },
        Expect {
            message: &["ServiceAccount:payments:late would hold secret-admin + secret-use"],
            ..e("serviceaccount-create-denied", false)
        },
        e("serviceaccount-create-allowed", true),
        Expect {
            warnings: &["long-lived token", "TokenRequest"],
            ..e("secret-token-warned", true)
        },
        e("secret-opaque-allowed", true),
        Expect {
            message: &["spec.duties"],
            ..e("sodpolicy-invalid-denied", false)
        },
        Expect {
            // payments/legacy by its rules; payments/deployer by R9.1: it
            // updates Deployments, so runs as payments/api (secret-writer)
            // and mounts the namespace's Secrets.
            warnings: &["SoDPolicy secret-admin-vs-use: 2 subject(s) already violate it"],
            ..e("sodpolicy-existing-violators-warned", true)
        },
        Expect {
            message: &["spec.requestedBy must be the user who creates the exception"],
            ..e("sodexception-for-someone-else-denied", false)
        },
        e("sodexception-create-allowed", true),
        Expect {
            warnings: &[
                "SoDPolicy config-vs-exec: ServiceAccount:payments:web would hold config-write + pod-exec in namespace payments (Warn)",
            ],
            ..e("warn-policy-allowed-with-warning", true)
        },
        Expect {
            audit: true,
            ..e("audit-policy-annotated", true)
        },
        Expect {
            warnings: &[
                "ServiceAccount:payments:ops would hold secret-admin + secret-use in namespace payments — excused by SoDException ops-rotation until 2099-01-01T00:00:00Z",
            ],
            ..e("excused-violation-warned", true)
        },
        e("configmap-allowed", true),
        Expect {
            message: &["RoleBinding payments/x", "roleRef"],
            ..e("unreadable-rolebinding-denied", false)
        },
    ]
}

#[tokio::test]
async fn fixtures_get_their_decisions() {
    let expectations = expectations();
    let files = std::fs::read_dir(fixtures().join("reviews"))
        .unwrap()
        .count();
    assert_eq!(
        files,
        expectations.len(),
        "every fixture has an expectation"
    );
    for x in expectations {
        let body = fixture_review(x.fixture);
        let sent: Value = serde_json::from_slice(&body).unwrap();
        let (status, got) = post(state(Mode::Static), body).await;
        assert_eq!(status, StatusCode::OK, "{}: {got}", x.fixture);
        let r = &got["response"];
        assert_eq!(got["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(got["kind"], "AdmissionReview");
        assert_eq!(r["uid"], sent["request"]["uid"], "{}", x.fixture);
        assert_eq!(r["allowed"], x.allowed, "{}: {r}", x.fixture);
        let message = r["status"]["message"].as_str().unwrap_or_default();
        if !x.allowed {
            assert_eq!(r["status"]["code"], 403, "{}", x.fixture);
            assert_eq!(r["status"]["reason"], "Forbidden", "{}", x.fixture);
        }
        for m in x.message {
            assert!(
                message.contains(m),
                "{}: message lacks {m:?}:\n{message}",
                x.fixture
            );
        }
        let warnings: Vec<&str> = r["warnings"]
            .as_array()
            .map(|w| w.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for w in &warnings {
            assert!(w.len() < 256, "{}: warning too long: {w}", x.fixture);
        }
        for w in x.warnings {
            assert!(
                warnings.iter().any(|g| g.contains(w)),
                "{}: no warning with {w:?} in {warnings:?}",
                x.fixture
            );
        }
        if x.warnings.is_empty() {
            assert!(
                warnings.is_empty(),
                "{}: unexpected warnings {warnings:?}",
                x.fixture
            );
        }
        let audit = r["auditAnnotations"]["violations"].as_str();
        assert_eq!(audit.is_some(), x.audit, "{}: {r}", x.fixture);
        if let Some(a) = audit {
            let parsed: Value = serde_json::from_str(a).unwrap();
            assert_eq!(parsed[0]["policy"], "deploy-vs-approve");
            assert_eq!(parsed[0]["duties"], json!(["approve", "deploy"]));
        }
    }
}

#[tokio::test]
async fn dry_run_and_denials_change_nothing_in_live_mode() {
    let s = live(Duration::from_secs(30));
    let before = s.with_index(Index::counts);
    for f in [
        "rolebinding-create-dry-run-denied",
        "rolebinding-create-denied",
    ] {
        let (_, got) = post(s.clone(), fixture_review(f)).await;
        assert_eq!(got["response"]["allowed"], false);
    }
    assert_eq!(s.with_assumed(Index::counts), before);
    assert_eq!(s.overlay_len(), 0);
    // An admitted change is held until the watch confirms it.
    let (_, got) = post(s.clone(), fixture_review("rolebinding-create-allowed")).await;
    assert_eq!(got["response"]["allowed"], true);
    assert_eq!(
        s.with_assumed(Index::counts).role_bindings,
        before.role_bindings + 1
    );
    assert_eq!(s.with_index(Index::counts), before);
    assert_eq!(s.overlay_len(), 1);
}

#[tokio::test]
async fn conflicting_changes_are_not_both_admitted() {
    // Two bindings that each complete nothing alone but conflict together.
    let s = live(Duration::from_secs(30));
    let review = |uid: &str, name: &str, role: &str| {
        create_review(uid, binding(name, "Role", role, &["fresh"]))
    };
    let fresh = alice_creates(service_account("payments", "fresh"));
    let _ = post(s.clone(), fresh).await;
    let a = tokio::spawn(post(
        s.clone(),
        serde_json::to_vec(&review("a", "fresh-w", "secret-writer")).unwrap(),
    ));
    let b = tokio::spawn(post(
        s.clone(),
        serde_json::to_vec(&review("b", "fresh-r", "secret-reader")).unwrap(),
    ));
    let (a, b) = (a.await.unwrap().1, b.await.unwrap().1);
    let allowed = [&a, &b]
        .iter()
        .filter(|r| r["response"]["allowed"] == true)
        .count();
    assert_eq!(
        allowed, 1,
        "exactly one of two conflicting changes is admitted: {a} {b}"
    );
}

/// Decisions are one at a time; one that waits for its turn must not hold
/// an async worker (blocked on the lock, it held every connection of that
/// worker, and the scheduler woke it onto the decider's core).
#[tokio::test(flavor = "current_thread")]
async fn a_request_waiting_for_its_turn_leaves_the_worker_free() {
    let s = state(Mode::Static);
    // As a decision under way holds it.
    let turn = s.decision_turn().await;
    let waiting = tokio::spawn(post(
        s.clone(),
        fixture_review("rolebinding-create-allowed"),
    ));
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    // The runtime's one worker still runs other tasks meanwhile.
    let other = tokio::spawn(async { 7 });
    assert_eq!(other.await.unwrap(), 7);
    assert!(
        !waiting.is_finished(),
        "decided while another decision held the turn"
    );
    drop(turn);
    let (status, got) = waiting.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got["response"]["allowed"], true, "{got}");
}

#[tokio::test]
async fn bad_requests_get_clear_errors() {
    let s = state(Mode::Static);
    let (status, body) = post(s.clone(), "not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("not JSON"));
    let (status, body) = post(s.clone(), r#"{"apiVersion":"v1","kind":"Pod"}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("not an admission.k8s.io/v1 AdmissionReview")
    );
    let (status, body) = post(
        s.clone(),
        r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("no request"));
    let (status, body) =
        post(s.clone(), r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"operation":"CREATE"}}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("no uid"));
    let huge = vec![b' '; DEFAULT_MAX_BODY + 1];
    let (status, _) = post(s.clone(), huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn nothing_is_admitted_before_the_index_is_loaded() {
    let s = state(Mode::Live);
    let body = fixture_review("rolebinding-create-allowed");
    let (status, got) = post(s.clone(), body.clone()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(got["error"].as_str().unwrap().contains("not ready"));
    s.set_ready();
    let (status, _) = post(s, body).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_panicking_request_answers_500_and_the_next_one_is_served() {
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = calls.clone();
    let app = guard(axum::Router::new().route(
        "/validate",
        axum::routing::post(move || {
            let n = c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                if n == 0 {
                    panic!("boom");
                }
                "fine"
            }
        }),
    ));
    let req = || Request::post("/validate").body(Body::empty()).unwrap();
    let resp = app.clone().oneshot(req()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body: Value = serde_json::from_slice(
        &axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(body["error"].as_str().unwrap().contains("internal error"));
    let resp = app.oneshot(req()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

/// R7.10 (issue 8, finding 6): a ServiceAccount in a namespace the webhook
/// excludes is created unchecked, so a binding that names it, missing or
/// not, is judged as if it existed. The first half of the conflict (a
/// binding to the missing `ops-system:bot`) is in the cluster; the second
/// half is denied when `ops-system` is excluded, and admitted (latent, R1.5)
/// when it is watched.
#[tokio::test]
async fn a_binding_naming_a_missing_serviceaccount_of_an_excluded_namespace_is_judged() {
    let bot = |name: &str, role: &str| {
        role_binding("payments", name, "Role", role, &[sa("ops-system", "bot")])
    };
    let mut review = admission_review(admission_request(
        "r7-10",
        "CREATE",
        "alice",
        bot("bot-reads", "secret-reader"),
        Value::Null,
    ));
    review["request"]["resource"] =
        json!({"group": "rbac.authorization.k8s.io", "version": "v1", "resource": "rolebindings"});
    let state_with = |excluded: &[&str]| {
        let mut index = fixture_index();
        index.set_unwatched_namespaces(excluded);
        let first = sodguard::decode::convert(&bot("bot-writes", "secret-writer"))
            .unwrap()
            .unwrap();
        let _ = index.apply(first);
        AppState::new(Mode::Static, index, Duration::from_secs(30), Metrics::new())
    };

    let (status, body) = post(
        state_with(&["kube-system", "ops-system"]),
        review.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let resp = &body["response"];
    assert_eq!(resp["allowed"], false, "{body}");
    let message = resp["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("ServiceAccount:ops-system:bot would hold secret-admin + secret-use"),
        "{message}"
    );

    let (status, body) = post(state_with(&["kube-system"]), review.to_string()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["response"]["allowed"], true, "{body}");
}

/// R7.9: the kind the API server admits and the object's own type must agree;
/// otherwise a RoleBinding passes as something sodguard does not check.
#[tokio::test]
async fn objects_of_another_kind_are_denied() {
    let sent: Value = serde_json::from_slice(&api_reads()).unwrap();
    let binding = sent["request"]["object"].clone();
    let rb_kind =
        json!({"group": "rbac.authorization.k8s.io", "version": "v1", "kind": "RoleBinding"});
    let rb_resource =
        json!({"group": "rbac.authorization.k8s.io", "version": "v1", "resource": "rolebindings"});
    let configmap = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "api-reads", "namespace": "payments"}, "data": {}});
    let mut versionless = binding.clone();
    versionless["apiVersion"] = "rbac.authorization.k8s.io".into();
    let cm_kind = json!({"group": "", "version": "v1", "kind": "ConfigMap"});
    let cases = [
        // A ConfigMap sent as a RoleBinding.
        (
            rb_kind.clone(),
            configmap,
            "object is v1/ConfigMap but the request is for rbac.authorization.k8s.io/v1/RoleBinding",
        ),
        // The conflicting binding with no version in its apiVersion.
        (
            rb_kind.clone(),
            versionless.clone(),
            "apiVersion \"rbac.authorization.k8s.io\" is not GROUP/VERSION",
        ),
        // The same binding sent as a ConfigMap.
        (
            cm_kind,
            versionless,
            "apiVersion \"rbac.authorization.k8s.io\" is not GROUP/VERSION",
        ),
    ];
    for (i, (kind, object, why)) in cases.into_iter().enumerate() {
        let body = admission_review(json!({
            "uid": format!("kind-{i}"), "kind": kind, "resource": rb_resource,
            "name": "api-reads", "namespace": "payments",
            "operation": "CREATE", "userInfo": {"username": "alice"}, "object": object}));
        let (status, got) = post(state(Mode::Static), body.to_string()).await;
        assert_eq!(status, StatusCode::OK);
        let r = &got["response"];
        assert_eq!(r["allowed"], false, "case {i}: {r}");
        let message = r["status"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(why), "case {i}: {message}");
    }
    // The same binding with its real kind is judged on its merits.
    let mut body = sent.clone();
    body["request"]["resource"] = rb_resource;
    let (_, got) = post(state(Mode::Static), body.to_string()).await;
    let message = got["response"]["status"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("segregation of duties"), "{message}");
}

/// R6.4: an exception UPDATE is judged against its old object; without a
/// readable one it is denied, never judged against the index instead.
#[tokio::test]
async fn exception_update_without_a_readable_old_object_is_denied() {
    let index = fixture_index();
    let stored = index.exception("ops-rotation").unwrap().clone();
    assert_eq!(stored.approvals.len(), 1);
    let now = jiff::Timestamp::now().to_string();
    let object = json!({"apiVersion": "sodguard.io/v1alpha1", "kind": "SoDException",
        "metadata": {"name": "ops-rotation"},
        "spec": {"policy": "secret-admin-vs-use",
            "subject": {"kind": "ServiceAccount", "namespace": "payments", "name": "ops"},
            "justification": "key rotation", "ticket": "CHG-1", "requestedBy": "alice",
            "expiresAt": "2099-01-01T00:00:00Z",
            "approvals": [{"user": "bob", "at": "2026-11-28T09:00:00Z"}, {"user": "carol", "at": now}]}});
    let mut old = object.clone();
    old["spec"]["approvals"] = json!([{"user": "bob", "at": "2026-11-28T09:00:00Z"}]);
    let mut unreadable = old.clone();
    unreadable["spec"] = json!({"policy": "secret-admin-vs-use"});
    let request = |uid: &str, old: Option<Value>| {
        let mut r = json!({"uid": uid,
            "kind": {"group": "sodguard.io", "version": "v1alpha1", "kind": "SoDException"},
            "operation": "UPDATE", "userInfo": {"username": "carol", "groups": ["system:authenticated"]},
            "object": object});
        if let Some(o) = old {
            r["oldObject"] = o;
        }
        admission_review(r)
    };
    for (uid, old, why) in [
        ("missing", None, "oldObject is missing"),
        ("null", Some(Value::Null), "oldObject is missing"),
        ("unreadable", Some(unreadable), "oldObject cannot be read"),
    ] {
        let (_, got) = post(state(Mode::Static), request(uid, old).to_string()).await;
        let r = &got["response"];
        assert_eq!(r["allowed"], false, "{uid}: {r}");
        let message = r["status"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(why), "{uid}: {message}");
    }
    // With its old object, carol's own approval is admitted.
    let (_, got) = post(
        state(Mode::Static),
        request("with-old", Some(old)).to_string(),
    )
    .await;
    assert_eq!(got["response"]["allowed"], true, "{got}");
}

// ---- R7.8: an admitted change counts only by what it adds -----------------

/// An AdmissionReview as the API server, or anyone who reaches `/validate`,
/// may send it.
fn admission(operation: &str, user: &str, object: Value, old: Value) -> Vec<u8> {
    let review = admission_review(admission_request("r78", operation, user, object, old));
    serde_json::to_vec(&review).unwrap()
}

/// alice CREATEs `object`.
fn alice_creates(object: Value) -> Vec<u8> {
    admission("CREATE", "alice", object, Value::Null)
}

/// web, which holds secret-use, is given secret-admin.
fn web_writes() -> Vec<u8> {
    alice_creates(binding("web-writes", "Role", "secret-writer", &["web"]))
}

/// A RoleBinding in payments for its ServiceAccounts `subjects`.
fn binding(name: &str, role_kind: &str, role: &str, subjects: &[&str]) -> Value {
    let subjects: Vec<Value> = subjects.iter().map(|s| sa("payments", s)).collect();
    role_binding("payments", name, role_kind, role, &subjects)
}

fn role(name: &str, rules: Value) -> Value {
    bare_role("payments", name, rules)
}

fn cluster_role(name: &str, labels: Value, rules: Value, aggregation: Option<Value>) -> Value {
    let mut r = bare_cluster_role(name, rules);
    r["metadata"]["labels"] = labels;
    if let Some(a) = aggregation {
        r["aggregationRule"] = json!({"clusterRoleSelectors": a});
    }
    r
}

/// The policy of the fixtures' state, with `actions`.
fn policy(actions: &[&str]) -> Value {
    let mut p = bare_policy(
        "secret-admin-vs-use",
        &[
            duty(
                "secret-admin",
                json!([secrets_rule(&["create", "update", "patch", "delete"])]),
            ),
            duty(
                "secret-use",
                json!([secrets_rule(&["get", "list", "watch"])]),
            ),
        ],
        actions,
    );
    p["spec"]["description"] = json!("secret-admin-vs-use");
    p["spec"]["exceptions"] = json!({"maxDuration": "2400000h"});
    p
}

/// The API server's word, as the watch would deliver it.
fn watched(s: &AppState, object: Value) {
    let o = sodguard::decode::convert(&object).unwrap().unwrap();
    s.watch_apply(o);
}

async fn allowed(s: &Arc<AppState>, body: Vec<u8>) -> bool {
    let (status, got) = post(s.clone(), body).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    got["response"]["allowed"]
        .as_bool()
        .unwrap_or_else(|| panic!("no verdict in {got}"))
}

/// The conflicting binding of the fixtures: ServiceAccount api already holds
/// secret-admin through RoleBinding api-writes.
fn api_reads() -> Vec<u8> {
    fixture_review("rolebinding-create-denied")
}

#[tokio::test]
async fn a_create_of_an_existing_binding_name_removes_no_subject() {
    let s = live(Duration::from_secs(30));
    let empty = binding("api-writes", "Role", "secret-writer", &[]);
    assert!(allowed(&s, admission("CREATE", "mallory", empty, Value::Null)).await);
    assert!(
        !allowed(&s, api_reads()).await,
        "the API server refuses the CREATE with AlreadyExists: api still holds secret-admin"
    );
}

#[tokio::test]
async fn a_create_of_an_existing_role_name_removes_no_rule() {
    let s = live(Duration::from_secs(30));
    let empty = role("secret-writer", json!([]));
    assert!(allowed(&s, admission("CREATE", "mallory", empty, Value::Null)).await);
    assert!(!allowed(&s, api_reads()).await);
}

#[tokio::test]
async fn a_forged_delete_of_a_binding_removes_nothing() {
    let s = live(Duration::from_secs(30));
    let old = binding("api-writes", "Role", "secret-writer", &["api"]);
    assert!(allowed(&s, admission("DELETE", "mallory", Value::Null, old)).await);
    assert!(!allowed(&s, api_reads()).await);
}

#[tokio::test]
async fn a_forged_delete_does_not_remove_an_admitted_binding() {
    let s = live(Duration::from_secs(30));
    let sa = service_account("payments", "fresh");
    assert!(allowed(&s, alice_creates(sa)).await);
    let writes = binding("fresh-w", "Role", "secret-writer", &["fresh"]);
    assert!(allowed(&s, alice_creates(writes.clone())).await);
    assert!(allowed(&s, admission("DELETE", "mallory", Value::Null, writes)).await);
    let reads = binding("fresh-r", "Role", "secret-reader", &["fresh"]);
    assert!(!allowed(&s, alice_creates(reads)).await);
}

#[tokio::test]
async fn a_forged_delete_or_relaxation_of_the_policy_changes_nothing() {
    let s = live(Duration::from_secs(30));
    assert!(
        allowed(
            &s,
            admission("DELETE", "mallory", Value::Null, policy(&["Deny"]))
        )
        .await
    );
    assert!(!allowed(&s, api_reads()).await);
    let s = live(Duration::from_secs(30));
    let relaxed = admission("UPDATE", "mallory", policy(&["Audit"]), policy(&["Deny"]));
    assert!(allowed(&s, relaxed).await);
    assert!(
        !allowed(&s, api_reads()).await,
        "a policy relaxed to Audit counts once the watch shows it"
    );
}

#[tokio::test]
async fn a_forged_approval_excuses_nothing() {
    let s = live(Duration::from_secs(30));
    let now = jiff::Timestamp::now();
    let expires_at = (now + jiff::SignedDuration::from_hours(24)).to_string();
    let exception = |approvals: Value| {
        objects::exception(
            "api-both",
            "secret-admin-vs-use",
            sa("payments", "api"),
            &expires_at,
            approvals,
        )
    };
    let approved = admission(
        "UPDATE",
        "bob",
        exception(json!([{"user": "bob", "at": now.to_string()}])),
        exception(json!([])),
    );
    assert!(
        allowed(&s, approved).await,
        "the forged approval itself is well formed"
    );
    assert!(
        !allowed(&s, api_reads()).await,
        "an exception excuses once the watch shows it"
    );
}

#[tokio::test]
async fn a_forged_narrowing_of_a_role_hides_no_conflict() {
    let s = live(Duration::from_secs(30));
    let narrowed = role("secret-writer", json!([secrets_rule(&["get", "list"])]));
    let real = role(
        "secret-writer",
        json!([secrets_rule(&["create", "update"])]),
    );
    assert!(allowed(&s, admission("UPDATE", "mallory", narrowed, real)).await);
    assert!(!allowed(&s, api_reads()).await);
}

#[tokio::test]
async fn a_narrowing_held_as_a_union_does_not_hide_a_real_new_violation() {
    // secret-writer [create, update] becomes [get, list]: the assumed state
    // holds both, so api "already" holds secret-admin + secret-use there. A
    // binding that gives api secret-admin again really creates the violation
    // once the narrowing is stored, and must be judged against what the
    // watches showed, not against the union.
    let s = live(Duration::from_secs(30));
    let real = role(
        "secret-writer",
        json!([secrets_rule(&["create", "update"])]),
    );
    let narrowed = role("secret-writer", json!([secrets_rule(&["get", "list"])]));
    assert!(allowed(&s, admission("UPDATE", "alice", narrowed.clone(), real)).await);
    let creator = role("secret-creator", json!([secrets_rule(&["create"])]));
    assert!(allowed(&s, alice_creates(creator.clone())).await);
    let creates = binding("api-creates", "Role", "secret-creator", &["api"]);
    assert!(!allowed(&s, alice_creates(creates.clone())).await);
    watched(&s, narrowed);
    watched(&s, creator);
    assert!(!allowed(&s, alice_creates(creates)).await);
}

#[tokio::test]
async fn a_forged_label_change_keeps_a_role_in_its_aggregates() {
    // ServiceAccount web holds secret-use through ClusterRole team, which
    // aggregates team-reads by its label.
    let s = live(Duration::from_secs(30));
    let labelled = cluster_role(
        "team-reads",
        json!({"team": "true"}),
        json!([secrets_rule(&["get"])]),
        None,
    );
    watched(&s, labelled);
    watched(&s, binding("web-team", "ClusterRole", "team", &["web"]));
    assert!(!allowed(&s, web_writes()).await);
    let unlabelled = cluster_role(
        "team-reads",
        json!({}),
        json!([secrets_rule(&["get"])]),
        None,
    );
    assert!(allowed(&s, admission("UPDATE", "mallory", unlabelled, Value::Null)).await);
    assert!(!allowed(&s, web_writes()).await);
}

#[tokio::test]
async fn an_added_label_that_a_selector_excludes_keeps_a_role_in_its_aggregates() {
    // Labels are not united: a selector may require a label to be absent.
    let s = live(Duration::from_secs(30));
    let open = cluster_role(
        "open",
        json!({}),
        json!([]),
        Some(json!([{"matchLabels": {"team": "true"},
            "matchExpressions": [{"key": "restricted", "operator": "DoesNotExist"}]}])),
    );
    watched(&s, open);
    let reads =
        |labels: Value| cluster_role("team-reads", labels, json!([secrets_rule(&["get"])]), None);
    watched(&s, reads(json!({"team": "true"})));
    watched(&s, binding("web-open", "ClusterRole", "open", &["web"]));
    assert!(!allowed(&s, web_writes()).await);
    let restricted = reads(json!({"team": "true", "restricted": "yes"}));
    assert!(allowed(&s, admission("UPDATE", "mallory", restricted, Value::Null)).await);
    assert!(!allowed(&s, web_writes()).await);
}

#[tokio::test]
async fn a_binding_to_another_role_under_an_assumed_name_is_still_assumed() {
    // A forged CREATE takes the name first with a harmless role; the real
    // CREATE of that name with another role must still count.
    let s = live(Duration::from_secs(30));
    let sa = service_account("payments", "fresh");
    assert!(allowed(&s, alice_creates(sa)).await);
    let decoy = binding("fresh-w", "Role", "cm-reader", &["fresh"]);
    assert!(allowed(&s, admission("CREATE", "mallory", decoy, Value::Null)).await);
    let writes = binding("fresh-w", "Role", "secret-writer", &["fresh"]);
    assert!(allowed(&s, alice_creates(writes)).await);
    let reads = binding("fresh-r", "Role", "secret-reader", &["fresh"]);
    assert!(!allowed(&s, alice_creates(reads)).await);
}

#[tokio::test]
async fn expiry_and_watch_events_put_the_confirmed_state_back() {
    let s = live(Duration::ZERO);
    let before = s.with_index(Index::counts);
    let other_role = binding("api-writes", "Role", "cm-reader", &["api", "web"]);
    assert!(allowed(&s, admission("CREATE", "mallory", other_role, Value::Null)).await);
    let sa = service_account("payments", "fresh");
    assert!(allowed(&s, alice_creates(sa.clone())).await);
    assert_eq!(s.overlay_len(), 2);
    let assumed = s.with_assumed(Index::counts);
    assert_eq!(
        assumed.role_bindings,
        before.role_bindings + 1,
        "kept beside the real binding"
    );
    assert_eq!(assumed.service_accounts, before.service_accounts + 1);
    watched(&s, sa);
    assert_eq!(s.overlay_len(), 1);
    assert_eq!(s.expire_overlay(), 1);
    assert_eq!(s.overlay_len(), 0);
    let settled = s.with_assumed(Index::counts);
    assert_eq!(settled.role_bindings, before.role_bindings);
    assert_eq!(settled.service_accounts, before.service_accounts + 1);
    assert_eq!(s.with_assumed(Index::counts), s.with_index(Index::counts));
}

#[tokio::test]
async fn a_role_joining_an_aggregate_is_not_blamed_for_old_violations() {
    // R7.7: ServiceAccount legacy already holds secret-admin + secret-use; a
    // ClusterRole that joins team, to which legacy is also bound, adds no
    // duty and must be allowed.
    let s = live(Duration::from_secs(30));
    watched(
        &s,
        binding("legacy-team", "ClusterRole", "team", &["legacy"]),
    );
    let widgets = cluster_role(
        "widgets-view",
        json!({"team": "true"}),
        json!([{"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get"]}]),
        None,
    );
    assert!(allowed(&s, alice_creates(widgets)).await);
}

/// A watch event can predate an admitted change: the API server stores a
/// harmless earlier write of the same object (an annotation), its event
/// arrives, and only then is the admitted change stored. That event must not
/// drop what the admitted change adds, or the other half of a conflict slips
/// in between.
#[tokio::test]
async fn an_older_watch_event_does_not_drop_an_admitted_addition() {
    let s = live(Duration::from_secs(30));
    watched(&s, service_account("payments", "fresh"));
    let empty = binding("fresh-w", "Role", "secret-writer", &[]);
    watched(&s, empty.clone());
    let filled = binding("fresh-w", "Role", "secret-writer", &["fresh"]);
    assert!(
        allowed(
            &s,
            admission("UPDATE", "alice", filled.clone(), empty.clone())
        )
        .await
    );
    // The event of the earlier, harmless write of the same binding.
    watched(&s, empty);
    let reads = binding("fresh-r", "Role", "secret-reader", &["fresh"]);
    assert!(
        !allowed(&s, alice_creates(reads.clone())).await,
        "fresh holds secret-admin once the admitted update is stored"
    );
    // The watch then shows the update: the entry is settled, the decision stands.
    watched(&s, filled);
    assert_eq!(s.overlay_len(), 0);
    assert!(!allowed(&s, alice_creates(reads)).await);
}

/// Leader election: the leader's webhook asks "am I still the leader?" under
/// the decision lock, right before deciding; a request accepted while leading
/// but decided after the lead was lost answers 503 and changes nothing.
#[tokio::test]
async fn a_replica_that_lost_the_lead_does_not_decide() {
    use std::sync::atomic::{AtomicBool, Ordering};

    let s = live(Duration::from_secs(30));
    let leading = Arc::new(AtomicBool::new(false));
    let app = sodguard::admission::http::gated_webhook_router(s.clone(), DEFAULT_MAX_BODY, {
        let leading = leading.clone();
        Arc::new(move || leading.load(Ordering::SeqCst))
    });
    let body = fixture_review("rolebinding-create-allowed");
    let send = |app: axum::Router| {
        let req = validate_request(body.clone());
        async move { app.oneshot(req).await.unwrap().status() }
    };
    let before = s.with_index(Index::counts);
    assert_eq!(send(app.clone()).await, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(s.with_index(Index::counts), before);
    assert_eq!(s.overlay_len(), 0);
    leading.store(true, Ordering::SeqCst);
    assert_eq!(send(app).await, StatusCode::OK);
    assert_eq!(s.overlay_len(), 1);
}

// ---- /authorize: SubjectAccessReviews (R13) ------------------------------------

mod authorize {
    use super::*;
    use common::webhook::{authorize_state, fixture_access_review, post_authorize};

    /// (fixture, denied, what the reason names)
    const CASES: &[(&str, bool, &[&str])] = &[
        (
            "violator-get-secret-denied",
            true,
            &[
                "ServiceAccount:payments:api holds read + write in namespace payments",
                "SoDPolicy secrets",
                "RoleBinding payments/secret-writers",
                "SoDException",
            ],
        ),
        ("violator-other-namespace-no-opinion", false, &[]),
        // Across all namespaces reads payments' Secrets too.
        (
            "violator-list-all-namespaces-denied",
            true,
            &["in namespace payments"],
        ),
        ("violator-other-duty-no-opinion", false, &[]),
        ("innocent-get-secret-no-opinion", false, &[]),
        ("excused-get-secret-no-opinion", false, &[]),
        (
            "expired-exception-get-secret-denied",
            true,
            &["ServiceAccount:payments:lapsed"],
        ),
        (
            "derived-create-pods-denied",
            true,
            &["SoDPolicy deploy-vs-read", "duty deploy", "⇒"],
        ),
        (
            "user-list-secrets-denied",
            true,
            &["User:carol holds read + write cluster-wide"],
        ),
        ("group-update-secret-denied", true, &["Group:ops"]),
        ("group-elsewhere-no-opinion", false, &[]),
        ("masters-no-opinion", false, &[]),
        ("non-resource-no-opinion", false, &[]),
    ];

    #[tokio::test]
    async fn fixtures_get_their_decision() {
        let state = authorize_state(Mode::Static);
        for (fixture, denied, reason) in CASES {
            let (status, body) =
                post_authorize(state.clone(), fixture_access_review(fixture)).await;
            assert_eq!(status, StatusCode::OK, "{fixture}: {body}");
            assert_eq!(body["apiVersion"], "authorization.k8s.io/v1", "{fixture}");
            assert_eq!(body["kind"], "SubjectAccessReview", "{fixture}");
            assert_eq!(body["spec"]["uid"], "u-1", "{fixture}: the spec is echoed");
            let s = &body["status"];
            // sodguard never allows: Deny, or no opinion for RBAC to decide.
            assert_eq!(s["allowed"], false, "{fixture}: {s}");
            if *denied {
                assert_eq!(s["denied"], true, "{fixture}: {s}");
                let r = s["reason"].as_str().unwrap();
                for want in *reason {
                    assert!(r.contains(want), "{fixture}: {want:?} not in {r:?}");
                }
            } else {
                assert_eq!(s, &json!({"allowed": false}), "{fixture}");
            }
        }
        let metrics = state.metrics.render();
        assert!(
            metrics.contains(
                r#"sodguard_authorize_requests_total{decision="deny",why="violation"} 6"#
            ),
            "{metrics}"
        );
        assert!(
            metrics.contains(
                r#"sodguard_authorize_requests_total{decision="no-opinion",why="exempt"} 1"#
            ),
            "{metrics}"
        );
    }

    #[tokio::test]
    async fn malformed_reviews_are_400() {
        let state = authorize_state(Mode::Static);
        let sar = |spec: Value| {
            json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec})
                .to_string()
        };
        let ra = json!({"verb": "get", "resource": "secrets", "namespace": "payments"});
        let bad = [
            "not json".to_string(),
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {}})
                .to_string(),
            json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview"})
                .to_string(),
            sar(json!({"user": "a"})),
            sar(
                json!({"user": "a", "resourceAttributes": ra, "nonResourceAttributes": {"path": "/", "verb": "get"}}),
            ),
            sar(json!({"resourceAttributes": ra})),
            sar(json!({"user": "a", "resourceAttributes": {"resource": "secrets"}})),
            sar(json!({"user": 7, "resourceAttributes": ra})),
            sar(json!({"user": "a", "groups": "ops", "resourceAttributes": ra})),
        ];
        for body in bad {
            let (status, answer) = post_authorize(state.clone(), body.clone()).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
            assert!(answer["error"].is_string(), "{body}: {answer}");
        }
        let metrics = state.metrics.render();
        assert!(
            metrics.contains(r#"sodguard_admission_refused_requests_total{code="400"} 9"#),
            "{metrics}"
        );
    }

    #[tokio::test]
    async fn a_huge_body_is_refused_unread() {
        let state = authorize_state(Mode::Static);
        let groups: Vec<String> = (0..20_000).map(|i| format!("group-{i}")).collect();
        let body = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": "a", "groups": groups, "resourceAttributes": {"verb": "get", "resource": "secrets"}}});
        let (status, _) = post_authorize(state, body.to_string()).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    /// Loading: no opinion, so RBAC decides at once (an error would make the
    /// API server retry first), with the reason in evaluationError.
    #[tokio::test]
    async fn not_ready_has_no_opinion() {
        let state = authorize_state(Mode::Live);
        let (status, body) = post_authorize(
            state.clone(),
            fixture_access_review("violator-get-secret-denied"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"]["allowed"], false);
        assert!(body["status"].get("denied").is_none(), "{body}");
        assert!(
            body["status"]["evaluationError"]
                .as_str()
                .unwrap()
                .contains("not ready")
        );
        state.set_ready();
        let (_, body) =
            post_authorize(state, fixture_access_review("violator-get-secret-denied")).await;
        assert_eq!(body["status"]["denied"], true, "{body}");
    }

    /// A watch event that repairs the violation changes the answer at once.
    #[tokio::test]
    async fn a_repair_takes_effect_on_the_next_review() {
        let state = authorize_state(Mode::Live);
        state.set_ready();
        let (_, body) = post_authorize(
            state.clone(),
            fixture_access_review("violator-get-secret-denied"),
        )
        .await;
        assert_eq!(body["status"]["denied"], true);
        let key = sodguard::model::ObjectKey::Binding(sodguard::model::BindingKey {
            namespace: Some("payments".into()),
            name: "secret-writers".into(),
        });
        state.watch_remove(&key);
        let (_, body) =
            post_authorize(state, fixture_access_review("violator-get-secret-denied")).await;
        assert_eq!(body["status"], json!({"allowed": false}), "{body}");
    }
}

/// A decision past `--decision-budget` is refused (fail closed) with the
/// reason, counted by work and why; the same request within the budget is
/// judged as always (here: denied for its violation).
#[tokio::test]
async fn a_decision_past_its_budget_is_refused_and_counted() {
    let judged = post(state(Mode::Static), api_reads()).await.1;
    assert_eq!(judged["response"]["allowed"], false, "{judged}");
    let message = judged["response"]["status"]["message"].as_str().unwrap();
    assert!(message.contains("segregation of duties"), "{message}");

    let no_time = sodguard::engine::Budget {
        violations: usize::MAX,
        time: Some(Duration::ZERO),
    };
    let s = state(Mode::Static).with_decision_budget(no_time);
    let (status, body) = post(s.clone(), api_reads()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["response"]["allowed"], false, "{body}");
    let message = body["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("too many to judge within sodguard's decision budget")
            && message.contains("--decision-budget"),
        "{message}"
    );
    let metrics = s.metrics.render();
    assert!(
        metrics.contains(r#"sodguard_budget_exhausted_total{work="decision",why="time"} 1"#),
        "{metrics}"
    );
}
