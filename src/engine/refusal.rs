//! A refusal that is not a violation: a broken rule of the request itself.

/// Why a request is refused for a reason other than a violation: the rule it
/// broke, in words for the requester. A decision, not an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

/// A refused change, with the rule it broke, for the requester.
pub(super) fn refuse<T>(rule: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal(rule.into()))
}

impl From<Refusal> for String {
    fn from(r: Refusal) -> String {
        r.0
    }
}
