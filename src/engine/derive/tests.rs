//! Derived holdings (R9) on an incrementally updated index, held to the
//! standard of a from-scratch computation: after random changes the
//! violations of every subject equal those of an index rebuilt from the same
//! objects, and every subject whose violations a change alters is among the
//! subjects admission judges for it (R9.4).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use jiff::Timestamp;
use proptest::prelude::*;

use super::cluster_actors;
use crate::crd::{SoDPolicySpec, compile_policy};
use crate::engine::admission::{affected_by, every_holds_of, gains, rbac_change};
use crate::engine::budget::Meter;
use crate::engine::index::Index;
use crate::engine::{self, Evaluation};
use crate::model::{Binding, BindingKey, Identity, Name, Object, ObjectKey, Role, RoleKey, Rule};

fn n(s: &str) -> Name {
    Name::from(s)
}

fn rule(verbs: &[&str], group: &str, res: &str, names: &[&str]) -> Rule {
    Rule {
        verbs: verbs.iter().map(|v| n(v)).collect(),
        api_groups: vec![n(group)],
        resources: vec![n(res)],
        resource_names: names.iter().map(|v| n(v)).collect(),
        ..Rule::default()
    }
}

const RBAC: &str = "rbac.authorization.k8s.io";

/// Duties, and every escalation path with each target form.
fn rules_pool() -> Vec<Rule> {
    vec![
        rule(&["create"], "", "secrets", &[]),
        rule(&["get"], "", "secrets", &[]),
        rule(&["create"], "", "pods", &[]),
        rule(&["create"], "", "pods/exec", &[]),
        rule(&["create"], "", "serviceaccounts/token", &["x"]),
        rule(&["impersonate"], "", "serviceaccounts", &[]),
        rule(&["impersonate"], "", "users", &["u"]),
        rule(&["impersonate"], "", "groups", &["g"]),
        rule(&["bind"], RBAC, "roles", &["r1"]),
        rule(&["bind"], RBAC, "clusterroles", &[]),
        rule(&["create"], RBAC, "rolebindings", &[]),
        rule(&["escalate", "update"], RBAC, "roles", &[]),
        // Impersonating by name: the ServiceAccount need not exist.
        rule(&["impersonate"], "", "serviceaccounts", &["y"]),
    ]
}

fn pick<T: Clone>(pool: &[T], mask: u16) -> Vec<T> {
    pool.iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, x)| x.clone())
        .collect()
}

fn subjects_pool() -> Vec<Identity> {
    vec![
        Identity::service_account("a", "x"),
        Identity::service_account("a", "y"),
        Identity::service_account("b", "x"),
        Identity::service_account("b", "y"),
        Identity::Group(n("system:serviceaccounts:a")),
        Identity::Group(n("g")),
        Identity::User(n("u")),
        // What every User holds (R1.4), also one named for the first time.
        Identity::Group(n("system:authenticated")),
        Identity::Group(n("system:serviceaccounts")),
    ]
}

fn policy(name: &str, derived: Option<&[&str]>) -> Object {
    let mut spec = serde_json::json!({
        "subjects": {"kinds": ["ServiceAccount", "User", "Group"]},
        "duties": [
            {"name": "admin", "permissions": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]}]},
            {"name": "use", "permissions": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}
        ]
    });
    if let Some(d) = derived {
        spec["derived"] = serde_json::json!(d);
    }
    let spec: SoDPolicySpec = serde_json::from_value(spec).unwrap();
    Object::Policy(Arc::new(compile_policy(name, &spec).unwrap()))
}

#[derive(Debug, Clone)]
enum Op {
    Apply(Object),
    Remove(ObjectKey),
}

fn arb_op() -> impl Strategy<Value = Op> {
    let ns = prop_oneof![Just("a"), Just("b")];
    let role_name = prop_oneof![Just("r1"), Just("r2")];
    let cr_name = prop_oneof![Just("c1"), Just("c2")];
    let sa_name = prop_oneof![Just("x"), Just("y")];
    prop_oneof![
        3 => (ns.clone(), role_name.clone(), any::<u16>()).prop_map(|(ns, name, mask)| {
            Op::Apply(Object::Role(Role {
                key: RoleKey {
                    namespace: Some(n(ns)),
                    name: n(name),
                },
                labels: BTreeMap::new(),
                rules: pick(&rules_pool(), mask & 0x1fff),
                aggregation: None,
            }))
        }),
        2 => (cr_name.clone(), any::<u16>()).prop_map(|(name, mask)| {
            Op::Apply(Object::Role(Role {
                key: RoleKey::cluster(name),
                labels: BTreeMap::new(),
                rules: pick(&rules_pool(), mask & 0x1fff),
                aggregation: None,
            }))
        }),
        3 => (
            ns.clone(),
            prop_oneof![Just("b1"), Just("b2")],
            any::<bool>(),
            role_name.clone(),
            cr_name.clone(),
            any::<u16>()
        )
            .prop_map(|(ns, name, to_role, r, c, mask)| {
                let role = if to_role {
                    RoleKey {
                        namespace: Some(n(ns)),
                        name: n(r),
                    }
                } else {
                    RoleKey::cluster(c)
                };
                Op::Apply(Object::Binding(Binding {
                    key: BindingKey {
                        namespace: Some(n(ns)),
                        name: n(name),
                    },
                    role,
                    subjects: pick(&subjects_pool(), mask & 0x1ff),
                }))
            }),
        1 => (cr_name.clone(), any::<u16>()).prop_map(|(c, mask)| {
            Op::Apply(Object::Binding(Binding {
                key: BindingKey {
                    namespace: None,
                    name: n("k1"),
                },
                role: RoleKey::cluster(c),
                subjects: pick(&subjects_pool(), mask & 0x1ff),
            }))
        }),
        2 => (ns.clone(), sa_name.clone()).prop_map(|(ns, name)| {
            Op::Apply(Object::ServiceAccount {
                namespace: n(ns),
                name: n(name),
            })
        }),
        1 => (ns.clone(), sa_name).prop_map(|(ns, name)| {
            Op::Remove(ObjectKey::ServiceAccount {
                namespace: n(ns),
                name: n(name),
            })
        }),
        1 => prop_oneof![
            Just(policy("p1", None)),
            Just(policy("p1", Some(&["TokenRequest", "RoleGrant"]))),
            Just(policy("p2", Some(&[]))),
            Just(policy("p2", Some(&["WorkloadCreation", "PodExec", "Impersonation"]))),
        ]
        .prop_map(Op::Apply),
        1 => (ns.clone(), role_name).prop_map(|(ns, r)| {
            Op::Remove(ObjectKey::Role(RoleKey {
                namespace: Some(n(ns)),
                name: n(r),
            }))
        }),
        1 => cr_name.prop_map(|c| Op::Remove(ObjectKey::Role(RoleKey::cluster(c)))),
        1 => (ns, prop_oneof![Just("b1"), Just("b2")]).prop_map(|(ns, b)| {
            Op::Remove(ObjectKey::Binding(BindingKey {
                namespace: Some(n(ns)),
                name: n(b),
            }))
        }),
    ]
}

/// A Role of namespace `a`.
fn role_in_a(name: &str, rules: Vec<Rule>) -> Object {
    Object::Role(Role {
        key: RoleKey {
            namespace: Some(n("a")),
            name: n(name),
        },
        labels: BTreeMap::new(),
        rules,
        aggregation: None,
    })
}

/// A RoleBinding of namespace `a` giving `subject` the Role `role` of `a`.
fn binding_in_a(name: &str, role: &str, subject: Identity) -> Object {
    Object::Binding(Binding {
        key: BindingKey {
            namespace: Some(n("a")),
            name: n(name),
        },
        role: RoleKey {
            namespace: Some(n("a")),
            name: n(role),
        },
        subjects: vec![subject],
    })
}

/// The ClusterRole `name` with `rules`.
fn service_account(ns: &str, name: &str) -> Object {
    Object::ServiceAccount {
        namespace: n(ns),
        name: n(name),
    }
}

fn cluster_role(name: &str, rules: Vec<Rule>) -> Object {
    Object::Role(Role {
        key: RoleKey::cluster(name),
        labels: BTreeMap::new(),
        rules,
        aggregation: None,
    })
}

/// A RoleBinding of namespace `ns` giving `subject` the ClusterRole `role`.
fn binding_in(ns: &str, name: &str, role: &str, subject: Identity) -> Object {
    Object::Binding(Binding {
        key: BindingKey {
            namespace: Some(n(ns)),
            name: n(name),
        },
        role: RoleKey::cluster(role),
        subjects: vec![subject],
    })
}

fn apply(index: &mut Index, model: &mut BTreeMap<ObjectKey, Object>, op: &Op) {
    let _ = match op {
        Op::Apply(o) => {
            model.insert(o.key(), o.clone());
            index.apply(o.clone())
        }
        Op::Remove(k) => {
            model.remove(k);
            index.remove(k)
        }
    };
}

fn now() -> Timestamp {
    "2026-11-28T12:00:00Z".parse().unwrap()
}

fn eval(index: &Index) -> Evaluation {
    engine::evaluate(index, now())
}

/// Per subject, its violations as tuples (R7.1 compares them so).
fn tuples(ev: &Evaluation) -> BTreeMap<Identity, BTreeSet<String>> {
    let mut out: BTreeMap<Identity, BTreeSet<String>> = BTreeMap::new();
    for v in &ev.violations {
        out.entry(v.subject.clone())
            .or_default()
            .insert(format!("{} {} {:?}", v.policy, v.namespace, v.duties));
    }
    out
}

/// [`ClusterActors`] in a form to compare: sets sorted, policies by name.
fn kept(index: &Index) -> String {
    let c = cluster_actors(index);
    let sorted = |s: &crate::engine::holdings::IdSet| {
        let mut v: Vec<&Identity> = s.iter().collect();
        v.sort();
        format!("{v:?}")
    };
    let closure = |c: &crate::engine::index::Closure| {
        let by_policy: BTreeMap<String, &Vec<Identity>> = c
            .by_policy
            .iter()
            .map(|(slot, ids)| {
                let p = index.policy_slot(*slot).map(|p| p.name.to_string());
                (p.unwrap_or_default(), ids)
            })
            .collect();
        format!("{} {:?} {by_policy:?}", sorted(&c.members), c.governed)
    };
    format!(
        "every {}\nworkloads {}\nbinders {}\nevery_sa {}",
        sorted(&c.every),
        sorted(&c.workloads),
        closure(&c.binders),
        closure(&c.every_sa)
    )
}

proptest! {
#![proptest_config(ProptestConfig::with_cases(200))]

#[test]
fn derived_holdings_incremental_equal_rebuilt(
    ops in proptest::collection::vec(arb_op(), 1..40),
) {
    let mut index = Index::new();
    let mut model = BTreeMap::new();
    for op in &ops {
        apply(&mut index, &mut model, op);
        let rebuilt = Index::from_objects(model.values().cloned());
        prop_assert_eq!(eval(&index), eval(&rebuilt));
        prop_assert_eq!(
            index.bind_roles().collect::<Vec<_>>(),
            rebuilt.bind_roles().collect::<Vec<_>>()
        );
        prop_assert_eq!(
            index.named_sa_impersonators().collect::<Vec<_>>(),
            rebuilt.named_sa_impersonators().collect::<Vec<_>>()
        );
        let reach = |i: &Index| {
            let mut r: Vec<_> = i
                .derivers()
                .map(|d| (d.binding.key.clone(), format!("{:?}", d.reach), d.binding.clone()))
                .collect();
            r.sort_by(|a, b| a.0.cmp(&b.0));
            r
        };
        prop_assert_eq!(reach(&index), reach(&rebuilt));
    }
}

/// The audit's counts come from bare evaluations a part at a time: the
/// same violations as the whole evaluation, paths left out, with every
/// escalation path and in parts of any size.
#[test]
fn bare_parts_equal_the_evaluation(
    ops in proptest::collection::vec(arb_op(), 1..40),
    per_part in 1usize..4,
) {
    let mut index = Index::new();
    let mut model = BTreeMap::new();
    for op in &ops {
        apply(&mut index, &mut model, op);
    }
    let strip = |mut vs: Vec<engine::Violation>| {
        for v in &mut vs {
            for d in &mut v.explanation {
                d.paths.clear();
            }
        }
        engine::violations::sort(&mut vs);
        vs
    };
    let whole = eval(&index);
    let mut parts = Vec::new();
    let stopped = engine::evaluate_bare_in_parts(
        &index,
        now(),
        engine::Budget::UNLIMITED,
        per_part,
        |ev| parts.push(ev),
    );
    prop_assert!(stopped.is_none());
    let mut bare = Vec::new();
    for ev in parts {
        prop_assert!(ev.violations.iter().all(|v| v.explanation.iter().all(|d| d.paths.is_empty())));
        bare.extend(ev.violations);
        bare.extend(ev.excused.into_iter().map(|x| x.violation));
    }
    let mut all = whole.violations;
    all.extend(whole.excused.into_iter().map(|x| x.violation));
    prop_assert_eq!(strip(bare), strip(all));
}

/// Who acts as an identity, read with what each state keeps (the
/// cluster-wide closures, taken whole, and the cluster-wide bindings of each
/// bucket split by them), includes everyone a walk of the bindings alone
/// finds, for every identity of the pool as the one affected.
#[test]
fn actors_read_with_kept_closures_include_every_walked_actor(
    ops in proptest::collection::vec(arb_op(), 1..40),
) {
    let mut index = Index::new();
    let mut model = BTreeMap::new();
    for op in &ops {
        apply(&mut index, &mut model, op);
    }
    let set = super::considered(&index);
    for target in subjects_pool() {
        let mut start = crate::engine::holdings::IdSet::default();
        crate::engine::violations::affected_subjects(&index, &target, &mut start);
        let walked = super::expand(&index, set, &[], start.clone(), None, None).0.local;
        let kept = super::add_actors(&index, &[], start, None).0;
        for x in &walked {
            prop_assert!(kept.contains(x), "{x} acts as {target} but is not among its actors");
        }
    }
}

/// What the index keeps of the cluster-wide actors across decisions
/// ([`ClusterActors`]) is what a computation from scratch finds: after every
/// change, and after changes tried and undone in turn (as each decision
/// does) on a state whose value was kept before them.
#[test]
fn cluster_actors_kept_equal_computed_afresh(
    ops in proptest::collection::vec(
        (arb_op(), proptest::collection::vec(arb_op(), 0..3)),
        1..40,
    ),
) {
    let mut index = Index::new();
    let mut model = BTreeMap::new();
    for (op, probes) in &ops {
        let _ = cluster_actors(&index);
        let mut undos = Vec::new();
        for p in probes {
            undos.push(match p {
                Op::Apply(o) => index.apply(o.clone()),
                Op::Remove(k) => index.remove(k),
            });
            let _ = cluster_actors(&index);
        }
        for u in undos.into_iter().rev() {
            index.undo(u);
        }
        let rebuilt = Index::from_objects(model.values().cloned());
        prop_assert_eq!(kept(&index), kept(&rebuilt), "after probes {:?}", probes);
        apply(&mut index, &mut model, op);
        let rebuilt = Index::from_objects(model.values().cloned());
        prop_assert_eq!(kept(&index), kept(&rebuilt), "after {:?}", op);
    }
}

/// What the index keeps per namespace across decisions (who acts as every
/// ServiceAccount of it by its bindings, what all of them hold there by
/// their own, and its escalation bindings by whom they reach) is what a computation afresh finds: after every change, after
/// changes tried and undone in turn on a state whose values were kept before
/// them, and on a clone that shares what is kept and changes apart.
#[test]
fn namespace_values_kept_equal_computed_afresh(
    ops in proptest::collection::vec(
        (arb_op(), proptest::collection::vec(arb_op(), 0..3), any::<bool>()),
        1..40,
    ),
) {
    let check = |index: &Index, when: &dyn std::fmt::Debug| -> Result<(), TestCaseError> {
        for ns in ["a", "b", "c"] {
            let ns = n(ns);
            let kept = super::acting_as_every_service_account(index, &ns);
            let afresh = super::ns_actors(index, &ns);
            let sorted = |s: &crate::engine::holdings::IdSet| {
                let mut v: Vec<Identity> = s.iter().cloned().collect();
                v.sort();
                v
            };
            prop_assert_eq!(sorted(&kept.ns.all), sorted(&afresh.all), "{:?}", when);
            prop_assert_eq!(sorted(&kept.ns.workloads), sorted(&afresh.workloads), "{:?}", when);
            prop_assert_eq!(
                every_holds_of(index, &ns, true),
                every_holds_of(index, &ns, false),
                "{:?} in {}", when, ns
            );
            let set = super::considered(index);
            prop_assert_eq!(
                index.scope_actors(&ns, set).canonical(),
                crate::engine::index::ScopeActors::of(index, set, Some(&ns)).canonical(),
                "{:?} in {}", when, ns
            );
        }
        // Bare judging reads the namespaces' summaries kept before (twice:
        // the second reads what the first kept, on a passing state too).
        let want = bare_afresh(index);
        for passing in [false, true, false] {
            prop_assert_eq!(&bare_kept(index, passing), &want, "{:?} (passing {})", when, passing);
        }
        Ok(())
    };
    let mut index = Index::new();
    let mut model = BTreeMap::new();
    for (op, probes, on_clone) in &ops {
        check(&index, &"before")?;
        let mut clone = on_clone.then(|| index.clone());
        let target = clone.as_mut().unwrap_or(&mut index);
        let mut undos = Vec::new();
        for p in probes {
            let names_nobody_new = matches!(p, Op::Apply(Object::Binding(b))
                if b.subjects.iter().all(|s| target.knows(s)));
            let undo = match p {
                Op::Apply(o) => target.apply(o.clone()),
                Op::Remove(k) => target.remove(k),
            };
            // A decision's state after a binding that names nobody new: the
            // summaries kept before, with what the binding adds.
            if let (Op::Apply(Object::Binding(b)), true) = (p, names_nobody_new && undo.created()) {
                let added = target
                    .binding(&b.key)
                    .map(|binding| crate::engine::index::Added::by(binding, &undo));
                prop_assert!(added.is_some());
                prop_assert_eq!(
                    bare_kept_but(target, added),
                    bare_afresh(target),
                    "{:?} added", p
                );
            }
            undos.push(undo);
            check(target, p)?;
        }
        if let Some(c) = &clone {
            // The original reads what the clone kept under the same keys.
            check(&index, &"the original beside its changed clone")?;
            check(c, &"the changed clone")?;
        } else {
            for u in undos.into_iter().rev() {
                index.undo(u);
            }
            check(&index, &"after the probes were undone")?;
        }
        apply(&mut index, &mut model, op);
        check(&index, op)?;
    }
}

#[test]
fn admission_judges_every_subject_a_change_affects(
    setup in proptest::collection::vec(arb_op(), 1..30),
    change in arb_op(),
) {
    let Some((mut index, mut model, object)) = rbac_case(&setup, change) else {
        return Ok(());
    };
    let judged = affected_by(&mut index, &object);
    let before = tuples(&eval(&Index::from_objects(model.values().cloned())));
    model.insert(object.key(), object.clone());
    let after = tuples(&eval(&Index::from_objects(model.values().cloned())));
    for (subject, vs) in &after {
        let old = before.get(subject).cloned().unwrap_or_default();
        prop_assert!(
            vs.is_subset(&old) || judged.contains(subject),
            "{subject} gains {:?} (had {:?}) but is not judged; judged: {:?}",
            vs, old, judged
        );
    }
}

/// The decision on an RBAC change (with its shortcuts: only the affected
/// subjects, none that already violate everything) reports exactly the new
/// violations (R7.1) that evaluating the whole state before and after it
/// finds: V(S') less what is within a violation of V(S). Also in live mode
/// (R7.8), with the state before given as the confirmed one.
#[test]
fn decision_equals_whole_state_before_and_after(
    setup in proptest::collection::vec(arb_op(), 1..30),
    change in arb_op(),
) {
    let Some((index, model, object)) = rbac_case(&setup, change) else {
        return Ok(());
    };
    decision_equals_whole_states(&index, &model, &object)?;
}

/// Live mode with admitted changes pending (R7.8): the assumed state holds
/// them as `assume` would (unions, shadows), the confirmed state does not
/// (they may never happen). The decision on a further change reports every
/// violation that change adds on the assumed state and is not on the
/// confirmed one, covers every violation it adds on the confirmed state
/// (where a union may already hold it on the assumed one), and reports
/// nothing that the confirmed state has.
#[test]
fn live_decision_with_pending_changes_misses_no_new_violation(
    setup in proptest::collection::vec(arb_op(), 1..25),
    admitted in proptest::collection::vec(arb_op(), 1..4),
    change in arb_op(),
) {
    let Some((confirmed, _, object)) = rbac_case(&setup, change) else {
        return Ok(());
    };
    let mut assumed = confirmed.clone();
    for op in &admitted {
        let Op::Apply(o) = op else { continue };
        let Some(a) = engine::assumption(&assumed, o.clone()) else {
            continue;
        };
        let _ = assumed.apply(a.merged);
        if let Some(sh) = a.shadow {
            let _ = assumed.apply(sh);
        }
    }
    let with = |ix: &Index| {
        let mut ix = ix.clone();
        let _ = ix.apply(object.clone());
        ix
    };
    let by_subject = |ev: &Evaluation| {
        let mut m: BTreeMap<Identity, Vec<engine::Violation>> = BTreeMap::new();
        for v in &ev.violations {
            m.entry(v.subject.clone()).or_default().push(v.clone());
        }
        m
    };
    let (c0, c1) = (by_subject(&eval(&confirmed)), by_subject(&eval(&with(&confirmed))));
    let (a0, a1) = (by_subject(&eval(&assumed)), by_subject(&eval(&with(&assumed))));
    let none = Vec::new();
    let within = |v: &engine::Violation, old: &[engine::Violation]| old.iter().any(|o| v.within(o));
    let text = |v: &engine::Violation| format!("{} {} {} {:?}", v.policy, v.subject, v.namespace, v.duties);
    let mut want = BTreeSet::new();
    let mut allowed_new = BTreeSet::new();
    for (s, vs) in &a1 {
        for v in vs {
            if !within(v, c0.get(s).unwrap_or(&none)) {
                allowed_new.insert(text(v));
                if !within(v, a0.get(s).unwrap_or(&none)) {
                    want.insert(text(v));
                }
            }
        }
    }
    let (review, _) = rbac_change(
        &mut assumed,
        Some(&confirmed),
        object.clone(),
        now(),
        &Meter::unlimited(),
    );
    let got: BTreeSet<String> = review.violations.iter().map(text).collect();
    prop_assert!(want.is_subset(&got), "missed {:?}; got {:?}", want.difference(&got).collect::<Vec<_>>(), got);
    prop_assert!(got.is_subset(&allowed_new), "not new: {:?}", got.difference(&allowed_new).collect::<Vec<_>>());
    // What the change adds on the confirmed state is within what is reported.
    for (s, vs) in &c1 {
        for v in vs {
            if !within(v, c0.get(s).unwrap_or(&none)) {
                prop_assert!(
                    within(v, &review.violations),
                    "on the confirmed state the change adds {} which no reported violation covers; got {:?}",
                    text(v), got
                );
            }
        }
    }
}

/// The same on the changes the namespace shortcut of admission takes most:
/// a new RoleBinding of a role whose escalation paths stay in its namespace
/// (Pods, exec, tokens, impersonation; no RoleGrant half), its subjects
/// anyone, on a random cluster whose other subjects create Pods or exec
/// there or cluster-wide.
#[test]
fn decision_on_edges_within_a_namespace_equals_whole_state(
    setup in proptest::collection::vec(arb_op(), 1..30),
    ns in prop_oneof![Just("a"), Just("b")],
    cluster_role in any::<bool>(),
    rules in any::<u8>(),
    subjects in any::<u8>(),
) {
    let mut index = Index::new();
    let mut model = BTreeMap::new();
    for op in &setup {
        apply(&mut index, &mut model, op);
    }
    let key = if cluster_role {
        RoleKey::cluster("c3")
    } else {
        RoleKey {
            namespace: Some(n(ns)),
            name: n("r3"),
        }
    };
    let role = Object::Role(Role {
        key: key.clone(),
        labels: BTreeMap::new(),
        // The first eight of the pool: duties, Pods, exec, tokens,
        // impersonation; no RoleGrant half.
        rules: pick(&rules_pool(), u16::from(rules)),
        aggregation: None,
    });
    apply(&mut index, &mut model, &Op::Apply(role));
    let object = Object::Binding(Binding {
        key: BindingKey {
            namespace: Some(n(ns)),
            name: n("b3"),
        },
        role: key,
        // Subjects that exist: one named for the first time takes the
        // general path.
        subjects: pick(&subjects_pool(), u16::from(subjects))
            .into_iter()
            .filter(|s| index.exists(s))
            .collect(),
    });
    decision_equals_whole_states(&index, &model, &object)?;
}

/// Sharing what every ServiceAccount holds (engine::Shared) changes no
/// violation and no path's length or final rule: each subject judged on
/// its own, walking the whole cluster itself, gives the same evaluation.
/// Between equally short paths that end in the same rule, the first hops
/// may differ (a tie broken in another order).
#[test]
fn shared_summaries_equal_walks_of_each_subject(
    ops in proptest::collection::vec(arb_op(), 1..40),
) {
    let mut index = Index::new();
    let mut model = BTreeMap::new();
    for op in &ops {
        apply(&mut index, &mut model, op);
    }
    let mut alone = Vec::new();
    for s in engine::subjects(&index) {
        alone.extend(unshared_violations(&index, &s));
    }
    engine::violations::sort(&mut alone);
    let alone = engine::violations::excuse(&index, alone, now());
    prop_assert_eq!(shape(&eval(&index)), shape(&alone));
}

/// What a namespace's summary says every ServiceAccount of it holds is
/// what their own walks find: the same (policy, permission, namespace)
/// keys, each at the shortest depth any of them reaches it, every path
/// starting from one of that namespace's ServiceAccounts.
#[test]
fn namespace_summaries_equal_walks_of_their_service_accounts(
    ops in proptest::collection::vec(arb_op(), 1..40),
) {
    let mut index = Index::new();
    let mut model = BTreeMap::new();
    for op in &ops {
        apply(&mut index, &mut model, op);
    }
    let shared = engine::Shared::new();
    let namespaces: Vec<Name> = index.service_account_namespaces().cloned().collect();
    for (slot, policy) in index.policies() {
        let only = [slot];
        for ns in &namespaces {
            let mut want: BTreeMap<(u32, Option<Name>), u32> = BTreeMap::new();
            for sa in index.service_accounts_in(ns) {
                let h = engine::holdings(&index, &sa, Some(slot));
                for x in h.by_policy.get(&slot).into_iter().flatten() {
                    let d = want.entry((x.permission, x.namespace.cloned())).or_insert(u32::MAX);
                    *d = (*d).min(x.depth());
                }
            }
            let got = summary_depths(&shared.namespace_depths(&index, policy.derived, &only, ns), ns);
            prop_assert_eq!(got.map_err(TestCaseError::fail)?, want, "namespace {}", ns);
        }
    }
}}

/// The decision on `object` (single state and live mode) reports exactly
/// V(S') less what is within a violation of V(S), both evaluated from
/// scratch on the objects of `model` (those of `index`).
fn decision_equals_whole_states(
    index: &Index,
    model: &BTreeMap<ObjectKey, Object>,
    object: &Object,
) -> Result<(), TestCaseError> {
    let before = eval(&Index::from_objects(model.values().cloned()));
    let mut after_model = model.clone();
    after_model.insert(object.key(), object.clone());
    let after = eval(&Index::from_objects(after_model.values().cloned()));
    let mut want = BTreeSet::new();
    for v in &after.violations {
        if !before.violations.iter().any(|o| v.within(o)) {
            want.insert(format!(
                "{} {} {} {:?}",
                v.policy, v.subject, v.namespace, v.duties
            ));
        }
    }
    let confirmed = index.clone();
    for live in [false, true] {
        let mut state = index.clone();
        let (review, _) = rbac_change(
            &mut state,
            live.then_some(&confirmed),
            object.clone(),
            now(),
            &Meter::unlimited(),
        );
        let got: BTreeSet<String> = review
            .violations
            .iter()
            .map(|v| format!("{} {} {} {:?}", v.policy, v.subject, v.namespace, v.duties))
            .collect();
        prop_assert_eq!(&got, &want, "live: {}", live);
        prop_assert_eq!(review.allowed, want.is_empty());
    }
    Ok(())
}

/// The shortest depth per (permission, namespace) of a namespace summary's
/// holdings; an error if a path does not start from a ServiceAccount of `ns`.
#[allow(clippy::type_complexity)]
fn summary_depths(
    held: &[(u32, Option<Name>, u32, Option<Identity>)],
    ns: &Name,
) -> Result<BTreeMap<(u32, Option<Name>), u32>, String> {
    let mut out = BTreeMap::new();
    for (perm, scope, depth, root) in held {
        match root {
            Some(Identity::ServiceAccount { namespace, .. }) if namespace == ns => {}
            r => return Err(format!("a path of {ns}'s summary starts from {r:?}")),
        }
        let d = out.entry((*perm, scope.clone())).or_insert(u32::MAX);
        *d = (*d).min(*depth);
    }
    Ok(out)
}

/// Every subject's violations, as (policy, subject, namespace, duties),
/// each from its own walk.
fn bare_afresh(index: &Index) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for s in engine::subjects(index) {
        for v in unshared_violations(index, &s) {
            out.insert(format!(
                "{} {} {} {:?}",
                v.policy, v.subject, v.namespace, v.duties
            ));
        }
    }
    out
}

/// [`bare_afresh`] judged bare, as a decision does, with the namespaces'
/// summaries the index keeps; `passing`, as on a state that lasts one
/// decision.
fn bare_kept(index: &Index, passing: bool) -> BTreeSet<String> {
    let shared = engine::Shared::bare_until(None);
    judged_bare(
        index,
        if passing {
            shared.passing(None)
        } else {
            shared
        },
    )
}

/// [`bare_kept`] on a state that lasts one decision, whose change added
/// `added` and left the epoch as it was.
fn bare_kept_but<'a>(
    index: &'a Index,
    added: Option<crate::engine::index::Added<'a>>,
) -> BTreeSet<String> {
    judged_bare(index, engine::Shared::bare_until(None).passing(added))
}

fn judged_bare<'a>(index: &'a Index, shared: engine::Shared<'a>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for s in engine::subjects(index) {
        for v in engine::violations::subject_violations_bare(index, &s, &shared) {
            out.insert(format!(
                "{} {} {} {:?}",
                v.policy, v.subject, v.namespace, v.duties
            ));
        }
    }
    out
}

/// A subject's violations from its own walk, nothing shared.
fn unshared_violations(index: &Index, subject: &Identity) -> Vec<engine::Violation> {
    engine::violations::unshared_subject_violations(index, subject)
}

/// Violations with, per path, its number of steps and its last step: what
/// ranks a path (R5.4), not how a tie between equal ones was broken.
fn shape(ev: &Evaluation) -> Vec<(String, Vec<(usize, String)>)> {
    ev.violations
        .iter()
        .map(|v| {
            let t = format!("{} {} {} {:?}", v.policy, v.subject, v.namespace, v.duties);
            let paths = v
                .explanation
                .iter()
                .flat_map(|d| d.paths.iter())
                .map(|p| {
                    (
                        p.steps.len(),
                        p.steps.last().map(|s| s.to_string()).unwrap_or_default(),
                    )
                })
                .collect();
            (t, paths)
        })
        .collect()
}

/// A subject that execs into every Pod of a namespace acts as its
/// ServiceAccounts but mounts nothing itself: a Role that lets one of them
/// create Pods gives it, through that ServiceAccount, what a Pod mounts
/// (R9.1), a duty its own rules do not name. The namespace shortcut of
/// admission must judge it, though the Role grants no duty.
#[test]
fn exec_into_a_namespace_gains_what_its_new_pods_mount() {
    let (role, binding) = (role_in_a, binding_in_a);
    let (index, model) = state([
        policy("p1", None),
        service_account("a", "x"),
        role("exec", vec![rule(&["create"], "", "pods/exec", &[])]),
        role("admin", vec![rule(&["create"], "", "secrets", &[])]),
        role("pods", vec![rule(&["create"], "", "pods", &[])]),
        binding("e", "exec", Identity::User(n("u"))),
        binding("s", "admin", Identity::User(n("u"))),
    ]);
    let change = binding("p", "pods", Identity::service_account("a", "x"));
    let (review, _) = rbac_change(
        &mut index.clone(),
        None,
        change.clone(),
        now(),
        &Meter::unlimited(),
    );
    assert!(!review.allowed, "{:?}", review.violations);
    assert_eq!(review.violations[0].subject, Identity::User(n("u")));
    decision_equals_whole_states(&index, &model, &change).unwrap();
}

/// A RoleBinding that lets a ServiceAccount of `a` bind a Role of `a` that
/// impersonates a ServiceAccount of `a` that does not exist: nobody acted as
/// that one before, and a ClusterRoleBinding naming it gives it a duty
/// everywhere. Whoever execs into `a`'s Pods gains that duty cluster-wide,
/// and a violation in `b`: not a change within `a`.
#[test]
fn binding_a_role_that_impersonates_a_missing_serviceaccount_reaches_beyond_the_namespace() {
    let role = |ns: Option<&str>, name: &str, rules: Vec<Rule>| {
        Object::Role(Role {
            key: RoleKey {
                namespace: ns.map(n),
                name: n(name),
            },
            labels: BTreeMap::new(),
            rules,
            aggregation: None,
        })
    };
    let binding = |ns: Option<&str>, name: &str, role: RoleKey, subject: Identity| {
        Object::Binding(Binding {
            key: BindingKey {
                namespace: ns.map(n),
                name: n(name),
            },
            role,
            subjects: vec![subject],
        })
    };
    let in_a = |name: &str| RoleKey {
        namespace: Some(n("a")),
        name: n(name),
    };
    let (index, model) = state([
        policy("p1", None),
        service_account("a", "x"),
        role(
            Some("a"),
            "exec",
            vec![rule(&["create"], "", "pods/exec", &[])],
        ),
        role(
            Some("a"),
            "grant",
            vec![
                rule(&["bind"], RBAC, "roles", &[]),
                rule(&["create"], RBAC, "rolebindings", &[]),
            ],
        ),
        role(
            Some("a"),
            "imp",
            vec![rule(&["impersonate"], "", "serviceaccounts", &["ghost"])],
        ),
        role(None, "admin", vec![rule(&["create"], "", "secrets", &[])]),
        role(Some("b"), "use", vec![rule(&["get"], "", "secrets", &[])]),
        binding(Some("a"), "e", in_a("exec"), Identity::User(n("u"))),
        binding(
            None,
            "k",
            RoleKey::cluster("admin"),
            Identity::service_account("a", "ghost"),
        ),
        binding(
            Some("b"),
            "u",
            RoleKey {
                namespace: Some(n("b")),
                name: n("use"),
            },
            Identity::User(n("u")),
        ),
    ]);
    let change = binding(
        Some("a"),
        "g",
        in_a("grant"),
        Identity::service_account("a", "x"),
    );
    decision_reports(&index, &model, &change, |v| {
        v.subject == Identity::User(n("u")) && &*v.namespace == "b"
    });
}

/// Impersonating a User that no binding names still holds what every User
/// holds (its implicit group `system:authenticated`, R1.4): a binding for
/// that group changes the impersonator's holdings, though the User is not
/// among the group's members the index knows (found by
/// `decision_on_edges_within_a_namespace_equals_whole_state`; seed kept).
#[test]
fn impersonating_an_unnamed_user_gains_what_every_user_holds() {
    let (index, model) = state([
        policy("p1", None),
        cluster_role("imp", vec![rule(&["impersonate"], "", "users", &["u"])]),
        Object::Binding(Binding {
            key: BindingKey {
                namespace: None,
                name: n("k"),
            },
            role: RoleKey::cluster("imp"),
            subjects: vec![Identity::Group(n("g"))],
        }),
        Object::Role(Role {
            key: RoleKey {
                namespace: Some(n("a")),
                name: n("both"),
            },
            labels: BTreeMap::new(),
            rules: vec![
                rule(&["create"], "", "secrets", &[]),
                rule(&["get"], "", "secrets", &[]),
            ],
            aggregation: None,
        }),
    ]);
    let change = Object::Binding(Binding {
        key: BindingKey {
            namespace: Some(n("a")),
            name: n("b"),
        },
        role: RoleKey {
            namespace: Some(n("a")),
            name: n("both"),
        },
        subjects: vec![Identity::Group(n("system:authenticated"))],
    });
    decision_reports(&index, &model, &change, |v| {
        v.subject == Identity::Group(n("g"))
    });
}

/// Impersonating one ServiceAccount by name, cluster-wide, holds what every
/// namespace's ServiceAccount group holds (R1.4). The impersonator is in
/// neither closure kept per state (it acts as no ServiceAccount of every
/// namespace, binds nothing): a binding for `a`'s ServiceAccount group must
/// judge it, though the per-state split of the cluster-wide bindings that
/// impersonate ServiceAccounts leaves out those the closures hold.
#[test]
fn impersonating_a_named_service_account_gains_what_its_namespace_group_holds() {
    let (index, model) = state([
        policy("p1", None),
        cluster_role(
            "imp",
            vec![rule(&["impersonate"], "", "serviceaccounts", &["y"])],
        ),
        Object::Binding(Binding {
            key: BindingKey {
                namespace: None,
                name: n("k"),
            },
            role: RoleKey::cluster("imp"),
            subjects: vec![Identity::User(n("u"))],
        }),
        role_in_a("admin", vec![rule(&["create"], "", "secrets", &[])]),
        binding_in_a("admin", "admin", Identity::User(n("u"))),
        role_in_a("use", vec![rule(&["get"], "", "secrets", &[])]),
    ]);
    let change = binding_in_a("use", "use", Identity::Group(n("system:serviceaccounts:a")));
    decision_reports(&index, &model, &change, |v| {
        v.subject == Identity::User(n("u")) && &*v.namespace == "a"
    });
}

/// A binding naming a ServiceAccount that does not exist, for the first
/// time, makes it a ghost (R9.1): whoever impersonates every ServiceAccount
/// of its namespace now reaches it. Here that is `b`'s ServiceAccount, so
/// the summary of `b` (what `u`, who creates Pods in `b`, holds through
/// them) gains what the binding grants. That summary, kept before, never
/// reached the ghost, so it cannot add the binding: unlike an existing
/// ServiceAccount named first (`Index::knows`), it is new to the state.
#[test]
fn naming_a_missing_service_account_first_reaches_through_a_kept_summary() {
    let sa_b = Identity::service_account("b", "s");
    let in_b = |name: &str, rules: Vec<Rule>| {
        Object::Role(Role {
            key: RoleKey {
                namespace: Some(n("b")),
                name: n(name),
            },
            labels: BTreeMap::new(),
            rules,
            aggregation: None,
        })
    };
    let (index, model) = state([
        policy("p1", None),
        service_account("b", "s"),
        role_in_a(
            "imp",
            vec![rule(&["impersonate"], "", "serviceaccounts", &[])],
        ),
        binding_in_a("imp", "imp", sa_b),
        in_b("pods", vec![rule(&["create"], "", "pods", &[])]),
        Object::Binding(Binding {
            key: BindingKey {
                namespace: Some(n("b")),
                name: n("pods"),
            },
            role: RoleKey {
                namespace: Some(n("b")),
                name: n("pods"),
            },
            subjects: vec![Identity::User(n("u"))],
        }),
        role_in_a("admin", vec![rule(&["create"], "", "secrets", &[])]),
        binding_in_a("admin", "admin", Identity::User(n("u"))),
        role_in_a("use", vec![rule(&["get"], "", "secrets", &[])]),
    ]);
    // Summaries kept on the state before, as earlier decisions keep them.
    let _ = bare_kept(&index, false);
    let change = binding_in_a("z-use", "use", Identity::service_account("a", "z"));
    decision_reports(&index, &model, &change, |v| {
        v.subject == Identity::User(n("u")) && &*v.namespace == "a"
    });
}

/// A binding that names a Group for the first time, of a role that opens no
/// escalation path, gives whoever reaches the Group (members, impersonators)
/// the role's grants and nothing more: only the policies counting them need
/// judging, none here. A ClusterRoleBinding of `view` for
/// `system:serviceaccounts` took seconds at 100k bindings when that Group
/// counted as a new subject. A new User may hold what its implicit groups
/// hold: that takes the general path.
#[test]
fn a_group_named_for_the_first_time_gains_only_the_roles_grants() {
    let (mut index, model) = state([
        policy("p1", None),
        cluster_role("pods", vec![rule(&["get", "list"], "", "pods", &[])]),
        cluster_role("reader", vec![rule(&["get"], "", "secrets", &[])]),
    ]);
    let binding = |role: &str, subject: Identity| {
        Object::Binding(Binding {
            key: BindingKey {
                namespace: None,
                name: n("k"),
            },
            role: RoleKey::cluster(role),
            subjects: vec![subject],
        })
    };
    let all_sas = Identity::Group(n("system:serviceaccounts"));
    assert!(!index.exists(&all_sas));
    assert_eq!(
        gains(&mut index, None, &binding("pods", all_sas.clone())),
        Some(BTreeSet::new())
    );
    assert_eq!(
        gains(&mut index, None, &binding("reader", all_sas.clone())).map(|s| s.len()),
        Some(1)
    );
    assert_eq!(
        gains(&mut index, None, &binding("pods", Identity::User(n("new")))),
        None
    );
    for change in [binding("pods", all_sas.clone()), binding("reader", all_sas)] {
        decision_equals_whole_states(&index, &model, &change).unwrap();
    }
}

/// The state `setup` builds and the object `change` applies, for the tests
/// of an RBAC change's decision: `None` for a removal (always allowed, R7.3,
/// nothing to judge) and for a policy (judged on the whole state).
#[allow(clippy::type_complexity)]
fn rbac_case(setup: &[Op], change: Op) -> Option<(Index, BTreeMap<ObjectKey, Object>, Object)> {
    let Op::Apply(object) = change else {
        return None;
    };
    if matches!(object, Object::Policy(_)) {
        return None;
    }
    let mut index = Index::new();
    let mut model = BTreeMap::new();
    for op in setup {
        apply(&mut index, &mut model, op);
    }
    Some((index, model, object))
}

/// The index and the objects (by key) of a state built from `objects`.
fn state(objects: impl IntoIterator<Item = Object>) -> (Index, BTreeMap<ObjectKey, Object>) {
    let mut model = BTreeMap::new();
    let mut index = Index::new();
    for o in objects {
        apply(&mut index, &mut model, &Op::Apply(o));
    }
    (index, model)
}

/// The decision on `change` reports a violation `expected` accepts, and
/// exactly the new violations of the whole states before and after.
fn decision_reports(
    index: &Index,
    model: &BTreeMap<ObjectKey, Object>,
    change: &Object,
    expected: impl Fn(&engine::Violation) -> bool,
) {
    let (review, _) = rbac_change(
        &mut index.clone(),
        None,
        change.clone(),
        now(),
        &Meter::unlimited(),
    );
    assert!(
        review.violations.iter().any(expected),
        "{:?}",
        review.violations
    );
    decision_equals_whole_states(index, model, change).unwrap();
}

/// A binding that neither opens an escalation path nor names anyone new
/// keeps the index's epoch, yet changes what every ServiceAccount of its
/// namespace holds: the value kept for that namespace follows it, and
/// goes back with the change's undo, as each decision applies and undoes.
#[test]
fn what_every_service_account_holds_follows_a_plain_binding() {
    let sa = Identity::service_account("a", "x");
    let role = |name: &str, verbs: &[&str]| role_in_a(name, vec![rule(verbs, "", "secrets", &[])]);
    let binding = |name: &str, to: &str| binding_in_a(name, to, sa.clone());
    let (mut index, _) = state([
        policy("p1", None),
        service_account("a", "x"),
        role("r1", &["create"]),
        role("r2", &["get"]),
        binding("b1", "r1"),
    ]);
    let ns = n("a");
    let held = every_holds_of(&index, &ns, true);
    assert_eq!(held.len(), 1);
    let undo = index.apply(binding("b2", "r2"));
    let after = every_holds_of(&index, &ns, true);
    assert_eq!(after.len(), 2, "the new grant is held");
    assert_eq!(after, every_holds_of(&index, &ns, false));
    index.undo(undo);
    assert_eq!(every_holds_of(&index, &ns, true), held);
    // Elsewhere, the same change leaves the namespace's value as it was.
    let undo = index.apply(binding_in("b", "b2", "c1", sa.clone()));
    assert_eq!(every_holds_of(&index, &ns, true), held);
    index.undo(undo);
    // A bulk load gives no namespace a fresh epoch, but the index one.
    index.extend([binding("b2", "r2")]);
    assert_eq!(every_holds_of(&index, &ns, true).len(), 2);
}

/// What every ServiceAccount of a namespace holds, kept for bare judging,
/// reads beyond the namespace: a plain binding in another namespace that
/// names one of them (no new identity, no escalation path: the index's
/// epoch stays) changes what a Pod creator there obtains, and the kept
/// summary must not hide it.
#[test]
fn a_kept_namespace_summary_follows_a_binding_elsewhere() {
    let sa = Identity::service_account("a", "x");
    let user = Identity::User(n("u"));
    let objects = [
        policy("p1", None),
        service_account("a", "x"),
        role_in_a("pods", vec![rule(&["create"], "", "pods", &[])]),
        role_in_a("neutral", vec![rule(&["get"], "", "configmaps", &[])]),
        binding_in_a("b0", "neutral", sa.clone()),
        binding_in_a("b1", "pods", user.clone()),
        cluster_role(
            "secrets",
            vec![rule(&["create", "get"], "", "secrets", &[])],
        ),
    ];
    let (mut index, _) = state(objects.clone());
    let bare = |index: &Index| {
        let shared = engine::Shared::bare_until(None);
        let mut got: Vec<String> =
            engine::violations::subject_violations_bare(index, &user, &shared)
                .iter()
                .map(|v| format!("{} {:?}", v.namespace, v.duties))
                .collect();
        got.sort();
        got
    };
    assert!(bare(&index).is_empty());
    assert!(bare(&index).is_empty(), "read from the kept summary");
    let b2 = binding_in("b", "b2", "secrets", sa.clone());
    let undo = index.apply(b2.clone());
    let want: Vec<String> = unshared_violations(&index, &user)
        .iter()
        .map(|v| format!("{} {:?}", v.namespace, v.duties))
        .collect();
    assert_eq!(
        want,
        [r#"b ["admin", "use"]"#],
        "a Pod of a runs as a/x, which administers b's Secrets"
    );
    assert_eq!(bare(&index), want);
    // As a decision reads it: the kept summary and what the binding adds.
    index.undo(undo);
    assert!(bare(&index).is_empty());
    let key = BindingKey {
        namespace: Some(n("b")),
        name: n("b2"),
    };
    let undo = index.apply(b2.clone());
    assert_eq!(
        undo.epoch_before(),
        index.epoch(),
        "a plain binding keeps the epoch"
    );
    let got = bare_kept_but(&index, added(&index, &undo, &key));
    assert_eq!(got, bare_afresh(&index));
    assert!(got.iter().any(|v| v.contains("User:u b [")), "{got:?}");
    index.undo(undo);
    // Nothing kept yet: the walk on the state after leaves the binding out,
    // keeps that as the state before's, and adds the binding's grants.
    let (mut index, _) = state(objects);
    let undo = index.apply(b2.clone());
    let want = bare_afresh(&index);
    assert_eq!(bare_kept_but(&index, added(&index, &undo, &key)), want);
    index.undo(undo);
    assert!(
        bare(&index).is_empty(),
        "what was kept is the state before's"
    );
    let undo = index.apply(b2);
    assert_eq!(bare_kept_but(&index, added(&index, &undo, &key)), want);
    index.undo(undo);
}

/// The binding `key` that the change of `undo` created, as a decision's
/// state after it reads the summaries kept before it.
fn added<'a>(
    index: &'a Index,
    undo: &crate::engine::index::Undo,
    key: &BindingKey,
) -> Option<crate::engine::index::Added<'a>> {
    assert!(undo.created());
    index
        .binding(key)
        .map(|binding| crate::engine::index::Added::by(binding, undo))
}

/// A binding that opens an escalation path renews the epoch, yet adds to a
/// namespace's kept summary only its grants when every ServiceAccount (and
/// for workloads, every Secret) of its namespace was reached already; when
/// not, the summary is walked again on the state after it.
#[test]
fn an_escalating_binding_adds_its_grants_where_its_reach_was_reached() {
    let x = Identity::service_account("a", "x");
    let y = Identity::service_account("a", "y");
    let z = Identity::service_account("c", "z");
    let user = Identity::User(n("u"));
    let (mut index, _) = state([
        policy("p1", None),
        service_account("a", "x"),
        service_account("a", "y"),
        service_account("c", "z"),
        cluster_role("pods", vec![rule(&["create"], "", "pods", &[])]),
        cluster_role(
            "pods-and-secrets",
            vec![
                rule(&["create"], "", "pods", &[]),
                rule(&["create"], "", "secrets", &[]),
            ],
        ),
        cluster_role("secret-admin", vec![rule(&["create"], "", "secrets", &[])]),
        // u acts as every ServiceAccount of a; y runs Pods in b already.
        binding_in("a", "b0", "pods", user.clone()),
        binding_in("b", "b1", "pods", y),
        cluster_role("neutral", vec![rule(&["get"], "", "configmaps", &[])]),
        binding_in("a", "b2", "neutral", x.clone()),
        binding_in("c", "b3", "secret-admin", z),
    ]);
    let bare = |index: &Index| {
        let shared = engine::Shared::bare_until(None);
        engine::violations::subject_violations_bare(index, &user, &shared).len()
    };
    assert_eq!(bare(&index), 0);
    // Kept now. x runs Pods in b too and administers its Secrets: u gains
    // secret admin in b, beside the Secrets it mounts there through y (the
    // kept summary and the binding's grants); in c, where nobody of a ran
    // Pods, x now acts as z too (walked again).
    assert_eq!(bare(&index), 0);
    for (ns, name) in [("b", "e1"), ("c", "e2")] {
        let key = BindingKey {
            namespace: Some(n(ns)),
            name: n(name),
        };
        let undo = index.apply(binding_in(ns, name, "pods-and-secrets", x.clone()));
        assert_ne!(undo.epoch_before(), index.epoch(), "an escalation binding");
        let want = bare_afresh(&index);
        assert!(
            want.iter().any(|v| v.contains(&format!("User:u {ns} ["))),
            "{want:?}"
        );
        assert_eq!(
            bare_kept_but(&index, added(&index, &undo, &key)),
            want,
            "in {ns}"
        );
        index.undo(undo);
    }
}

/// A binding that lets an identity the summary's walk reached create
/// workloads in a namespace whose every ServiceAccount the walk reached,
/// but whose Secrets nobody it reached mounted: the kept summary holds with
/// the binding's grants and what a Pod mounts there, and is not walked
/// again.
#[test]
fn a_workload_binding_adds_what_its_pods_mount_where_nothing_was_mounted() {
    let x = Identity::service_account("a", "x");
    let user = Identity::User(n("u"));
    let objects = [
        policy("p1", None),
        service_account("a", "x"),
        service_account("a", "y"),
        // u acts as every ServiceAccount of a by exec: it mounts nothing.
        cluster_role("exec", vec![rule(&["create"], "", "pods/exec", &[])]),
        binding_in("a", "b0", "exec", user.clone()),
        cluster_role("neutral", vec![rule(&["get"], "", "configmaps", &[])]),
        binding_in("a", "b1", "neutral", x.clone()),
        cluster_role(
            "pods-and-secrets",
            vec![
                rule(&["create"], "", "pods", &[]),
                rule(&["create"], "", "secrets", &[]),
            ],
        ),
    ];
    let (mut index, _) = state(objects.clone());
    let bare = |index: &Index| {
        let shared = engine::Shared::bare_until(None);
        engine::violations::subject_violations_bare(index, &user, &shared).len()
    };
    assert_eq!(bare(&index), 0);
    assert_eq!(bare(&index), 0, "read from the kept summary");
    let key = BindingKey {
        namespace: Some(n("a")),
        name: n("e"),
    };
    let e = binding_in("a", "e", "pods-and-secrets", x.clone());
    let undo = index.apply(e.clone());
    assert_ne!(undo.epoch_before(), index.epoch(), "an escalation binding");
    let want = bare_afresh(&index);
    assert!(
        want.contains(r#"p1 User:u a ["admin", "use"]"#),
        "x's Pods mount a's Secrets, and u acts as x: {want:?}"
    );
    let added = added(&index, &undo, &key).unwrap();
    let set = crate::model::DerivedSet::all();
    let kept = [None, Some(vec![0])]
        .into_iter()
        .filter_map(|slots| index.kept_summary_but(&(n("a"), set, slots), added).ok())
        .count();
    assert_eq!(kept, 1, "read from the kept summary, not walked again");
    assert_eq!(bare_kept_but(&index, Some(added)), want);
    index.undo(undo);
    // Nothing kept yet: the walk on the state after leaves the binding out,
    // keeps that as the state before's (though the binding renewed the
    // epoch), and adds what the binding does.
    let (mut index, _) = state(objects);
    let undo = index.apply(e.clone());
    let added = self::added(&index, &undo, &key);
    assert_eq!(bare_kept_but(&index, added), want);
    let kept = [None, Some(vec![0])]
        .into_iter()
        .filter_map(|slots| {
            index
                .kept_summary_but(&(n("a"), set, slots), added.unwrap())
                .ok()
        })
        .count();
    assert_eq!(kept, 1, "kept for the state before");
    index.undo(undo);
    assert_eq!(bare(&index), 0, "what was kept is the state before's");
}
