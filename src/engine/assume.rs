//! R7.8: what an admitted change adds to the state a live webhook decides on.
//!
//! The webhook answers before the API server stores anything, and `/validate`
//! may be reached by callers other than the API server. An admitted change
//! may therefore never happen (a CREATE of a name that exists, a conflict,
//! another webhook's refusal, a forged review). Later decisions count it only
//! by what it adds, so that the worst a change that never happens can do is
//! make sodguard stricter until the watch or the overlay TTL settles it:
//!
//! - a binding with the same roleRef keeps the union of the subjects;
//! - a role keeps the union of the rules and of the aggregation selectors;
//! - labels cannot be united (a selector may require a label to be absent or
//!   to have another value), so a ClusterRole keeps its labels and a copy
//!   under a key no real object can have carries the new ones: the role is
//!   then reached both by the aggregators its old labels select and by those
//!   its new labels select;
//! - a binding to another role (a CREATE of an existing name, or an UPDATE
//!   the API server will refuse as roleRef is immutable) is kept the same way,
//!   beside the assumed one;
//! - ServiceAccounts and Namespaces are added;
//! - DELETEs, SoDPolicies and SoDExceptions are not assumed at all: removing
//!   rights, relaxing or deleting a policy and excusing a violation only ever
//!   make decisions more permissive, so they count once the watch shows them.

use crate::engine::index::Index;
use crate::model::{Binding, BindingKey, Name, Object, ObjectKey, Role, RoleKey};

/// What an admitted, unconfirmed change adds to the assumed state.
#[derive(Debug, Clone)]
pub struct Assumption {
    /// The object to assume under the change's own key: what was assumed
    /// there, united with what was admitted.
    pub merged: Object,
    /// What cannot be united with `merged`, under a key no real object has
    /// (its name contains `/`, which the API server refuses in RBAC names).
    pub shadow: Option<Object>,
}

impl Assumption {
    pub fn key(&self) -> ObjectKey {
        self.merged.key()
    }
}

/// Unites `admitted` with what `assumed` holds under its key; `None` for the
/// kinds that are never assumed.
pub fn assumption(assumed: &Index, admitted: Object) -> Option<Assumption> {
    match admitted {
        Object::Policy(_)
        | Object::Exception(_)
        | Object::TokenSecret(_)
        | Object::Grant(_)
        | Object::GrantPolicy(_) => None,
        Object::Namespace(_) | Object::ServiceAccount { .. } => Some(Assumption {
            merged: admitted,
            shadow: None,
        }),
        Object::Binding(b) => Some(match assumed.binding(&b.key) {
            None => Assumption {
                merged: Object::Binding(b),
                shadow: None,
            },
            Some(current) if current.role == b.role => {
                let mut merged = current.clone();
                for s in b.subjects {
                    if !merged.subjects.contains(&s) {
                        merged.subjects.push(s);
                    }
                }
                Assumption {
                    merged: Object::Binding(merged),
                    shadow: None,
                }
            }
            Some(current) => {
                let key = free_binding_key(assumed, &b.key);
                Assumption {
                    merged: Object::Binding(current.clone()),
                    shadow: Some(Object::Binding(Binding { key, ..b })),
                }
            }
        }),
        Object::Role(r) => Some(match assumed.role(&r.key) {
            None => Assumption {
                merged: Object::Role(r),
                shadow: None,
            },
            Some(current) => {
                let merged = unite_roles(&current.role, &r);
                // Labels matter only for ClusterRoles, through aggregation.
                let shadow = (r.key.namespace.is_none() && r.labels != merged.labels).then(|| {
                    Object::Role(Role {
                        key: free_role_key(assumed, &r.key),
                        labels: r.labels,
                        ..merged.clone()
                    })
                });
                Assumption {
                    merged: Object::Role(merged),
                    shadow,
                }
            }
        }),
    }
}

/// `current` with the rules and aggregation selectors of `admitted` added;
/// `current`'s labels.
fn unite_roles(current: &Role, admitted: &Role) -> Role {
    let mut merged = current.clone();
    for rule in &admitted.rules {
        if !merged.rules.contains(rule) {
            merged.rules.push(rule.clone());
        }
    }
    if let Some(selectors) = &admitted.aggregation {
        let mine = merged.aggregation.get_or_insert_with(Vec::new);
        for s in selectors {
            if !mine.contains(s) {
                mine.push(s.clone());
            }
        }
    }
    merged
}

fn shadow_name(name: &str, n: usize) -> Name {
    Name::from(format!("{name}/pending-{n}"))
}

fn free_binding_key(assumed: &Index, key: &BindingKey) -> BindingKey {
    (1..)
        .map(|n| BindingKey {
            namespace: key.namespace.clone(),
            name: shadow_name(&key.name, n),
        })
        .find(|k| assumed.binding(k).is_none())
        .unwrap_or_else(|| key.clone())
}

fn free_role_key(assumed: &Index, key: &RoleKey) -> RoleKey {
    (1..)
        .map(|n| RoleKey {
            namespace: key.namespace.clone(),
            name: shadow_name(&key.name, n),
        })
        .find(|k| assumed.role(k).is_none())
        .unwrap_or_else(|| key.clone())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::decode::convert;

    fn object(v: Value) -> Object {
        convert(&v).unwrap().unwrap()
    }

    fn binding(role: &str, subjects: &[&str]) -> Object {
        let subjects: Vec<Value> = subjects
            .iter()
            .map(|s| json!({"kind": "ServiceAccount", "name": s, "namespace": "ns"}))
            .collect();
        object(
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "b", "namespace": "ns"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
            "subjects": subjects}),
        )
    }

    fn cluster_role(labels: Value, verbs: &[&str]) -> Object {
        object(
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "r", "labels": labels},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": verbs}]}),
        )
    }

    #[test]
    fn a_binding_keeps_the_union_of_its_subjects() {
        let index = Index::from_objects([binding("x", &["a", "b"])]);
        let a = assumption(&index, binding("x", &["c"])).unwrap();
        let Object::Binding(b) = &a.merged else {
            panic!("{a:?}")
        };
        let names: Vec<&str> = b.subjects.iter().map(|s| &**s.name()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert!(a.shadow.is_none());
    }

    #[test]
    fn a_binding_to_another_role_is_kept_beside_the_assumed_one() {
        let index = Index::from_objects([binding("x", &["a"])]);
        let a = assumption(&index, binding("y", &[])).unwrap();
        assert!(matches!(&a.merged, Object::Binding(b) if &*b.role.name == "x"));
        let Some(Object::Binding(s)) = &a.shadow else {
            panic!("{a:?}")
        };
        assert_eq!(&*s.key.name, "b/pending-1");
        assert_eq!(&*s.role.name, "y");
    }

    #[test]
    fn a_role_keeps_its_rules_and_labels_and_new_labels_go_beside_it() {
        let index = Index::from_objects([cluster_role(json!({"a": "1"}), &["get"])]);
        let a = assumption(&index, cluster_role(json!({"b": "1"}), &["create"])).unwrap();
        let Object::Role(merged) = &a.merged else {
            panic!("{a:?}")
        };
        assert_eq!(merged.rules.len(), 2);
        assert_eq!(
            merged.labels.keys().map(|k| &**k).collect::<Vec<_>>(),
            ["a"]
        );
        let Some(Object::Role(s)) = &a.shadow else {
            panic!("{a:?}")
        };
        assert_eq!(&*s.key.name, "r/pending-1");
        assert_eq!(s.labels.keys().map(|k| &**k).collect::<Vec<_>>(), ["b"]);
        assert_eq!(s.rules, merged.rules);
        // The same labels need nothing beside it.
        let a = assumption(&index, cluster_role(json!({"a": "1"}), &[])).unwrap();
        assert!(a.shadow.is_none());
    }
}
