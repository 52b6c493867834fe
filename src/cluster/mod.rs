//! The Kubernetes API side: a client from kubeconfig or in-cluster settings,
//! a one-off snapshot of everything the engine needs (for `kubectl sod`), and
//! the watchers that keep a server's state current.

pub mod watch;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use kube::Client;
use kube::api::{Api, ListParams};

use crate::decode::kinds::{self, Kind, PerKind};
use crate::engine::index::Index;
use crate::model::Object;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot read the kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    #[error("no cluster configuration found: {0}")]
    Infer(#[from] kube::config::InferConfigError),
    #[error("cannot build a client: {0}")]
    Client(#[source] kube::Error),
    #[error("cannot list {kind}: {source}")]
    List {
        kind: String,
        #[source]
        source: kube::Error,
    },
}

impl ClusterError {
    /// A low-cardinality label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ClusterError::Kubeconfig(_) => "kubeconfig",
            ClusterError::Infer(_) => "infer",
            ClusterError::Client(_) => "client",
            ClusterError::List { .. } => "list",
        }
    }
}

/// A client for `kubeconfig`/`context`, or the usual inference (in-cluster,
/// then `$KUBECONFIG`, then `~/.kube/config`).
pub async fn client(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<Client, ClusterError> {
    client_as(kubeconfig, context, &Impersonation::default()).await
}

/// Whom the client acts as, as kubectl's `--as` and `--as-group` say: the
/// API server then authenticates every request as that user and groups
/// (if the kubeconfig's user may impersonate them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Impersonation {
    pub user: Option<String>,
    pub groups: Vec<String>,
}

/// [`client`], impersonating `who` (nobody when it is empty).
pub async fn client_as(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
    who: &Impersonation,
) -> Result<Client, ClusterError> {
    let mut config = match (kubeconfig, context) {
        (None, None) => kube::Config::infer().await?,
        (path, context) => {
            let options = kube::config::KubeConfigOptions {
                context: context.map(str::to_string),
                ..Default::default()
            };
            match path {
                Some(p) => {
                    let kc = kube::config::Kubeconfig::read_from(p)?;
                    kube::Config::from_custom_kubeconfig(kc, &options).await?
                }
                None => kube::Config::from_kubeconfig(&options).await?,
            }
        }
    };
    // The kubeconfig's own `as` is kept unless the command line names one.
    if let Some(user) = &who.user {
        config.auth_info.impersonate = Some(user.clone());
        config.auth_info.impersonate_groups = Some(who.groups.clone());
    }
    Client::try_from(config).map_err(ClusterError::Client)
}

type Listing<'a> = Pin<Box<dyn Future<Output = Result<Vec<Object>, ClusterError>> + Send + 'a>>;

/// Lists every kind of the table (token Secrets aside: `kubectl sod` does
/// not ask to read Secrets), page by page, into an index.
pub async fn snapshot(client: &Client) -> Result<Index, ClusterError> {
    struct Lists<'a> {
        client: &'a Client,
        lists: Vec<Listing<'a>>,
    }
    impl<'a> PerKind for Lists<'a> {
        fn object<K: Kind>(&mut self) {
            self.lists.push(Box::pin(list::<K>(self.client)));
        }
        fn token_secrets(&mut self) {}
    }
    let mut lists = Lists {
        client,
        lists: Vec::new(),
    };
    kinds::each(&mut lists);
    let mut index = Index::new();
    index.begin_bulk();
    for listing in lists.lists {
        for o in listing.await? {
            let _ = index.apply(o);
        }
    }
    index.finish_bulk();
    Ok(index)
}

async fn list<K: Kind>(client: &Client) -> Result<Vec<Object>, ClusterError> {
    let api: Api<K> = Api::all(client.clone());
    let mut params = ListParams::default().limit(500);
    let mut out = Vec::new();
    loop {
        let page = api
            .list(&params)
            .await
            .map_err(|source| ClusterError::List {
                kind: K::kind(&()).into_owned(),
                source,
            })?;
        for item in &page.items {
            match item.decode() {
                Ok(o) => out.push(o),
                // One unreadable object must not hide the rest of the cluster.
                Err(e) => tracing::warn!(error = %e, "skipping an object that cannot be read"),
            }
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => params = params.continue_token(&c),
            None => return Ok(out),
        }
    }
}
