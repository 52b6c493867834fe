//! Decisions. Pure functions of an [`Index`](crate::index::Index) and a clock:
//! what a subject holds, which violations the state contains, and what a
//! proposed change would add.

mod admission;
mod assume;
pub mod credentials;
mod exception_rules;
mod explain;
mod holdings;
mod violations;

pub use admission::{
    GroupVersionKind, GroupVersionResource, Operation, Request, Review, UserInfo, review,
    review_against, review_and_apply,
};
pub use assume::{Assumption, assumption};
pub use exception_rules::{Phase, Standing, standing};
pub use explain::{ExceptionStanding, Explanation, PolicyHoldings, ScopeHoldings, explain};
pub use holdings::{Held, Holdings, Via, holdings};
pub use violations::{
    DutyPaths, Evaluation, Excused, Path, Violation, affected_subjects, evaluate, evaluate_policy,
    evaluate_subjects, subject_violations,
};

#[cfg(test)]
mod tests;
