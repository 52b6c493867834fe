//! The review-time audit (R11), as a pure function of a state, its
//! evaluation and a clock: what each SoDPolicy's and SoDException's status
//! says, the reports (R11.2) and the events worth raising. No IO: the audit
//! controller writes what this computes, and `sodguard report` prints it.

mod report;
mod status;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};

use crate::engine::index::Index;
use crate::engine::{Evaluation, Excused, Phase, Violation, holdings, standing};
use crate::model::{CLUSTER_WIDE, Exception, Identity, Name, TokenAction, TokenSecret};

pub use report::{
    MANAGED_BY, MANAGED_BY_LABEL, MAX_RESULTS, ObjectReference, Report, ReportFormat, ReportResult,
    Results, Summary, reports,
};
pub use status::{
    exception_status, invalid_exception_status, invalid_policy_status, policy_status,
};

/// How soon before an exception ends its expiry is announced (R11.1).
pub const EXPIRY_NOTICE: SignedDuration = SignedDuration::from_hours(24);

/// What one policy's status counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyAudit {
    /// Violations no exception excuses, by the policy's actions (each
    /// violation counts under every action the policy names).
    pub by_action: BTreeMap<&'static str, i64>,
    pub violations: i64,
    pub excused: i64,
}

/// Counts `v` under its policy, which `policies` has unless it was removed
/// since.
fn count_violation(policies: &mut BTreeMap<Name, PolicyAudit>, v: &Violation) {
    if let Some(p) = policies.get_mut(&v.policy) {
        p.violations += 1;
        for action in v.actions.names() {
            *p.by_action.entry(action).or_default() += 1;
        }
    }
}

/// Counts an excused violation under its policy.
fn count_excused(policies: &mut BTreeMap<Name, PolicyAudit>, x: &Excused) {
    if let Some(p) = policies.get_mut(&x.violation.policy) {
        p.excused += 1;
    }
}

/// An SoDException as the audit sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExceptionAudit {
    /// `Pending`, `Active`, `Expired` or `Inactive`.
    pub phase: &'static str,
    /// Why it excuses nothing; empty when it excuses something.
    pub reason: String,
    /// When it stops excusing, as the policy caps it today.
    pub until: Timestamp,
    /// Violations it excuses now.
    pub excused: i64,
}

/// What a Warning event is about. The key of each variant is what makes two
/// events the same: the controller raises each once.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum EventKind {
    ViolationFound,
    ExceptionExpiring,
    ExceptionExpired,
}

impl EventKind {
    pub fn reason(&self) -> &'static str {
        match self {
            EventKind::ViolationFound => "SoDViolation",
            EventKind::ExceptionExpiring => "SoDExceptionExpiring",
            EventKind::ExceptionExpired => "SoDExceptionExpired",
        }
    }
}

/// A Warning event on the subject's ServiceAccount, or on the SoDPolicy for
/// Users and Groups (which are no objects).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AuditEvent {
    pub kind: EventKind,
    /// What makes it unique (policy, subject, namespace, duties; or the
    /// exception and its end).
    pub key: String,
    pub on: ObjectReference,
    /// The whole text: [`AuditEvent::note_text`] is what an Event holds.
    pub note: std::sync::Arc<str>,
}

/// Everything one audit finds.
#[derive(Debug, Clone, Default)]
pub struct Audit {
    pub at: Timestamp,
    /// Every policy of the state (valid ones: an invalid policy never
    /// enters the index, and the controller marks it from the API's copy).
    pub policies: BTreeMap<Name, PolicyAudit>,
    pub exceptions: BTreeMap<Name, ExceptionAudit>,
    /// Results by report: `None` is the cluster report, else a namespace.
    pub results: Results,
    pub events: Vec<AuditEvent>,
    /// The next time the audit's findings change with no change to the
    /// state (an exception opens, nears its end or ends, a token turns
    /// stale, a review falls due): the controller audits again then.
    pub next_change: Option<Timestamp>,
}

/// The audit of `index` at `now`, given its evaluation (`engine::evaluate`
/// or the same evaluated in slices).
pub fn audit(index: &Index, ev: &Evaluation, now: Timestamp) -> Audit {
    let mut a = Audit {
        at: now,
        ..Audit::default()
    };
    for (_, p) in index.policies() {
        let by_action = p.actions.names().into_iter().map(|n| (n, 0)).collect();
        a.policies.insert(
            p.name.clone(),
            PolicyAudit {
                by_action,
                ..PolicyAudit::default()
            },
        );
    }
    let mut scratch = report::Scratch::default();
    a.events.reserve_exact(ev.violations.len());
    for v in &ev.violations {
        count_violation(&mut a.policies, v);
        let result = report::violation_result(v, &mut scratch);
        // The result's message is the event's note, shared: at 100k bindings
        // with derived holdings an audit has ~90,000 of them, and the
        // controller raises at most a hundred events per audit.
        a.events.push(AuditEvent {
            kind: EventKind::ViolationFound,
            key: violation_key(v),
            on: event_target(&v.subject, &v.policy),
            note: result.message.clone(),
        });
        a.add(v.namespace.clone(), result);
    }
    let mut excused_by: BTreeMap<&Name, i64> = BTreeMap::new();
    for x in &ev.excused {
        count_excused(&mut a.policies, x);
        *excused_by.entry(&x.exception).or_default() += 1;
        a.add(
            x.violation.namespace.clone(),
            report::excused_result(x, &mut scratch),
        );
    }
    for e in index.exceptions() {
        let s = standing(index, e, now);
        let excused = excused_by.get(&e.name).copied().unwrap_or(0);
        let phase = match s.phase {
            Phase::Active => "Active",
            Phase::Pending => "Pending",
            Phase::Expired => "Expired",
            Phase::Invalid => "Inactive",
        };
        let reason = if s.active() && excused == 0 {
            "active, but no current violation is one it covers".to_string()
        } else {
            s.reasons.join("; ")
        };
        exception_events(e, &s, now, &mut a.events);
        let end = s.until.min(e.expires_at);
        let review_due = index
            .policy(&e.policy)
            .filter(|_| e.break_glass && e.review.is_none())
            .and_then(|p| end.checked_add(p.exceptions.break_glass_review_within).ok());
        for t in [
            e.not_before,
            Some(end),
            end.checked_sub(EXPIRY_NOTICE).ok(),
            end.checked_add(EXPIRY_NOTICE).ok(),
            review_due,
        ]
        .into_iter()
        .flatten()
        {
            a.wake_at(t);
        }
        if let Some(r) = unreviewed_break_glass(index, e, &s, now) {
            a.add(Name::from(CLUSTER_WIDE), r);
        }
        a.exceptions.insert(
            e.name.clone(),
            ExceptionAudit {
                phase,
                reason,
                until: s.until,
                excused,
            },
        );
    }
    for t in index.token_secrets() {
        for r in token_findings(index, t, now) {
            a.add(t.namespace.clone(), r);
        }
        for (_, p) in index.policies() {
            if let (Some(max), Some(created)) = (p.credentials.max_age, t.created)
                // Stale from just after created + maxAge (strictly older).
                && let Ok(stale) = created
                    .checked_add(max)
                    .and_then(|t| t.checked_add(SignedDuration::from_secs(1)))
            {
                a.wake_at(stale);
            }
        }
    }
    // R10.4: a grant whose window closed keeps its binding only while the
    // grant controller has not caught up (down, or not the leader).
    for g in index.grants() {
        let st = crate::engine::grant_standing(index, g, now);
        let bound = index.binding(&g.binding_key()).is_some();
        if bound && st.phase != crate::engine::GrantPhase::Active {
            let ns = g
                .namespace
                .clone()
                .unwrap_or_else(|| Name::from(CLUSTER_WIDE));
            a.add(ns, report::grant_result(g, &st));
        }
        if st.phase == crate::engine::GrantPhase::Active
            && let Some(end) = st.expires_at
        {
            a.wake_at(end.checked_add(SignedDuration::from_secs(1)).unwrap_or(end));
        }
    }
    for rs in a.results.values_mut() {
        rs.sort_by(|x, y| x.order().cmp(&y.order()));
    }
    a.events.sort();
    a
}

/// What the audit of a fixed state exports (`serve --state` has nothing to
/// write to: its metrics alone): each policy's counts and when they change
/// with time, as [`audit`] finds them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditCounts {
    pub policies: BTreeMap<Name, PolicyAudit>,
    pub next_change: Option<Timestamp>,
}

/// Subjects judged per part by [`counts`]: a few hundred violations held
/// at once at 100k bindings.
const SUBJECTS_PER_PART: usize = 16;

/// [`audit`]'s counts of `index` at `now`, evaluated within `budget` a part
/// at a time (`engine::evaluate_bare_in_parts`): no more than one part's
/// violations are ever held, and no explanation is made, where an [`audit`]
/// holds every violation, result and event of the state at once.
pub fn counts(
    index: &Index,
    now: Timestamp,
    budget: crate::engine::Budget,
) -> Result<AuditCounts, crate::engine::Exhausted> {
    counts_in_parts(index, now, budget, SUBJECTS_PER_PART)
}

fn counts_in_parts(
    index: &Index,
    now: Timestamp,
    budget: crate::engine::Budget,
    subjects_per_part: usize,
) -> Result<AuditCounts, crate::engine::Exhausted> {
    // What changes with time comes from exceptions, tokens and grants, not
    // from the violations.
    let empty = audit(index, &Evaluation::default(), now);
    let mut c = AuditCounts {
        policies: empty.policies,
        next_change: empty.next_change,
    };
    let stopped =
        crate::engine::evaluate_bare_in_parts(index, now, budget, subjects_per_part, |ev| {
            for v in &ev.violations {
                count_violation(&mut c.policies, v);
            }
            for x in &ev.excused {
                count_excused(&mut c.policies, x);
            }
        });
    stopped.map_or(Ok(c), Err)
}

impl AuditEvent {
    /// The note as an Event carries it (at most 1,000 bytes).
    pub fn note_text(&self) -> String {
        truncate(&self.note, 1000)
    }
}

impl Audit {
    fn wake_at(&mut self, t: Timestamp) {
        if t > self.at && self.next_change.is_none_or(|n| t < n) {
            self.next_change = Some(t);
        }
    }

    fn add(&mut self, namespace: Name, r: ReportResult) {
        let key = (&*namespace != CLUSTER_WIDE).then_some(namespace);
        self.results.entry(key).or_default().push(r);
    }
}

fn violation_key(v: &Violation) -> String {
    use std::fmt::Write as _;
    let mut k = String::with_capacity(96);
    k.push_str(&v.policy);
    k.push('|');
    let _ = write!(k, "{}", v.subject);
    k.push('|');
    k.push_str(&v.namespace);
    k.push('|');
    for (i, d) in v.duties.iter().enumerate() {
        if i > 0 {
            k.push(',');
        }
        k.push_str(d);
    }
    k
}

/// Where an event about `subject` goes: its ServiceAccount, or the policy.
fn event_target(subject: &Identity, policy: &Name) -> ObjectReference {
    match subject {
        Identity::ServiceAccount { namespace, name } => ObjectReference {
            api_version: Some("v1".into()),
            kind: "ServiceAccount".into(),
            namespace: Some(namespace.clone()),
            name: name.clone(),
        },
        _ => ObjectReference {
            api_version: Some(crate::crd::API_VERSION.into()),
            kind: "SoDPolicy".into(),
            namespace: None,
            name: policy.clone(),
        },
    }
}

/// R11.1: an exception that ends within [`EXPIRY_NOTICE`], or has ended
/// within the last [`EXPIRY_NOTICE`] (older ends were announced before, or
/// are no news).
fn exception_events(
    e: &Exception,
    s: &crate::engine::Standing,
    now: Timestamp,
    out: &mut Vec<AuditEvent>,
) {
    let end = s.until.min(e.expires_at);
    let on = event_target(&e.subject, &e.policy);
    match s.phase {
        Phase::Active if end.duration_since(now) <= EXPIRY_NOTICE => out.push(AuditEvent {
            kind: EventKind::ExceptionExpiring,
            key: format!("{}|{end}", e.name),
            on,
            note: format!(
                "SoDException {} for {} under SoDPolicy {} ends at {end}",
                e.name, e.subject, e.policy
            )
            .into(),
        }),
        Phase::Expired if now.duration_since(end) <= EXPIRY_NOTICE => out.push(AuditEvent {
            kind: EventKind::ExceptionExpired,
            key: format!("{}|{end}", e.name),
            on,
            note: format!(
                "SoDException {} for {} under SoDPolicy {} ended at {end}; the violations it excused count again",
                e.name, e.subject, e.policy
            )
            .into(),
        }),
        _ => {}
    }
}

/// R6.5: a break-glass window that ended longer than `reviewWithin` ago
/// without a review.
fn unreviewed_break_glass(
    index: &Index,
    e: &Exception,
    s: &crate::engine::Standing,
    now: Timestamp,
) -> Option<ReportResult> {
    if !e.break_glass || e.review.is_some() {
        return None;
    }
    let policy = index.policy(&e.policy)?;
    let end = s.until.min(e.expires_at);
    // A window that never opened (refused, never active) owes no review.
    if now < end || e.not_before.is_some_and(|nb| nb >= end) {
        return None;
    }
    let due = end
        .checked_add(policy.exceptions.break_glass_review_within)
        .ok()?;
    if now < due {
        return None;
    }
    Some(report::break_glass_result(e, end, due))
}

/// R8.3: token Secrets of ServiceAccounts a policy governs and that hold
/// one of its duties; stale when older than the policy's `maxAge`.
fn token_findings(index: &Index, t: &TokenSecret, now: Timestamp) -> Vec<ReportResult> {
    let sa = Identity::service_account(&t.namespace, &t.service_account);
    if !index.exists(&sa) {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut h = None;
    for (slot, policy) in index.policies() {
        if !policy.subjects.selects(&sa) {
            continue;
        }
        let h = h.get_or_insert_with(|| holdings(index, &sa, None));
        if h.by_policy.get(&slot).is_none_or(|held| held.is_empty()) {
            continue;
        }
        let stale = match (policy.credentials.max_age, t.created) {
            (Some(max), Some(created)) => (now.duration_since(created) > max).then_some(max),
            _ => None,
        };
        if stale.is_none() && policy.credentials.long_lived_tokens == TokenAction::Allow {
            continue;
        }
        out.push(report::token_result(policy, t, &sa, stale));
    }
    out
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
