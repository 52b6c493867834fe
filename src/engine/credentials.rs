//! Long-lived credentials (R8.1–R8.2): a `kubernetes.io/service-account-token`
//! Secret mints a token that never expires for its ServiceAccount.

use serde_json::Value;

use super::holdings::holdings;
use super::verdict::Review;
use crate::decode::token_secret_owner;
use crate::engine::index::Index;
use crate::model::TokenAction;

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
