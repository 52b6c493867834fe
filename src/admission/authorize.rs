//! The SubjectAccessReview wire format (`authorization.k8s.io/v1`) of the
//! authorization webhook (R13). Pure: JSON in, JSON out.
//!
//! The API server's webhook authorizer reads only `status`: `allowed: true`
//! allows (sodguard never says so), `denied: true` denies and ends the
//! authorizer chain, and `allowed: false` without `denied` is no opinion, so
//! the next authorizer (RBAC) decides. Answers other than 200 make it apply
//! the authorizer's `failurePolicy`, after retries.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::engine::usetime::{Access, Requester, UseTimeVerdict};

pub const API_VERSION: &str = "authorization.k8s.io/v1";
pub const KIND: &str = "SubjectAccessReview";

/// Why a body is not a SubjectAccessReview we can answer (HTTP 400).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BadAccessReview {
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error(
        "the body is not an authorization.k8s.io/v1 SubjectAccessReview (apiVersion {api_version:?}, kind {kind:?})"
    )]
    NotAReview { api_version: String, kind: String },
    #[error("the SubjectAccessReview is malformed: {0}")]
    Malformed(String),
    #[error(
        "the SubjectAccessReview must have exactly one of spec.resourceAttributes and spec.nonResourceAttributes"
    )]
    Attributes,
    #[error("the SubjectAccessReview names neither spec.user nor spec.groups")]
    NoRequester,
    #[error("the SubjectAccessReview's attributes have no verb")]
    NoVerb,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    metadata: Option<Value>,
    spec: Spec,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resource_attributes: Option<ResourceAttributes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    non_resource_attributes: Option<NonResourceAttributes>,
    #[serde(default)]
    user: String,
    #[serde(default)]
    groups: Vec<String>,
    /// Echoed, never read: sodguard judges users and groups only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    extra: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uid: Option<String>,
}

/// Unknown fields (field and label selectors, newer additions) are kept as
/// they came, for the echo; none of them widens what a request can touch.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct ResourceAttributes {
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    verb: String,
    #[serde(default)]
    group: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    resource: String,
    #[serde(default)]
    subresource: String,
    #[serde(default)]
    name: String,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct NonResourceAttributes {
    #[serde(default)]
    path: String,
    #[serde(default)]
    verb: String,
}

/// A parsed review: who asks for what, and the review to echo.
#[derive(Debug, Clone)]
pub struct AccessReview {
    pub requester: Requester,
    pub access: Access,
    wire: Wire,
}

pub fn parse(body: &[u8]) -> Result<AccessReview, BadAccessReview> {
    // One typed parse on the hot path; a body that does not fit is parsed
    // again only to say why.
    let wire: Wire = match serde_json::from_slice(body) {
        Ok(w) => w,
        Err(typed) => {
            let head: Value = serde_json::from_slice(body)
                .map_err(|e| BadAccessReview::NotJson(e.to_string()))?;
            not_a_review(head.get("apiVersion"), head.get("kind"))?;
            return Err(BadAccessReview::Malformed(typed.to_string()));
        }
    };
    not_a_review(
        Some(&Value::from(wire.api_version.as_str())),
        Some(&Value::from(wire.kind.as_str())),
    )?;
    let access = match (
        &wire.spec.resource_attributes,
        &wire.spec.non_resource_attributes,
    ) {
        (Some(r), None) => Access::Resource {
            verb: r.verb.clone(),
            namespace: r.namespace.clone(),
            group: r.group.clone(),
            resource: r.resource.clone(),
            subresource: r.subresource.clone(),
            name: r.name.clone(),
        },
        (None, Some(n)) => Access::NonResource {
            verb: n.verb.clone(),
            path: n.path.clone(),
        },
        _ => return Err(BadAccessReview::Attributes),
    };
    if access.verb().is_empty() {
        return Err(BadAccessReview::NoVerb);
    }
    if wire.spec.user.is_empty() && wire.spec.groups.is_empty() {
        return Err(BadAccessReview::NoRequester);
    }
    Ok(AccessReview {
        requester: Requester {
            user: wire.spec.user.clone(),
            groups: wire.spec.groups.clone(),
        },
        access,
        wire,
    })
}

fn not_a_review(api_version: Option<&Value>, kind: Option<&Value>) -> Result<(), BadAccessReview> {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_string();
    if text(api_version) != API_VERSION || text(kind) != KIND {
        return Err(BadAccessReview::NotAReview {
            api_version: text(api_version),
            kind: text(kind),
        });
    }
    Ok(())
}

/// The review with its `status`.
pub fn respond(review: &AccessReview, verdict: &UseTimeVerdict) -> Value {
    let status = match verdict.reason() {
        Some(reason) => serde_json::json!({
            "allowed": false, "denied": true, "reason": reason,
        }),
        None => serde_json::json!({ "allowed": false }),
    };
    with_status(review, status)
}

/// No opinion because sodguard cannot judge yet (its index is loading): a
/// 200, so the API server neither retries nor depends on the failurePolicy,
/// and RBAC decides.
pub fn not_ready(review: &AccessReview) -> Value {
    with_status(
        review,
        serde_json::json!({
            "allowed": false,
            "evaluationError": "sodguard is not ready: its index is still loading",
        }),
    )
}

fn with_status(review: &AccessReview, status: Value) -> Value {
    let mut out = serde_json::to_value(&review.wire).unwrap_or_else(|_| Value::Object(Map::new()));
    if let Value::Object(m) = &mut out {
        m.insert("status".into(), status);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_reviews_say_why() {
        type Check = fn(&BadAccessReview) -> bool;
        let cases: [(&str, Check); 6] = [
            ("{", |e| matches!(e, BadAccessReview::NotJson(_))),
            (
                r#"{"apiVersion":"authorization.k8s.io/v1beta1","kind":"SubjectAccessReview","spec":{}}"#,
                |e| matches!(e, BadAccessReview::NotAReview { .. }),
            ),
            (
                r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview"}"#,
                |e| matches!(e, BadAccessReview::Malformed(_)),
            ),
            (
                r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","spec":{"user":"a"}}"#,
                |e| *e == BadAccessReview::Attributes,
            ),
            (
                r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","spec":{"resourceAttributes":{"verb":"get"}}}"#,
                |e| *e == BadAccessReview::NoRequester,
            ),
            (
                r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","spec":{"user":"a","nonResourceAttributes":{"path":"/x"}}}"#,
                |e| *e == BadAccessReview::NoVerb,
            ),
        ];
        for (body, ok) in cases {
            let e = parse(body.as_bytes()).unwrap_err();
            assert!(ok(&e), "{body}: {e:?}");
        }
    }

    #[test]
    fn the_review_comes_back_with_a_status() {
        let body = r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","metadata":{"creationTimestamp":null},
            "spec":{"user":"a","groups":["g"],"uid":"u","resourceAttributes":{"verb":"get","resource":"secrets","namespace":"n","fieldSelector":{"rawSelector":"x=y"}}}}"#;
        let r = parse(body.as_bytes()).unwrap();
        let out = respond(
            &r,
            &UseTimeVerdict::NoOpinion(crate::engine::usetime::NoOpinion::NoDuty),
        );
        assert_eq!(out["apiVersion"], API_VERSION);
        assert_eq!(out["kind"], KIND);
        assert_eq!(
            out["spec"]["resourceAttributes"]["fieldSelector"]["rawSelector"],
            "x=y"
        );
        assert_eq!(out["status"], serde_json::json!({"allowed": false}));
    }
}
