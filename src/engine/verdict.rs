//! What the engine answers: a verdict and its reasons.

use super::violations::{Excused, Violation};

/// A verdict with its reasons. A denial is a decision, not an error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Review {
    pub allowed: bool,
    /// Why the request is refused for a reason other than a violation: an
    /// object that cannot be read, an invalid policy, a broken exception rule.
    pub refusal: Option<String>,
    /// New violations (R7.1) that no exception excuses, under any action.
    pub violations: Vec<Violation>,
    /// New violations that an active exception excuses (R6.3).
    pub excused: Vec<Excused>,
    /// Other things the requester should know.
    pub warnings: Vec<String>,
    /// Why judging stopped before the last affected subject (the decision
    /// budget), if it did.
    pub stopped: Option<super::budget::Exhausted>,
}

impl Review {
    pub(super) fn allow() -> Self {
        Review {
            allowed: true,
            ..Review::default()
        }
    }

    pub(super) fn refuse(reason: impl Into<String>) -> Self {
        Review {
            allowed: false,
            refusal: Some(reason.into()),
            ..Review::default()
        }
    }

    pub fn denying(&self) -> impl Iterator<Item = &Violation> {
        self.violations.iter().filter(|v| v.actions.deny)
    }

    pub fn warning(&self) -> impl Iterator<Item = &Violation> {
        self.violations.iter().filter(|v| v.actions.warn)
    }

    pub fn auditing(&self) -> impl Iterator<Item = &Violation> {
        self.violations.iter().filter(|v| v.actions.audit)
    }
}
