//! Violations (R5) and the exceptions that excuse them (R6).

use std::collections::BTreeMap;
use std::fmt;

use fixedbitset::FixedBitSet;
use jiff::Timestamp;

use super::budget::{Budget, Exhausted, Meter};
use super::exception_rules;
use super::holdings::{
    ByScope, End, Graft, Held, Hop, Rank, Reach, ReachText, RuleTextCache, Shared, SlotSummary,
    Via, holdings, holdings_judged,
};
use crate::engine::index::{DirectPairs, Index};
use crate::model::{
    Actions, BindingKey, CLUSTER_WIDE, DerivedKind, Identity, Name, Policy, PolicyScope, RoleKey,
};

/// One step of an explanation path: a rule that grants, or a derived step
/// (R9.3) that turns what the rule before it grants into more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// binding → role (→ aggregated source) → rule.
    Rule {
        via: Via,
        /// `None` for a role the subject can bind to itself (RoleGrant).
        binding: Option<BindingKey>,
        role: RoleKey,
        /// The ClusterRole the rule is aggregated from, if it is.
        source: Option<Name>,
        rule_index: u32,
        /// The rule, written for people (shared by every path through it).
        rule: std::sync::Arc<str>,
    },
    /// `⇒ runs as ServiceAccount a/backup`, and the like.
    Derived { kind: DerivedKind, text: String },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Rule {
                via,
                binding,
                role,
                source,
                rule_index,
                rule,
            } => {
                // Pieces, not format strings: an audit at 100k bindings
                // writes ~200,000 steps.
                if let Via::Group(g) = via {
                    f.write_str("(member of Group ")?;
                    f.write_str(g)?;
                    f.write_str(") ")?;
                }
                if let Some(b) = binding {
                    fmt::Display::fmt(b, f)?;
                    f.write_str(" → ")?;
                }
                fmt::Display::fmt(role, f)?;
                if let Some(src) = source {
                    f.write_str(" → ClusterRole ")?;
                    f.write_str(src)?;
                }
                write!(f, " → rules[{rule_index}]: ")?;
                f.write_str(rule)
            }
            Step::Derived { text, .. } => f.write_str(text),
        }
    }
}

/// One explanation path (R5.4): binding → role (→ aggregated source) → rule,
/// preceded by the derived steps that reach that binding (R9.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    pub steps: Vec<Step>,
}

impl Path {
    /// Whether the path takes a derived step.
    pub fn derived(&self) -> bool {
        self.steps.iter().any(|s| matches!(s, Step::Derived { .. }))
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.steps.iter().enumerate() {
            if i > 0 {
                f.write_str(" ⇒ ")?;
            }
            fmt::Display::fmt(s, f)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DutyPaths {
    pub duty: Name,
    pub paths: Vec<Path>,
}

/// (policy, subject, namespace, duties) with its explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub policy: Name,
    pub subject: Identity,
    /// A namespace, or `*` for cluster-wide holdings.
    pub namespace: Name,
    /// Sorted by name.
    pub duties: Vec<Name>,
    pub explanation: Vec<DutyPaths>,
    pub actions: Actions,
}

impl Violation {
    /// The identity of a violation, as R7.1 compares them.
    pub fn tuple(&self) -> (&Name, &Identity, &Name, &[Name]) {
        (&self.policy, &self.subject, &self.namespace, &self.duties)
    }

    /// Whether this violation is no more than `other`: same policy and
    /// subject, a subset of its duties, in its namespace or with it holding
    /// them cluster-wide.
    pub fn within(&self, other: &Violation) -> bool {
        self.policy == other.policy
            && self.subject == other.subject
            && (self.namespace == other.namespace || &*other.namespace == CLUSTER_WIDE)
            && self.duties.iter().all(|d| other.duties.contains(d))
    }
}

/// A violation that an active exception excuses (R6.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excused {
    pub violation: Violation,
    pub exception: Name,
    /// When the exception stops excusing it: `expiresAt`, or earlier where
    /// the policy's current limits cut the window (R6.5).
    pub expires_at: Timestamp,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evaluation {
    pub violations: Vec<Violation>,
    pub excused: Vec<Excused>,
}

/// Raw violations of one subject (exceptions not applied), for every policy
/// that governs it (or only `only`).
pub fn subject_violations(index: &Index, subject: &Identity, only: Option<u32>) -> Vec<Violation> {
    subject_violations_shared(index, subject, only, &Shared::new())
}

/// [`subject_violations`], sharing what every ServiceAccount holds with the
/// other subjects judged with the same `shared` on the same state.
pub fn subject_violations_shared<'a>(
    index: &'a Index,
    subject: &Identity,
    only: Option<u32>,
    shared: &Shared<'a>,
) -> Vec<Violation> {
    judge(index, subject, only, Some(shared), Explain::Paths).0
}

/// [`subject_violations_shared`] without explanations: each duty's `paths`
/// is empty. What a violation is (R7.1 compares (policy, subject,
/// namespace, duties)) is the same; finding each duty's best path is most of
/// the cost of judging a subject, and a decision needs it only for the
/// violations that are new.
pub(crate) fn subject_violations_bare<'a>(
    index: &'a Index,
    subject: &Identity,
    shared: &Shared<'a>,
) -> Vec<Violation> {
    judge(index, subject, None, Some(shared), Explain::Nothing).0
}

/// [`subject_violations_bare`] on a passing state whose change added a
/// binding naming nobody new ([`Shared::passing`]), and the subject's bare
/// violations on the state before that binding when the walk tells them
/// without another: it did not visit the binding itself, and the state
/// before's summary of each namespace it grafted is known. The walk reads
/// bindings, roles, ServiceAccounts and policies, and the binding changes
/// only the first: its own holdings are then the same before.
pub(crate) fn subject_violations_bare_and_before<'a>(
    index: &'a Index,
    subject: &Identity,
    shared: &Shared<'a>,
) -> (Vec<Violation>, Option<Vec<Violation>>) {
    judge(index, subject, None, Some(shared), Explain::Before)
}

/// Whether a judged violation carries its explanation paths.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Explain {
    Paths,
    Nothing,
    /// Nothing, and the violations on the state before the added binding
    /// too ([`subject_violations_bare_and_before`]).
    Before,
}

/// A subject's violations from its own walk, nothing shared: what
/// [`Shared`] must not change.
#[cfg(test)]
pub(crate) fn unshared_subject_violations(index: &Index, subject: &Identity) -> Vec<Violation> {
    judge(index, subject, None, None, Explain::Paths).0
}

/// Whether no change of RBAC objects from `before` to `after` can give
/// `subject` a new violation (R7.1), known without walking its escalation
/// paths: every policy that governs it on `after` is the very one of
/// `before`, under which, on `before`, its own bindings alone give it every
/// duty cluster-wide, more than it may hold. Its violations on `before` then
/// include a cluster-wide one with every duty (a walk only adds holdings, and
/// both policy scopes report such a one), and any violation it has on `after`
/// under that policy is within it. Holders of cluster-admin are so: judging
/// them, each walk binding every role of the cluster, was most of a decision.
/// `own` gives what its own bindings give it on `before`, per principal it
/// is ([`DirectPairs`]), when it exists there.
pub(crate) fn saturated(
    before: &Index,
    after: &Index,
    subject: &Identity,
    own: impl FnOnce() -> Vec<std::sync::Arc<DirectPairs>>,
) -> bool {
    let governed: Vec<&std::sync::Arc<Policy>> = after
        .policies()
        .filter(|(_, p)| p.subjects.selects(subject))
        .map(|(_, p)| p)
        .collect();
    if governed.is_empty() {
        // Judged on `after`, it has no violation at all.
        return true;
    }
    if !before.exists(subject) {
        return false;
    }
    let h = own();
    governed.into_iter().all(|p| {
        let Some(slot) = before.policy_slot_of(&p.name) else {
            return false;
        };
        if !before
            .policy_slot(slot)
            .is_some_and(|b| std::sync::Arc::ptr_eq(b, p))
        {
            return false;
        }
        let n = p.permissions.len();
        let mut cluster = FixedBitSet::with_capacity(n);
        for (s, p, ns) in h.iter().flat_map(|part| &part.0) {
            if *s == slot && ns.is_none() && (*p as usize) < n {
                cluster.insert(*p as usize);
            }
        }
        let d = duties_held(p, &cluster);
        d.len() == p.duties.len() && d.len() > p.max_duties
    })
}

fn judge<'a>(
    index: &'a Index,
    subject: &Identity,
    only: Option<u32>,
    shared: Option<&Shared<'a>>,
    explain: Explain,
) -> (Vec<Violation>, Option<Vec<Violation>>) {
    // Nothing the binding changes makes a subject exist, or a policy
    // govern it.
    let none = || (Vec::new(), (explain == Explain::Before).then(Vec::new));
    if !index.exists(subject) {
        return none();
    }
    let governed: Vec<(u32, &Policy)> = index
        .policies()
        .filter(|(slot, p)| only.is_none_or(|o| o == *slot) && p.subjects.selects(subject))
        .map(|(slot, p)| (slot, &**p))
        .collect();
    if governed.is_empty() {
        return none();
    }
    // A bare summary has no paths to explain with.
    debug_assert!(explain != Explain::Paths || shared.is_none_or(|s| !s.is_bare()));
    let h = match shared {
        Some(shared) => {
            let slots: Vec<u32> = governed.iter().map(|(slot, _)| *slot).collect();
            holdings_judged(index, subject, only, shared, &slots)
        }
        None => holdings(index, subject, only),
    };
    let mut out = Vec::new();
    let mut before = (explain == Explain::Before
        && !h.visited_added
        && h.grafts.iter().all(|g| g.before.is_some()))
    .then(Vec::new);
    let explain = match explain {
        Explain::Before => Explain::Nothing,
        e => e,
    };
    let mut texts = RuleTexts::taken(index, shared);
    // One list for every policy and state: most subjects are judged under
    // each policy on both states.
    let mut grafts: Vec<(&Graft<'_>, &SlotSummary<'_>)> = Vec::with_capacity(h.grafts.len());
    for (slot, policy) in governed {
        let held: &[Held<'_>] = h.by_policy.get(&slot).map_or(&[], Vec::as_slice);
        // The state after, then (when told) the state before: the same own
        // holdings, each state's summaries.
        for (after, into) in [(true, Some(&mut out)), (false, before.as_mut())] {
            let Some(into) = into else { continue };
            grafts.clear();
            grafts.extend(h.grafts.iter().filter_map(|g| {
                let summary = if after {
                    Some(&g.summary)
                } else {
                    g.before.as_ref()
                };
                summary?.get(&slot).map(|s| (g, s))
            }));
            if !held.is_empty() || !grafts.is_empty() {
                policy_violations(
                    policy,
                    subject,
                    (held, &grafts, slot),
                    (&mut texts, explain),
                    into,
                );
            }
        }
    }
    texts.give_back(shared);
    (out, before)
}

fn duties_held(policy: &Policy, perms: &FixedBitSet) -> Vec<usize> {
    policy
        .duties
        .iter()
        .enumerate()
        .filter(|(_, d)| d.held(|p| perms.contains(p)))
        .map(|(i, _)| i)
        .collect()
}

/// [`duties_held`], when more than `policy` allows: a subject with a
/// summary is judged in each of thousands of namespaces, and in nearly all
/// of them it holds too few to keep a list.
fn duties_violating(policy: &Policy, perms: &FixedBitSet) -> Option<Vec<usize>> {
    let held = policy
        .duties
        .iter()
        .filter(|d| d.held(|p| perms.contains(p)))
        .count();
    (held > policy.max_duties).then(|| duties_held(policy, perms))
}

/// A subject's holdings of one policy: its own, and the summaries it grafts.
type SlotHeld<'x, 'a> = (
    &'x [Held<'a>],
    &'x [(&'x Graft<'a>, &'x SlotSummary<'a>)],
    u32,
);

/// Permissions held per namespace, in name order.
type NsIter<'m> = std::collections::btree_map::Iter<'m, Name, FixedBitSet>;

fn policy_violations(
    policy: &Policy,
    subject: &Identity,
    held: SlotHeld<'_, '_>,
    (texts, explain): (&mut RuleTexts, Explain),
    out: &mut Vec<Violation>,
) {
    let (own, grafts, _) = held;
    let n = policy.permissions.len();
    let mut all = FixedBitSet::with_capacity(n);
    for h in own {
        all.insert(h.permission as usize);
    }
    for (_, s) in grafts {
        all.union_with(&s.bits.all);
    }
    // Most subjects hold too little to violate anything: stop early, before
    // anything is kept per namespace.
    let Some(all_duties) = duties_violating(policy, &all) else {
        return;
    };
    let mut cluster = FixedBitSet::with_capacity(n);
    let mut own_ns: BTreeMap<Name, FixedBitSet> = BTreeMap::new();
    for h in own {
        match h.namespace {
            None => cluster.insert(h.permission as usize),
            Some(ns) => own_ns
                .entry(ns.clone())
                .or_insert_with(|| FixedBitSet::with_capacity(n))
                .insert(h.permission as usize),
        }
    }
    for (_, s) in grafts {
        cluster.union_with(&s.bits.cluster);
    }
    // Only explanations read the subject's own holdings by scope.
    let own_scopes = match explain {
        Explain::Nothing => ByScope::default(),
        _ => ByScope::of(own),
    };
    let cluster_wide = || Name::from(CLUSTER_WIDE);
    let mut emit = |namespace: Name, duties: Vec<usize>, scope: Option<Option<&Name>>| {
        if explain == Explain::Nothing {
            out.push(bare_violation(policy, subject, namespace, &duties));
            return;
        }
        out.push(violation(
            policy,
            subject,
            namespace,
            &duties,
            held,
            (&own_scopes, scope),
            texts,
        ));
    };
    match policy.scope {
        PolicyScope::Cluster => emit(cluster_wide(), all_duties, None),
        PolicyScope::Namespace => {
            // R5.2: cluster-wide holdings count in every namespace; a namespace
            // that adds nothing to a cluster-wide violation is not reported again.
            let star = duties_held(policy, &cluster);
            let star_violates = star.len() > policy.max_duties;
            if star_violates {
                emit(cluster_wide(), star.clone(), Some(None));
            }
            // The namespaces in name order, each with the union of what the
            // subject and its grafts hold there. A summary holds something
            // in most namespaces: its sorted list is merged, not copied.
            let mut lists: Vec<std::iter::Peekable<NsIter<'_>>> =
                std::iter::once(own_ns.iter().peekable())
                    .chain(grafts.iter().map(|(_, s)| s.bits.per_ns.iter().peekable()))
                    .collect();
            let mut u = FixedBitSet::with_capacity(n);
            while let Some(ns) = lists
                .iter_mut()
                .filter_map(|l| l.peek().map(|(ns, _)| *ns))
                .min()
            {
                u.clone_from(&cluster);
                for l in &mut lists {
                    if let Some((_, perms)) = l.next_if(|(other, _)| *other == ns) {
                        u.union_with(perms);
                    }
                }
                if let Some(d) = duties_violating(policy, &u)
                    && !(star_violates && d == star)
                {
                    emit(ns.clone(), d, Some(Some(ns)));
                }
            }
        }
    }
}

fn violation<'x, 'a>(
    policy: &Policy,
    subject: &Identity,
    namespace: Name,
    duties: &[usize],
    held: SlotHeld<'x, 'a>,
    (own_scopes, scope): (&'x ByScope<'a>, Option<Option<&Name>>),
    texts: &mut RuleTexts,
) -> Violation {
    let (own, grafts, slot) = held;
    let explanation: Vec<DutyPaths> = duties
        .iter()
        .map(|&di| {
            let duty = &policy.duties[di];
            let mut best = |perms: &mut dyn Iterator<Item = usize>| -> Option<Path> {
                // A duty names a few permissions: a list beats a tree.
                let perms: Vec<usize> = perms.collect();
                let ok = |h: &Held<'_>| perms.contains(&(h.permission as usize));
                // In the order the holdings were found: a subject's own up to
                // a graft, the graft's, then the rest of its own.
                let mut best: Option<(Rank<'_>, &Held<'_>, Option<&Graft<'_>>)> = None;
                let mut consider = |rank: Rank<'x>, x: &'x Held<'a>, g: Option<&'x Graft<'a>>| {
                    if best.as_ref().is_none_or(|(r, _, _)| rank < *r) {
                        best = Some((rank, x, g));
                    }
                };
                // The subject's own paths first: on a tie they win, as in a
                // walk of its own an identity it reaches before the graft
                // keeps its own path.
                for x in own_scopes.within(own, scope).filter(|x| ok(x)) {
                    consider(x.rank(), x, None);
                }
                for (g, s) in grafts {
                    for x in s.by_scope.within(&s.held, scope).filter(|x| ok(x)) {
                        let mut r = x.rank();
                        r.0 += g.hop.depth;
                        consider(r, x, Some(g));
                    }
                }
                let _ = slot;
                best.map(|(_, x, g)| match g {
                    Some(g) => path_with(&g.held(x), texts),
                    None => path_with(x, texts),
                })
            };
            let paths = if duty.match_all {
                duty.permissions
                    .clone()
                    .filter_map(|p| best(&mut std::iter::once(p)))
                    .collect()
            } else {
                best(&mut duty.permissions.clone()).into_iter().collect()
            };
            DutyPaths {
                duty: duty.name.clone(),
                paths,
            }
        })
        .collect();
    assemble(policy, subject, namespace, explanation)
}

/// A violation without its paths: each duty named, none explained.
fn bare_violation(
    policy: &Policy,
    subject: &Identity,
    namespace: Name,
    duties: &[usize],
) -> Violation {
    let explanation = duties
        .iter()
        .map(|&di| DutyPaths {
            duty: policy.duties[di].name.clone(),
            paths: Vec::new(),
        })
        .collect();
    assemble(policy, subject, namespace, explanation)
}

/// A violation of `policy` with its duties, named by `explanation` in name
/// order.
fn assemble(
    policy: &Policy,
    subject: &Identity,
    namespace: Name,
    mut explanation: Vec<DutyPaths>,
) -> Violation {
    explanation.sort_by(|a, b| a.duty.cmp(&b.duty));
    Violation {
        policy: policy.name.clone(),
        subject: subject.clone(),
        namespace,
        duties: explanation.iter().map(|d| d.duty.clone()).collect(),
        explanation,
        actions: policy.actions,
    }
}

pub(crate) fn path(index: &Index, h: &Held<'_>) -> Path {
    path_with(h, &mut RuleTexts::new(index))
}

/// The rules of explanation steps as written for people, per (role, source,
/// rule, permission focused on) by address: a subject violating in hundreds
/// of namespaces shows the same few rules in each, and writing a rule costs
/// more than the rest of its path. Kept in the [`Shared`] of an evaluation
/// (taken for one subject's judging, then given back), so that every subject
/// shares them.
struct RuleTexts<'i> {
    index: &'i Index,
    texts: RuleTextCache,
}

impl<'i> RuleTexts<'i> {
    fn new(index: &'i Index) -> Self {
        RuleTexts {
            index,
            texts: RuleTextCache::default(),
        }
    }

    /// The texts kept in `shared`, if any, until [`RuleTexts::give_back`].
    fn taken(index: &'i Index, shared: Option<&Shared<'_>>) -> Self {
        RuleTexts {
            index,
            texts: shared.map(|s| s.rule_texts.take()).unwrap_or_default(),
        }
    }

    fn give_back(self, shared: Option<&Shared<'_>>) {
        if let Some(s) = shared {
            s.rule_texts.replace(self.texts);
        }
    }
}

fn path_with(h: &Held<'_>, texts: &mut RuleTexts) -> Path {
    let index = texts.index;
    // A summary's path: the subject's hop to every ServiceAccount runs as the
    // one the path starts from.
    let mut chain: Vec<(&Hop<'_>, Option<Reach>)> = Vec::new();
    if let Some(g) = &h.graft {
        let root = h.root.as_deref().map(|r| Reach::ActsAs(r.clone()));
        let mut gs = g.chain();
        let last = gs.pop();
        chain.extend(gs.into_iter().map(|x| (x, None)));
        chain.extend(last.map(|x| (x, root)));
    }
    if let Some(last) = &h.hops {
        chain.extend(last.chain().into_iter().map(|x| (x, None)));
    }
    // Two steps per hop, and the rule it ends with.
    let mut steps = Vec::with_capacity(2 * chain.len() + 1);
    {
        for (hop, reach) in chain {
            let reach = reach.as_ref().unwrap_or(&hop.reach);
            let d = hop.derive;
            steps.push(rule_step(
                texts,
                hop.via.clone(),
                hop.binding,
                hop.role,
                d.source.as_ref(),
                d.rule,
                None,
            ));
            steps.push(Step::Derived {
                kind: d.kind,
                text: ReachText(d.kind, reach).to_string(),
            });
        }
    }
    if let End::Rule {
        binding,
        role,
        grant,
    } = &h.end
    {
        let perm = index
            .policy_slot(grant.policy)
            .and_then(|p| p.permissions.get(h.permission as usize));
        steps.push(rule_step(
            texts,
            h.via.clone(),
            *binding,
            role,
            grant.source.as_ref(),
            grant.rule,
            perm,
        ));
    }
    Path { steps }
}

/// binding → role (→ source) → rule, the rule focused on `perm` when given.
fn rule_step(
    texts: &mut RuleTexts,
    via: Via,
    binding: Option<&BindingKey>,
    role: &RoleKey,
    source: Option<&Name>,
    rule_index: u32,
    perm: Option<&crate::model::Permission>,
) -> Step {
    let index = texts.index;
    // Addresses of values in the index, alive while it is borrowed: equal
    // addresses are equal values.
    let key = (
        std::ptr::from_ref(role) as usize,
        source.map_or(0, |s| std::ptr::from_ref(s) as usize),
        rule_index,
        perm.map_or(0, |p| std::ptr::from_ref(p) as usize),
    );
    let rule = texts
        .texts
        .entry(key)
        .or_insert_with(|| {
            let rule_owner = match source {
                Some(src) => RoleKey {
                    namespace: None,
                    name: src.clone(),
                },
                None => role.clone(),
            };
            index
                .role(&rule_owner)
                .and_then(|e| e.role.rules.get(rule_index as usize))
                .map(|r| match perm {
                    Some(perm) => match crate::rbac::focus(r, perm) {
                        (f, true) => format!("{f} (…)"),
                        (f, false) => f.to_string(),
                    },
                    None => r.to_string(),
                })
                .unwrap_or_default()
                .into()
        })
        .clone();
    Step::Rule {
        via,
        binding: binding.cloned(),
        role: role.clone(),
        source: source.cloned(),
        rule_index,
        rule,
    }
}

/// Splits raw violations into those that stand and those an active
/// exception excuses (R6).
pub fn excuse(index: &Index, mut raw: Vec<Violation>, now: Timestamp) -> Evaluation {
    // The violations that stand stay where they are: at 100k bindings they
    // are ~90,000, and a copy is fresh memory the kernel has to clear.
    let mut by: Vec<(Name, Timestamp)> = Vec::new();
    let excused: Vec<Violation> = raw
        .extract_if(.., |v| {
            let exception = index
                .exceptions_for(&v.subject)
                .filter(|e| e.policy == v.policy && e.covers(&v.namespace, &v.duties))
                .find_map(|e| {
                    let s = exception_rules::standing(index, e, now);
                    s.active().then(|| (e.name.clone(), s.until))
                });
            exception.map(|x| by.push(x)).is_some()
        })
        .collect();
    Evaluation {
        violations: raw,
        excused: excused
            .into_iter()
            .zip(by)
            .map(|(violation, (exception, expires_at))| Excused {
                violation,
                exception,
                expires_at,
            })
            .collect(),
    }
}

/// All violations of the state.
pub fn evaluate(index: &Index, now: Timestamp) -> Evaluation {
    evaluate_filtered(index, now, None, &Budget::UNLIMITED.start()).0
}

/// [`evaluate`] within `budget`: when it runs out, the violations of the
/// subjects judged so far and why it stopped. An incomplete evaluation must
/// not be read as the state's: subjects not judged may violate.
pub fn evaluate_within(
    index: &Index,
    now: Timestamp,
    budget: Budget,
) -> (Evaluation, Option<Exhausted>) {
    evaluate_filtered(index, now, None, &budget.start())
}

/// The violations of the state under one policy, within `meter`.
pub(crate) fn evaluate_policy(
    index: &Index,
    policy: &str,
    now: Timestamp,
    meter: &Meter,
) -> (Evaluation, Option<Exhausted>) {
    match index.policy_slot_of(policy) {
        Some(slot) => evaluate_filtered(index, now, Some(slot), meter),
        None => (Evaluation::default(), None),
    }
}

fn evaluate_filtered(
    index: &Index,
    now: Timestamp,
    only: Option<u32>,
    meter: &Meter,
) -> (Evaluation, Option<Exhausted>) {
    let mut whole = Evaluation::default();
    let stopped = evaluate_parts(
        index,
        now,
        (only, meter),
        (Explain::Paths, usize::MAX),
        |ev| whole = ev,
    );
    (whole, stopped)
}

/// [`evaluate_within`] a part at a time and without explanations (each
/// duty's `paths` is empty; what a violation is, and which exception
/// excuses it, is the same): the evaluation of each run of
/// `subjects_per_part` subjects goes to `part` once they are judged, so
/// that only one part's violations are held at once (all of them, with
/// their explanations: ~90,000 and over 200 MiB at 100k bindings). Finding
/// each duty's best path is most of the cost of judging a subject, and its
/// rule texts, kept for the whole walk, most of what the walk holds on to;
/// a count needs neither. The parts together hold what [`evaluate_within`]
/// gives, bare and in another order; the budget counts them together.
pub fn evaluate_bare_in_parts(
    index: &Index,
    now: Timestamp,
    budget: Budget,
    subjects_per_part: usize,
    part: impl FnMut(Evaluation),
) -> Option<Exhausted> {
    evaluate_parts(
        index,
        now,
        (None, &budget.start()),
        (Explain::Nothing, subjects_per_part),
        part,
    )
}

/// Every subject a policy (or only `only`) may govern, judged in walk
/// order within `meter`; the violations (explained or not) of each run of
/// `subjects_per_part` subjects, sorted and excused, go to `part` (nothing
/// when a run has none). The meter counts the parts together.
fn evaluate_parts(
    index: &Index,
    now: Timestamp,
    (only, meter): (Option<u32>, &Meter),
    (explain, subjects_per_part): (Explain, usize),
    mut part: impl FnMut(Evaluation),
) -> Option<Exhausted> {
    let shared = Shared::new();
    let mut raw = Vec::new();
    let mut stopped = None;
    let (mut earlier, mut judged, mut total, mut in_part) = (0, 0, 0, 0);
    let mut flush = |raw: &mut Vec<Violation>| {
        let mut this = std::mem::take(raw);
        sort(&mut this);
        part(excuse(index, this, now));
    };
    in_walk_order(index, only, &shared, |id| {
        total += 1;
        if stopped.is_some() {
            return;
        }
        if let Err(e) = meter.check(earlier + raw.len(), judged, 0) {
            stopped = Some(e);
            return;
        }
        judged += 1;
        raw.extend(judge(index, id, only, Some(&shared), explain).0);
        in_part += 1;
        if in_part >= subjects_per_part {
            earlier += raw.len();
            flush(&mut raw);
            in_part = 0;
        }
    });
    if stopped.is_none() {
        stopped = meter.check(earlier + raw.len(), judged, 0).err();
    }
    if !raw.is_empty() {
        flush(&mut raw);
    }
    // The subjects are counted as they are listed: known only now.
    if let Some(e) = &mut stopped {
        e.set_subjects(total);
    }
    stopped
}

/// Whether the policies (or only `only`) govern ServiceAccounts, and
/// whether they govern Users or Groups: which subjects an evaluation visits.
fn governed(index: &Index, only: Option<u32>) -> (bool, bool) {
    index
        .policies()
        .filter(|(s, _)| only.is_none_or(|o| o == *s))
        .fold((false, false), |(sas, others), (_, p)| {
            (
                sas || p.subjects.service_accounts,
                others || p.subjects.users || p.subjects.groups,
            )
        })
}

/// Calls `f` with every subject that a policy (or only `only`) may govern.
fn for_each_subject(index: &Index, only: Option<u32>, mut f: impl FnMut(&Identity)) {
    let (sas, others) = governed(index, only);
    if sas {
        for sa in index.service_accounts() {
            f(&sa);
        }
    }
    if others {
        for id in index.named_users_and_groups() {
            f(id);
        }
    }
}

/// [`for_each_subject`] for one evaluation judging with `shared`: the
/// ServiceAccounts come namespace by namespace, and what every
/// ServiceAccount of a namespace holds is dropped once they move on
/// ([`Shared::forget_namespaces`]). A subject mostly reaches its own
/// namespace's; keeping those of 5,000 namespaces for the whole walk was
/// most of what an evaluation held besides its violations.
fn in_walk_order<'a>(
    index: &'a Index,
    only: Option<u32>,
    shared: &Shared<'a>,
    mut f: impl FnMut(&Identity),
) {
    let mut last: Option<Name> = None;
    for_each_subject(index, only, |id| {
        let ns = match id {
            Identity::ServiceAccount { namespace, .. } => Some(namespace),
            _ => None,
        };
        if ns != last.as_ref() {
            shared.forget_namespaces();
            last = ns.cloned();
        }
        f(id);
    });
}

/// The subjects [`evaluate`] judges. Judging them in any grouping with
/// [`evaluate_subjects`] and joining the parts with [`Evaluation::join`]
/// gives what [`evaluate`] gives on the same state: a caller that must not
/// hold the state for a whole evaluation can judge it a slice at a time.
pub fn subjects(index: &Index) -> Vec<Identity> {
    let mut out = Vec::new();
    for_each_subject(index, None, |id| out.push(id.clone()));
    out
}

/// [`subjects`] in a form quicker to list on a large state: the namespaces
/// whose ServiceAccounts ([`Index::service_accounts_in`]) are judged, and the
/// other subjects.
#[derive(Debug, Default)]
pub struct SubjectList {
    pub namespaces: Vec<Name>,
    pub others: Vec<Identity>,
}

pub fn subject_list(index: &Index) -> SubjectList {
    let (sas, others) = governed(index, None);
    let mut list = SubjectList::default();
    if sas {
        list.namespaces = index.service_account_namespaces().cloned().collect();
    }
    if others {
        list.others = index.named_users_and_groups().cloned().collect();
    }
    list
}

impl Evaluation {
    /// Joins the evaluations of disjoint sets of subjects, in the order
    /// [`evaluate`] gives.
    pub fn join(parts: impl IntoIterator<Item = Evaluation>) -> Evaluation {
        let mut all = Evaluation::default();
        for p in parts {
            all.violations.extend(p.violations);
            all.excused.extend(p.excused);
        }
        // (policy, subject, namespace, duties) is unique within one subject's
        // violations, so the order does not depend on how the parts were cut.
        sort(&mut all.violations);
        all.excused
            .sort_by(|a, b| a.violation.tuple().cmp(&b.violation.tuple()));
        all
    }
}

/// Violations of the given subjects only.
pub fn evaluate_subjects<'a>(
    index: &Index,
    subjects: impl IntoIterator<Item = &'a Identity>,
    now: Timestamp,
) -> Evaluation {
    let shared = Shared::new();
    let mut raw: Vec<Violation> = subjects
        .into_iter()
        .flat_map(|s| subject_violations_shared(index, s, None, &shared))
        .collect();
    sort(&mut raw);
    excuse(index, raw, now)
}

pub(crate) fn sort(vs: &mut [Violation]) {
    vs.sort_by(|a, b| {
        (&a.policy, &a.subject, &a.namespace, &a.duties).cmp(&(
            &b.policy,
            &b.subject,
            &b.namespace,
            &b.duties,
        ))
    });
}

/// The identities whose holdings a binding subject reaches: the subject itself
/// and, for the groups the cluster assigns (R1.4), their known members.
pub fn affected_subjects(index: &Index, named: &Identity, out: &mut impl Extend<Identity>) {
    out.extend([named.clone()]);
    let Identity::Group(g) = named else { return };
    use crate::model::identity_groups::*;
    match &**g {
        ALL_AUTHENTICATED => {
            out.extend(index.service_accounts());
            out.extend(
                index
                    .named_users_and_groups()
                    .filter(|i| matches!(i, Identity::User(_)))
                    .cloned(),
            );
        }
        ALL_SERVICEACCOUNTS => out.extend(index.service_accounts()),
        g => {
            if let Some(ns) = g.strip_prefix(SERVICEACCOUNTS_OF) {
                out.extend(index.service_accounts_in(ns));
            }
        }
    }
}
