//! The Kubernetes API side: a client from kubeconfig or in-cluster settings,
//! a one-off snapshot of everything the engine needs (for `kubectl sod`), and
//! the watchers that keep a server's state current.

pub mod watch;

use std::path::Path;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, ListParams};
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::crd::{SoDException, SoDPolicy};
use crate::decode::convert;
use crate::engine::index::Index;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ClusterError(pub String);

/// A client for `kubeconfig`/`context`, or the usual inference (in-cluster,
/// then `$KUBECONFIG`, then `~/.kube/config`).
pub async fn client(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<Client, ClusterError> {
    let e = |m: String| ClusterError(m);
    let config = match (kubeconfig, context) {
        (None, None) => kube::Config::infer().await.map_err(|x| e(x.to_string()))?,
        (path, context) => {
            let options = kube::config::KubeConfigOptions {
                context: context.map(str::to_string),
                ..Default::default()
            };
            match path {
                Some(p) => {
                    let kc =
                        kube::config::Kubeconfig::read_from(p).map_err(|x| e(x.to_string()))?;
                    kube::Config::from_custom_kubeconfig(kc, &options)
                        .await
                        .map_err(|x| e(x.to_string()))?
                }
                None => kube::Config::from_kubeconfig(&options)
                    .await
                    .map_err(|x| e(x.to_string()))?,
            }
        }
    };
    Client::try_from(config).map_err(|x| e(x.to_string()))
}

/// Lists every kind the engine needs, page by page, into an index.
pub async fn snapshot(client: &Client) -> Result<Index, ClusterError> {
    let mut index = Index::new();
    index.begin_bulk();
    list_into::<Namespace>(client, &mut index).await?;
    list_into::<ServiceAccount>(client, &mut index).await?;
    list_into::<Role>(client, &mut index).await?;
    list_into::<ClusterRole>(client, &mut index).await?;
    list_into::<RoleBinding>(client, &mut index).await?;
    list_into::<ClusterRoleBinding>(client, &mut index).await?;
    list_into::<SoDPolicy>(client, &mut index).await?;
    list_into::<SoDException>(client, &mut index).await?;
    index.finish_bulk();
    Ok(index)
}

async fn list_into<K>(client: &Client, index: &mut Index) -> Result<(), ClusterError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let api: Api<K> = Api::all(client.clone());
    let kind = K::kind(&());
    let mut params = ListParams::default().limit(500);
    loop {
        let page = api
            .list(&params)
            .await
            .map_err(|e| ClusterError(format!("cannot list {kind}: {e}")))?;
        for item in &page.items {
            let v = serde_json::to_value(item).map_err(|e| ClusterError(e.to_string()))?;
            match convert(&v) {
                Ok(Some(o)) => {
                    let _ = index.apply(o);
                }
                Ok(None) => {}
                // One unreadable object must not hide the rest of the cluster.
                Err(e) => tracing::warn!(error = %e, "skipping an object that cannot be read"),
            }
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => params = params.continue_token(&c),
            None => return Ok(()),
        }
    }
}
