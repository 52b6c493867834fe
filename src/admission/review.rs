//! The AdmissionReview wire format (`admission.k8s.io/v1`) around the engine's
//! verdict. Pure: JSON in, JSON out.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::engine::{GroupVersionResource, Operation, Request, Review, UserInfo};

/// `request.kind`; the engine checks the object against it (R7.9).
pub use crate::engine::GroupVersionKind as Gvk;

pub const API_VERSION: &str = "admission.k8s.io/v1";
/// The audit annotation key; the API server prefixes it with the webhook's
/// name (`validate.sodguard.io/violations`).
pub const AUDIT_KEY: &str = "violations";
const MAX_WARNING: usize = 255;

/// Why a body is not an AdmissionReview we can answer (HTTP 400).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BadReview {
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error(
        "the body is not an admission.k8s.io/v1 AdmissionReview (apiVersion {api_version:?}, kind {kind:?})"
    )]
    NotAReview { api_version: String, kind: String },
    #[error("the AdmissionReview has no request")]
    NoRequest,
    #[error("the AdmissionReview's request has no uid")]
    NoUid,
    #[error("the AdmissionReview's request is malformed: {0}")]
    Malformed(String),
}

/// What the webhook reads of `request`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireRequest {
    uid: String,
    #[serde(default)]
    kind: Option<Gvk>,
    operation: Operation,
    #[serde(default)]
    user_info: UserInfo,
    #[serde(default)]
    object: Option<Value>,
    #[serde(default)]
    old_object: Option<Value>,
    #[serde(default)]
    dry_run: Option<bool>,
    #[serde(default)]
    resource: Option<GroupVersionResource>,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
}

/// A parsed admission request: its uid, its kind and the engine's request.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub uid: String,
    pub kind: Gvk,
    pub request: Request,
}

impl Incoming {
    pub fn operation(&self) -> &'static str {
        match self.request.operation {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }
}

pub fn parse(body: &[u8]) -> Result<Incoming, BadReview> {
    let v: Value = serde_json::from_slice(body).map_err(|e| BadReview::NotJson(e.to_string()))?;
    let s = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (api_version, kind) = (s("apiVersion"), s("kind"));
    if api_version != API_VERSION || kind != "AdmissionReview" {
        return Err(BadReview::NotAReview { api_version, kind });
    }
    let Some(req) = v.get("request").filter(|r| !r.is_null()) else {
        return Err(BadReview::NoRequest);
    };
    if req
        .get("uid")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(BadReview::NoUid);
    }
    // The failing field's path is tracked only on a second pass over a
    // request that failed: tracking it costs on every node of the object.
    let w = match WireRequest::deserialize(req) {
        Ok(w) => w,
        Err(_) => serde_path_to_error::deserialize(req)
            .map_err(|e| BadReview::Malformed(format!("request.{}: {}", e.path(), e.inner())))?,
    };
    // The API server omits the object it does not have; treat null the same.
    let nonnull = |o: Option<Value>| o.filter(|v| !v.is_null());
    let nonempty = |s: Option<String>| s.filter(|s| !s.is_empty());
    Ok(Incoming {
        uid: w.uid,
        kind: w.kind.clone().unwrap_or_default(),
        request: Request {
            operation: w.operation,
            user_info: w.user_info,
            object: nonnull(w.object),
            old_object: nonnull(w.old_object),
            dry_run: w.dry_run.unwrap_or(false),
            // The API server always sends `kind`; without it (a hand-made
            // review) the object and old object must at least agree.
            kind: w.kind,
            resource: w.resource,
            sub_resource: nonempty(w.sub_resource),
            name: nonempty(w.name),
            namespace: nonempty(w.namespace),
        },
    })
}

/// The decision as the API server and kubectl show it.
pub fn respond(uid: &str, review: &Review) -> Value {
    let warnings: Vec<String> = crate::engine::wording::warnings(review)
        .iter()
        .map(|w| clip(w))
        .collect();
    let mut response = json!({ "uid": uid, "allowed": review.allowed });
    if !review.allowed {
        response["status"] = json!({
            "code": 403,
            "reason": "Forbidden",
            "message": denial_message(review),
        });
    }
    if !warnings.is_empty() {
        response["warnings"] = json!(warnings);
    }
    let audited: Vec<Value> = review
        .auditing()
        .map(|v| json!({"policy": &*v.policy, "subject": v.subject.to_string(), "namespace": &*v.namespace, "duties": v.duties.iter().map(|d| &**d).collect::<Vec<_>>()}))
        .collect();
    if !audited.is_empty() {
        response["auditAnnotations"] = json!({ AUDIT_KEY: Value::Array(audited).to_string() });
    }
    json!({ "apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response })
}

pub use crate::engine::wording::{denial_message, summary};

/// Kubernetes shows warnings of at most 256 characters well; cut on a char
/// boundary.
fn clip(s: &str) -> String {
    if s.len() <= MAX_WARNING {
        return s.to_string();
    }
    let mut end = MAX_WARNING - 3;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_are_clipped_on_char_boundaries() {
        let long = "é".repeat(300);
        let c = clip(&long);
        assert!(c.len() <= MAX_WARNING && c.ends_with("..."));
    }

    #[test]
    fn bad_bodies() {
        assert!(matches!(parse(b"nope"), Err(BadReview::NotJson(_))));
        assert!(matches!(
            parse(br#"{"apiVersion":"v1","kind":"Pod"}"#),
            Err(BadReview::NotAReview { .. })
        ));
        let base = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview""#;
        assert_eq!(
            parse(format!("{base}}}").as_bytes()).unwrap_err(),
            BadReview::NoRequest
        );
        assert_eq!(
            parse(format!(r#"{base},"request":{{"operation":"CREATE"}}}}"#).as_bytes())
                .unwrap_err(),
            BadReview::NoUid
        );
        let e =
            parse(format!(r#"{base},"request":{{"uid":"u","operation":"EXPLODE"}}}}"#).as_bytes())
                .unwrap_err();
        assert!(e.to_string().contains("request.operation: "), "{e}");
        // The path of a nested field, found on the second pass.
        let e = parse(
            format!(
                r#"{base},"request":{{"uid":"u","operation":"CREATE","userInfo":{{"username":"a","groups":[1]}}}}}}"#
            )
            .as_bytes(),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("request.userInfo.groups[0]: "),
            "{e}"
        );
    }
}
