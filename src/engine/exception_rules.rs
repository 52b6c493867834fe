//! The rules that make an exception mean something (R6.4, R6.5): who may
//! request, change, approve and review it, and when it is active. Admission
//! refuses a change that breaks them; offline, an exception that breaks them
//! is inactive and [`standing`] says why.

use std::fmt;

use jiff::{SignedDuration, Timestamp};

use super::human::human;
use super::refusal::{Refusal, refuse};
use super::request::UserInfo;
use crate::engine::index::Index;
use crate::model::{CLUSTER_WIDE, Exception, Identity, Policy, is_dns_label};

/// How far a time written by a user may be from the webhook's clock.
pub const CLOCK_SKEW: SignedDuration = SignedDuration::from_mins(5);
/// How long after its creation a break-glass window may open: emergency
/// access is for now, not for a date picked in advance.
pub const BREAK_GLASS_LEAD: SignedDuration = SignedDuration::from_mins(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Active,
    Pending,
    Expired,
    /// It breaks an integrity rule and excuses nothing until replaced.
    Invalid,
}

impl Phase {
    pub fn as_str(&self) -> &'static str {
        match self {
            Phase::Active => "Active",
            Phase::Pending => "Pending",
            Phase::Expired => "Expired",
            Phase::Invalid => "Invalid",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether an exception is active now, until when, and if not, why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    pub phase: Phase,
    /// The end of its window as the policy caps it today.
    pub until: Timestamp,
    /// Why it is not active; empty when it is.
    pub reasons: Vec<String>,
}

impl Standing {
    pub fn active(&self) -> bool {
        self.phase == Phase::Active
    }
}

/// R6.2 with R6.4 and R6.5, on the state alone (no request).
pub fn standing(index: &Index, e: &Exception, now: Timestamp) -> Standing {
    let Some(policy) = index.policy(&e.policy) else {
        return Standing {
            phase: if now >= e.expires_at {
                Phase::Expired
            } else {
                Phase::Invalid
            },
            until: e.expires_at,
            reasons: vec![format!(
                "spec.policy: there is no SoDPolicy named {:?}",
                e.policy
            )],
        };
    };
    let start = window_start(e, now);
    let required = policy.exceptions.approvals_required as usize;
    let approvers = counted_approvers(e, now);
    let approved = approvers.len() >= required;
    let bg_problems = if e.break_glass {
        break_glass_problems(index, policy, e, now, None, false)
    } else {
        Vec::new()
    };
    let break_glass = e.break_glass && bg_problems.is_empty();
    let approved_end = capped(e, start, policy.exceptions.max_duration);
    let bg_end = capped(e, start, policy.exceptions.break_glass_max_duration);
    let until = match (approved, break_glass) {
        (true, true) => approved_end.max(bg_end),
        (true, false) => approved_end,
        (false, true) => bg_end,
        (false, false) => e.expires_at,
    };
    let done = |reasons| Standing {
        phase: Phase::Expired,
        until,
        reasons,
    };
    if now >= e.expires_at {
        return done(vec![format!("expired at {}", e.expires_at)]);
    }
    let mut invalid = static_problems(policy, e);
    invalid.extend(review_problems(e, now, None));
    if !approved && !break_glass {
        invalid.extend(bg_problems);
    }
    if !invalid.is_empty() {
        return Standing {
            phase: Phase::Invalid,
            until,
            reasons: invalid,
        };
    }
    if let Some(nb) = e.not_before
        && now < nb
    {
        return Standing {
            phase: Phase::Pending,
            until,
            reasons: vec![format!("its window opens at {nb}")],
        };
    }
    if !approved && !break_glass {
        return Standing {
            phase: Phase::Pending,
            until,
            reasons: vec![format!(
                "it has {} of the {required} approval(s) it needs (by users other than the requester and the subject)",
                approvers.len()
            )],
        };
    }
    if now >= until {
        let (max, field) = if break_glass && !approved {
            (
                policy.exceptions.break_glass_max_duration,
                "breakGlass.maxDuration",
            )
        } else {
            (policy.exceptions.max_duration, "maxDuration")
        };
        return done(vec![format!(
            "ended at {until}: SoDPolicy {} caps a window at {} (spec.exceptions.{field})",
            policy.name,
            human(max)
        )]);
    }
    Standing {
        phase: Phase::Active,
        until,
        reasons: Vec::new(),
    }
}

/// Checks a CREATE (`old: None`) or UPDATE of an exception by `user`.
/// `e.created` is the creation time (now for a CREATE). `Err` carries the
/// rule that was broken, for the requester.
pub fn check(
    index: &Index,
    e: &Exception,
    old: Option<&Exception>,
    user: &UserInfo,
    now: Timestamp,
) -> Result<(), Refusal> {
    let Some(policy) = index.policy(&e.policy) else {
        return refuse(format!(
            "spec.policy: there is no SoDPolicy named {:?}",
            e.policy
        ));
    };
    if let Some(p) = static_problems(policy, e).into_iter().next() {
        return refuse(p);
    }
    let (spec_changed, old_approvals, old_review) = match old {
        None => {
            if e.requested_by != user.username {
                return refuse(format!(
                    "spec.requestedBy must be the user who creates the exception ({:?}), not {:?}",
                    user.username, e.requested_by
                ));
            }
            (true, 0, None)
        }
        Some(old) => {
            if old.requested_by != e.requested_by {
                return refuse("spec.requestedBy cannot be changed");
            }
            if e.approvals.len() < old.approvals.len()
                || e.approvals[..old.approvals.len()] != old.approvals[..]
            {
                return refuse(
                    "spec.approvals can only be appended to: existing approvals cannot be edited or removed",
                );
            }
            if old.review.is_some() && e.review != old.review {
                return refuse("spec.review is written once and cannot be changed");
            }
            let changed = !same_request(old, e);
            // Once a break-glass window has opened, turning it into something
            // else (no longer break-glass, another subject) would hide it from
            // the cooldown and the review it owes (R6.5): it may only end early.
            if changed && old.break_glass && now >= window_start(old, now) && !ends_early(old, e) {
                return refuse(
                    "a break-glass exception whose window has opened is frozen: it may only end earlier (spec.expiresAt) and be reviewed (spec.review); create a new one, within the policy's cooldown",
                );
            }
            if changed && !old.approvals.is_empty() {
                return refuse(
                    "an approved exception is frozen: only appending approvals and writing spec.review are allowed; create a new one to change it",
                );
            }
            if changed && user.username != old.requested_by {
                return refuse(format!(
                    "only its requester {:?} may change a pending exception; {:?} may only append their own approval",
                    old.requested_by, user.username
                ));
            }
            (changed, old.approvals.len(), old.review.as_ref())
        }
    };
    for (i, a) in e.approvals.iter().enumerate().skip(old_approvals) {
        let path = format!("spec.approvals[{i}]");
        if a.user != user.username {
            return refuse(format!(
                "{path}.user: an approval must be made by the approving user ({:?}), not recorded for {:?}",
                user.username, a.user
            ));
        }
        if let Some(why) = conflict_of_interest(e, &a.user, Some(&user.groups)) {
            return refuse(format!(
                "{path}.user: {:?} {why} and cannot approve it",
                a.user
            ));
        }
        if e.approvals[..i].iter().any(|p| p.user == a.user) {
            return refuse(format!("{path}.user: {:?} has already approved", a.user));
        }
        near_now(&format!("{path}.at"), a.at, now)?;
    }
    if let Some(r) = &e.review
        && old_review.is_none()
    {
        if r.user != user.username {
            return refuse(format!(
                "spec.review.user: a review must be written by the reviewing user ({:?}), not recorded for {:?}",
                user.username, r.user
            ));
        }
        if let Some(why) = conflict_of_interest(e, &r.user, Some(&user.groups)) {
            return refuse(format!(
                "spec.review.user: {:?} {why} and cannot review it",
                r.user
            ));
        }
        let start = window_start(e, now);
        if now < start {
            return refuse(format!(
                "spec.review: the window has not started yet (it opens at {start}); review it afterwards"
            ));
        }
        near_now("spec.review.at", r.at, now)?;
    }
    if spec_changed {
        let start = window_start(e, now);
        let (max, field) = if e.break_glass {
            (
                policy.exceptions.break_glass_max_duration,
                "breakGlass.maxDuration",
            )
        } else {
            (policy.exceptions.max_duration, "maxDuration")
        };
        let length = e.expires_at.duration_since(start);
        if length > max {
            return refuse(format!(
                "spec.expiresAt: the exception would last {} from {start}, more than the policy's spec.exceptions.{field} of {}",
                human(length),
                human(max)
            ));
        }
        if e.break_glass
            && let Some(p) = break_glass_problems(index, policy, e, now, Some(&user.groups), true)
                .into_iter()
                .next()
        {
            return refuse(p);
        }
    }
    Ok(())
}

/// When the window opens: `notBefore`, else the creation. An object read
/// from a file may lack its creation time; then its first approval, else now.
fn window_start(e: &Exception, now: Timestamp) -> Timestamp {
    e.not_before
        .or(e.created)
        .or_else(|| e.approvals.iter().map(|a| a.at).min())
        .unwrap_or(now)
}

/// `expiresAt`, cut to `max` after the window opens: the policy's current
/// limits apply to windows granted under older ones.
fn capped(e: &Exception, start: Timestamp, max: SignedDuration) -> Timestamp {
    start
        .checked_add(max)
        .map_or(e.expires_at, |end| end.min(e.expires_at))
}

fn shifted(t: Timestamp, d: SignedDuration) -> Timestamp {
    t.checked_add(d).unwrap_or(if d.is_negative() {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

pub(super) fn near_now(path: &str, at: Timestamp, now: Timestamp) -> Result<(), Refusal> {
    if at < shifted(now, -CLOCK_SKEW) || at > shifted(now, CLOCK_SKEW) {
        return refuse(format!(
            "{path}: {at} is not the time of this request ({now}, within {CLOCK_SKEW:#})"
        ));
    }
    Ok(())
}

/// Rules on the exception's own fields that need its policy.
fn static_problems(policy: &Policy, e: &Exception) -> Vec<String> {
    let mut out = Vec::new();
    for (i, d) in e.duties.iter().flatten().enumerate() {
        if !policy.duties.iter().any(|x| x.name == *d) {
            out.push(format!(
                "spec.duties[{i}]: SoDPolicy {} has no duty {d:?}",
                policy.name
            ));
        }
    }
    for (i, ns) in e.namespaces.iter().flatten().enumerate() {
        if &**ns != CLUSTER_WIDE && !is_dns_label(ns) {
            out.push(format!(
                "spec.namespaces[{i}]: {ns:?} is not a namespace name: namespaces are literal names (no globs), and \"*\" alone means cluster-wide"
            ));
        }
    }
    out
}

/// Whether `user` is the subject: the same identity, or (per `groups`, known
/// only at admission, and the groups the cluster assigns) in a subject Group.
pub(super) fn is_subject(subject: &Identity, user: &str, groups: Option<&[String]>) -> bool {
    let id = Identity::user(user);
    if id == *subject {
        return true;
    }
    match subject {
        Identity::Group(g) => {
            id.implicit_groups().contains(subject)
                || groups.is_some_and(|gs| gs.iter().any(|x| x.as_str() == &**g))
        }
        _ => false,
    }
}

/// Why `user` may not vouch for `e` (approve or review it).
fn conflict_of_interest(e: &Exception, user: &str, groups: Option<&[String]>) -> Option<String> {
    if user == e.requested_by {
        return Some("requested this exception".into());
    }
    if is_subject(&e.subject, user, groups) {
        return Some(match &e.subject {
            Identity::Group(g) => format!("is a member of its subject Group {g}"),
            _ => "is its subject".into(),
        });
    }
    None
}

/// Distinct approvers that count offline: neither the requester nor the
/// subject, and not dated in the future. An approval dated before the
/// object's creation is not refused here: the webhook already held every
/// appended approval to its clock (R6.4), and an object written past the
/// webhook (a restore, an admin in `system:masters`) keeps its own dates.
fn counted_approvers(e: &Exception, now: Timestamp) -> Vec<&str> {
    let mut users: Vec<&str> = e
        .approvals
        .iter()
        .filter(|a| {
            conflict_of_interest(e, &a.user, None).is_none() && a.at <= shifted(now, CLOCK_SKEW)
        })
        .map(|a| a.user.as_str())
        .collect();
    users.sort_unstable();
    users.dedup();
    users
}

fn review_problems(e: &Exception, now: Timestamp, groups: Option<&[String]>) -> Vec<String> {
    let Some(r) = &e.review else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(why) = conflict_of_interest(e, &r.user, groups) {
        out.push(format!(
            "spec.review.user: {:?} {why}; a review is by someone else",
            r.user
        ));
    }
    let start = window_start(e, now);
    if r.at < start {
        out.push(format!(
            "spec.review.at: {} is before the window opened ({start})",
            r.at
        ));
    }
    out
}

/// R6.5. At admission (`both_ways`) `e` is the new window and may conflict
/// with any other; offline, of two conflicting windows the later one (by
/// start, then name) is the one at fault.
fn break_glass_problems(
    index: &Index,
    policy: &Policy,
    e: &Exception,
    now: Timestamp,
    requester_groups: Option<&[String]>,
    both_ways: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    let rules = &policy.exceptions;
    if !rules.break_glass_allowed {
        out.push(format!(
            "spec.breakGlass: SoDPolicy {} does not allow break-glass exceptions (spec.exceptions.breakGlass.allowed)",
            policy.name
        ));
    }
    if is_subject(&e.subject, &e.requested_by, requester_groups) {
        let what = match &e.subject {
            Identity::Group(g) => format!("is a member of the subject Group {g}"),
            _ => "is the subject".into(),
        };
        out.push(format!(
            "spec.requestedBy: {:?} {what}; break-glass is requested by someone else",
            e.requested_by
        ));
    }
    let start = window_start(e, now);
    if let Some(created) = e.created
        && start > shifted(created, BREAK_GLASS_LEAD)
    {
        out.push(format!(
            "spec.notBefore: a break-glass window opens within {BREAK_GLASS_LEAD:#} of its creation ({created}), not at {start}"
        ));
    }
    let end = capped(e, start, rules.break_glass_max_duration);
    for o in index.exceptions_for(&e.subject) {
        if o.name == e.name || o.policy != e.policy || !o.break_glass {
            continue;
        }
        let o_start = window_start(o, now);
        let o_end = capped(o, o_start, rules.break_glass_max_duration);
        let e_later = (start, &e.name) > (o_start, &o.name);
        if !e_later && !both_ways {
            continue;
        }
        let (first_end, second_start) = if e_later {
            (o_end, start)
        } else {
            (end, o_start)
        };
        if second_start < first_end {
            out.push(format!(
                "spec.breakGlass: its window overlaps break-glass SoDException {} for the same subject and policy",
                o.name
            ));
        } else if second_start < shifted(first_end, rules.break_glass_cooldown) {
            out.push(format!(
                "spec.breakGlass: break-glass windows of one subject are {} apart at least (spec.exceptions.breakGlass.cooldown); with SoDException {} the earlier one ends at {first_end} and the next may open at {}",
                human(rules.break_glass_cooldown),
                o.name,
                shifted(first_end, rules.break_glass_cooldown),
            ));
        }
    }
    out
}

/// Everything but the approvals and the review is the same.
/// `new` is `old` with an earlier end and nothing else changed.
fn ends_early(old: &Exception, new: &Exception) -> bool {
    new.expires_at <= old.expires_at
        && old.policy == new.policy
        && old.subject == new.subject
        && old.duties == new.duties
        && old.namespaces == new.namespaces
        && old.not_before == new.not_before
        && old.break_glass == new.break_glass
}

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
