//! Credentials (R8): a `kubernetes.io/service-account-token` Secret mints a
//! token that never expires for its ServiceAccount (R8.1–R8.2); a
//! TokenRequest mints a short-lived one, within the policy's limits (R8.4).

use serde_json::Value;

use super::holdings::holdings;
use super::request::UserInfo;
use super::verdict::Review;
use crate::decode::token_secret_owner;
use crate::engine::index::Index;
use crate::model::{Identity, TokenAction};

/// R8.2: the verdict on creating or updating a Secret.
pub fn review_secret(index: &Index, secret: &Value) -> Review {
    let mut review = Review {
        allowed: true,
        ..Review::default()
    };
    let Some(sa) = token_secret_owner(secret) else {
        return review;
    };
    if !index.exists(&sa) {
        return review;
    }
    let h = holdings(index, &sa, None);
    let mut denied = Vec::new();
    for (slot, policy) in index.policies() {
        if !policy.subjects.selects(&sa)
            || h.by_policy.get(&slot).is_none_or(|held| held.is_empty())
        {
            continue;
        }
        let msg = format!(
            "SoDPolicy {}: {sa} holds duties of this policy; a long-lived token Secret for it never expires — \
             use short-lived tokens instead (TokenRequest: `kubectl create token`, or a projected volume)",
            policy.name
        );
        match policy.credentials.long_lived_tokens {
            TokenAction::Allow => {}
            TokenAction::Warn => review.warnings.push(msg),
            TokenAction::Deny => denied.push(msg),
        }
    }
    if !denied.is_empty() {
        review.allowed = false;
        review.refusal = Some(denied.join("; "));
    }
    review
}

/// What a TokenRequest asks for, from the admission request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub service_account: Identity,
    /// `spec.expirationSeconds`; the API server's default (1h) when unset.
    pub expiration_seconds: i64,
    /// `spec.boundObjectRef.kind`, when the token is bound to an object.
    pub bound_kind: Option<String>,
}

/// The API server's default `expirationSeconds` of a TokenRequest.
const DEFAULT_TOKEN_SECONDS: i64 = 3600;

impl TokenRequest {
    /// Reads the TokenRequest of a `create` on `serviceaccounts/token`. The
    /// ServiceAccount is the one the request is for (`name`, `namespace`,
    /// which the API server sets), else the object's metadata.
    pub fn parse(
        object: &Value,
        name: Option<&str>,
        namespace: Option<&str>,
    ) -> Result<Self, String> {
        let meta = |k: &str| {
            object
                .get("metadata")
                .and_then(|m| m.get(k))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        let name = name.filter(|s| !s.is_empty()).or_else(|| meta("name"));
        let namespace = namespace
            .filter(|s| !s.is_empty())
            .or_else(|| meta("namespace"));
        let (Some(name), Some(namespace)) = (name, namespace) else {
            return Err("a TokenRequest must name its ServiceAccount and namespace".into());
        };
        let spec = object.get("spec");
        let expiration_seconds = match spec.and_then(|s| s.get("expirationSeconds")) {
            None | Some(Value::Null) => DEFAULT_TOKEN_SECONDS,
            Some(v) => v
                .as_i64()
                .ok_or("spec.expirationSeconds must be an integer")?,
        };
        let bound_kind = spec
            .and_then(|s| s.get("boundObjectRef"))
            .filter(|b| !b.is_null())
            .map(|b| {
                b.get("kind")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            });
        Ok(TokenRequest {
            service_account: Identity::service_account(namespace, name),
            expiration_seconds,
            bound_kind,
        })
    }
}

/// The group of kubelets.
const NODES: &str = "system:nodes";

/// R8.4: the verdict on a TokenRequest for a ServiceAccount.
pub fn review_token_request(index: &Index, t: &TokenRequest, user: &UserInfo) -> Review {
    let mut review = Review {
        allowed: true,
        ..Review::default()
    };
    // A kubelet mounting a projected token into a Pod it runs: refusing it
    // would break the Pod, and the token dies with the Pod anyway.
    if user.groups.iter().any(|g| g == NODES) && t.bound_kind.as_deref() == Some("Pod") {
        return review;
    }
    let sa = &t.service_account;
    if !index.exists(sa) {
        return review;
    }
    let h = holdings(index, sa, None);
    let mut denied = Vec::new();
    for (slot, policy) in index.policies() {
        if !policy.subjects.selects(sa) || h.by_policy.get(&slot).is_none_or(|held| held.is_empty())
        {
            continue;
        }
        let rules = &policy.credentials.token_requests;
        let mut breaches = Vec::new();
        if let Some(max) = rules.max_expiration
            && jiff::SignedDuration::from_secs(t.expiration_seconds) > max
        {
            breaches.push(format!(
                "a token for {:#} ({}s) is longer than spec.credentials.tokenRequests.maxExpiration of {max:#}",
                jiff::SignedDuration::from_secs(t.expiration_seconds),
                t.expiration_seconds
            ));
        }
        if rules.require_bound_object && t.bound_kind.is_none() {
            breaches.push(
                "the token is not bound to a Pod or Secret (spec.boundObjectRef), which spec.credentials.tokenRequests.requireBoundObject requires"
                    .to_string(),
            );
        }
        if breaches.is_empty() {
            continue;
        }
        let msg = format!(
            "SoDPolicy {}: {sa} holds duties of this policy; {}",
            policy.name,
            breaches.join("; ")
        );
        match rules.action {
            TokenAction::Allow => {}
            TokenAction::Warn => review.warnings.push(msg),
            TokenAction::Deny => denied.push(msg),
        }
    }
    if !denied.is_empty() {
        review.allowed = false;
        review.refusal = Some(denied.join("; "));
    }
    review
}
