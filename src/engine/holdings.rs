//! What an identity holds, and through which path.
//!
//! Holdings are collected by walking a graph from the identity: it acts as
//! itself, as each group the cluster puts it in (R1.4), and, through the
//! escalation paths of R9.1 that a policy considers, as every identity it can
//! obtain the credentials or rights of — transitively, each identity visited
//! once (cycles are cut).
//!
//! Breadth first, so the path kept is a shortest one. Per identity, the roles
//! of the bindings that reach it give its holdings (the roles' grants) and its
//! powers (the roles' precomputed [`Derive`]s). Powers that need a partner —
//! `bind` with `create rolebindings`, `escalate` with writing roles — are
//! paired per identity, since one request is made by one identity; a role the
//! identity can bind to itself is visited like a bound one. Who acts as whom,
//! the other way round, is [`derive`](super::derive).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;

use fixedbitset::FixedBitSet;

use crate::engine::index::{
    Added, Covered, Derive, DirectPairs, Grant, Index, KeptBut, KeptSummary, NotKept, Power,
    RoleEntry, SlotBits, SummaryKey, Targets,
};
use crate::model::identity_groups::{ALL_AUTHENTICATED, ALL_SERVICEACCOUNTS, SERVICEACCOUNTS_OF};
use crate::model::{Binding, BindingKey, DerivedKind, DerivedSet, Identity, Name, Policy, RoleKey};

/// How the subject reaches the principal whose binding grants a permission.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Via {
    /// The binding names the subject itself.
    Direct,
    /// The binding names a group the subject is a member of.
    Group(Name),
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Via::Direct => Ok(()),
            Via::Group(g) => write!(f, "member of Group {g}"),
        }
    }
}

/// Where a holding ends: a rule of a role, or the last derived step itself
/// (a Pod mounting Secrets, escalating roles: no rule names the permission).
#[derive(Debug, Clone)]
pub enum End<'a> {
    Rule {
        /// `None` for a role the subject can bind to itself (RoleGrant).
        binding: Option<&'a BindingKey>,
        role: &'a RoleKey,
        grant: &'a Grant,
    },
    Derived,
}

/// One permission of one policy, held through one path.
#[derive(Debug, Clone)]
pub struct Held<'a> {
    pub permission: u32,
    /// `None` for cluster-wide holdings.
    pub namespace: Option<&'a Name>,
    pub via: Via,
    /// The derived steps before `end`, last first; `None` for a rule the
    /// subject holds itself.
    pub hops: Option<Rc<Hop<'a>>>,
    pub end: End<'a>,
    /// For a holding taken from a [`Shared`] summary: the subject's own hop
    /// that acts as every ServiceAccount, which runs as `root` before `hops`.
    pub graft: Option<Rc<Hop<'a>>>,
    /// The ServiceAccount a summary's path starts from.
    pub root: Option<Rc<Identity>>,
}

impl Held<'_> {
    /// How many derived steps the path takes.
    pub fn depth(&self) -> u32 {
        depth(&self.hops) + self.graft.as_ref().map_or(0, |g| g.depth)
    }

    /// Which path an explanation prefers: the shortest, then direct before
    /// group (then by group), own rules before aggregated ones, then by
    /// binding, rule and role. Two holdings rank equal only through the same rule of the same
    /// role and binding, so which one a walk finds first (a subject's own
    /// walk, or a shared summary's) does not change the path shown.
    pub fn rank(&self) -> Rank<'_> {
        match (&self.end, &self.hops) {
            (
                End::Rule {
                    binding,
                    grant,
                    role,
                },
                _,
            ) => (
                self.depth(),
                &self.via,
                grant.source.is_some(),
                *binding,
                grant.rule,
                Some(*role),
            ),
            // Granted by the last step itself: rank by the rule that opens it.
            (End::Derived, Some(hop)) => (
                self.depth(),
                &hop.via,
                hop.derive.source.is_some(),
                hop.binding,
                hop.derive.rule,
                Some(hop.role),
            ),
            (End::Derived, None) => (0, &Via::Direct, false, None, 0, None),
        }
    }
}

/// How a holding ranks among paths to the same permission (lower first).
pub type Rank<'x> = (
    u32,
    &'x Via,
    bool,
    Option<&'x BindingKey>,
    u32,
    Option<&'x RoleKey>,
);

/// Everything a subject holds, per policy slot.
#[derive(Debug, Default)]
pub struct Holdings<'a> {
    pub by_policy: BTreeMap<u32, Vec<Held<'a>>>,
    /// What the subject holds through a [`Shared`] summary, not copied.
    pub grafts: Vec<Graft<'a>>,
    /// On a passing state with a binding the change added
    /// ([`Shared::passing`]): the walk visited that binding itself, not
    /// only through summaries. Otherwise its own holdings are the same on
    /// the state before.
    pub visited_added: bool,
}

/// A summary's holdings of one policy, with the permissions they give per
/// namespace, so a subject that grafts it need not look at each holding.
/// A bare summary (kept across decisions) has the permissions alone.
#[derive(Debug)]
pub struct SlotSummary<'a> {
    pub held: Vec<Held<'a>>,
    pub bits: Arc<SlotBits>,
    /// Where `held` has something in each scope.
    pub by_scope: ByScope<'a>,
}

/// The subject's hop that acts as every ServiceAccount, and what they hold.
#[derive(Debug)]
pub struct Graft<'a> {
    pub summary: Rc<BTreeMap<u32, SlotSummary<'a>>>,
    /// On a passing state with a binding the change added: the summary on
    /// the state before it, when known.
    pub before: Option<Rc<BTreeMap<u32, SlotSummary<'a>>>>,
    pub hop: Rc<Hop<'a>>,
    /// Per policy slot, how many of the subject's own holdings came before
    /// the graft: ties between paths break in the order they were found.
    pub at: BTreeMap<u32, usize>,
    /// In a namespace's summary: the ServiceAccount whose walk grafted.
    root: Option<Rc<Identity>>,
}

impl<'a> Graft<'a> {
    /// A summary's holding as the subject holds it.
    pub fn held(&self, x: &Held<'a>) -> Held<'a> {
        let mut x = x.clone();
        x.graft = Some(self.hop.clone());
        x
    }
}

/// Where holdings are in a list, per scope: a violation in one namespace
/// looks only at the holdings there and cluster-wide, not at every
/// namespace's (a summary holds something in most of them).
#[derive(Debug, Default)]
pub struct ByScope<'n> {
    cluster: Vec<usize>,
    namespaces: FastMap<&'n Name, Vec<usize>>,
}

impl<'n> ByScope<'n> {
    pub fn of(held: &[Held<'n>]) -> Self {
        let mut s = ByScope::default();
        for (i, h) in held.iter().enumerate() {
            match h.namespace {
                None => s.cluster.push(i),
                Some(ns) => s.namespaces.entry(ns).or_default().push(i),
            }
        }
        s
    }

    /// The holdings of `held` in `scope` (`None`: all; `Some(None)`:
    /// cluster-wide; `Some(Some(ns))`: in ns or cluster-wide), in list order
    /// (ties between paths break in that order).
    pub(crate) fn within<'x, 'a>(
        &'x self,
        held: &'x [Held<'a>],
        scope: Option<Option<&Name>>,
    ) -> Within<'x, 'a> {
        let (all, a, b): (bool, &[usize], &[usize]) = match scope {
            None => (true, &[], &[]),
            Some(None) => (false, &self.cluster, &[]),
            Some(Some(ns)) => (
                false,
                &self.cluster,
                self.namespaces.get(ns).map_or(&[][..], Vec::as_slice),
            ),
        };
        Within {
            held,
            all: all.then_some(0),
            a,
            b,
        }
    }
}

/// [`ByScope::within`]: every holding in order, or two sorted lists of
/// positions merged (a violation asks this per graft and duty: no
/// allocation).
pub(crate) struct Within<'x, 'a> {
    held: &'x [Held<'a>],
    /// Every holding, from this position.
    all: Option<usize>,
    a: &'x [usize],
    b: &'x [usize],
}

impl<'x, 'a> Iterator for Within<'x, 'a> {
    type Item = &'x Held<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(i) = &mut self.all {
            let h = self.held.get(*i)?;
            *i += 1;
            return Some(h);
        }
        let k = match (self.a.first(), self.b.first()) {
            (Some(&x), Some(&y)) if x < y => {
                self.a = &self.a[1..];
                x
            }
            (_, Some(&y)) => {
                self.b = &self.b[1..];
                y
            }
            (Some(&x), None) => {
                self.a = &self.a[1..];
                x
            }
            (None, None) => return None,
        };
        self.held.get(k)
    }
}

/// The groups a cluster-wide impersonator of any ServiceAccount is in
/// (R1.4), as [`Walk::any_service_account`] reaches them: `covered`, only
/// those of namespaces without a ServiceAccount.
fn service_account_groups(index: &Index, covered: bool) -> Vec<Identity> {
    let mut groups: Vec<Identity> = index
        .service_account_groups()
        .filter(|g| {
            !covered
                || g.strip_prefix(SERVICEACCOUNTS_OF)
                    .is_none_or(|ns| index.service_accounts_in(ns).next().is_none())
        })
        .map(|g| Identity::Group(g.clone()))
        .collect();
    if !covered || index.service_accounts().next().is_none() {
        groups.insert(0, Identity::Group(Name::from(ALL_SERVICEACCOUNTS)));
    }
    groups
}

/// The principals an identity acts as without any derivation, with how it
/// reaches each.
pub(crate) fn principals(index: &Index, id: &Identity) -> Vec<(Identity, Via)> {
    let mut out = Vec::with_capacity(4);
    out.push((id.clone(), Via::Direct));
    for g in id.implicit_groups_of(|ns| index.named_service_account_group(ns).cloned()) {
        let name = g.name().clone();
        out.push((g, Via::Group(name)));
    }
    out
}

/// Collects what `subject` holds of every policy (or only of `only`). Policies
/// that consider the same escalation paths (R9.2) share one walk.
pub fn holdings<'a>(index: &'a Index, subject: &Identity, only: Option<u32>) -> Holdings<'a> {
    walk_all(index, subject, only, None, None)
}

/// What the bindings naming `principal` alone give (reached `via`), no
/// escalation path followed: what an identity holds that way is what each
/// principal it is ([`principals`]: itself and its groups) holds, which
/// members of a group share. Never more than [`holdings`] finds.
pub(crate) fn principal_holdings<'a>(
    index: &'a Index,
    principal: Identity,
    via: Via,
) -> Holdings<'a> {
    let mut h = Holdings::default();
    Walk::new(index, DerivedSet::NONE, None, &mut h, None)
        .visit_principals(vec![(principal, via)], None);
    h
}

/// [`principal_holdings`] as (policy slot, permission, namespace).
pub(crate) fn principal_pairs(index: &Index, principal: Identity, via: Via) -> DirectPairs {
    let h = principal_holdings(index, principal, via);
    DirectPairs(
        h.by_policy
            .iter()
            .flat_map(|(slot, xs)| {
                xs.iter()
                    .map(|x| (*slot, x.permission, x.namespace.cloned()))
            })
            .collect(),
    )
}

/// What any of `subjects` holds through the bindings that name it or its
/// groups alone, as [`principal_holdings`] of each principal would find together: the
/// groups they share (a namespace's ServiceAccounts share three) are walked
/// once.
pub fn direct_holdings_of_all<'a>(
    index: &'a Index,
    subjects: impl IntoIterator<Item = Identity>,
) -> Holdings<'a> {
    let mut seen = FastSet::default();
    let mut all = Vec::new();
    for s in subjects {
        for (p, via) in principals(index, &s) {
            if seen.insert(p.clone()) {
                all.push((p, via));
            }
        }
    }
    let mut h = Holdings::default();
    Walk::new(index, DerivedSet::NONE, None, &mut h, None).visit_principals(all, None);
    h
}

/// What every ServiceAccount of the cluster holds, computed once per
/// evaluation or decision and shared by every subject that acts as all of
/// them (a cluster-wide Pod creator, exec, token or impersonation grant):
/// without it each such subject walks the whole cluster. Kept per walk kind
/// (escalation paths, policies of interest), one best holding per (policy,
/// permission, namespace), its path relative to the ServiceAccount it
/// starts from.
#[derive(Default)]
pub struct Shared<'a> {
    /// The roles per namespace (`None`: ClusterRoles), in key order: what
    /// `bind` on all roles reaches, listed once instead of per holder.
    #[allow(clippy::type_complexity)]
    roles: std::cell::OnceCell<BTreeMap<Option<&'a Name>, Vec<&'a RoleEntry>>>,
    #[allow(clippy::type_complexity)]
    summaries: RefCell<
        Vec<(
            (DerivedSet, Option<Vec<u32>>),
            Rc<BTreeMap<u32, SlotSummary<'a>>>,
        )>,
    >,
    /// What every ServiceAccount of one namespace holds, per walk kind and
    /// namespace: a namespaced Pod creator (or exec, tokens of all) grafts
    /// it instead of walking the namespace and everyone it reaches.
    #[allow(clippy::type_complexity)]
    namespaces: RefCell<
        Vec<(
            (DerivedSet, Option<Vec<u32>>),
            FastMap<Name, Rc<NsSummary<'a>>>,
        )>,
    >,
    /// The rules of explanation steps as written for people, by address
    /// in the index (`violations::RuleTexts`), for every subject judged with
    /// this `Shared`: the same few rules explain the paths of thousands of
    /// subjects.
    pub(crate) rule_texts: RefCell<RuleTextCache>,
    /// The bindings of the groups every ServiceAccount, and every user, is
    /// in: a summary's walk visits 50,000 identities in them.
    group_bindings: [std::cell::OnceCell<&'a [Arc<Binding>]>; 2],
    /// The role of each binding a walk visited, by the binding's address in
    /// the index: a ServiceAccount's bindings are visited by the cluster's
    /// summary, its namespace's and its own walk, and looking a role up by
    /// name costs more than the rest of the visit.
    roles_of: RefCell<FastMap<usize, Option<&'a RoleEntry>>>,
    /// [`service_account_groups`], not covered and covered: the same for
    /// every walk of the state, and listing them looks up every namespace.
    sa_groups: [std::cell::OnceCell<Rc<Vec<Identity>>>; 2],
    /// Walks with this `Shared` stop at this time (a decision's budget):
    /// their holdings, and the summaries made meanwhile, are then partial
    /// and `interrupted` says so.
    deadline: Option<std::time::Instant>,
    interrupted: std::cell::Cell<bool>,
    /// For judging without explanations: a namespace's summary is its
    /// permissions alone, kept in the index across decisions.
    bare: bool,
    /// The state walked lasts one decision (a change applied to be
    /// judged): a summary is kept only when none is for its namespace.
    passing: bool,
    /// On a passing state: the binding the change added, when it named
    /// nobody new (see [`Index::kept_summary_but`]).
    added: Option<Added<'a>>,
}

/// Rule texts by (role, source, rule, permission focused on), each by its
/// address in the index: equal while the index is borrowed.
pub(crate) type RuleTextCache = FastMap<(usize, usize, u32, usize), std::sync::Arc<str>>;

/// What every ServiceAccount of one namespace holds (a [`Shared`] summary
/// of one namespace), and the cluster-wide summary its walk grafted, if any.
pub struct NsSummary<'a> {
    slots: Rc<BTreeMap<u32, SlotSummary<'a>>>,
    /// On a passing state with a binding the change added: the bare
    /// summary of the state before it, when known.
    before: Option<Rc<BTreeMap<u32, SlotSummary<'a>>>>,
    nested: Option<Nested<'a>>,
}

/// A cluster-wide graft taken inside a namespace's summary: the hops from
/// the namespace's ServiceAccount `root` to the step that acts as every
/// ServiceAccount.
struct Nested<'a> {
    hop: Rc<Hop<'a>>,
    root: Rc<Identity>,
    summary: Rc<BTreeMap<u32, SlotSummary<'a>>>,
}

impl<'a> Shared<'a> {
    pub fn new() -> Self {
        Self::default()
    }

    /// A `Shared` whose walks stop at `deadline`: one subject's walk (every
    /// ServiceAccount acting as every other one) can take seconds.
    pub(crate) fn until(deadline: Option<std::time::Instant>) -> Self {
        Shared {
            deadline,
            ..Self::default()
        }
    }

    /// [`until`](Self::until), for walks whose holdings are counted, never
    /// explained: the namespaces' summaries have no paths, and are kept in
    /// the index for the next decision.
    pub(crate) fn bare_until(deadline: Option<std::time::Instant>) -> Self {
        Shared {
            deadline,
            bare: true,
            ..Self::default()
        }
    }

    /// [`bare_until`](Self::bare_until) on a state that lasts one decision,
    /// the state kept plus `added` when it is a binding that names nobody
    /// new.
    pub(crate) fn passing(self, added: Option<Added<'a>>) -> Self {
        Shared {
            passing: true,
            added,
            ..self
        }
    }

    /// Whether this `Shared`'s summaries lack their paths.
    pub(crate) fn is_bare(&self) -> bool {
        self.bare
    }

    /// Whether a walk stopped at the deadline: what was found since, and
    /// every summary kept, may be partial.
    pub(crate) fn interrupted(&self) -> bool {
        self.interrupted.get()
    }

    fn out_of_time(&self) -> bool {
        if self.interrupted.get() {
            return true;
        }
        let late = self
            .deadline
            .is_some_and(|d| std::time::Instant::now() >= d);
        self.interrupted.set(late);
        late
    }

    /// Drops what every ServiceAccount of each namespace holds: a walk
    /// over the subjects in namespace order needs one namespace's at a time
    /// (mostly), and keeping them all for the whole cluster is most of what
    /// an evaluation holds. Later walks compute again what they need.
    pub(crate) fn forget_namespaces(&self) {
        self.namespaces.borrow_mut().clear();
    }

    fn roles(&self, index: &'a Index) -> &BTreeMap<Option<&'a Name>, Vec<&'a RoleEntry>> {
        self.roles.get_or_init(|| {
            let mut m: BTreeMap<Option<&'a Name>, Vec<&'a RoleEntry>> = BTreeMap::new();
            for e in index.roles() {
                m.entry(e.role.key.namespace.as_ref()).or_default().push(e);
            }
            for v in m.values_mut() {
                v.sort_by(|a, b| a.role.key.cmp(&b.role.key));
            }
            m
        })
    }

    fn summary(
        &self,
        index: &'a Index,
        set: DerivedSet,
        slots: Option<&[u32]>,
    ) -> Rc<BTreeMap<u32, SlotSummary<'a>>> {
        if let Some((_, s)) = self
            .summaries
            .borrow()
            .iter()
            .find(|(k, _)| is_key(k, set, slots))
        {
            return s.clone();
        }
        let key = (set, slots.map(<[u32]>::to_vec));
        let mut h = Holdings::default();
        let mut w = Walk::new(index, set, slots, &mut h, Some(self));
        // Inside the summary every ServiceAccount is reached already.
        w.all_sas = true;
        w.reduce = Some(FastMap::default());
        let level: Vec<Identity> = index.service_accounts().collect();
        w.run_roots(level);
        let by_slot = summarize(index, h.by_policy, self.bare);
        let s = Rc::new(by_slot);
        self.summaries.borrow_mut().push((key, s.clone()));
        s
    }

    /// What every ServiceAccount of `ns` holds, transitively. Its walk
    /// grafts the cluster-wide summary but walks other namespaces itself,
    /// so no summary waits on another (acts-as cycles between namespaces
    /// need no special care).
    fn ns_summary(
        &self,
        index: &'a Index,
        set: DerivedSet,
        slots: Option<&[u32]>,
        ns: &Name,
    ) -> Rc<NsSummary<'a>> {
        if let Some((_, m)) = self
            .namespaces
            .borrow()
            .iter()
            .find(|(k, _)| is_key(k, set, slots))
            && let Some(s) = m.get(ns)
        {
            return s.clone();
        }
        let key = (set, slots.map(<[u32]>::to_vec));
        let kept_key: Option<SummaryKey> = self.bare.then(|| (ns.clone(), key.0, key.1.clone()));
        // The binding the change added, when nothing is kept for the state
        // before it: the walk leaves it out.
        let mut leave_out = None;
        // The summary on the state before the binding, when known.
        let mut before = None;
        let kept = kept_key.as_ref().and_then(|k| {
            // On a passing state, what is kept for the state before is read
            // first: a summary that reached the binding's subjects fails
            // the check on the state after only at its end, and would be
            // read twice.
            if let Some(added) = self.added {
                match index.kept_summary_but(k, added) {
                    Ok(KeptBut { before: b, after }) => {
                        before = Some(b);
                        return Some(after);
                    }
                    Err(NotKept::Beyond(b)) => {
                        before = Some(b);
                        return None;
                    }
                    Err(NotKept::Missing) => {}
                }
            }
            if let Some(s) = index.kept_summary(k) {
                // A walk that reached none of its subjects never read it:
                // the same on the state before.
                if self.added.is_some_and(|a| !s.reached_by(a.binding)) {
                    before = Some(s.slots.clone());
                }
                return Some(s.slots.clone());
            }
            leave_out = self.added;
            None
        });
        let s = match kept {
            Some(k) => {
                let slots = Rc::new(bare_slots(k));
                let before = before.map(|b| bare_slots_or(b, &slots));
                Rc::new(NsSummary {
                    slots,
                    before,
                    nested: None,
                })
            }
            None => {
                let key = kept_key.as_ref();
                self.walk_ns_summary(index, (set, slots, ns), key, leave_out, before)
            }
        };
        let mut all = self.namespaces.borrow_mut();
        match all.iter_mut().find(|(k, _)| *k == key) {
            Some((_, m)) => {
                m.insert(ns.clone(), s.clone());
            }
            None => {
                let mut m = FastMap::default();
                m.insert(ns.clone(), s.clone());
                all.push((key, m));
            }
        }
        s
    }

    /// Walks what every ServiceAccount of `ns` holds, and keeps it under
    /// `kept_key` (bare summaries). On a passing state whose change added
    /// a binding (`leave_out`) that names nobody new, the walk leaves that
    /// binding out: it finds the summary of the state before, which lasts
    /// and is kept, and what the binding adds is added after
    /// ([`Index::with_added`]), or, when it reaches beyond what the walk
    /// reached, the state after is walked again with it.
    /// `before`: the summary of the state before the added binding, when
    /// known already.
    fn walk_ns_summary(
        &self,
        index: &'a Index,
        (set, slots, ns): (DerivedSet, Option<&[u32]>, &Name),
        kept_key: Option<&SummaryKey>,
        leave_out: Option<Added<'a>>,
        before: Option<BTreeMap<u32, Arc<SlotBits>>>,
    ) -> Rc<NsSummary<'a>> {
        // The walk reads the bindings naming whom it reaches, roles,
        // ServiceAccounts and policies, none of which the binding changes
        // but the first: without it, it is the walk of the state before,
        // even when the binding renewed the epoch (an escalation binding;
        // what renews the epoch besides is read by who-acts-as lookups,
        // not by walks).
        let leave_out = leave_out.filter(|_| kept_key.is_some());
        let without = leave_out.map(|a| a.binding);
        let keeps =
            kept_key.is_some_and(|k| without.is_some() || index.keeps_summary(k, self.passing));
        let mut h = Holdings::default();
        let mut w = Walk::new(index, set, slots, &mut h, Some(self));
        w.reduce = Some(FastMap::default());
        w.roots_of = Some(ns.clone());
        w.without = without;
        // Only a summary to be kept lists what it read.
        w.reads = keeps.then(Vec::new);
        w.covered = keeps.then(|| Covered {
            // Every ServiceAccount of the namespace is a root.
            every: std::iter::once(ns.clone()).collect(),
            mounts: Default::default(),
        });
        w.run_roots(index.service_accounts_in(ns).collect());
        let reads = w.reads.take().unwrap_or_default();
        let covered = w.covered.take().unwrap_or_default();
        // The walk stops at its first cluster-wide graft (`all_sas`).
        let nested = h.grafts.into_iter().next().and_then(|g| {
            Some(Nested {
                root: g.root?,
                hop: g.hop,
                summary: g.summary,
            })
        });
        let slots_found = summarize(index, h.by_policy, self.bare);
        let bits = |found: &BTreeMap<u32, SlotSummary<'a>>| -> BTreeMap<u32, Arc<SlotBits>> {
            found
                .iter()
                .map(|(slot, s)| (*slot, s.bits.clone()))
                .collect()
        };
        // What the left-out binding adds, when it adds only what the walk
        // reached; `None` when the walk must be taken again with it.
        let with_it = match (without, kept_key) {
            (Some(b), Some(k)) if reads.iter().any(|id| b.subjects.contains(id)) => {
                Some(index.with_added(k, bits(&slots_found), &covered, b))
            }
            _ => None,
        };
        // A summary that grafts the cluster's reads every binding (not
        // kept), and one cut short holds less than it should.
        if let (true, Some(k), None, false) = (keeps, kept_key, &nested, self.interrupted()) {
            let epoch = leave_out.map_or(index.epoch(), |a| a.epoch_before);
            let kept = KeptSummary::new(index, epoch, bits(&slots_found), &reads, covered, without);
            index.keep_summary(k, kept, self.passing && without.is_none());
        }
        // Walked without the binding: this is the state before's.
        let before = match leave_out {
            Some(_) => Some(bits(&slots_found)),
            None => before,
        };
        let (slots_found, before) = match with_it {
            Some(Some(b)) => (bare_slots(b), before),
            Some(None) => {
                return self.walk_ns_summary(index, (set, slots, ns), kept_key, None, before);
            }
            None => (slots_found, before),
        };
        let slots = Rc::new(slots_found);
        // A nested cluster-wide graft is of the state after alone.
        let before = before
            .filter(|_| self.added.is_some() && nested.is_none())
            .map(|b| bare_slots_or(b, &slots));
        Rc::new(NsSummary {
            slots,
            before,
            nested,
        })
    }
}

/// [`bare_slots`] of `before`, or `after` itself when they are the same
/// permissions.
fn bare_slots_or<'a>(
    before: BTreeMap<u32, Arc<SlotBits>>,
    after: &Rc<BTreeMap<u32, SlotSummary<'a>>>,
) -> Rc<BTreeMap<u32, SlotSummary<'a>>> {
    let same = before.len() == after.len()
        && before
            .iter()
            .zip(after.iter())
            .all(|((a, x), (b, y))| a == b && Arc::ptr_eq(x, &y.bits));
    if same {
        after.clone()
    } else {
        Rc::new(bare_slots(before))
    }
}

/// A bare summary's slots: the permissions, no paths.
fn bare_slots<'a>(bits: BTreeMap<u32, Arc<SlotBits>>) -> BTreeMap<u32, SlotSummary<'a>> {
    bits.into_iter()
        .map(|(slot, bits)| {
            let s = SlotSummary {
                held: Vec::new(),
                bits,
                by_scope: ByScope::default(),
            };
            (slot, s)
        })
        .collect()
}

#[cfg(test)]
impl<'a> Shared<'a> {
    /// What a namespace's summary holds of the policies `slots`: (permission,
    /// namespace, depth from the ServiceAccount the path starts from, that
    /// ServiceAccount), through its nested cluster-wide graft too.
    #[allow(clippy::type_complexity)]
    pub(crate) fn namespace_depths(
        &self,
        index: &'a Index,
        set: DerivedSet,
        slots: &[u32],
        ns: &Name,
    ) -> Vec<(u32, Option<Name>, u32, Option<Identity>)> {
        let s = self.ns_summary(index, set, Some(slots), ns);
        let mut out = Vec::new();
        for sum in s.slots.values() {
            for x in &sum.held {
                let root = x.root.as_deref().cloned();
                out.push((x.permission, x.namespace.cloned(), x.depth(), root));
            }
        }
        if let Some(n) = &s.nested {
            for sum in n.summary.values() {
                for x in &sum.held {
                    let root = Some((*n.root).clone());
                    out.push((
                        x.permission,
                        x.namespace.cloned(),
                        n.hop.depth + x.depth(),
                        root,
                    ));
                }
            }
        }
        out
    }
}

/// A summary walk's holdings (already one best per (policy, permission,
/// namespace), in the order first found) with their permissions per scope.
/// `bare`: the permissions alone, no paths.
fn summarize<'a>(
    index: &Index,
    by_policy: BTreeMap<u32, Vec<Held<'a>>>,
    bare: bool,
) -> BTreeMap<u32, SlotSummary<'a>> {
    let mut by_slot: BTreeMap<u32, SlotSummary<'a>> = BTreeMap::new();
    for (slot, held) in by_policy {
        let n = index.policy_slot(slot).map_or(0, |p| p.permissions.len());
        let mut bits = SlotBits::new(n);
        for x in &held {
            let p = x.permission as usize;
            if p < n {
                bits.insert(p, x.namespace);
            }
        }
        let held = if bare { Vec::new() } else { held };
        let by_scope = ByScope::of(&held);
        by_slot.insert(
            slot,
            SlotSummary {
                held,
                bits: Arc::new(bits),
                by_scope,
            },
        );
    }
    by_slot
}

/// `chain` (hops from a namespace's ServiceAccount) put after `base`, a
/// subject's hop that acts as every ServiceAccount of that namespace, which
/// runs as `root`.
fn rebase<'a>(chain: &Hop<'a>, base: &Hop<'a>, root: &Identity) -> Rc<Hop<'a>> {
    let mut prev = Rc::new(Hop {
        prev: base.prev.clone(),
        depth: base.depth,
        via: base.via.clone(),
        binding: base.binding,
        role: base.role,
        derive: base.derive,
        reach: Reach::ActsAs(root.clone()),
    });
    for h in chain.chain() {
        prev = Rc::new(Hop {
            depth: prev.depth + 1,
            prev: Some(prev),
            via: h.via.clone(),
            binding: h.binding,
            role: h.role,
            derive: h.derive,
            reach: h.reach.clone(),
        });
    }
    prev
}

/// [`holdings`], sharing what every ServiceAccount holds through `shared`.
pub fn holdings_shared<'a>(
    index: &'a Index,
    subject: &Identity,
    only: Option<u32>,
    shared: &Shared<'a>,
) -> Holdings<'a> {
    walk_all(index, subject, only, Some(shared), None)
}

/// [`holdings_shared`] for judging `subject` under the policies `governed`
/// (slots): a walk stops after the subject's own bindings when they alone
/// give it every duty of each of those policies cluster-wide
/// ([`saturates`]). What it found then is all a violation can show: every
/// duty, each through a path with no derived step, shorter than any other.
/// The holders of cluster-admin are so; each of their walks otherwise binds
/// every role of the cluster and impersonates the others.
pub(crate) fn holdings_judged<'a>(
    index: &'a Index,
    subject: &Identity,
    only: Option<u32>,
    shared: &Shared<'a>,
    governed: &[u32],
) -> Holdings<'a> {
    walk_all(index, subject, only, Some(shared), Some(governed))
}

/// Whether `held` (one policy's holdings) gives every duty of `policy`
/// cluster-wide through paths with no derived step, more duties than it
/// allows.
pub(crate) fn saturates(policy: &Policy, held: &[Held<'_>]) -> bool {
    let n = policy.permissions.len();
    let mut cluster = FixedBitSet::with_capacity(n);
    for x in held {
        if x.namespace.is_none() && x.hops.is_none() && x.graft.is_none() {
            cluster.insert(x.permission as usize);
        }
    }
    policy.duties.len() > policy.max_duties
        && policy
            .duties
            .iter()
            .all(|d| d.held(|p| cluster.contains(p)))
}

fn walk_all<'a>(
    index: &'a Index,
    subject: &Identity,
    only: Option<u32>,
    shared: Option<&Shared<'a>>,
    governed: Option<&[u32]>,
) -> Holdings<'a> {
    let mut groups: Vec<(DerivedSet, Vec<u32>)> = Vec::new();
    for (slot, p) in index.policies() {
        if only.is_some_and(|o| o != slot) {
            continue;
        }
        match groups.iter_mut().find(|(set, _)| *set == p.derived) {
            Some((_, slots)) => slots.push(slot),
            None => groups.push((p.derived, vec![slot])),
        }
    }
    let mut h = Holdings::default();
    let single = groups.len() == 1;
    for (set, slots) in &groups {
        // With one group every policy of interest is in it: skip the filter.
        let filter = (!single || only.is_some()).then_some(slots.as_slice());
        let mut w = Walk::new(index, *set, filter, &mut h, shared);
        w.saturate = governed.map(|g| g.iter().copied().filter(|s| slots.contains(s)).collect());
        w.run(subject);
    }
    h
}

const MASTERS: &str = "system:masters";

/// Whether `key` is the one of a summary for walk kind `set` and policies
/// `slots`: compared without building it, as every subject's walk that
/// grafts a summary asks and all but the first find it.
fn is_key(key: &(DerivedSet, Option<Vec<u32>>), set: DerivedSet, slots: Option<&[u32]>) -> bool {
    key.0 == set && key.1.as_deref() == slots
}

/// How many holdings a subject's walk makes room for at once.
const HOLDINGS_KEPT: usize = 32;

/// What a derived step reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// Runs as, mints a token of, or impersonates the identity.
    ActsAs(Identity),
    /// A Pod's volumes: `get` Secrets and ConfigMaps in the namespace (`None`:
    /// in every namespace).
    Mounts(Option<Name>),
    /// Binds the role in the namespace (`None`: cluster-wide).
    Binds(RoleKey, Option<Name>),
    /// Every duty in the namespace (`None`: everywhere): escalating roles, or
    /// impersonating any group or `system:masters`.
    Everything(Option<Name>),
}

/// One derived step: the rule that opens it, and what it reaches.
#[derive(Debug)]
pub struct Hop<'a> {
    pub prev: Option<Rc<Hop<'a>>>,
    /// Number of hops up to and including this one.
    pub depth: u32,
    pub via: Via,
    /// `None` when the rule's role is itself one the subject can bind.
    pub binding: Option<&'a BindingKey>,
    pub role: &'a RoleKey,
    pub derive: &'a Derive,
    pub reach: Reach,
}

impl Hop<'_> {
    /// The hops from the subject to this one, first first.
    pub fn chain(&self) -> Vec<&Self> {
        let mut out = vec![self];
        let mut cur = self.prev.as_deref();
        while let Some(h) = cur {
            out.push(h);
            cur = h.prev.as_deref();
        }
        out.reverse();
        out
    }
}

/// The words of a derived step, after `⇒`.
pub struct ReachText<'h>(pub DerivedKind, pub &'h Reach);

impl fmt::Display for ReachText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Written in pieces, no string made on the way: every derived step
        // of every explanation path is written here.
        fn scope(f: &mut fmt::Formatter<'_>, ns: &Option<Name>) -> fmt::Result {
            match ns {
                Some(ns) => {
                    f.write_str("in ")?;
                    f.write_str(ns)
                }
                None => f.write_str("cluster-wide"),
            }
        }
        fn who(f: &mut fmt::Formatter<'_>, id: &Identity) -> fmt::Result {
            match id {
                Identity::ServiceAccount { namespace, name } => {
                    f.write_str("ServiceAccount ")?;
                    f.write_str(namespace)?;
                    f.write_str("/")?;
                    f.write_str(name)
                }
                Identity::User(n) => {
                    f.write_str("User ")?;
                    f.write_str(n)
                }
                Identity::Group(n) => {
                    f.write_str("Group ")?;
                    f.write_str(n)
                }
            }
        }
        match (self.0, self.1) {
            (DerivedKind::WorkloadCreation | DerivedKind::PodExec, Reach::ActsAs(id)) => {
                f.write_str("runs as ")?;
                who(f, id)
            }
            (DerivedKind::TokenRequest, Reach::ActsAs(id)) => {
                f.write_str("mints a token of ")?;
                who(f, id)
            }
            (_, Reach::ActsAs(id)) => {
                f.write_str("impersonates ")?;
                who(f, id)
            }
            (_, Reach::Mounts(ns)) => {
                f.write_str("mounts Secrets and ConfigMaps ")?;
                match ns {
                    Some(ns) => {
                        f.write_str("of ")?;
                        f.write_str(ns)
                    }
                    None => f.write_str("of every namespace"),
                }
            }
            (_, Reach::Binds(role, ns)) => {
                f.write_str("binds ")?;
                fmt::Display::fmt(role, f)?;
                f.write_str(" ")?;
                scope(f, ns)
            }
            (DerivedKind::Impersonation, Reach::Everything(_)) => {
                f.write_str("impersonates any group (system:masters): every duty")
            }
            (_, Reach::Everything(ns)) => {
                f.write_str("escalates roles: every duty ")?;
                scope(f, ns)
            }
        }
    }
}

/// A role reached by the identity being visited, in a scope.
#[derive(Clone)]
struct Item<'a> {
    via: Via,
    binding: Option<&'a BindingKey>,
    role: &'a RoleKey,
    entry: &'a RoleEntry,
    scope: Option<&'a Name>,
    chain: Option<Rc<Hop<'a>>>,
    /// A role this walk bound in this scope before, no deeper: what it
    /// grants and whom it acts as were found then (ties keep the first
    /// found), only its RoleGrant halves can pair anew with this identity's.
    repeat: bool,
}

/// Whether a power is a RoleGrant half, paired per identity.
fn pairs(d: &Derive) -> bool {
    matches!(
        d.power,
        Power::Bind { .. }
            | Power::Escalate { .. }
            | Power::CreateRoleBindings
            | Power::CreateClusterRoleBindings
            | Power::WriteRoles { .. }
    )
}

/// A paired power's half, kept until its partner is known.
struct Half<'a> {
    item: Item<'a>,
    derive: &'a Derive,
}

/// The halves of RoleGrant one identity holds.
#[derive(Default)]
struct Caps<'a> {
    bind: Vec<Half<'a>>,
    escalate: Vec<Half<'a>>,
    create_rb: Vec<Option<&'a Name>>,
    create_crb: bool,
    write_roles: Vec<Option<&'a Name>>,
    write_cluster_roles: bool,
}

/// What a visit's RoleGrant pairing has done: the halves are only ever
/// added to, so a pairing already made gives nothing new.
#[derive(Default)]
#[allow(clippy::type_complexity)]
struct Paired<'a> {
    /// The sizes of [`Caps`] at the last pairing.
    state: Option<(usize, usize, usize, bool, usize, bool)>,
    /// (bind half, namespace bound in, which roles) already paired.
    done: HashSet<(usize, Option<&'a Name>, Option<Option<&'a Name>>)>,
}

impl Caps<'_> {
    fn state(&self) -> (usize, usize, usize, bool, usize, bool) {
        (
            self.bind.len(),
            self.escalate.len(),
            self.create_rb.len(),
            self.create_crb,
            self.write_roles.len(),
            self.write_cluster_roles,
        )
    }

    /// Whether `create` on rolebindings is held in `ns`.
    fn rb_in(&self, ns: Option<&Name>) -> bool {
        self.create_rb.iter().any(|s| s.is_none() || *s == ns)
    }

    fn roles_in(&self, ns: Option<&Name>) -> bool {
        self.write_roles.iter().any(|s| s.is_none() || *s == ns)
    }
}

pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
pub(crate) use super::index::{FastSet, IdSet};

/// An identity reached, its path, and the ServiceAccount a summary's path
/// starts from.
type Reached<'a> = (Identity, Option<Rc<Hop<'a>>>, Option<Rc<Identity>>);

/// The number of derived steps of a path ending in `chain`.
fn depth(chain: &Option<Rc<Hop<'_>>>) -> u32 {
    chain.as_ref().map_or(0, |h| h.depth)
}

struct Walk<'a, 'h> {
    index: &'a Index,
    set: DerivedSet,
    slots: Option<&'h [u32]>,
    out: &'h mut Holdings<'a>,
    seen: FastSet<Identity>,
    /// The identities reached by the level being visited, for the next,
    /// with the ServiceAccount their path starts from in a summary.
    next: Vec<Reached<'a>>,
    shared: Option<&'h Shared<'a>>,
    /// Every ServiceAccount is reached already (through `shared`): like
    /// `seen` for all of them, without listing them.
    all_sas: bool,
    /// The root of the identity being visited (summaries only).
    root: Option<Rc<Identity>>,
    /// (slot, permission) that a Pod's volumes give, of every policy
    /// ([`Index::mount_pairs`]), read when first needed.
    mounts: Option<Arc<Vec<(u32, u32)>>>,
    /// In a summary's walk: where the best holding per (policy, permission,
    /// namespace) is in `out`, so only the best is kept (the first found
    /// among equals), not every ServiceAccount's.
    #[allow(clippy::type_complexity)]
    reduce: Option<FastMap<(u32, u32, Option<&'a Name>), usize>>,
    /// With `reduce`: a better holding is appended (the worse one stays,
    /// never chosen) instead of replacing it in place, so the list keeps the
    /// order an unreduced walk finds them in (a subject's own holdings).
    append_better: bool,
    /// A subject's walk (not a summary's) with `shared`: the namespaces whose
    /// summary it grafted, whose ServiceAccounts it reaches already.
    grafted_ns: Option<FastSet<&'a Name>>,
    /// With `shared`: the depth at which this walk first paired each
    /// (bind power, scope, roles) and bound each (role, scope), so an
    /// identity reached later that can bind the same roles (every holder of
    /// cluster-admin impersonating the others) does not redo it.
    #[allow(clippy::type_complexity)]
    repeats: Option<(
        FastMap<(usize, Option<&'a Name>, Option<Option<&'a Name>>), u32>,
        FastMap<(&'a RoleKey, Option<&'a Name>), u32>,
    )>,
    /// The policies (slots) the subject is judged under: once its own
    /// bindings are visited, if they [`saturate`](saturates) each, the walk
    /// stops (taken at the first visit).
    saturate: Option<Vec<u32>>,
    /// In a namespace's summary: that namespace, whose ServiceAccounts are
    /// all roots (in `seen`).
    roots_of: Option<Name>,
    /// [`Walk::any_service_account`] was done, with this `covered`: its
    /// groups are in `seen` already. Done again for every identity holding
    /// the power (each of 50,000 ServiceAccounts once `edit` is bound to all
    /// of them), listing the groups took minutes for nothing.
    any_sas_done: Option<bool>,
    /// The scopes whose missing ServiceAccounts (impersonated by all) were
    /// reached already: listing them again reaches nobody new.
    ghosts_done: HashSet<Option<&'a Name>>,
    /// In a summary's walk to be kept: every identity whose bindings it
    /// read ([`KeptSummary`] checks them again).
    reads: Option<Vec<Identity>>,
    /// A binding the walk leaves out (see [`Shared::walk_ns_summary`]).
    without: Option<&'a Binding>,
    /// The binding the change added, on a passing state
    /// ([`Holdings::visited_added`]).
    added: Option<&'a Binding>,
    /// In a summary's walk to be kept: where it reached every
    /// ServiceAccount of a namespace, and mounted its Secrets.
    covered: Option<Covered>,
}

impl<'a, 'h> Walk<'a, 'h> {
    fn new(
        index: &'a Index,
        set: DerivedSet,
        slots: Option<&'h [u32]>,
        out: &'h mut Holdings<'a>,
        shared: Option<&'h Shared<'a>>,
    ) -> Self {
        Walk {
            index,
            set,
            slots,
            out,
            seen: FastSet::default(),
            next: Vec::new(),
            mounts: None,
            shared,
            all_sas: false,
            root: None,
            reduce: None,
            append_better: false,
            grafted_ns: None,
            repeats: shared.map(|_| Default::default()),
            saturate: None,
            roots_of: None,
            any_sas_done: None,
            ghosts_done: HashSet::new(),
            reads: None,
            without: None,
            added: shared.and_then(|s| s.added).map(|a| a.binding),
            covered: None,
        }
    }

    /// The walk of a [`Shared`] summary: from every ServiceAccount it
    /// covers at once, each the root of the paths through it.
    fn run_roots(&mut self, roots: Vec<Identity>) {
        let mut level: Vec<_> = roots
            .into_iter()
            .map(|s| {
                let r = Rc::new(s.clone());
                (s, None, Some(r))
            })
            .collect();
        level.sort_by(|a, b| a.0.cmp(&b.0));
        for (s, _, _) in &level {
            self.seen.insert(s.clone());
        }
        self.levels(level);
    }

    fn levels(&mut self, mut level: Vec<Reached<'a>>) {
        // Level by level, each in identity order: the path kept for an
        // identity does not depend on the order the index keeps things in.
        while !level.is_empty() {
            for (id, chain, root) in level {
                if self.shared.is_some_and(Shared::out_of_time) {
                    self.next.clear();
                    return;
                }
                self.root = root;
                self.visit(&id, chain);
            }
            level = std::mem::take(&mut self.next);
            // Shallowest first: a RoleGrant pairing adds a step without a new
            // identity, so one level holds paths of several depths, and the
            // first to reach an identity keeps its path.
            level.sort_by(|a, b| depth(&a.1).cmp(&depth(&b.1)).then_with(|| a.0.cmp(&b.0)));
        }
    }

    fn wanted(&self, slot: u32) -> bool {
        self.slots.is_none_or(|s| s.contains(&slot))
    }

    fn run(mut self, subject: &Identity) {
        if self.set.is_empty() {
            self.visit(subject, None);
            return;
        }
        self.seen.insert(subject.clone());
        if self.shared.is_some() {
            self.grafted_ns = Some(FastSet::default());
            // Only the best holding per (policy, permission, namespace) can
            // be shown or counted. Sized for a judged subject's few dozen
            // holdings: growing from empty was a third of keeping them.
            self.reduce = Some(FastMap::with_capacity_and_hasher(
                HOLDINGS_KEPT,
                Default::default(),
            ));
            self.append_better = true;
        }
        self.levels(vec![(subject.clone(), None, None)]);
    }

    fn visit(&mut self, id: &Identity, chain: Option<Rc<Hop<'a>>>) {
        self.visit_principals(principals(self.index, id), chain);
    }

    /// [`visit`](Self::visit) of an identity that is these principals.
    fn visit_principals(&mut self, principals: Vec<(Identity, Via)>, chain: Option<Rc<Hop<'a>>>) {
        let index = self.index;
        let mut work: Vec<Item<'a>> = Vec::new();
        for (principal, via) in principals {
            if let Some(r) = &mut self.reads {
                r.push(principal.clone());
            }
            for binding in self.bindings_naming(&principal) {
                if self.without.is_some_and(|b| std::ptr::eq(b, &**binding)) {
                    continue;
                }
                if self.added.is_some_and(|b| std::ptr::eq(b, &**binding)) {
                    self.out.visited_added = true;
                }
                // R2.3: a binding to a missing role grants nothing.
                let Some(entry) = self.role_of(binding) else {
                    continue;
                };
                work.push(Item {
                    via: via.clone(),
                    binding: Some(&binding.key),
                    role: &binding.role,
                    entry,
                    scope: binding.key.namespace.as_ref(),
                    chain: chain.clone(),
                    repeat: false,
                });
            }
        }
        // Popped from the end: the first binding in key order goes first.
        work.sort_by(|a, b| b.binding.cmp(&a.binding));
        let mut caps = Caps::default();
        let mut bound: FastSet<(&'a RoleKey, Option<&'a Name>)> = FastSet::default();
        let mut everything: HashSet<Option<Name>> = HashSet::new();
        let mut paired = Paired::default();
        let mut saturate = self.saturate.take();
        loop {
            while let Some(item) = work.pop() {
                self.role(&item, &mut caps);
            }
            // Only the subject's own bindings are without a derived step.
            if let Some(slots) = saturate.take()
                && !slots.is_empty()
                && slots.iter().all(|slot| {
                    let held = self.out.by_policy.get(slot).map_or(&[][..], Vec::as_slice);
                    index.policy_slot(*slot).is_some_and(|p| saturates(p, held))
                })
            {
                // Nobody else is visited: what they would add is never shown.
                self.next.clear();
                return;
            }
            if !self.set.contains(DerivedKind::RoleGrant) {
                break;
            }
            self.pair(&caps, &mut bound, &mut everything, &mut paired, &mut work);
            if work.is_empty() {
                break;
            }
        }
    }

    /// [`Index::bindings_naming`], the same for every identity of the
    /// walks sharing `shared` for the groups of all.
    fn bindings_naming(&self, principal: &Identity) -> &'a [Arc<Binding>] {
        let index = self.index;
        if let (Some(shared), Identity::Group(g)) = (self.shared, principal) {
            let all = match &**g {
                ALL_SERVICEACCOUNTS => Some(0),
                ALL_AUTHENTICATED => Some(1),
                _ => None,
            };
            if let Some(i) = all {
                return shared.group_bindings[i].get_or_init(|| index.bindings_naming(principal));
            }
        }
        index.bindings_naming(principal)
    }

    /// [`Index::role`] of `binding`'s role, kept in `shared`.
    fn role_of(&self, binding: &'a Binding) -> Option<&'a RoleEntry> {
        let index = self.index;
        match self.shared {
            Some(shared) => *shared
                .roles_of
                .borrow_mut()
                .entry(std::ptr::from_ref(binding) as usize)
                .or_insert_with(|| index.role(&binding.role)),
            None => index.role(&binding.role),
        }
    }

    /// The holdings and powers one role gives in one scope.
    fn role(&mut self, item: &Item<'a>, caps: &mut Caps<'a>) {
        let grants: &[Grant] = if item.repeat { &[] } else { &item.entry.grants };
        for grant in grants {
            if !grant.counts(item.scope, self.slots) {
                continue;
            }
            let held = Held {
                permission: grant.permission,
                namespace: item.scope,
                via: item.via.clone(),
                hops: item.chain.clone(),
                end: End::Rule {
                    binding: item.binding,
                    role: item.role,
                    grant,
                },
                graft: None,
                root: self.root.clone(),
            };
            self.push(grant.policy, held);
        }
        if self.set.is_empty() {
            return;
        }
        let index = self.index;
        for d in &item.entry.derives {
            if !self.set.contains(d.kind) || (item.repeat && !pairs(d)) {
                continue;
            }
            match &d.power {
                Power::Workloads => {
                    self.mount(item, d);
                    self.every_service_account(item, d);
                }
                Power::Exec => self.every_service_account(item, d),
                Power::Tokens(Targets::All) => self.every_service_account(item, d),
                Power::Tokens(Targets::Named(names)) => {
                    // A token is minted only for a ServiceAccount that exists.
                    for name in names {
                        match item.scope {
                            Some(ns) => {
                                if index.service_account_exists(ns, name) {
                                    self.acts_as(item, d, sa(ns, name));
                                }
                            }
                            None => {
                                let nss: Vec<Name> =
                                    index.service_account_namespaces().cloned().collect();
                                for ns in nss {
                                    if index.service_account_exists(&ns, name) {
                                        self.acts_as(item, d, sa(&ns, name));
                                    }
                                }
                            }
                        }
                    }
                }
                Power::ImpersonateServiceAccounts(Targets::All) => {
                    self.every_service_account(item, d);
                    // Impersonation does not ask whether the ServiceAccount
                    // exists: the bindings naming a missing one apply too.
                    let ghosts: Vec<Identity> = if self.ghosts_done.insert(item.scope) {
                        index
                            .ghost_service_accounts(item.scope.map(|ns| &**ns))
                            .collect()
                    } else {
                        Vec::new()
                    };
                    let none = index
                        .ghost_service_accounts(item.scope.map(|ns| &**ns))
                        .next()
                        .is_none();
                    for g in ghosts {
                        self.acts_as(item, d, g);
                    }
                    match item.scope {
                        None => self.any_service_account(item, d, true),
                        // A namespace without any ServiceAccount, existing
                        // or named: one impersonated there (any name) is
                        // still in the groups of all ServiceAccounts and of
                        // the namespace (R1.4).
                        Some(ns) if none && index.service_accounts_in(ns).next().is_none() => {
                            for g in [
                                Name::from(ALL_SERVICEACCOUNTS),
                                Name::from(format!("{SERVICEACCOUNTS_OF}{ns}")),
                            ] {
                                self.acts_as(item, d, Identity::Group(g));
                            }
                        }
                        Some(_) => {}
                    }
                }
                Power::ImpersonateServiceAccounts(Targets::Named(names)) => {
                    for name in names {
                        match item.scope {
                            // Impersonation does not ask whether the
                            // ServiceAccount exists: its bindings apply anyway.
                            Some(ns) => self.acts_as(item, d, sa(ns, name)),
                            None => {
                                let nss: Vec<Name> = index
                                    .service_account_namespaces()
                                    .filter(|ns| index.service_account_exists(ns, name))
                                    .chain(index.ghost_namespaces_of(name))
                                    .cloned()
                                    .collect();
                                for ns in nss {
                                    self.acts_as(item, d, sa(&ns, name));
                                }
                                self.any_service_account(item, d, false);
                            }
                        }
                    }
                }
                // Users and Groups are cluster-scoped: only a cluster-wide
                // grant impersonates them.
                Power::ImpersonateUsers(_) | Power::ImpersonateGroups(_)
                    if item.scope.is_some() => {}
                Power::ImpersonateUsers(Targets::All) => {
                    let users: Vec<Identity> = index
                        .named_users_and_groups()
                        .filter(|i| matches!(i, Identity::User(_)))
                        .cloned()
                        .collect();
                    for u in users {
                        self.acts_as(item, d, u);
                    }
                }
                Power::ImpersonateUsers(Targets::Named(names)) => {
                    for name in names {
                        self.acts_as(item, d, Identity::User(name.clone()));
                    }
                }
                Power::ImpersonateGroups(Targets::All) => {
                    self.everything(item, d, None, &mut HashSet::new())
                }
                Power::ImpersonateGroups(Targets::Named(names)) => {
                    for name in names {
                        if &**name == MASTERS {
                            self.everything(item, d, None, &mut HashSet::new());
                        } else {
                            self.acts_as(item, d, Identity::Group(name.clone()));
                        }
                    }
                }
                Power::Bind { .. } => caps.bind.push(Half {
                    item: item.clone(),
                    derive: d,
                }),
                Power::Escalate { .. } => caps.escalate.push(Half {
                    item: item.clone(),
                    derive: d,
                }),
                Power::CreateRoleBindings => caps.create_rb.push(item.scope),
                Power::CreateClusterRoleBindings => {
                    caps.create_crb |= item.scope.is_none();
                }
                Power::WriteRoles {
                    cluster_roles: false,
                } => caps.write_roles.push(item.scope),
                Power::WriteRoles {
                    cluster_roles: true,
                } => caps.write_cluster_roles |= item.scope.is_none(),
            }
        }
    }

    fn hop(&self, item: &Item<'a>, d: &'a Derive, reach: Reach) -> Rc<Hop<'a>> {
        Rc::new(Hop {
            depth: depth(&item.chain) + 1,
            prev: item.chain.clone(),
            via: item.via.clone(),
            binding: item.binding,
            role: item.role,
            derive: d,
            reach,
        })
    }

    /// A cluster-wide grant impersonates a ServiceAccount of any namespace,
    /// one without any object or binding too, and so is in the group of
    /// every ServiceAccount and in that of any namespace (R1.4): what those
    /// groups hold is held even where no target exists. `covered`: only the
    /// namespaces without a ServiceAccount (an every-ServiceAccount step
    /// reaches the groups of the others already).
    fn any_service_account(&mut self, item: &Item<'a>, d: &'a Derive, covered: bool) {
        // Uncovered lists more groups than covered: after it, nothing is new.
        match self.any_sas_done {
            Some(false) => return,
            Some(true) if covered => return,
            _ => self.any_sas_done = Some(covered),
        }
        let groups = match self.shared {
            Some(shared) => shared.sa_groups[usize::from(covered)]
                .get_or_init(|| Rc::new(service_account_groups(self.index, covered)))
                .clone(),
            None => Rc::new(service_account_groups(self.index, covered)),
        };
        for g in groups.iter() {
            self.acts_as(item, d, g.clone());
        }
    }

    fn acts_as(&mut self, item: &Item<'a>, d: &'a Derive, id: Identity) {
        // The summaries cover the ServiceAccounts that exist; a missing one
        // (impersonated) is walked on its own.
        if let Identity::ServiceAccount { namespace, .. } = &id
            && (self.all_sas
                || self
                    .grafted_ns
                    .as_ref()
                    .is_some_and(|g| g.contains(namespace)))
            && self.index.exists(&id)
        {
            return;
        }
        if !self.seen.insert(id.clone()) {
            return;
        }
        let hop = self.hop(item, d, Reach::ActsAs(id.clone()));
        self.next.push((id, Some(hop), self.root.clone()));
    }

    /// Workload creation, exec, and tokens or impersonation of all: every
    /// ServiceAccount of the scope (of every namespace when cluster-wide).
    fn every_service_account(&mut self, item: &Item<'a>, d: &'a Derive) {
        let index = self.index;
        if let (Some(c), Some(ns)) = (&mut self.covered, item.scope)
            && !c.every.contains(ns)
        {
            c.every.insert(ns.clone());
        }
        // Every ServiceAccount (of the cluster, or of the namespace whose
        // summary this is) is reached already: nobody new to list, as with
        // `seen` (a summary's walk meets this once per ServiceAccount).
        if self.all_sas || (item.scope.is_some() && item.scope == self.roots_of.as_ref()) {
            return;
        }
        if let (None, Some(shared)) = (item.scope, self.shared) {
            // The first such step is the shortest (breadth first); later ones
            // reach nobody new, as with `seen`.
            if self.all_sas {
                return;
            }
            self.all_sas = true;
            let summary = shared.summary(index, self.set, self.slots);
            // Its reach is the summary's root, filled in when a path is shown.
            let hop = self.hop(item, d, Reach::Everything(None));
            let at = summary
                .keys()
                .map(|slot| (*slot, self.out.by_policy.get(slot).map_or(0, Vec::len)))
                .collect();
            // Walked on this state: nothing known of the state before.
            self.out.grafts.push(Graft {
                summary,
                before: None,
                hop,
                at,
                root: self.root.clone(),
            });
            return;
        }
        if let (Some(ns), Some(shared)) = (item.scope, self.shared)
            && self.grafted_ns.is_some()
        {
            if self.all_sas || !self.grafted_ns.as_mut().is_some_and(|g| g.insert(ns)) {
                return;
            }
            let summary = shared.ns_summary(index, self.set, self.slots, ns);
            let hop = self.hop(item, d, Reach::Everything(Some(ns.clone())));
            let at: BTreeMap<u32, usize> = summary
                .slots
                .keys()
                .map(|slot| (*slot, self.out.by_policy.get(slot).map_or(0, Vec::len)))
                .collect();
            // What the namespace's summary reached through a cluster-wide
            // step, after this hop and the namespace's ServiceAccount.
            let nested = summary.nested.as_ref().map(|n| Graft {
                at: n
                    .summary
                    .keys()
                    .map(|slot| (*slot, self.out.by_policy.get(slot).map_or(0, Vec::len)))
                    .collect(),
                hop: rebase(&n.hop, &hop, &n.root),
                summary: n.summary.clone(),
                before: None,
                root: None,
            });
            self.out.grafts.push(Graft {
                summary: summary.slots.clone(),
                before: summary.before.clone(),
                hop,
                at,
                root: None,
            });
            self.out.grafts.extend(nested);
            return;
        }
        let sas: Vec<Identity> = match item.scope {
            Some(ns) => index.service_accounts_in(ns).collect(),
            None => index.service_accounts().collect(),
        };
        for s in sas {
            self.acts_as(item, d, s);
        }
    }

    fn mount(&mut self, item: &Item<'a>, d: &'a Derive) {
        if let (Some(c), Some(ns)) = (&mut self.covered, item.scope)
            && !c.mounts.contains(ns)
        {
            c.mounts.insert(ns.clone());
        }
        let m = self
            .mounts
            .get_or_insert_with(|| self.index.mount_pairs())
            .clone();
        if !m.iter().any(|(slot, _)| self.wanted(*slot)) {
            return;
        }
        let hop = self.hop(item, d, Reach::Mounts(item.scope.cloned()));
        for &(slot, pi) in m.iter() {
            if self.wanted(slot) {
                self.derived(slot, pi, item.scope, &hop);
            }
        }
    }

    fn derived(&mut self, slot: u32, permission: u32, ns: Option<&'a Name>, hop: &Rc<Hop<'a>>) {
        let held = Held {
            permission,
            namespace: ns,
            via: Via::Direct,
            hops: Some(hop.clone()),
            end: End::Derived,
            graft: None,
            root: self.root.clone(),
        };
        self.push(slot, held);
    }

    fn push(&mut self, slot: u32, held: Held<'a>) {
        let list = self.out.by_policy.entry(slot).or_default();
        let Some(best) = &mut self.reduce else {
            list.push(held);
            return;
        };
        match best.entry((slot, held.permission, held.namespace)) {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                let cur = &mut list[*e.get()];
                if held.rank() < cur.rank() {
                    if self.append_better {
                        e.insert(list.len());
                        list.push(held);
                    } else {
                        *cur = held;
                    }
                }
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(list.len());
                list.push(held);
            }
        }
    }

    /// Every permission of every policy of interest, in `ns`.
    fn everything(
        &mut self,
        item: &Item<'a>,
        d: &'a Derive,
        ns: Option<&'a Name>,
        done: &mut HashSet<Option<Name>>,
    ) {
        if !done.insert(ns.cloned()) {
            return;
        }
        let hop = self.hop(item, d, Reach::Everything(ns.cloned()));
        let all: Vec<(u32, u32)> = self
            .index
            .policies()
            .filter(|(slot, _)| self.wanted(*slot))
            .flat_map(|(slot, p)| (0..p.permissions.len() as u32).map(move |pi| (slot, pi)))
            .collect();
        for (slot, pi) in all {
            self.derived(slot, pi, ns, &hop);
        }
    }

    /// RoleGrant: pairs `bind` with `create rolebindings` (roles to bind to
    /// oneself) and `escalate` with writing roles (every duty), per scope.
    fn pair(
        &mut self,
        caps: &Caps<'a>,
        bound: &mut FastSet<(&'a RoleKey, Option<&'a Name>)>,
        everything: &mut HashSet<Option<Name>>,
        paired: &mut Paired<'a>,
        work: &mut Vec<Item<'a>>,
    ) {
        let index = self.index;
        // Nothing new since the last pairing: it would pair nothing new.
        let state = caps.state();
        if paired.state == Some(state) {
            return;
        }
        paired.state = Some(state);
        for half in &caps.escalate {
            let Power::Escalate { cluster_roles } = half.derive.power else {
                continue;
            };
            let scope = half.item.scope;
            if cluster_roles {
                // ClusterRoles are cluster-scoped: both halves cluster-wide.
                if scope.is_none() && caps.write_cluster_roles {
                    self.everything(&half.item, half.derive, None, everything);
                }
                continue;
            }
            match scope {
                Some(ns) => {
                    if caps.roles_in(Some(ns)) {
                        self.everything(&half.item, half.derive, Some(ns), everything);
                    }
                }
                None => {
                    if caps.write_roles.contains(&None) {
                        self.everything(&half.item, half.derive, None, everything);
                    } else {
                        for ns in caps.write_roles.iter().flatten() {
                            self.everything(&half.item, half.derive, Some(ns), everything);
                        }
                    }
                }
            }
        }
        for (hi, half) in caps.bind.iter().enumerate() {
            let Power::Bind {
                cluster_roles,
                targets,
            } = &half.derive.power
            else {
                continue;
            };
            // (the namespace the role is bound in, which roles: `Some(ns)`
            // for the Roles of ns, `None` for ClusterRoles)
            let mut grants: Vec<(Option<&'a Name>, Option<Option<&'a Name>>)> = Vec::new();
            match (half.item.scope, cluster_roles) {
                (Some(ns), false) => {
                    if caps.rb_in(Some(ns)) {
                        grants.push((Some(ns), Some(Some(ns))));
                    }
                }
                (Some(ns), true) => {
                    if caps.rb_in(Some(ns)) {
                        grants.push((Some(ns), None));
                    }
                }
                (None, true) => {
                    if caps.create_crb || caps.create_rb.contains(&None) {
                        grants.push((None, None));
                    } else {
                        for ns in caps.create_rb.iter().flatten() {
                            grants.push((Some(ns), None));
                        }
                    }
                }
                (None, false) => {
                    if caps.create_rb.contains(&None) {
                        // Every Role, each in its own namespace.
                        grants.push((None, Some(None)));
                    } else {
                        for ns in caps.create_rb.iter().flatten() {
                            grants.push((Some(ns), Some(Some(ns))));
                        }
                    }
                }
            }
            for (scope, which) in grants {
                // Paired before: every role it gives is bound already.
                if !paired.done.insert((hi, scope, which)) {
                    continue;
                }
                let cached = self.shared.map(|sh| sh.roles(index));
                // The cached lists are in key order already.
                let sorted = cached.is_some()
                    && !matches!((which, targets), (None | Some(Some(_)), Targets::Named(_)));
                let roles: Vec<&'a RoleEntry> = match (cached, which, targets) {
                    (Some(c), None, Targets::All) => c.get(&None).cloned().unwrap_or_default(),
                    (Some(c), Some(Some(ns)), Targets::All) => {
                        c.get(&Some(ns)).cloned().unwrap_or_default()
                    }
                    (Some(c), Some(None), Targets::Named(names)) => c
                        .iter()
                        .filter(|(k, _)| k.is_some())
                        .flat_map(|(_, v)| v.iter().copied())
                        .filter(|e| names.contains(&e.role.key.name))
                        .collect(),
                    (Some(c), Some(None), Targets::All) => c
                        .iter()
                        .filter(|(k, _)| k.is_some())
                        .flat_map(|(_, v)| v.iter().copied())
                        .collect(),
                    (_, which, targets) => match (which, targets) {
                        (None, Targets::Named(names)) => names
                            .iter()
                            .filter_map(|n| index.role(&RoleKey::cluster(n)))
                            .collect(),
                        (Some(Some(ns)), Targets::Named(names)) => names
                            .iter()
                            .filter_map(|n| {
                                index.role(&RoleKey {
                                    namespace: Some(ns.clone()),
                                    name: n.clone(),
                                })
                            })
                            .collect(),
                        (None, Targets::All) => index
                            .roles()
                            .filter(|e| e.role.key.namespace.is_none())
                            .collect(),
                        (Some(Some(ns)), Targets::All) => index
                            .roles()
                            .filter(|e| e.role.key.namespace.as_ref() == Some(ns))
                            .collect(),
                        (Some(None), Targets::Named(names)) => index
                            .roles()
                            .filter(|e| {
                                e.role.key.namespace.is_some() && names.contains(&e.role.key.name)
                            })
                            .collect(),
                        (Some(None), Targets::All) => index
                            .roles()
                            .filter(|e| e.role.key.namespace.is_some())
                            .collect(),
                    },
                };
                let mut roles = roles;
                if !sorted {
                    roles.sort_by(|a, b| a.role.key.cmp(&b.role.key));
                }
                // This walk paired the same power the same way before, no
                // deeper: every role it binds is a repeat.
                let depth = depth(&half.item.chain);
                let combo = (std::ptr::from_ref(half.derive) as usize, scope, which);
                let combo_repeat = match &mut self.repeats {
                    Some((paired, _)) => match paired.get_mut(&combo) {
                        Some(d) if *d <= depth => true,
                        Some(d) => {
                            *d = depth;
                            false
                        }
                        None => {
                            paired.insert(combo, depth);
                            false
                        }
                    },
                    None => false,
                };
                for entry in roles {
                    if combo_repeat && !entry.derives.iter().any(pairs) {
                        continue;
                    }
                    let key = &entry.role.key;
                    // A Role is bound in its own namespace.
                    let scope = if key.namespace.is_some() {
                        key.namespace.as_ref()
                    } else {
                        scope
                    };
                    if !bound.insert((key, scope)) {
                        continue;
                    }
                    let repeat = combo_repeat
                        || match &mut self.repeats {
                            Some((_, roles)) => match roles.get_mut(&(key, scope)) {
                                Some(d) if *d <= depth + 1 => true,
                                Some(d) => {
                                    *d = depth + 1;
                                    false
                                }
                                None => {
                                    roles.insert((key, scope), depth + 1);
                                    false
                                }
                            },
                            None => false,
                        };
                    let hop = self.hop(
                        &half.item,
                        half.derive,
                        Reach::Binds(key.clone(), scope.cloned()),
                    );
                    work.push(Item {
                        via: Via::Direct,
                        binding: None,
                        role: key,
                        entry,
                        scope,
                        chain: Some(hop),
                        repeat,
                    });
                }
            }
        }
    }
}

fn sa(ns: &Name, name: &Name) -> Identity {
    Identity::ServiceAccount {
        namespace: ns.clone(),
        name: name.clone(),
    }
}
