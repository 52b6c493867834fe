//! Issue 13: the JSON decision log. Alone in its test binary: tracing
//! caches per call site whether anyone listens, and a test on another
//! thread without this subscriber could make the site skip it.

use serde_json::{Value, json};
use sodguard::runtime::state::Mode;

mod common;

use common::webhook::{post, state};

/// A writer the test reads back: the JSON log lines of one request.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The JSON decision log names the policy, subject, namespace, operation,
/// user and object — and never an object's content.
#[tokio::test]
async fn decision_logs_carry_who_what_and_which_policy() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let s = state(Mode::Static);
    s.set_ready();
    let body = common::webhook::fixture_review("rolebinding-create-denied");
    let (status, resp) = post(s, body).await;
    assert_eq!(status, 200);
    assert_eq!(resp["response"]["allowed"], json!(false));
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let line = logs
        .lines()
        .find(|l| l.contains("admission decided"))
        .unwrap_or_else(|| panic!("no decision log in {logs}"));
    let v: Value = serde_json::from_str(line).unwrap();
    let f = &v["fields"];
    assert_eq!(f["policies"], json!("secret-admin-vs-use"), "{line}");
    assert_eq!(
        f["subjects"],
        json!("ServiceAccount:payments:api"),
        "{line}"
    );
    assert_eq!(f["violation_namespaces"], json!("payments"), "{line}");
    assert_eq!(f["namespace"], json!("payments"), "{line}");
    assert!(f["user"].as_str().is_some_and(|u| !u.is_empty()), "{line}");
    assert!(f["name"].as_str().is_some_and(|u| !u.is_empty()), "{line}");
    assert!(line.contains("CREATE"), "{line}");
}

/// A use-time denial (R13) is logged with the policy, subject, duty and
/// request it refused.
#[tokio::test]
async fn authorization_denials_are_logged_with_their_policy() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let s = common::webhook::authorize_state(Mode::Static);
    let body = common::webhook::fixture_access_review("violator-get-secret-denied");
    let (status, resp) = common::webhook::post_authorize(s, body).await;
    assert_eq!(status, 200);
    assert_eq!(resp["status"]["denied"], json!(true));
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let line = logs
        .lines()
        .find(|l| l.contains("authorization denied"))
        .unwrap_or_else(|| panic!("no decision log in {logs}"));
    let v: Value = serde_json::from_str(line).unwrap();
    let f = &v["fields"];
    assert_eq!(f["policy"], json!("secrets"), "{line}");
    assert_eq!(f["subject"], json!("ServiceAccount:payments:api"), "{line}");
    assert_eq!(f["duty"], json!("read"), "{line}");
    assert_eq!(f["verb"], json!("get"), "{line}");
    assert_eq!(f["target"], json!("secrets db"), "{line}");
    assert_eq!(f["namespace"], json!("payments"), "{line}");
}
