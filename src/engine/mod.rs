//! Decisions. Pure functions of an [`Index`](crate::engine::index::Index) and a clock:
//! what a subject holds, which violations the state contains, and what a
//! proposed change would add.

mod admission;
mod assume;
mod budget;
pub mod credentials;
mod derive;
mod exception_rules;
mod explain;
mod grant_rules;
mod holdings;
pub mod human;
pub mod index;
mod refusal;
mod request;
pub mod usetime;
mod verdict;
pub(crate) mod violations;
pub mod wording;

pub use admission::judge_grant_binding;
pub use admission::{review, review_against, review_and_apply, review_within};
pub use assume::{Assumption, assumption};
pub use budget::{Budget, Exhausted};
pub use exception_rules::{Phase, Standing, standing};
pub use explain::{ExceptionStanding, Explanation, PolicyHoldings, ScopeHoldings, explain};
pub use grant_rules::{
    GrantPhase, GrantStanding, allowing as grant_policies_allowing, approvers as grant_approvers,
    grant_standing,
};
pub use holdings::{End, Held, Holdings, Hop, Reach, Shared, Via, holdings, holdings_shared};
pub use refusal::Refusal;
pub use request::{GroupVersionKind, GroupVersionResource, Operation, Request, UserInfo};
pub use verdict::Review;
pub use violations::{
    DutyPaths, Evaluation, Excused, Path, Step, SubjectList, Violation, affected_subjects,
    evaluate, evaluate_bare_in_parts, evaluate_subjects, evaluate_within, subject_list,
    subject_violations, subject_violations_shared, subjects,
};

#[cfg(test)]
mod grant_tests;
#[cfg(test)]
mod tests;
