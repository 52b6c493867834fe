//! The rules that make an exception's approvals mean something: who may
//! request it, who may approve it, and for how long.

use jiff::Timestamp;

use super::admission::{Operation, UserInfo};
use crate::index::Index;
use crate::model::Exception;

/// `Err` carries the rule that was broken, for the requester.
pub fn check(
    index: &Index,
    e: &Exception,
    old: Option<&Exception>,
    op: Operation,
    user: &UserInfo,
    now: Timestamp,
) -> Result<(), String> {
    let Some(policy) = index.policy(&e.policy) else {
        return Err(format!(
            "spec.policy: there is no SoDPolicy named {:?}",
            e.policy
        ));
    };
    if let Some(ds) = &e.duties {
        for (i, d) in ds.iter().enumerate() {
            if !policy.duties.iter().any(|x| x.name == *d) {
                return Err(format!(
                    "spec.duties[{i}]: SoDPolicy {} has no duty {d:?}",
                    policy.name
                ));
            }
        }
    }
    let subject_user = e.subject.username();
    let approval_start = match (op, old) {
        (Operation::Create, _) | (_, None) => {
            if op == Operation::Create && e.requested_by != user.username {
                return Err(format!(
                    "spec.requestedBy must be the user who creates the exception ({:?}), not {:?}",
                    user.username, e.requested_by
                ));
            }
            0
        }
        (_, Some(old)) => {
            if old.requested_by != e.requested_by {
                return Err("spec.requestedBy cannot be changed".into());
            }
            if e.approvals.len() < old.approvals.len()
                || e.approvals[..old.approvals.len()] != old.approvals[..]
            {
                return Err("spec.approvals can only be appended to: existing approvals cannot be edited or removed".into());
            }
            if !old.approvals.is_empty() && !same_request(old, e) {
                return Err("an approved exception cannot be changed except by appending approvals: create a new one".into());
            }
            old.approvals.len()
        }
    };
    for (i, a) in e.approvals.iter().enumerate().skip(approval_start) {
        let path = format!("spec.approvals[{i}].user");
        if a.user != user.username {
            return Err(format!(
                "{path}: an approval must be made by the approving user ({:?}), not recorded for {:?}",
                user.username, a.user
            ));
        }
        if a.user == e.requested_by {
            return Err(format!(
                "{path}: {:?} requested this exception and cannot approve it",
                a.user
            ));
        }
        if Some(&a.user) == subject_user.as_ref() {
            return Err(format!(
                "{path}: the subject of an exception cannot approve it"
            ));
        }
    }
    if e.break_glass && !policy.exceptions.break_glass_allowed {
        return Err(format!(
            "spec.breakGlass: SoDPolicy {} does not allow break-glass exceptions",
            policy.name
        ));
    }
    let changed_window = old.is_none_or(|o| {
        o.expires_at != e.expires_at
            || o.not_before != e.not_before
            || o.break_glass != e.break_glass
    });
    if changed_window {
        let start = e.not_before.unwrap_or(now);
        let duration = e.expires_at.duration_since(start);
        let (max, what) = if e.break_glass {
            (
                policy.exceptions.break_glass_max_duration,
                "spec.exceptions.breakGlass.maxDuration",
            )
        } else {
            (
                policy.exceptions.max_duration,
                "spec.exceptions.maxDuration",
            )
        };
        if duration > max {
            return Err(format!(
                "spec.expiresAt: the exception would last {:#}, more than the policy's {what} of {:#}",
                duration, max
            ));
        }
    }
    Ok(())
}

/// Everything but the approvals is the same.
fn same_request(a: &Exception, b: &Exception) -> bool {
    a.policy == b.policy
        && a.subject == b.subject
        && a.duties == b.duties
        && a.namespaces == b.namespaces
        && a.not_before == b.not_before
        && a.expires_at == b.expires_at
        && a.break_glass == b.break_glass
        && a.justification == b.justification
        && a.ticket == b.ticket
}
