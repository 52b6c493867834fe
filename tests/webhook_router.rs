//! The webhook router in process: AdmissionReview fixtures (tests/fixtures)
//! for each kind and operation, and every kind of bad request.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use sodguard::index::Index;
use sodguard::server::http::{DEFAULT_MAX_BODY, guard, webhook_router};
use sodguard::server::metrics::Metrics;
use sodguard::server::state::{AppState, Mode};
use tower::ServiceExt;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn state(mode: Mode) -> Arc<AppState> {
    let (index, _) = sodguard::cli::load_state(&[fixtures().join("state.yaml")]).unwrap();
    AppState::new(mode, index, Duration::from_secs(30), Metrics::new())
}

async fn post(state: Arc<AppState>, body: impl Into<Body>) -> (StatusCode, Value) {
    let app = webhook_router(state, DEFAULT_MAX_BODY);
    let req = Request::post("/validate")
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap();
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

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
            warnings: &["SoDPolicy secret-admin-vs-use: 1 subject(s) already violate it"],
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
        let body = std::fs::read(
            fixtures()
                .join("reviews")
                .join(format!("{}.json", x.fixture)),
        )
        .unwrap();
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
            assert_eq!(
                parsed[0]["duties"],
                serde_json::json!(["approve", "deploy"])
            );
        }
    }
}

#[tokio::test]
async fn dry_run_and_denials_change_nothing_in_live_mode() {
    let s = state(Mode::Live);
    s.set_ready();
    let before = s.with_index(Index::counts);
    for f in [
        "rolebinding-create-dry-run-denied",
        "rolebinding-create-denied",
    ] {
        let body = std::fs::read(fixtures().join(format!("reviews/{f}.json"))).unwrap();
        let (_, got) = post(s.clone(), body).await;
        assert_eq!(got["response"]["allowed"], false);
    }
    assert_eq!(s.with_index(Index::counts), before);
    assert_eq!(s.overlay_len(), 0);
    // An admitted change is held until the watch confirms it.
    let body = std::fs::read(fixtures().join("reviews/rolebinding-create-allowed.json")).unwrap();
    let (_, got) = post(s.clone(), body).await;
    assert_eq!(got["response"]["allowed"], true);
    assert_eq!(
        s.with_index(Index::counts).role_bindings,
        before.role_bindings + 1
    );
    assert_eq!(s.overlay_len(), 1);
}

#[tokio::test]
async fn conflicting_changes_are_not_both_admitted() {
    // Two bindings that each complete nothing alone but conflict together.
    let s = state(Mode::Live);
    s.set_ready();
    let review = |uid: &str, name: &str, role: &str| {
        serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": uid, "kind": {"group": "rbac.authorization.k8s.io", "version": "v1", "kind": "RoleBinding"},
            "operation": "CREATE", "userInfo": {"username": "alice"},
            "object": {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": name, "namespace": "payments"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
                "subjects": [{"kind": "ServiceAccount", "name": "fresh", "namespace": "payments"}]}}})
    };
    let _ = post(s.clone(), serde_json::to_vec(&serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "sa", "operation": "CREATE", "userInfo": {"username": "alice"},
        "object": {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "fresh", "namespace": "payments"}}}})).unwrap()).await;
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
    let body = std::fs::read(fixtures().join("reviews/rolebinding-create-allowed.json")).unwrap();
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
    fn binding(name: &str, role: &str) -> Value {
        serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": "payments"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": "bot", "namespace": "ops-system"}]
        })
    }
    let review = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "r7-10",
            "kind": {"group": "rbac.authorization.k8s.io", "version": "v1", "kind": "RoleBinding"},
            "resource": {"group": "rbac.authorization.k8s.io", "version": "v1", "resource": "rolebindings"},
            "operation": "CREATE",
            "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
            "object": binding("bot-reads", "secret-reader"),
            "oldObject": null
        }
    });
    let state_with = |excluded: &[&str]| {
        let (mut index, _) = sodguard::cli::load_state(&[fixtures().join("state.yaml")]).unwrap();
        index.set_unwatched_namespaces(excluded);
        let first = sodguard::model::convert(&binding("bot-writes", "secret-writer"))
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

/// Leader election: the leader's webhook asks "am I still the leader?" under
/// the decision lock, right before deciding; a request accepted while leading
/// but decided after the lead was lost answers 503 and changes nothing.
#[tokio::test]
async fn a_replica_that_lost_the_lead_does_not_decide() {
    use std::sync::atomic::{AtomicBool, Ordering};

    let s = state(Mode::Live);
    s.set_ready();
    let leading = Arc::new(AtomicBool::new(false));
    let app = sodguard::server::http::gated_webhook_router(s.clone(), DEFAULT_MAX_BODY, {
        let leading = leading.clone();
        Arc::new(move || leading.load(Ordering::SeqCst))
    });
    let body = std::fs::read(fixtures().join("reviews/rolebinding-create-allowed.json")).unwrap();
    let send = |app: axum::Router| {
        let req = Request::post("/validate")
            .header("content-type", "application/json")
            .body(Body::from(body.clone()))
            .unwrap();
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
