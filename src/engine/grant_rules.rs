//! The rules of a just-in-time grant (R10.1, R10.2 with the integrity rules
//! of R6.4): which AccessGrantPolicy allows it, who requested it, who may
//! approve and review it, and what freezes once approved.

use super::exception_rules::{is_subject, near_now};
use super::refusal::{Refusal, refuse};
use super::request::UserInfo;
use crate::engine::index::Index;
use crate::model::{GrantPolicy, JitGrant};

/// The AccessGrantPolicies that allow `g`, or why none does.
pub fn allowing<'a>(index: &'a Index, g: &JitGrant) -> Result<Vec<&'a GrantPolicy>, Refusal> {
    let mut allow = Vec::new();
    let mut why = Vec::new();
    for p in index.grant_policies() {
        match p.refuses(g) {
            None => allow.push(&**p),
            Some(reason) => why.push(format!("AccessGrantPolicy {}: {reason}", p.name)),
        }
    }
    if !allow.is_empty() {
        return Ok(allow);
    }
    if why.is_empty() {
        return refuse(format!(
            "no AccessGrantPolicy allows {} of {}: there is none, so nothing may be granted just in time",
            g.kind(),
            g.role
        ));
    }
    refuse(format!(
        "no AccessGrantPolicy allows {} of {} to {}: {}",
        g.kind(),
        g.role,
        g.subject,
        why.join("; ")
    ))
}

/// Why `user` may not vouch for `g` (approve or review it).
fn conflict_of_interest(g: &JitGrant, user: &str, groups: &[String]) -> Option<&'static str> {
    if user == g.requested_by {
        return Some("requested this grant");
    }
    if is_subject(&g.subject, user, Some(groups)) {
        return Some("is its subject (or a member of its subject Group)");
    }
    None
}

/// Checks a CREATE (`old: None`) or UPDATE of a grant by `user`. Whether
/// its binding would create a violation is judged by the caller, on the
/// engine's RBAC path.
pub fn check(
    index: &Index,
    g: &JitGrant,
    old: Option<&JitGrant>,
    user: &UserInfo,
    now: jiff::Timestamp,
) -> Result<(), Refusal> {
    let policies = allowing(index, g)?;
    let (old_approvals, old_review) = match old {
        None => {
            if g.requested_by != user.username {
                return refuse(format!(
                    "spec.requestedBy must be the user who creates the grant ({:?}), not {:?}",
                    user.username, g.requested_by
                ));
            }
            if !g.approvals.is_empty() {
                return refuse(
                    "spec.approvals must be empty at creation: each approver appends their own approval afterwards",
                );
            }
            if g.review.is_some() {
                return refuse(
                    "spec.review is written after a break-glass grant was used, not at creation",
                );
            }
            if g.break_glass && is_subject(&g.subject, &user.username, Some(&user.groups)) {
                return refuse(
                    "a break-glass grant cannot be requested by its own subject: someone else asks for it",
                );
            }
            (0, None)
        }
        Some(old) => {
            if old.requested_by != g.requested_by {
                return refuse("spec.requestedBy cannot be changed");
            }
            if g.approvals.len() < old.approvals.len()
                || g.approvals[..old.approvals.len()] != old.approvals[..]
            {
                return refuse(
                    "spec.approvals can only be appended to: existing approvals cannot be edited or removed",
                );
            }
            if old.review.is_some() && g.review != old.review {
                return refuse("spec.review is written once and cannot be changed");
            }
            let changed = !old.same_request(g);
            if changed && old.break_glass {
                return refuse(
                    "a break-glass grant is active at once and frozen: it may only be reviewed (spec.review) or deleted",
                );
            }
            if changed && !old.approvals.is_empty() {
                return refuse(
                    "an approved grant is frozen: only appending approvals and writing spec.review are allowed; create a new one to change it",
                );
            }
            if changed && user.username != old.requested_by {
                return refuse(format!(
                    "only its requester {:?} may change a pending grant; {:?} may only append their own approval",
                    old.requested_by, user.username
                ));
            }
            (old.approvals.len(), old.review.as_ref())
        }
    };
    let approver_of = |groups: &[String]| policies.iter().any(|p| p.approver(groups));
    let approver_groups = || {
        let mut gs: Vec<&str> = policies
            .iter()
            .flat_map(|p| p.approver_groups.iter().map(String::as_str))
            .collect();
        gs.sort_unstable();
        gs.dedup();
        gs.join(", ")
    };
    for (i, a) in g.approvals.iter().enumerate().skip(old_approvals) {
        let path = format!("spec.approvals[{i}]");
        if a.user != user.username {
            return refuse(format!(
                "{path}.user: an approval must be made by the approving user ({:?}), not recorded for {:?}",
                user.username, a.user
            ));
        }
        if let Some(why) = conflict_of_interest(g, &a.user, &user.groups) {
            return refuse(format!(
                "{path}.user: {:?} {why} and cannot approve it",
                a.user
            ));
        }
        if g.approvals[..i].iter().any(|p| p.user == a.user) {
            return refuse(format!("{path}.user: {:?} has already approved", a.user));
        }
        if !approver_of(&user.groups) {
            return refuse(format!(
                "{path}.user: {:?} is in none of the approver groups of the AccessGrantPolicies that allow this grant ({})",
                a.user,
                approver_groups()
            ));
        }
        near_now(&format!("{path}.at"), a.at, now)?;
    }
    if let Some(r) = &g.review
        && old_review.is_none()
    {
        if !g.break_glass {
            return refuse("spec.review: only a break-glass grant is reviewed afterwards");
        }
        if r.user != user.username {
            return refuse(format!(
                "spec.review.user: a review must be written by the reviewing user ({:?}), not recorded for {:?}",
                user.username, r.user
            ));
        }
        if let Some(why) = conflict_of_interest(g, &r.user, &user.groups) {
            return refuse(format!(
                "spec.review.user: {:?} {why} and cannot review it",
                r.user
            ));
        }
        if !approver_of(&user.groups) {
            return refuse(format!(
                "spec.review.user: {:?} is in none of the approver groups ({})",
                r.user,
                approver_groups()
            ));
        }
        near_now("spec.review.at", r.at, now)?;
    }
    Ok(())
}

/// The approvals that count towards activation: distinct users other than
/// the requester and the subject. The webhook already held each to the
/// approver groups when it was appended.
pub fn approvers(g: &JitGrant) -> usize {
    let mut users: Vec<&str> = g
        .approvals
        .iter()
        .filter(|a| conflict_of_interest(g, &a.user, &[]).is_none())
        .map(|a| a.user.as_str())
        .collect();
    users.sort_unstable();
    users.dedup();
    users.len()
}

/// Where a grant stands now (R10.4), from the state alone: what the grant
/// controller records in its status and does about its binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantStanding {
    pub phase: GrantPhase,
    /// When its window opened: its creation for break-glass, else the
    /// approval that completed the count (each held to the webhook's clock),
    /// so neither a late activation nor an edited status lengthens it.
    pub start: Option<jiff::Timestamp>,
    pub expires_at: Option<jiff::Timestamp>,
    /// Why it is not active, when it is not.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantPhase {
    Pending,
    Active,
    Expired,
    /// Its binding would create a violation under a Deny policy (R10.3),
    /// or no AccessGrantPolicy allows it any more.
    Refused,
}

impl GrantPhase {
    pub fn as_str(&self) -> &'static str {
        match self {
            GrantPhase::Pending => "Pending",
            GrantPhase::Active => "Active",
            GrantPhase::Expired => "Expired",
            GrantPhase::Refused => "Refused",
        }
    }
}

/// R10.4 without the SoD re-check (which needs to change the state: see
/// [`crate::engine::judge_grant_binding`]).
pub fn grant_standing(index: &Index, g: &JitGrant, now: jiff::Timestamp) -> GrantStanding {
    let policies = match allowing(index, g) {
        Ok(p) => p,
        Err(Refusal(reason)) => {
            return GrantStanding {
                phase: GrantPhase::Refused,
                start: None,
                expires_at: None,
                reason: Some(reason),
            };
        }
    };
    let start = if g.break_glass {
        g.created
    } else {
        let needed = policies
            .iter()
            .map(|p| p.approvals_required as usize)
            .min()
            .unwrap_or(usize::MAX);
        completing_approval(g, needed)
    };
    let Some(start) = start else {
        let needed = policies
            .iter()
            .map(|p| p.approvals_required)
            .min()
            .unwrap_or(0);
        return GrantStanding {
            phase: GrantPhase::Pending,
            start: None,
            expires_at: None,
            reason: Some(format!(
                "it has {} of the {needed} approval(s) it needs",
                approvers(g)
            )),
        };
    };
    let expires_at = start
        .checked_add(g.duration)
        .unwrap_or(jiff::Timestamp::MAX);
    if now >= expires_at {
        return GrantStanding {
            phase: GrantPhase::Expired,
            start: Some(start),
            expires_at: Some(expires_at),
            reason: Some(format!("expired at {expires_at}")),
        };
    }
    GrantStanding {
        phase: GrantPhase::Active,
        start: Some(start),
        expires_at: Some(expires_at),
        reason: None,
    }
}

/// The time of the approval that brought the distinct approvers to `needed`.
fn completing_approval(g: &JitGrant, needed: usize) -> Option<jiff::Timestamp> {
    let mut seen: Vec<&str> = Vec::new();
    for a in &g.approvals {
        if conflict_of_interest(g, &a.user, &[]).is_some() || seen.contains(&a.user.as_str()) {
            continue;
        }
        seen.push(&a.user);
        if seen.len() >= needed {
            return Some(a.at);
        }
    }
    None
}
