//! The one table of the kinds sodguard reads from Kubernetes. The watchers,
//! the snapshot, readiness, the metric labels and the webhook's kind labels
//! all come from [`each`]; nothing else lists them.

use std::fmt::Debug;
use std::sync::OnceLock;

use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::Resource;
use serde::de::DeserializeOwned;

use super::Decode;
use crate::crd::{AccessGrant, AccessGrantPolicy, ClusterAccessGrant, SoDException, SoDPolicy};

/// A kind read in full and reduced with [`Decode`].
pub trait Kind:
    Resource<DynamicType = ()> + Decode + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
}

impl<K> Kind for K where
    K: Resource<DynamicType = ()>
        + Decode
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static
{
}

/// Something done once per kind.
pub trait PerKind {
    /// A kind read in full.
    fn object<K: Kind>(&mut self);
    /// `kubernetes.io/service-account-token` Secrets: their metadata only,
    /// never a payload, and only where the operator allowed it.
    fn token_secrets(&mut self);
}

/// The table.
pub fn each(v: &mut impl PerKind) {
    v.object::<Namespace>();
    v.object::<ServiceAccount>();
    v.object::<Role>();
    v.object::<ClusterRole>();
    v.object::<RoleBinding>();
    v.object::<ClusterRoleBinding>();
    v.object::<SoDPolicy>();
    v.object::<SoDException>();
    v.object::<AccessGrantPolicy>();
    v.object::<AccessGrant>();
    v.object::<ClusterAccessGrant>();
    v.token_secrets();
}

/// Names of one kind of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindName {
    pub group: String,
    pub kind: String,
    /// The resource (plural), also the `resource` label of watch metrics.
    pub resource: String,
    /// Read only with `--watch-secrets`.
    pub optional: bool,
}

/// The names of every kind of [`each`], in its order.
pub fn names() -> &'static [KindName] {
    static NAMES: OnceLock<Vec<KindName>> = OnceLock::new();
    NAMES.get_or_init(|| {
        struct Collect(Vec<KindName>);
        impl PerKind for Collect {
            fn object<K: Kind>(&mut self) {
                self.0.push(name_of::<K>(false));
            }
            fn token_secrets(&mut self) {
                self.0.push(name_of::<Secret>(true));
            }
        }
        let mut c = Collect(Vec::new());
        each(&mut c);
        c.0
    })
}

fn name_of<K: Resource<DynamicType = ()>>(optional: bool) -> KindName {
    KindName {
        group: K::group(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        resource: K::plural(&()).into_owned(),
        optional,
    }
}

/// A kind as a metric label: the kinds of the table by name, anything else
/// `other`, so that label values stay few.
pub fn metric_kind(kind: &str) -> &'static str {
    names()
        .iter()
        .find(|k| k.kind == kind)
        .map_or("other", |k| k.kind.as_str())
}

/// A resource as a metric label (the table's plural names, else `other`).
pub fn metric_resource(resource: &str) -> &'static str {
    names()
        .iter()
        .find(|k| k.resource == resource)
        .map_or("other", |k| k.resource.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_every_kind_once() {
        let n = names();
        let kinds: Vec<&str> = n.iter().map(|k| k.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "Namespace",
                "ServiceAccount",
                "Role",
                "ClusterRole",
                "RoleBinding",
                "ClusterRoleBinding",
                "SoDPolicy",
                "SoDException",
                "AccessGrantPolicy",
                "AccessGrant",
                "ClusterAccessGrant",
                "Secret"
            ]
        );
        assert_eq!(n[4].resource, "rolebindings");
        assert_eq!(n[6].resource, "sodpolicies");
        assert_eq!(n[9].resource, "accessgrants");
        assert!(n[11].optional && n.iter().filter(|k| k.optional).count() == 1);
        assert_eq!(metric_kind("RoleBinding"), "RoleBinding");
        assert_eq!(metric_kind("ConfigMap"), "other");
    }

    /// Every kind of the table is one the JSON conversion reads too.
    #[test]
    fn convert_reads_every_kind_of_the_table() {
        for k in names() {
            let api_version = if k.group.is_empty() {
                "v1".to_string()
            } else {
                format!("{}/v1", k.group)
            };
            let api_version = if k.group == crate::crd::GROUP {
                format!("{}/v1alpha1", k.group)
            } else {
                api_version
            };
            let v = serde_json::json!({
                "apiVersion": api_version, "kind": k.kind,
                "metadata": {"name": "x", "namespace": "ns",
                    "annotations": {super::super::SA_NAME_ANNOTATION: "sa"}},
                "type": super::super::TOKEN_TYPE,
            });
            // Not every minimal object is valid; what matters is that the
            // kind is recognised (an error or an object, never "not mine").
            let r = super::super::convert(&v);
            assert!(
                !matches!(r, Ok(None)),
                "{} is in the table but convert() skips it",
                k.kind
            );
        }
    }
}
