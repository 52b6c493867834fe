//! The status the audit writes on SoDPolicies and SoDExceptions. Each
//! function takes the status stored now and returns it unchanged when the
//! audit finds nothing new, so that an audit of an unchanged state writes
//! nothing (times and transition times are kept).

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::{ExceptionAudit, PolicyAudit};
use crate::crd::{FieldError, SoDExceptionStatus, SoDPolicyStatus};

fn condition(type_: &str, status: bool, reason: &str, message: String, at: Timestamp) -> Condition {
    Condition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: reason.into(),
        message,
        last_transition_time: Time(at),
        observed_generation: None,
    }
}

/// `new` with the transition times of `prev`'s conditions whose status has
/// not changed.
fn keep_transitions(new: &mut [Condition], prev: &[Condition]) {
    for c in new {
        if let Some(p) = prev
            .iter()
            .find(|p| p.type_ == c.type_ && p.status == c.status)
        {
            c.last_transition_time = p.last_transition_time.clone();
        }
    }
}

fn conditions_equal(a: &[Condition], b: &[Condition]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.type_ == y.type_
                && x.status == y.status
                && x.reason == y.reason
                && x.message == y.message
                && x.observed_generation == y.observed_generation
        })
}

fn settle_policy(prev: Option<&SoDPolicyStatus>, mut new: SoDPolicyStatus) -> SoDPolicyStatus {
    let Some(prev) = prev else { return new };
    keep_transitions(&mut new.conditions, &prev.conditions);
    let same = conditions_equal(&new.conditions, &prev.conditions)
        && new.observed_generation == prev.observed_generation
        && new.violations == prev.violations
        && new.violations_by_action == prev.violations_by_action
        && new.excused == prev.excused;
    if same { prev.clone() } else { new }
}

/// The status of a valid policy the audit evaluated.
pub fn policy_status(
    prev: Option<&SoDPolicyStatus>,
    generation: Option<i64>,
    a: &PolicyAudit,
    at: Timestamp,
) -> SoDPolicyStatus {
    let new = SoDPolicyStatus {
        observed_generation: generation,
        conditions: vec![
            condition(
                "Ready",
                true,
                "Audited",
                format!(
                    "{} violation(s), {} excused by exceptions",
                    a.violations, a.excused
                ),
                at,
            ),
            condition("Invalid", false, "Valid", String::new(), at),
        ],
        violations: Some(a.violations),
        violations_by_action: Some(
            a.by_action
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
        ),
        excused: Some(a.excused),
        last_audit: Some(at.to_string()),
    };
    settle_policy(prev, new)
}

/// The status of a policy that cannot be enforced (R7.5): the field at fault.
pub fn invalid_policy_status(
    prev: Option<&SoDPolicyStatus>,
    generation: Option<i64>,
    error: &FieldError,
    at: Timestamp,
) -> SoDPolicyStatus {
    let new = SoDPolicyStatus {
        observed_generation: generation,
        conditions: vec![
            condition(
                "Ready",
                false,
                "Invalid",
                "the policy is not enforced".into(),
                at,
            ),
            condition("Invalid", true, "InvalidSpec", error.to_string(), at),
        ],
        violations: None,
        violations_by_action: None,
        excused: None,
        last_audit: Some(at.to_string()),
    };
    settle_policy(prev, new)
}

fn settle_exception(
    prev: Option<&SoDExceptionStatus>,
    mut new: SoDExceptionStatus,
) -> SoDExceptionStatus {
    let Some(prev) = prev else { return new };
    keep_transitions(&mut new.conditions, &prev.conditions);
    let same = conditions_equal(&new.conditions, &prev.conditions)
        && new.phase == prev.phase
        && new.reason == prev.reason
        && new.active_until == prev.active_until
        && new.excused == prev.excused;
    if same { prev.clone() } else { new }
}

pub fn exception_status(
    prev: Option<&SoDExceptionStatus>,
    a: &ExceptionAudit,
    at: Timestamp,
) -> SoDExceptionStatus {
    let active = a.phase == "Active";
    let new = SoDExceptionStatus {
        phase: Some(a.phase.into()),
        reason: (!a.reason.is_empty()).then(|| a.reason.clone()),
        active_until: Some(a.until.to_string()),
        excused: Some(a.excused),
        conditions: vec![condition("Active", active, a.phase, a.reason.clone(), at)],
    };
    settle_exception(prev, new)
}

/// An exception whose spec cannot be read into one (R6.4): it excuses
/// nothing.
pub fn invalid_exception_status(
    prev: Option<&SoDExceptionStatus>,
    error: &FieldError,
    at: Timestamp,
) -> SoDExceptionStatus {
    let new = SoDExceptionStatus {
        phase: Some("Inactive".into()),
        reason: Some(error.to_string()),
        active_until: None,
        excused: Some(0),
        conditions: vec![condition(
            "Active",
            false,
            "InvalidSpec",
            error.to_string(),
            at,
        )],
    };
    settle_exception(prev, new)
}
