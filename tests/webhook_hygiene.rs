//! Issue 13 at the webhook (R12.1, R12.2): a SoDPolicy with a field its
//! schema does not know, or a permission nothing can match, is admitted
//! with a warning naming the field; offline the same input is refused.

use serde_json::{Value, json};
use sodguard::runtime::state::Mode;

mod common;

use common::objects::secret_policy;
use common::webhook::{create_review, post, state};

async fn warnings_for(object: Value) -> Vec<String> {
    let s = state(Mode::Static);
    s.set_ready();
    let (status, resp) = post(s, create_review("u1", object).to_string()).await;
    assert_eq!(status, 200, "{resp}");
    resp["response"]["warnings"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| w.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn unknown_fields_and_impossible_permissions_are_warnings() {
    let mut p = secret_policy("typos", &["Audit"]);
    p["spec"]["subjects"] = json!({"excludes": []});
    p["spec"]["duties"][0]["permissions"][0]["verbs"] = json!(["lsit"]);
    p["spec"]["duties"][1]["permissions"][0]["apiGroups"] = json!(["core"]);
    p["spec"]["duties"][1]["permissions"]
        .as_array_mut()
        .unwrap()
        .push(json!({"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get"]}));
    let w = warnings_for(p).await;
    let has = |s: &str| w.iter().any(|x| x.contains(s));
    assert!(has("unknown field \"spec.subjects.excludes\""), "{w:#?}");
    assert!(has("spec.duties[0].permissions[0].verbs[0]"), "{w:#?}");
    assert!(has("spec.duties[1].permissions[0].apiGroups[0]"), "{w:#?}");
    // The webhook does not know the cluster's CRDs: no word on their groups.
    assert!(!has("example.com"), "{w:#?}");
    let w = warnings_for(secret_policy("clean", &["Audit"])).await;
    assert!(
        !w.iter()
            .any(|x| x.contains("spec.") || x.contains("unknown field")),
        "{w:#?}"
    );
}

/// Issue 13: what a Prometheus user expects of `/metrics`.
#[tokio::test]
async fn refused_requests_are_counted_and_the_build_is_named() {
    let s = state(Mode::Static);
    s.set_ready();
    let (status, _) = post(s.clone(), "not json").await;
    assert_eq!(status, 400);
    let (status, _) = post(s.clone(), "{}").await;
    assert_eq!(status, 400);
    let text = s.metrics.render();
    assert!(
        text.contains("sodguard_admission_refused_requests_total{code=\"400\"} 2"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "sodguard_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
}
