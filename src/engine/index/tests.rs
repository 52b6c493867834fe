//! The index is updated incrementally; these tests hold it to the standard of
//! an index built from scratch, and `undo` to restoring the state exactly.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use proptest::prelude::*;

use super::Index;
use crate::crd::{SoDPolicySpec, compile_policy};
use crate::engine::{self, Evaluation};
use crate::model::{Binding, BindingKey, Identity, Name, Object, ObjectKey, Role, RoleKey};
use crate::model::{LabelSelector, Requirement, Rule};

fn n(s: &str) -> Name {
    Name::from(s)
}

fn rule(verbs: &[&str], res: &str) -> Rule {
    Rule {
        verbs: verbs.iter().map(|v| n(v)).collect(),
        api_groups: vec![n("")],
        resources: vec![n(res)],
        ..Rule::default()
    }
}

fn rules_pool() -> Vec<Rule> {
    vec![
        rule(&["create"], "secrets"),
        rule(&["get"], "secrets"),
        rule(&["*"], "secrets"),
        rule(&["get"], "configmaps"),
        rule(&["update"], "configmaps"),
        rule(&["get"], "*"),
    ]
}

fn policy(name: &str, scope: &str, resource: &str) -> Object {
    let spec: SoDPolicySpec = serde_json::from_value(serde_json::json!({
        "scope": scope,
        "subjects": {"kinds": ["ServiceAccount", "User", "Group"]},
        "duties": [
            {"name": "admin", "permissions": [{"apiGroups": [""], "resources": [resource], "verbs": ["create", "update"]}]},
            {"name": "use", "permissions": [{"apiGroups": [""], "resources": [resource], "verbs": ["get"]}]}
        ]
    }))
    .unwrap();
    Object::Policy(Arc::new(compile_policy(name, &spec).unwrap()))
}

fn subjects_pool() -> Vec<Identity> {
    vec![
        Identity::service_account("a", "x"),
        Identity::service_account("a", "y"),
        Identity::service_account("b", "x"),
        Identity::Group(n("system:serviceaccounts:a")),
        Identity::Group(n("system:authenticated")),
        Identity::User(n("u")),
    ]
}

fn pick<T: Clone>(pool: &[T], mask: u8) -> Vec<T> {
    pool.iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, x)| x.clone())
        .collect()
}

/// One change to the state, drawn from a small universe so that changes
/// collide often.
#[derive(Debug, Clone)]
enum Op {
    Apply(Object),
    Remove(ObjectKey),
}

fn arb_op() -> impl Strategy<Value = Op> {
    let ns = prop_oneof![Just("a"), Just("b")];
    let role_name = prop_oneof![Just("r1"), Just("r2")];
    let cr_name = prop_oneof![Just("c1"), Just("c2"), Just("c3"), Just("c4")];
    prop_oneof![
        (ns.clone(), role_name.clone(), any::<u8>()).prop_map(|(ns, name, mask)| Op::Apply(
            Object::Role(Role {
                key: RoleKey {
                    namespace: Some(n(ns)),
                    name: n(name)
                },
                labels: BTreeMap::new(),
                rules: pick(&rules_pool(), mask),
                aggregation: None,
            })
        )),
        (cr_name.clone(), any::<u8>(), any::<bool>(), 0u8..3).prop_map(
            |(name, mask, labelled, agg)| {
                let mut labels = BTreeMap::new();
                if labelled {
                    labels.insert(n("agg"), n("x"));
                }
                let aggregation = match agg {
                    0 => None,
                    1 => Some(vec![LabelSelector {
                        requirements: vec![Requirement::In(n("agg"), vec![n("x")])],
                    }]),
                    _ => Some(vec![LabelSelector {
                        requirements: vec![Requirement::Exists(n("agg"))],
                    }]),
                };
                Op::Apply(Object::Role(Role {
                    key: RoleKey {
                        namespace: None,
                        name: n(name),
                    },
                    labels,
                    rules: pick(&rules_pool(), mask & 0b11_0111),
                    aggregation,
                }))
            }
        ),
        (
            ns.clone(),
            prop_oneof![Just("b1"), Just("b2")],
            any::<bool>(),
            role_name.clone(),
            cr_name.clone(),
            any::<u8>()
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
                    subjects: pick(&subjects_pool(), mask),
                }))
            }),
        (prop_oneof![Just("k1"), Just("k2")], cr_name, any::<u8>()).prop_map(|(name, c, mask)| {
            Op::Apply(Object::Binding(Binding {
                key: BindingKey {
                    namespace: None,
                    name: n(name),
                },
                role: RoleKey::cluster(c),
                subjects: pick(&subjects_pool(), mask),
            }))
        }),
        (ns.clone(), prop_oneof![Just("x"), Just("y")]).prop_map(|(ns, name)| Op::Apply(
            Object::ServiceAccount {
                namespace: n(ns),
                name: n(name)
            }
        )),
        (ns.clone(), prop_oneof![Just("x"), Just("y")]).prop_map(|(ns, name)| Op::Remove(
            ObjectKey::ServiceAccount {
                namespace: n(ns),
                name: n(name)
            }
        )),
        prop_oneof![
            Just(("p1", "Namespace", "secrets")),
            Just(("p1", "Cluster", "secrets")),
            Just(("p2", "Namespace", "configmaps"))
        ]
        .prop_map(|(name, scope, res)| Op::Apply(policy(name, scope, res))),
        prop_oneof![Just("p1"), Just("p2")].prop_map(|p| Op::Remove(ObjectKey::Policy(n(p)))),
        (ns.clone(), role_name).prop_map(|(ns, r)| Op::Remove(ObjectKey::Role(RoleKey {
            namespace: Some(n(ns)),
            name: n(r)
        }))),
        prop_oneof![Just("c1"), Just("c2"), Just("c3")]
            .prop_map(|c| Op::Remove(ObjectKey::Role(RoleKey::cluster(c)))),
        (ns, prop_oneof![Just("b1"), Just("b2")]).prop_map(|(ns, b)| Op::Remove(
            ObjectKey::Binding(BindingKey {
                namespace: Some(n(ns)),
                name: n(b)
            })
        )),
    ]
}

/// The objects a from-scratch index is built from, tracked beside the index.
fn apply_to_model(model: &mut BTreeMap<ObjectKey, Object>, op: &Op) {
    match op {
        Op::Apply(o) => {
            model.insert(o.key(), o.clone());
        }
        Op::Remove(k) => {
            model.remove(k);
        }
    }
}

/// The names an index holds interned, sorted.
fn interned(index: &Index) -> Vec<String> {
    let mut v: Vec<String> = index.names.iter().map(|n| n.to_string()).collect();
    v.sort();
    v
}

fn now() -> Timestamp {
    "2026-11-28T12:00:00Z".parse().unwrap()
}

fn eval(index: &Index) -> Evaluation {
    engine::evaluate(index, now())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn incremental_index_equals_rebuilt(ops in proptest::collection::vec(arb_op(), 1..40)) {
        let mut index = Index::new();
        let mut model = BTreeMap::new();
        for op in &ops {
            let _ = match op {
                Op::Apply(o) => index.apply(o.clone()),
                Op::Remove(k) => index.remove(k),
            };
            apply_to_model(&mut model, op);
            let rebuilt = Index::from_objects(model.values().cloned());
            prop_assert_eq!(eval(&index), eval(&rebuilt));
            // Issue 9: what the watches replace or delete gives its names
            // back; the interner holds what a fresh index of the same
            // objects holds.
            prop_assert_eq!(interned(&index), interned(&rebuilt));
        }
    }

    #[test]
    fn undo_restores_the_state(
        setup in proptest::collection::vec(arb_op(), 1..30),
        change in arb_op(),
    ) {
        let mut index = Index::new();
        for op in &setup {
            let _ = match op {
                Op::Apply(o) => index.apply(o.clone()),
                Op::Remove(k) => index.remove(k),
            };
        }
        let before = eval(&index);
        let counts = index.counts();
        let names = interned(&index);
        let state = index.state();
        let undo = match &change {
            Op::Apply(o) => index.apply(o.clone()),
            Op::Remove(k) => index.remove(k),
        };
        // What is kept for a state number holds for it alone: a change
        // gives a number no state had, and its undo the one before.
        prop_assert_ne!(index.state(), state);
        index.undo(undo);
        prop_assert_eq!(index.state(), state);
        prop_assert_eq!(eval(&index), before);
        prop_assert_eq!(index.counts(), counts);
        prop_assert_eq!(interned(&index), names);
    }

    /// A clone is a snapshot: whatever is applied to or removed from the
    /// index afterwards, it keeps the state it was taken of, and what is
    /// done to it does not reach the index.
    #[test]
    fn a_clone_is_a_snapshot(
        before in proptest::collection::vec(arb_op(), 1..30),
        after in proptest::collection::vec(arb_op(), 1..20),
        on_clone in proptest::collection::vec(arb_op(), 0..10),
    ) {
        let run = |index: &mut Index, op: &Op| {
            let _ = match op {
                Op::Apply(o) => index.apply(o.clone()),
                Op::Remove(k) => index.remove(k),
            };
        };
        let mut index = Index::new();
        let mut model = BTreeMap::new();
        for op in &before {
            run(&mut index, op);
            apply_to_model(&mut model, op);
        }
        let mut snapshot = index.clone();
        let taken = Index::from_objects(model.values().cloned());
        for op in &after {
            run(&mut index, op);
            apply_to_model(&mut model, op);
        }
        prop_assert_eq!(eval(&snapshot), eval(&taken));
        prop_assert_eq!(snapshot.counts(), taken.counts());
        prop_assert_eq!(interned(&snapshot), interned(&taken));
        prop_assert_ne!(snapshot.state(), index.state());
        for op in &on_clone {
            run(&mut snapshot, op);
        }
        prop_assert_ne!(snapshot.state(), index.state());
        let current = Index::from_objects(model.values().cloned());
        prop_assert_eq!(eval(&index), eval(&current));
        prop_assert_eq!(index.counts(), current.counts());
        // Names a snapshot still holds are no reason to keep them here.
        prop_assert_eq!(interned(&index), interned(&current));
    }
}

#[test]
fn names_are_interned() {
    let mut index = Index::new();
    for i in 0..3 {
        let _ = index.apply(Object::Binding(Binding {
            key: BindingKey {
                namespace: Some(n("payments")),
                name: n(&format!("b{i}")),
            },
            role: RoleKey {
                namespace: Some(n("payments")),
                name: n("r"),
            },
            subjects: vec![Identity::service_account("payments", "api")],
        }));
    }
    let keys: Vec<&BindingKey> = index
        .bindings_naming(&Identity::service_account("payments", "api"))
        .iter()
        .map(|b| &b.key)
        .collect();
    assert_eq!(keys.len(), 3);
    let a = keys[0].namespace.as_ref().unwrap();
    let b = keys[2].namespace.as_ref().unwrap();
    assert!(Arc::ptr_eq(a, b));
}

/// Decisions apply the request's object and undo it: a stream of requests
/// with fresh names must not grow the interner (it did, by every name of
/// every request ever judged).
#[test]
fn an_undone_change_leaves_no_names_behind() {
    let binding = |name: &str, role: &str, user: &str| {
        Object::Binding(Binding {
            key: BindingKey {
                namespace: Some(n("payments")),
                name: n(name),
            },
            role: RoleKey {
                namespace: Some(n("payments")),
                name: n(role),
            },
            subjects: vec![
                Identity::service_account("payments", "api"),
                Identity::User(n(user)),
                Identity::User(n(user)),
            ],
        })
    };
    let mut index = Index::from_objects([binding("kept", "r", "alice")]);
    let before = index.names.len();
    for i in 0..50 {
        let u = index.apply(binding(
            &format!("new-{i}"),
            &format!("r-{i}"),
            &format!("u-{i}"),
        ));
        index.undo(u);
        // Replacing the kept binding, then putting it back.
        let u = index.apply(binding("kept", &format!("r2-{i}"), &format!("u2-{i}")));
        index.undo(u);
    }
    assert_eq!(index.names.len(), before);
    // What the index still uses stays interned.
    let b = index
        .binding(&BindingKey {
            namespace: Some(n("payments")),
            name: n("kept"),
        })
        .unwrap()
        .clone();
    let mut again = n("alice");
    index.names.canon(&mut again);
    assert!(Arc::ptr_eq(&again, b.subjects[1].name()));
}

/// Issue 9: objects the watches delete, and objects replaced by ones with
/// other names, give their names back, so that a long-running server's
/// interner follows the cluster instead of growing with every name it ever
/// saw.
#[test]
fn watch_deletes_and_replacements_release_names() {
    let sa = |ns: &str, name: &str| Object::ServiceAccount {
        namespace: n(ns),
        name: n(name),
    };
    let binding = |ns: &str, name: &str, role: &str, subject: Identity| {
        Object::Binding(Binding {
            key: BindingKey {
                namespace: Some(n(ns)),
                name: n(name),
            },
            role: RoleKey {
                namespace: Some(n(ns)),
                name: n(role),
            },
            subjects: vec![subject],
        })
    };
    let role = |ns: &str, name: &str, verb: &str| {
        Object::Role(Role {
            key: RoleKey {
                namespace: Some(n(ns)),
                name: n(name),
            },
            labels: BTreeMap::new(),
            rules: vec![rule(&[verb], "secrets")],
            aggregation: None,
        })
    };
    let kept = binding("payments", "kept", "r", Identity::User(n("alice")));
    let mut index = Index::from_objects([
        Object::Namespace(n("payments")),
        sa("payments", "api"),
        role("payments", "r", "get"),
        kept.clone(),
        policy("p", "Namespace", "secrets"),
    ]);
    let start = interned(&index);
    for i in 0..100 {
        let ns = format!("ns-{i}");
        let added = [
            Object::Namespace(n(&ns)),
            sa(&ns, &format!("sa-{i}")),
            role(&ns, &format!("role-{i}"), &format!("verb-{i}")),
            binding(
                &ns,
                &format!("b-{i}"),
                &format!("role-{i}"),
                Identity::service_account(&ns, &format!("sa-{i}")),
            ),
            binding(
                "payments",
                &format!("pb-{i}"),
                "r",
                Identity::Group(n(&format!("g-{i}"))),
            ),
        ];
        for o in &added {
            let _ = index.apply(o.clone());
        }
        // Replaced by an object with other names, then by the old one.
        let _ = index.apply(binding(
            "payments",
            "kept",
            &format!("r-{i}"),
            Identity::User(n(&format!("u-{i}"))),
        ));
        let _ = index.apply(kept.clone());
        for o in added.iter().rev() {
            let _ = index.remove(&o.key());
        }
        // A policy replaced and deleted, as its watch shows it.
        let _ = index.apply(policy(&format!("q-{i}"), "Cluster", "configmaps"));
        let _ = index.remove(&ObjectKey::Policy(n(&format!("q-{i}"))));
    }
    assert_eq!(interned(&index), start);
    assert!(
        index
            .binding(&BindingKey {
                namespace: Some(n("payments")),
                name: n("kept"),
            })
            .is_some()
    );
}

/// A namespace's epoch is kept while something changed in it, and goes
/// when its Namespace is deleted (a cluster that creates and deletes
/// namespaces all day keeps none of them); an undo puts back both.
#[test]
fn a_deleted_namespace_leaves_no_epoch_behind() {
    let mut index = Index::new();
    let _ = index.apply(Object::Namespace(n("x")));
    let version = index.namespace_version(&n("x"));
    let _ = index.apply(Object::ServiceAccount {
        namespace: n("x"),
        name: n("a"),
    });
    assert!(index.scope_epochs.contains_key("x"));
    let changed = index.namespace_version(&n("x"));
    assert_ne!(changed, version);
    let undo = index.remove(&ObjectKey::Namespace(n("x")));
    assert!(!index.scope_epochs.contains_key("x"));
    let deleted = index.namespace_version(&n("x"));
    assert_ne!(deleted, changed);
    assert_ne!(deleted, version);
    index.undo(undo);
    assert_eq!(index.namespace_version(&n("x")), changed);
    // A change tried and undone in a namespace nothing else changed in
    // leaves no epoch either.
    let undo = index.apply(Object::ServiceAccount {
        namespace: n("y"),
        name: n("a"),
    });
    index.undo(undo);
    assert!(!index.scope_epochs.contains_key("y"));
}
