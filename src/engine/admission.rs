//! Admission (R7): the new violations a proposed change would create, and the
//! verdict on it.

use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use std::sync::Arc;

use jiff::Timestamp;

use super::assume::{Assumption, assumption};
use super::budget::{Budget, Exhausted, Meter, Ticker};
use super::derive::{
    Affected, Every, Pick, acting_as_every_service_account, add_actors, common, considered,
    every_service_account,
};
use super::holdings::{
    End, FastMap, Holdings, IdSet, Shared, direct_holdings_of_all, principal_holdings,
    principal_pairs, principals,
};
use super::refusal::{Refusal, refuse};
use super::request::{GroupVersionKind, Operation, Request};
use super::verdict::Review;
use super::violations::{
    Evaluation, Excused, Violation, affected_subjects, evaluate_policy, excuse, saturated, sort,
    subject_violations_bare, subject_violations_bare_and_before, subject_violations_shared,
};
use super::{credentials, exception_rules, grant_rules};
use crate::decode::{TypeMeta, convert};
use crate::engine::index::{
    Added, DirectPairs, Index, KeyedMap, Pairs, Power, RoleEntry, Targets, Undo, mounts_grant,
};
use crate::model::{
    Binding, BindingKey, CLUSTER_WIDE, DerivedKind, GRANT_LABEL, Identity, JitGrant, Name, Object,
    RoleKey,
};

/// Decides on `req` against the state in `index`, and leaves the index as it
/// found it.
pub fn review(index: &mut Index, req: &Request, now: Timestamp) -> Review {
    review_within(index, req, now, Budget::UNLIMITED)
}

/// [`review`] within `budget`: past it, the change is refused unless a new
/// violation under Deny was already found (then it is denied for that).
pub fn review_within(index: &mut Index, req: &Request, now: Timestamp, budget: Budget) -> Review {
    let (review, undo) = decide(index, None, req, now, &budget.start());
    if let Some(u) = undo {
        index.undo(u);
    }
    review
}

/// Decides on `req` and, when it is admitted and not a dry run, keeps the
/// change in the index (until the watch confirms or reverts it). The returned
/// [`Undo`] puts the state back.
pub fn review_and_apply(
    index: &mut Index,
    req: &Request,
    now: Timestamp,
) -> (Review, Option<Undo>) {
    let (review, undo) = decide(index, None, req, now, &Budget::UNLIMITED.start());
    match undo {
        Some(u) if !review.allowed || req.dry_run => {
            index.undo(u);
            (review, None)
        }
        u => (review, u),
    }
}

/// Live mode (R7.8): decides on `req` with `confirmed` (what the watches have
/// shown) as the state before the change and `assumed` (confirmed plus what
/// admitted, unconfirmed changes add) with the request's object in place as
/// the state after it. Judging the state before on `confirmed` matters: the
/// union the assumed state keeps can hold violations that neither version of
/// an object has (rules `[a]` updated to `[b]` are assumed as `[a, b]`), and a
/// later request that really creates one must not find it "already there".
/// Until the watch settles such an entry, requests that touch its subjects are
/// judged more strictly than the cluster warrants; that is the price.
///
/// `assumed` is left as it was; an admitted change (not a dry run) comes back
/// as the [`Assumption`] to add to it. `confirmed` is `None` when the two
/// states are equal (nothing is pending): the state before the change is then
/// `assumed` itself, which spares touching a second index.
pub fn review_against(
    confirmed: Option<&Index>,
    assumed: &mut Index,
    req: &Request,
    now: Timestamp,
    budget: Budget,
) -> (Review, Option<Assumption>) {
    let (review, undo) = decide(assumed, confirmed, req, now, &budget.start());
    let Some(undo) = undo else {
        return (review, None);
    };
    let admitted = assumed.get(undo.key());
    assumed.undo(undo);
    if !review.allowed || req.dry_run || req.operation == Operation::Delete {
        return (review, None);
    }
    let assumption = admitted.and_then(|o| assumption(assumed, o));
    (review, assumption)
}

/// The decision; the change is left applied and its undo returned. With
/// `confirmed`, the state before the change is that one rather than `index`.
fn decide(
    index: &mut Index,
    confirmed: Option<&Index>,
    req: &Request,
    now: Timestamp,
    meter: &Meter,
) -> (Review, Option<Undo>) {
    // R7.9: the object must be what the API server says it is admitting, or
    // a RoleBinding could pass as a ConfigMap.
    if let Err(reason) = check_kind(req) {
        return (Review::refuse(reason), None);
    }
    if let Err(reason) = guard_grant_binding(index, req) {
        return (Review::refuse(reason), None);
    }
    match req.operation {
        // R7.3: deleting only removes rights, so drift can always be repaired.
        Operation::Delete => {
            let key = req
                .old_object
                .as_ref()
                .and_then(|o| convert(o).ok().flatten())
                .map(|o| o.key());
            (Review::allow(), key.map(|k| index.remove(&k)))
        }
        Operation::Connect => (Review::allow(), None),
        Operation::Create | Operation::Update => {
            let Some(raw) = &req.object else {
                return (Review::refuse("the request carries no object"), None);
            };
            if TypeMeta::of(raw).is_core("Secret") {
                return (credentials::review_secret(index, raw), None);
            }
            if is_token_request(req, raw) {
                let t = match credentials::TokenRequest::parse(
                    raw,
                    req.name.as_deref(),
                    req.namespace.as_deref(),
                ) {
                    Ok(t) => t,
                    Err(reason) => return (Review::refuse(reason), None),
                };
                return (
                    credentials::review_token_request(index, &t, &req.user_info),
                    None,
                );
            }
            let object = match convert(raw) {
                Ok(Some(o)) => o,
                // R7.4: kinds sodguard does not check are allowed untouched.
                Ok(None) => return (Review::allow(), None),
                Err(e) => return (Review::refuse(e.to_string()), None),
            };
            match object {
                Object::Policy(p) => policy_change(index, p, now, meter),
                Object::Exception(e) => {
                    let old = match req.operation {
                        // R6.4: who may change what depends on the old
                        // object; without it, fail closed.
                        Operation::Update => match old_exception(req) {
                            Ok(old) => Some(old),
                            Err(reason) => return (Review::refuse(reason), None),
                        },
                        _ => None,
                    };
                    let mut e = Arc::unwrap_or_clone(e);
                    // creationTimestamp is the API server's: now at creation,
                    // and immutable afterwards.
                    e.created = match &old {
                        Some(o) => o.created,
                        None => Some(now),
                    };
                    match exception_rules::check(index, &e, old.as_deref(), &req.user_info, now) {
                        Ok(()) => (
                            Review::allow(),
                            Some(index.apply(Object::Exception(Arc::new(e)))),
                        ),
                        Err(reason) => (Review::refuse(reason), None),
                    }
                }
                Object::Grant(g) => grant_change(index, confirmed, req, g, now, meter),
                object => rbac_change(index, confirmed, object, now, meter),
            }
        }
    }
}

/// A policy is always admitted (R7.1 counts violations a change to RBAC
/// creates, not those a new policy finds); what it finds already is said.
/// Counting them is whole-state work, bounded by the decision's budget.
fn policy_change(
    index: &mut Index,
    p: Arc<crate::model::Policy>,
    now: Timestamp,
    meter: &Meter,
) -> (Review, Option<Undo>) {
    let name = p.name.clone();
    let (before, stopped_before) = evaluate_policy(index, &name, now, meter);
    let undo = index.apply(Object::Policy(p));
    let (after, stopped_after) = evaluate_policy(index, &name, now, meter);
    let mut review = Review::allow();
    if let Some(e) = stopped_before.or(stopped_after) {
        review.warnings.push(format!(
            "SoDPolicy {name}: subjects already violate it, more than sodguard counts within a decision ({e}); the audit reports them"
        ));
        review.stopped = Some(e);
        return (review, Some(undo));
    }
    let n = after.violations.len();
    if n > 0 {
        let subjects: BTreeSet<&Identity> = after.violations.iter().map(|v| &v.subject).collect();
        review.warnings.push(format!(
            "SoDPolicy {name}: {} subject(s) already violate it ({n} violation(s)); they are reported, not removed",
            subjects.len()
        ));
    }
    let (violations, excused) = new_violations(before, after);
    review.violations = violations;
    review.excused = excused;
    (review, Some(undo))
}

/// The users kube-controller-manager's garbage collector deletes as (with
/// and without per-controller credentials).
const GARBAGE_COLLECTORS: [&str; 2] = [
    "system:serviceaccount:kube-system:generic-garbage-collector",
    "system:kube-controller-manager",
];

/// R10.4: a binding labelled `sodguard.io/grant` is the grant controller's
/// alone: anyone else creating, changing or deleting one could lengthen or
/// forge a grant. This is the one DELETE that is judged.
fn guard_grant_binding(index: &Index, req: &Request) -> Result<(), Refusal> {
    let labelled = |v: &Option<serde_json::Value>| {
        v.as_ref().is_some_and(|v| {
            let tm = TypeMeta::of(v);
            tm.group() == "rbac.authorization.k8s.io"
                && matches!(tm.kind.as_str(), "RoleBinding" | "ClusterRoleBinding")
                && v.pointer("/metadata/labels")
                    .and_then(|l| l.get(GRANT_LABEL))
                    .is_some()
        })
    };
    if !labelled(&req.object) && !labelled(&req.old_object) {
        return Ok(());
    }
    // The garbage collector deletes a binding whose grant is gone (its
    // owner reference): that only ever ends a grant.
    if req.operation == Operation::Delete
        && GARBAGE_COLLECTORS.contains(&req.user_info.username.as_str())
    {
        return Ok(());
    }
    match index.grant_controller() {
        Some(u) if u == req.user_info.username => Ok(()),
        _ => refuse(format!(
            "a binding labelled {GRANT_LABEL} belongs to a just-in-time grant: only sodguard's grant controller may create, change or delete it (request or revoke the grant instead)"
        )),
    }
}

/// A `create` on `serviceaccounts/token` (R8.4): by the resource the API
/// server names, or, in test cases without one, by the object's kind.
fn is_token_request(req: &Request, raw: &serde_json::Value) -> bool {
    match &req.resource {
        Some(r) => {
            r.group.is_empty()
                && r.resource == "serviceaccounts"
                && req.sub_resource.as_deref() == Some("token")
        }
        None => {
            let tm = TypeMeta::of(raw);
            tm.kind == "TokenRequest" && tm.group() == "authentication.k8s.io"
        }
    }
}

/// A grant (R10): its own rules first, then, while its request can still
/// change (created, or changed before any approval), the binding it would
/// create is judged exactly as that RoleBinding would be (R10.3), so the
/// denial explains the same binding → role → rule paths.
fn grant_change(
    index: &mut Index,
    confirmed: Option<&Index>,
    req: &Request,
    g: Arc<JitGrant>,
    now: Timestamp,
    meter: &Meter,
) -> (Review, Option<Undo>) {
    let old = match req.operation {
        // R6.4: who may change what depends on the old object; without it,
        // fail closed.
        Operation::Update => match old_grant(req) {
            Ok(old) => Some(old),
            Err(reason) => return (Review::refuse(reason), None),
        },
        _ => None,
    };
    let mut g = Arc::unwrap_or_clone(g);
    g.created = match &old {
        Some(o) => o.created,
        None => Some(now),
    };
    if let Err(reason) = grant_rules::check(index, &g, old.as_deref(), &req.user_info, now) {
        return (Review::refuse(reason), None);
    }
    let mut review = Review::allow();
    if old.as_ref().is_none_or(|o| !o.same_request(&g)) {
        let binding = Binding {
            key: g.binding_key(),
            role: g.role.clone(),
            subjects: vec![g.subject.clone()],
        };
        let (judged, undo) = rbac_change(index, confirmed, Object::Binding(binding), now, meter);
        if let Some(u) = undo {
            index.undo(u);
        }
        if !judged.allowed {
            return (judged, None);
        }
        review = judged;
    }
    (review, Some(index.apply(Object::Grant(Arc::new(g)))))
}

/// R10.3 at activation: the verdict on the binding `g` would create, judged
/// as that binding's own admission would be; the index is left as it was.
pub fn judge_grant_binding(
    index: &mut Index,
    g: &JitGrant,
    now: Timestamp,
    budget: Budget,
) -> Review {
    let binding = Binding {
        key: g.binding_key(),
        role: g.role.clone(),
        subjects: vec![g.subject.clone()],
    };
    let (review, undo) = rbac_change(index, None, Object::Binding(binding), now, &budget.start());
    if let Some(u) = undo {
        index.undo(u);
    }
    review
}

/// The old grant of an UPDATE, which must be there and readable.
fn old_grant(req: &Request) -> Result<Arc<JitGrant>, Refusal> {
    let Some(raw) = &req.old_object else {
        return refuse("an UPDATE of a grant must carry its old object (oldObject is missing)");
    };
    match convert(raw) {
        Ok(Some(Object::Grant(old))) => Ok(old),
        Ok(_) => refuse("the oldObject of a grant UPDATE is not a grant"),
        Err(e) => refuse(format!("the oldObject cannot be read: {e}")),
    }
}

/// The old SoDException of an UPDATE, which must be there and readable.
fn old_exception(req: &Request) -> Result<Arc<crate::model::Exception>, Refusal> {
    let Some(raw) = &req.old_object else {
        return refuse(
            "an UPDATE of an SoDException must carry its old object (oldObject is missing)",
        );
    };
    match convert(raw) {
        Ok(Some(Object::Exception(old))) => Ok(old),
        Ok(_) => refuse("the oldObject of an SoDException UPDATE is not an SoDException"),
        Err(e) => refuse(format!("the oldObject cannot be read: {e}")),
    }
}

/// R7.9: the object (and old object) are of the request's kind, and their
/// `apiVersion` names a group and a version.
fn check_kind(req: &Request) -> Result<(), Refusal> {
    if req.operation == Operation::Connect {
        // CONNECT carries options, not the object, and is always allowed.
        return Ok(());
    }
    let objects = [("object", &req.object), ("oldObject", &req.old_object)];
    let mut expected = req.kind.clone();
    for (field, value) in objects {
        let Some(value) = value else { continue };
        let tm = TypeMeta::of(value);
        let Some((group, version)) = split_api_version(&tm.api_version) else {
            return refuse(format!(
                "{field}: apiVersion {:?} is not GROUP/VERSION or VERSION",
                tm.api_version
            ));
        };
        if tm.kind.is_empty() {
            return refuse(format!("{field}: kind is missing"));
        }
        let got = GroupVersionKind {
            group: group.to_string(),
            version: version.to_string(),
            kind: tm.kind.clone(),
        };
        match &expected {
            None => expected = Some(got),
            Some(want) if *want == got => {}
            Some(want) => {
                return refuse(format!(
                    "{field} is {} but the request is for {}",
                    gvk_text(&got),
                    gvk_text(want)
                ));
            }
        }
    }
    Ok(())
}

fn gvk_text(g: &GroupVersionKind) -> String {
    if g.group.is_empty() {
        format!("{}/{}", g.version, g.kind)
    } else {
        format!("{}/{}/{}", g.group, g.version, g.kind)
    }
}

/// `group/version`, or `version` for the core group; a version is a DNS label
/// (so `rbac.authorization.k8s.io` alone has no version).
fn split_api_version(api_version: &str) -> Option<(&str, &str)> {
    let (group, version) = match api_version.split_once('/') {
        Some(("", _)) => return None,
        Some(gv) => gv,
        None => ("", api_version),
    };
    let label = crate::model::is_dns_label;
    let group_ok = group.is_empty()
        || (!group.starts_with('.') && !group.ends_with('.') && group.split('.').all(label));
    (label(version) && group_ok).then_some((group, version))
}

/// Roles, bindings, ServiceAccounts and Namespaces: compare the affected
/// subjects' violations before and after the change (R7.1). Every subject
/// whose holdings the change can alter is judged in both states (R7.7),
/// including those reached only through an aggregated ClusterRole that the
/// changed role joins.
pub(crate) fn rbac_change(
    index: &mut Index,
    confirmed: Option<&Index>,
    object: Object,
    now: Timestamp,
    meter: &Meter,
) -> (Review, Option<Undo>) {
    let (subjects, scoped) = match select(index, confirmed, &object, meter) {
        Ok(s) => s,
        Err(e) => {
            let subjects = e.subjects();
            let found = Found {
                stopped: Some(e),
                ..Found::default()
            };
            return (found.review(subjects), None);
        }
    };
    // A binding that names nobody the state before does not know: the
    // state after is the state before with it (see
    // `Index::kept_summary_but`).
    let names_nobody_new = match &object {
        Object::Binding(b) => b.subjects.iter().all(|s| index.knows(s)),
        _ => false,
    };
    let mut probe = index.apply(object.clone());
    let mut found = Found::default();
    let (mut at, mut size) = (0, FIRST_ROUND);
    while found.stopped.is_none() && at < subjects.len() {
        // A binding the change adds, naming nobody new: what the
        // namespaces' summaries kept on the state before lack.
        let added = match &object {
            Object::Binding(b) if names_nobody_new && probe.created() => index
                .binding(&b.key)
                .map(|binding| Added::by(binding, &probe)),
            _ => None,
        };
        // On one state, the walks on the state after tell most subjects'
        // violations before too; the confirmed state is another.
        let tell = added.filter(|_| confirmed.is_none());
        let mut round = Round::after(index, &subjects, at, size, scoped.as_ref(), tell, meter);
        // Rounds grow: most decisions have a few subjects with violations
        // at most, and a large one stops at its first denials.
        size = (size * 2).min(ROUND);
        // Most judged subjects have no violation after the change: the state
        // before is read for the others alone. On one state it is the index
        // with the change undone, then applied again (a few microseconds; a
        // clone of the index would copy the shards the change writes).
        let olds = match confirmed {
            Some(before) => round.before(before, &subjects, meter),
            // Nobody to read on the state before: the change stays.
            None if round.after.is_empty() => Vec::new(),
            // Under test the state before is read anyway, to check what
            // the walks told against it.
            None if !cfg!(test) && round.told.iter().all(Option::is_some) => {
                round.before(index, &subjects, meter)
            }
            None => {
                index.undo(probe);
                let olds = round.before(index, &subjects, meter);
                probe = index.apply(object.clone());
                olds
            }
        };
        at = round.judge(index, &subjects, olds, now, meter, &mut found);
    }
    sort(&mut found.violations);
    found
        .excused
        .sort_by(|a, b| a.violation.tuple().cmp(&b.violation.tuple()));
    (found.review(subjects.len()), Some(probe))
}

/// Subjects with violations in the first [`Round`]. The first walk of a
/// round computes what the round's walks share (what every ServiceAccount
/// of a namespace holds), 50–100 µs at 100k bindings, and those after it
/// take a few: the cluster-wide actors a binding affects are often a
/// namespace's ServiceAccounts, judged together in one round rather than
/// in rounds of 1, 2 and 4 (each computing it again). A decision denied
/// at its first subject still walks, on each state, up to this many with
/// violations (and those without in between) before it is decided.
const FIRST_ROUND: usize = 8;

/// Subjects judged per [`Round`]: the memory a decision takes grows with
/// the violations of this many subjects at most, not with the violations
/// the cluster already has.
const ROUND: usize = 64;

/// The new violations of the subjects a change affects (R7.1), and whether
/// judging stopped before the last of them.
#[derive(Default)]
struct Found {
    violations: Vec<Violation>,
    excused: Vec<Excused>,
    /// New violations not under Deny that were not kept: past the budget,
    /// only what decides is kept.
    unlisted: usize,
    judged: usize,
    stopped: Option<Exhausted>,
}

/// The next few subjects (at most [`ROUND`]) with a violation on the state
/// after the change, in order: only their violations that the state before
/// lacks are new.
struct Round {
    /// (the subject's index, its bare violations after the change).
    after: Vec<(usize, Vec<Violation>)>,
    /// For each of `after`, its bare violations before the change when the
    /// walk on the state after told them
    /// ([`subject_violations_bare_and_before`]).
    told: Vec<Option<Vec<Violation>>>,
    /// Where the next round starts: every subject before it is in `after`
    /// or has no violation after the change.
    next: usize,
    /// The meter ran out at `next`.
    stopped: Option<Exhausted>,
}

impl Round {
    /// Walks the subjects from `at` on the state after the change (`after`).
    /// A subject in `scoped` can only gain violations in its namespace or
    /// cluster-wide: its others are the same before.
    /// `added`: the binding the change added, if it names nobody new; the
    /// walks then tell what they can of the state before it, on the same
    /// index.
    fn after<'a>(
        after: &'a Index,
        subjects: &[Identity],
        at: usize,
        size: usize,
        scoped: Option<&(Name, IdSet)>,
        added: Option<Added<'a>>,
        meter: &Meter,
    ) -> Round {
        let total = subjects.len();
        let shared = Shared::bare_until(meter.deadline()).passing(added);
        let mut round = Round {
            after: Vec::new(),
            told: Vec::new(),
            next: total,
            stopped: None,
        };
        for (i, s) in subjects.iter().enumerate().skip(at) {
            if let Err(e) = meter.check_time(i, total) {
                (round.next, round.stopped) = (i, Some(e));
                break;
            }
            let (mut vs, told) = match added {
                Some(_) => subject_violations_bare_and_before(after, s, &shared),
                None => (subject_violations_bare(after, s, &shared), None),
            };
            // A walk cut short holds less than the subject does: nothing
            // judged on it counts.
            if shared.interrupted() {
                (round.next, round.stopped) = (i, Some(meter.timed_out(i, total)));
                break;
            }
            if let Some((ns, within)) = scoped
                && within.contains(s)
            {
                vs.retain(|v| *v.namespace == **ns || &*v.namespace == CLUSTER_WIDE);
            }
            if vs.is_empty() {
                continue;
            }
            round.after.push((i, vs));
            round.told.push(told);
            if round.after.len() == size {
                round.next = i + 1;
                break;
            }
        }
        round
    }

    /// The bare violations on the state before the change (`before`) of the
    /// subjects of the round, in order; fewer when the meter ran out. Those
    /// the walks on the state after told are taken as told.
    fn before(
        &mut self,
        before: &Index,
        subjects: &[Identity],
        meter: &Meter,
    ) -> Vec<Vec<Violation>> {
        let shared = Shared::bare_until(meter.deadline());
        let mut olds = Vec::with_capacity(self.after.len());
        for ((i, _), told) in self.after.iter().zip(&mut self.told) {
            if let Some(old) = told.take() {
                #[cfg(test)]
                {
                    let shared = Shared::bare_until(None);
                    let mut walked = subject_violations_bare(before, &subjects[*i], &shared);
                    let mut told = old.clone();
                    sort(&mut walked);
                    sort(&mut told);
                    assert_eq!(
                        told.iter().map(Violation::tuple).collect::<Vec<_>>(),
                        walked.iter().map(Violation::tuple).collect::<Vec<_>>(),
                        "told before the change for {}",
                        subjects[*i]
                    );
                }
                olds.push(old);
                continue;
            }
            let old = subject_violations_bare(before, &subjects[*i], &shared);
            if shared.interrupted() {
                break;
            }
            olds.push(old);
        }
        olds
    }

    /// Keeps in `found` the new violations of the round's subjects (`olds`
    /// are their violations before), each explained by its paths on `after`,
    /// and stops once the meter says so. Returns where the next round
    /// starts.
    fn judge(
        self,
        after: &Index,
        subjects: &[Identity],
        olds: Vec<Vec<Violation>>,
        now: Timestamp,
        meter: &Meter,
        found: &mut Found,
    ) -> usize {
        let total = subjects.len();
        let shared = Shared::until(meter.deadline());
        // The first subject whose state before was not read in time.
        let cut = self.after.get(olds.len()).map(|(i, _)| *i);
        for ((i, mut vs), old) in self.after.into_iter().zip(olds) {
            // `found.judged` is `i` here: the subjects before this one.
            found.judged = i;
            let s = &subjects[i];
            sort(&mut vs);
            let old = Evaluation {
                violations: old,
                excused: Vec::new(),
            };
            let (mut new, mut excused) = new_violations(old, excuse(after, vs, now));
            if !new.is_empty() || !excused.is_empty() {
                // What is new is shown with its paths: the same walk on the
                // same state finds the same violations, now explained.
                let explained = subject_violations_shared(after, s, None, &shared);
                if shared.interrupted() {
                    found.stopped = Some(meter.timed_out(i, total));
                    return total;
                }
                explain(&mut new, &mut excused, explained);
            }
            found.judged = i + 1;
            found.excused.extend(excused);
            for v in new {
                if found.violations.len() < meter.violations() || v.actions.deny {
                    found.violations.push(v);
                } else {
                    found.unlisted += 1;
                }
            }
            let denies = found.violations.iter().any(|v| v.actions.deny);
            if denies && let Err(e) = meter.check(found.violations.len(), found.judged, total) {
                found.stopped = Some(e);
                return total;
            }
        }
        if let Some(i) = cut {
            found.judged = i;
            found.stopped = Some(meter.timed_out(i, total));
        } else {
            found.judged = self.next;
            found.stopped = self.stopped;
        }
        self.next
    }
}

/// Puts on each bare violation of one subject (`new`, `excused`) the paths
/// of the same violation in `explained`.
fn explain(new: &mut [Violation], excused: &mut [Excused], explained: Vec<Violation>) {
    let mut by_tuple: HashMap<(Name, Name, Vec<Name>), Violation> = explained
        .into_iter()
        .map(|v| ((v.policy.clone(), v.namespace.clone(), v.duties.clone()), v))
        .collect();
    let bare = new
        .iter_mut()
        .chain(excused.iter_mut().map(|e| &mut e.violation));
    for v in bare {
        let key = (v.policy.clone(), v.namespace.clone(), v.duties.clone());
        if let Some(x) = by_tuple.remove(&key) {
            v.explanation = x.explanation;
        }
    }
}

impl Found {
    /// The verdict: refused when a new violation is under Deny (R7.1); when
    /// judging stopped short of that, refused too (fail closed): the
    /// subjects not judged may have one.
    fn review(self, subjects: usize) -> Review {
        let allowed = !self.violations.iter().any(|v| v.actions.deny);
        let mut warnings = Vec::new();
        match &self.stopped {
            Some(e) if allowed => {
                return Review {
                    stopped: self.stopped.clone(),
                    ..Review::refuse(format!(
                        "this change affects {subjects} subjects, too many to judge within sodguard's decision budget ({e}); split it into smaller changes, or raise --decision-budget"
                    ))
                };
            }
            Some(e) => warnings.push(format!(
                "judging stopped once the change was refused ({e}): other subjects may gain violations too"
            )),
            None => {}
        }
        if self.unlisted > 0 {
            warnings.push(format!(
                "{} more new violation(s) not under Deny are not listed",
                self.unlisted
            ));
        }
        Review {
            allowed,
            refusal: None,
            violations: self.violations,
            excused: self.excused,
            warnings,
            stopped: self.stopped,
        }
    }
}

/// Subjects whose holdings the change can alter in a way that may add a
/// violation, on one state (`index`, left as it was), and those among them
/// for whom it can only do so in one namespace: a violation of theirs
/// elsewhere is the same before and after, so only those there and
/// cluster-wide can be new.
///
/// With `confirmed` (live mode, R7.8), `index` is the assumed state: it holds
/// everything the confirmed one does, and what admitted changes add, which
/// may never happen. Every reason to let a subject off for what it already
/// is or holds (it exists, violates everything, acts as every ServiceAccount
/// of the namespace, creates Pods there) is then read from `confirmed`, where
/// it holds less, so that a change that never happens can only make the
/// decision stricter; what the change gives is read from `index`, where it
/// gives more.
///
/// Letting off the subjects the change cannot give a new violation walks
/// each one's bindings: for a binding of `system:serviceaccounts`, 50,000
/// walks and a third of a second at 100k bindings, under the decision lock.
/// It stops when `meter`'s time is up (the change is then refused unjudged).
#[allow(clippy::type_complexity)]
pub(crate) fn select(
    index: &mut Index,
    confirmed: Option<&Index>,
    object: &Object,
    meter: &Meter,
) -> Result<(Vec<Identity>, Option<(Name, IdSet)>), Exhausted> {
    if let Object::Binding(b) = object
        && unchanged(index, b)
        && confirmed.is_none_or(|c| unchanged(c, b))
    {
        // The same role and subjects before and after: nobody's holdings
        // change (an update of its labels, or the CREATE of one that
        // exists). Judging whoever it reaches was seconds for a binding
        // that opens an escalation path.
        return Ok((Vec::new(), None));
    }
    let gains = gains(index, confirmed, object);
    let path = {
        let index: &Index = index;
        let guard = confirmed.unwrap_or(index);
        match only_namespace(index, guard, object) {
            Some(ns) => Path::OnlyNamespace(ns),
            None => match edges_in_namespace(index, guard, object) {
                Some((ns, b)) => Path::EdgesInNamespace(ns, b),
                None => Path::General,
            },
        }
    };
    // Of the cluster-wide actors, only those whom a policy that the
    // binding's role can give duties of governs may gain, when the path
    // lets an actor off for what it already holds in the namespace.
    let (ns, binding) = match (&path, object) {
        (Path::OnlyNamespace(ns), Object::Binding(b)) => (Some(ns), Some(b)),
        (Path::EdgesInNamespace(ns, b), _) => (Some(ns), Some(*b)),
        _ => (None, None),
    };
    let gainable = binding.and_then(|b| gainable(index, b));
    let mut pick_slots = match (&gains, &gainable) {
        (Some(a), Some(b)) => Some(a.intersection(b).copied().collect()),
        (a, b) => a.clone().or_else(|| b.clone()),
    };
    let every = ns.map(|ns| acting_as_every_service_account(confirmed.unwrap_or(index), ns));
    let mut outside_every = matches!(path, Path::EdgesInNamespace(..));
    let mut of_every = None;
    let mut covered = BTreeSet::new();
    if let (Some(every), Some(ns), Some(b), Some(slots)) = (&every, ns, binding, &mut pick_slots)
        && every.many_actors(slots)
        && confirmed.is_none_or(|guard| cluster_every_for_good(index, guard))
    {
        // Those in `every` hold what every ServiceAccount of `ns` holds: a
        // policy all of whose duties the role gives there they hold
        // already lets them all off at once (hundreds, each a lookup).
        let held = AlreadyHeld::new(index, confirmed.unwrap_or(index), every, None);
        covered = slots
            .iter()
            .copied()
            .filter(|slot| held_by_every(index, &held, b, ns, *slot))
            .collect();
        slots.retain(|slot| !covered.contains(slot));
        outside_every = true;
        of_every = held.into_of_every();
    }
    let pick = Pick {
        slots: pick_slots.as_ref(),
        outside_every,
        // The closures are the assumed state's: who is among its cluster-wide
        // actors of every ServiceAccount and not among the confirmed one's
        // is not let off by what every ServiceAccount holds.
        unless_every: every
            .as_ref()
            .filter(|_| confirmed.is_some() && !covered.is_empty())
            .map(|every| (&covered, every)),
    };
    let mut subjects = match &gains {
        // Nobody gains anything a policy counts (R7.3).
        Some(slots) if slots.is_empty() => IdSet::default(),
        // RBAC objects only: the policies stay, and a subject no policy
        // governs has no violation (R5.5).
        _ => match affected_until(index, object, meter.deadline()) {
            (affected, true) => affected.governed(index, gains.as_ref(), pick),
            (partial, false) => return Err(meter.timed_out(0, partial.local.len())),
        },
    };
    let index: &Index = index;
    let guard = confirmed.unwrap_or(index);
    let own = OwnHoldings::new(guard);
    if let (Some(c), Object::Binding(b)) = (confirmed, object) {
        // Named for the first time on the confirmed state (R1.5).
        subjects.extend(b.subjects.iter().filter(|s| !c.exists(s)).cloned());
    }
    if let Some(slots) = &gains {
        subjects.retain(|s| {
            index
                .policies()
                .any(|(slot, p)| slots.contains(&slot) && p.subjects.selects(s))
        });
    }
    let mut scoped = None;
    match (&path, &every) {
        (Path::OnlyNamespace(ns), every) => {
            // Everyone gains the role's grants in `ns` at most.
            if let (Object::Binding(b), Some(every)) = (object, every)
                && !subjects.is_empty()
            {
                let held = AlreadyHeld::new(index, guard, every, of_every);
                subjects.retain(|s| may_gain(index, &held, &own, b, s));
            }
            scoped = Some((ns.clone(), subjects.clone()));
        }
        (Path::EdgesInNamespace(ns, b), Some(every)) if !subjects.is_empty() => {
            let held = AlreadyHeld::new(index, guard, every, of_every);
            subjects.retain(|s| !every.contains(s) || may_gain(index, &held, &own, b, s));
            let within = subjects
                .iter()
                .filter(|s| every.contains(s))
                .cloned()
                .collect();
            scoped = Some((ns.clone(), within));
        }
        _ => {}
    }
    // RBAC objects only: the policies stay, as `saturated` needs. Last, as
    // it walks each subject's own bindings: the checks above are cheaper
    // (and `may_gain` walked many of them already).
    let total = subjects.len();
    let mut clock = Ticker::new(meter.deadline());
    let mut late = false;
    subjects.retain(|s| {
        late = late || clock.late();
        late || !saturated(guard, index, s, || own.pairs(s))
    });
    if late {
        return Err(meter.timed_out(0, total));
    }
    // Judged in a fixed order: a budget that stops judging stops at the same
    // subject on every replica.
    let mut subjects: Vec<Identity> = subjects.into_iter().collect();
    subjects.sort_unstable();
    Ok((subjects, scoped))
}

/// Whether `index` holds binding `b` already: the same key, role and
/// subjects (in any order).
fn unchanged(index: &Index, b: &Binding) -> bool {
    index.binding(&b.key).is_some_and(|old| {
        old.role == b.role
            && old.subjects.iter().all(|s| b.subjects.contains(s))
            && b.subjects.iter().all(|s| old.subjects.contains(s))
    })
}

/// How far a change's effect on holdings reaches ([`only_namespace`],
/// [`edges_in_namespace`]).
enum Path<'o> {
    OnlyNamespace(Name),
    EdgesInNamespace(Name, &'o Binding),
    General,
}

/// The policies a duty of which [`may_gain`] can find that a subject
/// gains through RoleBinding `binding`: those its role grants a
/// namespaced permission of, and, when it creates workloads, those that
/// count what a Pod mounts. `None` when it may be any (a cluster-wide
/// binding, or a RoleGrant half that can pair).
fn gainable(index: &Index, binding: &Binding) -> Option<BTreeSet<u32>> {
    let Some(entry) = index.role(&binding.role) else {
        return Some(BTreeSet::new());
    };
    binding.key.namespace.as_ref()?;
    if grants_roles(index, binding, entry) {
        return None;
    }
    let mut out: BTreeSet<u32> = entry
        .grants
        .iter()
        .filter(|g| !g.non_resource)
        .map(|g| g.policy)
        .collect();
    if adds_workloads(entry) {
        out.extend(
            index
                .policies()
                .filter_map(|(slot, p)| counts_mounts(p).then_some(slot)),
        );
    }
    Some(out)
}

/// Whether every cluster-wide binding by which someone acts as every
/// ServiceAccount on `guard` (in the walk of every policy) is the very same
/// binding, to the very same role, on `index`: whatever the pending changes
/// do, those [`ClusterActors::every`] of `guard` holds act so
/// ([`AlreadyHeld::acts_as_all_for_good`]).
///
/// [`ClusterActors::every`]: crate::engine::index::ClusterActors::every
fn cluster_every_for_good(index: &Index, guard: &Index) -> bool {
    let set = common(guard);
    guard
        .derivers_in(None)
        .filter(|d| d.reach.every_sa.intersects(set))
        .all(|d| {
            let b = &d.binding;
            same_object(index.binding(&b.key), guard.binding(&b.key))
                && same_object(index.role(&b.role), guard.role(&b.role))
        })
}

/// Whether [`may_gain`] finds no duty of policy `slot` that a subject who
/// acts as every ServiceAccount of `ns` (on a single state, [`Every`])
/// gains through RoleBinding `binding`, whatever else it is: each
/// namespaced grant of the role under the policy is held by a ServiceAccount
/// of `ns` already, and the role creates no workloads whose Pods' mounts the
/// policy counts.
fn held_by_every(
    index: &Index,
    held: &AlreadyHeld<'_>,
    binding: &Binding,
    ns: &Name,
    slot: u32,
) -> bool {
    let (Some(entry), Some(p)) = (index.role(&binding.role), index.policy_slot(slot)) else {
        return false;
    };
    !(adds_workloads(entry) && counts_mounts(p))
        && entry
            .grants
            .iter()
            .filter(|g| g.policy == slot && !g.non_resource)
            .all(|g| held.every_holds(ns).contains(&(slot, g.permission)))
}

/// The namespace outside which `object` changes nobody's holdings: a
/// RoleBinding of that namespace whose role, before and after the change,
/// opens no escalation path a policy considers, naming only subjects that
/// exist already. Its grants then count in that namespace alone (R2), it adds
/// or removes no acts-as edge (R9.1; a missing role grants nothing, R2.3),
/// and no subject starts to exist with what its implicit groups hold
/// everywhere (R1.5).
/// Existence is read from `guard` (the confirmed state in live mode).
fn only_namespace(index: &Index, guard: &Index, object: &Object) -> Option<Name> {
    let considered = considered(index);
    let plain = |role: &RoleKey| {
        index
            .role(role)
            .is_none_or(|e| !e.derives.iter().any(|d| considered.contains(d.kind)))
    };
    match object {
        Object::Binding(b) => {
            let ns = b.key.namespace.clone()?;
            let old_plain = index.binding(&b.key).is_none_or(|old| plain(&old.role));
            (old_plain && plain(&b.role) && b.subjects.iter().all(|s| guard.exists(s)))
                .then_some(ns)
        }
        _ => None,
    }
}

/// A new RoleBinding of namespace N (and its role) whose role's escalation
/// paths, among those a policy considers, only act as ServiceAccounts of N
/// that exist (Pods, exec, tokens, impersonation of N's existing
/// ServiceAccounts by name; a RoleBinding impersonates no User or Group,
/// R9.1; bind and escalate in N),
/// naming only subjects that exist already. Whoever acts as every
/// ServiceAccount of N before it reaches every identity it adds an edge to,
/// so reaches nobody new: what they hold changes in N at most.
/// Existence is read from `guard` (the confirmed state in live mode).
fn edges_in_namespace<'o>(
    index: &Index,
    guard: &Index,
    object: &'o Object,
) -> Option<(Name, &'o Binding)> {
    let Object::Binding(b) = object else {
        return None;
    };
    let ns = b.key.namespace.as_ref()?;
    if index.binding(&b.key).is_some() || !b.subjects.iter().all(|s| guard.exists(s)) {
        return None;
    }
    let considered = considered(index);
    let entry = index.role(&b.role)?;
    let mut grant = false;
    for d in entry.derives.iter().filter(|d| considered.contains(d.kind)) {
        match &d.power {
            // Pods run as, exec reaches and tokens are issued for existing
            // ServiceAccounts only.
            Power::Workloads
            | Power::Exec
            | Power::Tokens(_)
            | Power::ImpersonateUsers(_)
            | Power::ImpersonateGroups(_) => {}
            // Impersonating every ServiceAccount of N reaches those that do
            // not exist too, which hold what the ServiceAccount groups hold
            // anywhere (R1.4): nobody acting as N's existing ones reaches
            // them.
            Power::ImpersonateServiceAccounts(Targets::All) => return None,
            Power::ImpersonateServiceAccounts(Targets::Named(names)) => {
                if !names.iter().all(|n| guard.exists(&sa(ns, n))) {
                    return None;
                }
            }
            Power::Bind { .. }
            | Power::CreateRoleBindings
            | Power::CreateClusterRoleBindings
            | Power::Escalate { .. }
            | Power::WriteRoles { .. } => grant = true,
        }
    }
    // A RoleGrant half held in N binds, in N, the Roles of N and the
    // ClusterRoles: none of them may impersonate a ServiceAccount of N that
    // does not exist (nobody acts as it yet; its bindings may reach anywhere).
    if grant {
        let ghost = index
            .named_sa_impersonators()
            .filter_map(|k| index.role(k))
            .any(|e| {
                e.role.key.namespace.as_ref().is_none_or(|r| r == ns) && e.derives.iter().any(|d| {
                considered.contains(d.kind)
                    && matches!(&d.power, Power::ImpersonateServiceAccounts(Targets::Named(names))
                            if names.iter().any(|n| !guard.exists(&sa(ns, n))))
            })
            });
        if ghost {
            return None;
        }
    }
    Some((ns.clone(), b))
}

fn sa(ns: &Name, name: &Name) -> Identity {
    Identity::ServiceAccount {
        namespace: ns.clone(),
        name: name.clone(),
    }
}

/// The policies whose permissions `object` can add to anyone's holdings,
/// when that is all it adds: a role change that opens no new escalation
/// path and joins no new aggregator (labels and selectors unchanged), or a
/// binding whose role opens none and whose subjects all exist (or are
/// Groups). Whoever
/// reaches the role (directly, through an aggregator, by binding it) or the
/// binding's subjects then gains the role's new grants at most, nobody acts
/// as anyone new, so only subjects those policies govern can have a new
/// violation (none when the change only removes rights, R7.3). `index` is
/// left as it was.
///
/// With `old` (the confirmed state in live mode), what the role gave before
/// the change, and which subjects exist, are read there: the assumed state
/// may already hold a pending version of the role that gives more, or a
/// pending subject, which would hide what the change gives on the confirmed
/// state.
pub(crate) fn gains(
    index: &mut Index,
    old: Option<&Index>,
    object: &Object,
) -> Option<BTreeSet<u32>> {
    match object {
        Object::Role(r) if joins_aggregates(old.unwrap_or(index), object).is_none() => {
            let (old_grants, old_derives) = role_powers(old.unwrap_or(index), &r.key);
            let probe = index.apply(object.clone());
            let (grants, derives) = role_powers(index, &r.key);
            index.undo(probe);
            derives
                .iter()
                .all(|d| old_derives.contains(d))
                .then(|| grants.difference(&old_grants).map(|g| g.0).collect())
        }
        // A Group named for the first time holds this binding alone (no
        // implicit groups, R1.4) and is reached by whoever impersonates it
        // whether it existed or not; a new User or ServiceAccount may be
        // reached anew (impersonating all Users, Pods of an unwatched
        // namespace) with what its implicit groups hold.
        Object::Binding(b)
            if b.subjects
                .iter()
                .all(|s| matches!(s, Identity::Group(_)) || old.unwrap_or(index).exists(s)) =>
        {
            let (grants, derives) = role_powers(index, &b.role);
            derives
                .is_empty()
                .then(|| grants.into_iter().map(|g| g.0).collect())
        }
        _ => None,
    }
}

/// What a role gives whoever holds it: its grants as (policy, permission,
/// non-resource), and the escalation paths a policy considers.
#[allow(clippy::type_complexity)]
fn role_powers(
    index: &Index,
    key: &RoleKey,
) -> (BTreeSet<(u32, u32, bool)>, Vec<(DerivedKind, Power)>) {
    let considered = considered(index);
    let Some(entry) = index.role(key) else {
        return (BTreeSet::new(), Vec::new());
    };
    let grants = entry
        .grants
        .iter()
        .map(|g| (g.policy, g.permission, g.non_resource))
        .collect();
    let derives = entry
        .derives
        .iter()
        .filter(|d| considered.contains(d.kind))
        .map(|d| (d.kind, d.power.clone()))
        .collect();
    (grants, derives)
}

/// Whether `subject`, whose holdings a new RoleBinding `binding` of N
/// changes in N alone (any subject when its role opens no path,
/// [`only_namespace`]; one that acts as every ServiceAccount of N before
/// it, [`edges_in_namespace`]), may gain a duty of a policy that governs it:
/// only through a grant of the role it does not hold in N already
/// ([`AlreadyHeld`]; its own Pods in N mount, [`Every::creates`]), what a
/// Pod mounts when the role creates workloads and the subject does not
/// already, or what binding or escalating roles in N gives (any duty) when
/// the role's RoleGrant half can pair. Otherwise
/// what it holds after is what it held before.
fn may_gain<'i>(
    index: &Index,
    already: &AlreadyHeld<'i>,
    own_bindings: &OwnHoldings<'i>,
    binding: &Binding,
    subject: &Identity,
) -> bool {
    let Some(entry) = index.role(&binding.role) else {
        return false;
    };
    let Some(ns) = binding.key.namespace.as_ref() else {
        return true;
    };
    if grants_roles(index, binding, entry) {
        return true;
    }
    let mounts_held = already.every.creates(subject);
    let adds_workloads = adds_workloads(entry);
    // What every ServiceAccount of N holds is read first: the actors of a
    // cluster-wide workload role (hundreds) are let off by it alone,
    // without a walk of their own bindings each.
    let mut of_every: Option<Option<&Pairs>> = None;
    let mut own: Option<Pairs> = None;
    index.policies().any(|(slot, p)| {
        if !p.subjects.selects(subject) {
            return false;
        }
        let pods = p.derived.contains(DerivedKind::WorkloadCreation);
        // What its own Pods mount it holds in N already.
        let mounted = |pi: u32| {
            pods && mounts_held && p.permissions.get(pi as usize).is_some_and(mounts_grant)
        };
        let new_grant = entry
            .grants
            .iter()
            .filter(|g| g.policy == slot && !g.non_resource && !mounted(g.permission));
        for g in new_grant {
            let pair = (slot, g.permission);
            let of_every =
                *of_every.get_or_insert_with(|| already.of_every_service_account(subject, ns));
            if of_every.is_some_and(|held| held.contains(&pair)) {
                continue;
            }
            if !own
                .get_or_insert_with(|| already.own(own_bindings, subject, ns))
                .contains(&pair)
            {
                return true;
            }
        }
        adds_workloads && !mounts_held && counts_mounts(p)
    })
}

/// Whether the role of RoleBinding `binding` (its `entry`) may give a
/// subject every duty in the binding's namespace: it binds or escalates
/// roles there, in the walk of some policy, and that half can pair
/// ([`may_pair`]).
fn grants_roles(index: &Index, binding: &Binding, entry: &RoleEntry) -> bool {
    let considered = considered(index);
    entry
        .derives
        .iter()
        .any(|d| considered.contains(d.kind) && d.kind == DerivedKind::RoleGrant)
        && may_pair(index, binding, &entry.derives)
}

/// Whether a role creates workloads, whose Pods mount (R9.1).
fn adds_workloads(entry: &RoleEntry) -> bool {
    entry.derives.iter().any(|d| d.power == Power::Workloads)
}

/// Whether policy `p` counts what a Pod mounts: it follows workload
/// creation and has a permission a mount gives.
fn counts_mounts(p: &crate::model::Policy) -> bool {
    p.derived.contains(DerivedKind::WorkloadCreation) && p.permissions.iter().any(mounts_grant)
}

/// What subjects hold in a namespace N before a change, known without
/// walking their escalation paths: a grant of it in N gives them nothing
/// new.
///
/// With admitted changes pending (live mode, R7.8), `index` is the assumed
/// state and `guard` the confirmed one. A pending change may take a holding
/// away (a role narrowed) while the change judged gives it for good, so
/// only what bindings and roles that no pending change touches give counts:
/// the same object on both states (they share it until one of them writes
/// it). On a single state, `index` is `guard` and everything counts.
struct AlreadyHeld<'i> {
    index: &'i Index,
    guard: &'i Index,
    /// Who acts as every ServiceAccount of N: it holds what their own
    /// bindings give them too.
    every: &'i Every,
    of_every_sa: std::cell::OnceCell<Arc<Pairs>>,
}

/// What each subject's own bindings give it on one state
/// ([`principal_holdings`] of each principal it is), walked once per decision: [`may_gain`] reads it
/// for what a subject holds in the binding's namespace, [`saturated`] for
/// what it holds cluster-wide. Kept per principal: the ServiceAccounts of a
/// namespace, often most of the subjects a decision selects among, share
/// three groups, whose bindings were most of the walks.
struct OwnHoldings<'i> {
    state: &'i Index,
    of: std::cell::RefCell<FastMap<Identity, Rc<Holdings<'i>>>>,
}

impl<'i> OwnHoldings<'i> {
    fn new(state: &'i Index) -> Self {
        OwnHoldings {
            state,
            of: Default::default(),
        }
    }

    /// Per principal `subject` is, with the bindings and roles each
    /// holding came from (to tell what pending changes touch).
    fn of(&self, subject: &Identity) -> Vec<Rc<Holdings<'i>>> {
        let parts = principals(self.state, subject).into_iter().map(|(p, via)| {
            if let Some(h) = self.of.borrow().get(&p) {
                return h.clone();
            }
            let h = Rc::new(principal_holdings(self.state, p.clone(), via));
            self.of.borrow_mut().insert(p, h.clone());
            h
        });
        parts.collect()
    }

    /// Per principal `subject` is, the permissions alone, kept by the
    /// index across decisions on the same state.
    fn pairs(&self, subject: &Identity) -> Vec<Arc<DirectPairs>> {
        let state = self.state;
        principals(state, subject)
            .into_iter()
            .map(|(p, via)| state.direct_pairs(&p, || principal_pairs(state, p.clone(), via)))
            .collect()
    }
}

impl<'i> AlreadyHeld<'i> {
    /// With `of_every`, what [`every_holds`](Self::every_holds) found on
    /// the same states before.
    fn new(
        index: &'i Index,
        guard: &'i Index,
        every: &'i Every,
        of_every: Option<Arc<Pairs>>,
    ) -> Self {
        AlreadyHeld {
            index,
            guard,
            every,
            of_every_sa: of_every.map_or_else(std::cell::OnceCell::new, std::cell::OnceCell::from),
        }
    }

    fn into_of_every(self) -> Option<Arc<Pairs>> {
        self.of_every_sa.into_inner()
    }

    /// The (policy, permission) pairs every ServiceAccount of `ns` together
    /// hold there or cluster-wide by their own bindings. On a single state
    /// it is kept across decisions ([`Index::every_holds`]): computing it
    /// was a tenth of a decision, for a value that changes only with the
    /// namespace's bindings and the cluster's.
    fn every_holds(&self, ns: &Name) -> &Pairs {
        self.of_every_sa.get_or_init(|| {
            if self.pending() {
                Arc::new(self.every_holds_afresh(ns))
            } else {
                self.guard.every_holds(ns, || self.every_holds_afresh(ns))
            }
        })
    }

    fn every_holds_afresh(&self, ns: &Name) -> Pairs {
        let h = direct_holdings_of_all(self.guard, self.guard.service_accounts_in(ns));
        let mut out = Pairs::default();
        self.own_in(&h, ns, &mut out);
        out
    }

    fn pending(&self) -> bool {
        !std::ptr::eq(self.index, self.guard)
    }

    /// Whether binding `key` and role `role` are the same on both states.
    fn untouched(&self, key: &BindingKey, role: &RoleKey) -> bool {
        same_object(self.index.binding(key), self.guard.binding(key))
            && same_object(self.index.role(role), self.guard.role(role))
    }

    /// The (policy, permission) pairs `subject` holds in `ns` or
    /// cluster-wide by acting as every ServiceAccount of `ns`, if it does:
    /// with [`own`](Self::own), all it holds there.
    fn of_every_service_account(&self, subject: &Identity, ns: &Name) -> Option<&Pairs> {
        let acts = self.every.contains(subject)
            && (!self.pending() || self.acts_as_all_for_good(subject, ns));
        acts.then(|| self.every_holds(ns))
    }

    /// What `subject`'s own bindings (no escalation path) give it in `ns`
    /// or cluster-wide, of the policies that are the same on both states,
    /// read from `own` (of `guard`, the state read for what subjects hold).
    fn own(&self, own: &OwnHoldings<'i>, subject: &Identity, ns: &Name) -> Pairs {
        debug_assert!(std::ptr::eq(own.state, self.guard));
        if !self.pending() {
            // On one state every holding counts: the permissions suffice.
            return own
                .pairs(subject)
                .iter()
                .flat_map(|part| &part.0)
                .filter(|(_, _, scope)| scope.as_ref().is_none_or(|n| n == ns))
                .map(|(slot, p, _)| (*slot, *p))
                .collect();
        }
        let mut out = Pairs::default();
        for h in &own.of(subject) {
            self.own_in(h, ns, &mut out);
        }
        out
    }

    /// What holdings `h` without escalation paths give in `ns` or
    /// cluster-wide, of the policies that are the same on both states.
    fn own_in(&self, h: &Holdings<'_>, ns: &Name, out: &mut Pairs) {
        let policy = |state: &'i Index, slot: u32| state.policy_slot(slot).map(|p| &**p);
        // On a single state every policy, binding and role a holding came
        // from is the same on both: four lookups per holding saved, a
        // twentieth of a decision.
        let pending = self.pending();
        for (slot, xs) in &h.by_policy {
            if pending && !same_object(policy(self.index, *slot), policy(self.guard, *slot)) {
                continue;
            }
            for x in xs {
                let End::Rule {
                    binding: Some(key),
                    role,
                    ..
                } = &x.end
                else {
                    continue;
                };
                if x.namespace.is_none_or(|n| n == ns) && (!pending || self.untouched(key, role)) {
                    out.insert((*slot, x.permission));
                }
            }
        }
    }

    /// Whether `subject` acts as every ServiceAccount of `ns` by a power of
    /// its own bindings (or its groups') that no pending change touches, in
    /// the walk of every policy: it does so whatever the pending changes do.
    fn acts_as_all_for_good(&self, subject: &Identity, ns: &Name) -> bool {
        let set = common(self.guard);
        let guard = self.guard;
        principals(guard, subject)
            .into_iter()
            .any(|(principal, _)| {
                guard.bindings_naming(&principal).iter().any(|b| {
                    let key = &b.key;
                    b.key.namespace.as_ref().is_none_or(|n| n == ns)
                        && self.untouched(key, &b.role)
                        && guard.role(&b.role).is_some_and(|e| {
                            e.derives
                                .iter()
                                .any(|d| set.contains(d.kind) && every_service_account(&d.power))
                        })
                })
            })
    }
}

/// What every ServiceAccount of `ns` holds there or cluster-wide by its own
/// bindings, on one state: as kept across decisions (`kept`), or computed
/// afresh.
#[cfg(test)]
pub(crate) fn every_holds_of(index: &Index, ns: &Name, kept: bool) -> Vec<(u32, u32)> {
    let every = acting_as_every_service_account(index, ns);
    let held = AlreadyHeld::new(index, index, &every, None);
    let mut v: Vec<(u32, u32)> = if kept {
        held.every_holds(ns).iter().copied().collect()
    } else {
        held.every_holds_afresh(ns).into_iter().collect()
    };
    v.sort_unstable();
    v
}

/// Whether both states hold the very same object (or neither holds it:
/// then it is not the same).
fn same_object<T>(a: Option<&T>, b: Option<&T>) -> bool {
    matches!((a, b), (Some(a), Some(b)) if std::ptr::eq(a, b))
}

/// Whether the RoleGrant halves of `derives` (a new binding's role) can
/// complete a pair for a subject of `binding` (R9.1: `bind` with the right
/// to create bindings, `escalate` with the right to write roles): a half
/// alone gives nothing, and each identity pairs only its own halves. Read
/// on `index`, where each subject holds at least as much; a Group's
/// members pair with their own bindings too, so a Group may always pair.
fn may_pair(index: &Index, binding: &Binding, derives: &[crate::engine::index::Derive]) -> bool {
    #[derive(Default, Clone, Copy)]
    struct Halves {
        bind: bool,
        bindings: bool,
        escalate: bool,
        write: bool,
    }
    impl Halves {
        fn add(&mut self, p: &Power) {
            match p {
                Power::Bind { .. } => self.bind = true,
                Power::CreateRoleBindings | Power::CreateClusterRoleBindings => {
                    self.bindings = true;
                }
                Power::Escalate { .. } => self.escalate = true,
                Power::WriteRoles { .. } => self.write = true,
                _ => {}
            }
        }
        fn pairs(&self) -> bool {
            (self.bind && self.bindings) || (self.escalate && self.write)
        }
    }
    let mut role = Halves::default();
    for d in derives {
        role.add(&d.power);
    }
    binding.subjects.iter().any(|t| {
        if matches!(t, Identity::Group(_)) {
            return true;
        }
        let mut h = role;
        for (principal, _) in principals(index, t) {
            for b in index.bindings_naming(&principal) {
                let role = index.role(&b.role);
                for d in role.into_iter().flat_map(|e| e.derives.iter()) {
                    h.add(&d.power);
                }
            }
        }
        h.pairs()
    })
}

/// The subjects whose holdings `object` can change on a single state (R7.7,
/// R9.4): those it names or whose roles it changes, the members of the groups
/// among them, the subjects of aggregators the role joins, and whoever acts as
/// any of them or can bind a changed role. `index` is left as it was.
#[cfg(test)]
pub(crate) fn affected_by(index: &mut Index, object: &Object) -> Affected {
    affected_until(index, object, None).0
}

/// [`affected_by`], stopping at `deadline`; `false` when it did, and the
/// subjects are then those gathered so far.
fn affected_until(
    index: &mut Index,
    object: &Object,
    deadline: Option<std::time::Instant>,
) -> (Affected, bool) {
    let mut subjects = IdSet::default();
    if grants_nothing_relevant(index, object) {
        newly_named(index, object, &mut subjects);
    } else {
        collect_affected(index, object, &mut subjects);
    }
    let mut roles = changed_roles(index, object);
    if let Some(k) = joins_aggregates(index, object) {
        // The aggregators the role reaches once changed are known only in the
        // changed state; their subjects are judged before it too.
        let probe = index.apply(object.clone());
        collect_role_subjects(index, &k, &mut subjects);
        roles.extend(
            index
                .aggregators_reaching(&k)
                .into_iter()
                .map(|name| RoleKey {
                    namespace: None,
                    name,
                }),
        );
        index.undo(probe);
    }
    // Whoever acts as an affected subject, or can bind a changed role, is
    // affected too.
    add_actors(index, &roles, subjects, deadline)
}

/// A binding whose old and new role grant no permission of any policy and
/// open no escalation path that a policy considers (R9). What a subject holds
/// comes only from the grants of the roles of the bindings that reach it and
/// from what those roles' derivations reach (`holdings`); the grants and
/// derivations are a role's effective rules, aggregated ones included: such a
/// binding changes nobody's holdings, whoever its subjects reach (a group of
/// every ServiceAccount). A role granting only `create pods` grants no duty
/// but runs Pods as every ServiceAccount of the namespace: it is relevant. A
/// missing role grants nothing (R2.3) and cannot appear meanwhile, since only
/// the binding changes; when it is created later, the role's own review
/// judges the bindings to it.
///
/// Only on one state: in live mode with changes pending, the state before is
/// the confirmed one, on which the subjects may hold less than on the assumed
/// one, and that difference is judged as the slow path always did.
fn grants_nothing_relevant(index: &Index, object: &Object) -> bool {
    let Object::Binding(b) = object else {
        return false;
    };
    let considered = considered(index);
    let none = |role: &RoleKey| {
        index.role(role).is_none_or(|e| {
            e.grants.is_empty() && !e.derives.iter().any(|d| considered.contains(d.kind))
        })
    };
    none(&b.role) && index.binding(&b.key).is_none_or(|old| none(&old.role))
}

/// The roles whose holders' holdings `object` changes: a changed role and the
/// aggregated ClusterRoles that include it, for who can bind them (R9.1).
fn changed_roles(index: &Index, object: &Object) -> Vec<RoleKey> {
    let Object::Role(r) = object else {
        return Vec::new();
    };
    let mut out = vec![r.key.clone()];
    out.extend(
        index
            .aggregators_reaching(&r.key)
            .into_iter()
            .map(|name| RoleKey {
                namespace: None,
                name,
            }),
    );
    out
}

/// The subjects a binding names that do not exist before it (R1.5: a User or
/// Group exists once a binding names it): holding what their implicit groups
/// hold, they may violate as soon as they exist, whatever the binding grants.
fn newly_named(index: &Index, object: &Object, out: &mut IdSet) {
    if let Object::Binding(b) = object {
        out.extend(b.subjects.iter().filter(|s| !index.exists(s)).cloned());
    }
}

/// The key of a ClusterRole whose change may make aggregated ClusterRoles
/// reach it that did not before: one that is new, or whose labels or
/// aggregation selectors change. Namespaced Roles are never aggregated.
fn joins_aggregates(index: &Index, object: &Object) -> Option<RoleKey> {
    let Object::Role(r) = object else {
        return None;
    };
    if r.key.namespace.is_some() {
        return None;
    }
    let unchanged = index
        .role(&r.key)
        .is_some_and(|e| e.role.labels == r.labels && e.role.aggregation == r.aggregation);
    (!unchanged).then(|| r.key.clone())
}

/// V(S') − V(S): violations after the change that were not there before, nor
/// contained in one that was (a change that only removes rights adds none).
fn new_violations(before: Evaluation, after: Evaluation) -> (Vec<Violation>, Vec<Excused>) {
    // By (policy, subject, namespace): only those can contain a violation
    // (`Violation::within`), and scanning every old violation for each new
    // one was quadratic — most of a decision once thousands are judged.
    let mut old: KeyedMap<(&Name, &Identity, &Name), Vec<&Violation>> = KeyedMap::default();
    for o in before
        .violations
        .iter()
        .chain(before.excused.iter().map(|e| &e.violation))
    {
        old.entry((&o.policy, &o.subject, &o.namespace))
            .or_default()
            .push(o);
    }
    let star = Name::from(CLUSTER_WIDE);
    let is_new = |v: &Violation| {
        let within = |ns: &Name| {
            old.get(&(&v.policy, &v.subject, ns))
                .is_some_and(|os| os.iter().any(|o| v.within(o)))
        };
        !within(&v.namespace) && !within(&star)
    };
    let violations = after.violations.into_iter().filter(|v| is_new(v)).collect();
    let excused = after
        .excused
        .into_iter()
        .filter(|e| is_new(&e.violation))
        .collect();
    (violations, excused)
}

/// The subjects whose holdings `object` changes, in the current state.
fn collect_affected(index: &Index, object: &Object, out: &mut IdSet) {
    match object {
        Object::Binding(b) => {
            let old = index
                .binding(&b.key)
                .map(|o| o.subjects.as_slice())
                .unwrap_or_default();
            for s in b.subjects.iter().chain(old) {
                affected_subjects(index, s, out);
            }
        }
        Object::Role(r) => collect_role_subjects(index, &r.key, out),
        Object::ServiceAccount { namespace, name } => {
            out.insert(Identity::ServiceAccount {
                namespace: namespace.clone(),
                name: name.clone(),
            });
        }
        Object::Namespace(_)
        | Object::Policy(_)
        | Object::Exception(_)
        | Object::TokenSecret(_)
        | Object::Grant(_)
        | Object::GrantPolicy(_) => {}
    }
}

/// The subjects of every binding to `role` or to an aggregator that includes it.
fn collect_role_subjects(index: &Index, role: &RoleKey, out: &mut IdSet) {
    let mut roles = vec![role.clone()];
    roles.extend(
        index
            .aggregators_reaching(role)
            .into_iter()
            .map(|name| RoleKey {
                namespace: None,
                name,
            }),
    );
    for r in &roles {
        for bk in index.bindings_of_role(r) {
            if let Some(b) = index.binding(bk) {
                for s in &b.subjects {
                    affected_subjects(index, s, out);
                }
            }
        }
    }
}
