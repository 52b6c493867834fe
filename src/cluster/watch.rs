//! kube-runtime watchers that feed the index one event at a time. Objects are
//! reduced to domain types as they arrive; no whole object is kept, and of
//! Secrets only the metadata of token Secrets is ever read.

use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::crd::{SoDException, SoDPolicy};
use crate::decode::convert;
use crate::decode::{SA_NAME_ANNOTATION, TOKEN_TYPE};
use crate::model::{Name, Object, ObjectKey, TokenSecret};
use crate::runtime::state::AppState;

/// Counts down the watchers that have not finished their first list.
struct Readiness {
    pending: AtomicUsize,
    state: Arc<AppState>,
}

impl Readiness {
    fn listed(&self, resource: &str) {
        tracing::info!(resource, "initial list complete");
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.state.refresh_object_metrics();
            self.state.set_ready();
            tracing::info!("every watcher has listed: ready");
        }
    }
}

/// Starts every watcher; the state becomes ready once each has listed.
pub fn spawn_all(client: Client, state: Arc<AppState>, watch_secrets: bool) {
    let n = if watch_secrets { 9 } else { 8 };
    let ready = Arc::new(Readiness {
        pending: AtomicUsize::new(n),
        state: state.clone(),
    });
    let cfg = watcher::Config::default;
    spawn_typed::<Namespace>(&client, "namespaces", cfg(), &state, &ready);
    spawn_typed::<ServiceAccount>(&client, "serviceaccounts", cfg(), &state, &ready);
    spawn_typed::<Role>(&client, "roles", cfg(), &state, &ready);
    spawn_typed::<ClusterRole>(&client, "clusterroles", cfg(), &state, &ready);
    spawn_typed::<RoleBinding>(&client, "rolebindings", cfg(), &state, &ready);
    spawn_typed::<ClusterRoleBinding>(&client, "clusterrolebindings", cfg(), &state, &ready);
    spawn_typed::<SoDPolicy>(&client, "sodpolicies", cfg(), &state, &ready);
    spawn_typed::<SoDException>(&client, "sodexceptions", cfg(), &state, &ready);
    if watch_secrets {
        // Metadata only, and only token Secrets: payloads never reach us.
        let api: Api<PartialObjectMeta<Secret>> = Api::all(client.clone());
        let config = watcher::Config::default().fields(&format!("type={TOKEN_TYPE}"));
        let stream = watcher(api, config).default_backoff();
        tokio::spawn(drive(
            stream,
            "secrets",
            state.clone(),
            ready.clone(),
            token_secret,
        ));
    }
}

fn spawn_typed<K>(
    client: &Client,
    resource: &'static str,
    config: watcher::Config,
    state: &Arc<AppState>,
    ready: &Arc<Readiness>,
) where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Serialize
        + Debug
        + Send
        + Sync
        + 'static,
{
    let api: Api<K> = Api::all(client.clone());
    let stream = watcher(api, config).default_backoff();
    tokio::spawn(drive(
        stream,
        resource,
        state.clone(),
        ready.clone(),
        typed::<K>,
    ));
}

/// Reduces a typed object through the same boundary as every other input.
fn typed<K: Serialize>(obj: &K) -> Result<Option<Object>, String> {
    let v = serde_json::to_value(obj).map_err(|e| e.to_string())?;
    convert(&v).map_err(|e| e.to_string())
}

fn token_secret(meta: &PartialObjectMeta<Secret>) -> Result<Option<Object>, String> {
    let m = &meta.metadata;
    let (Some(ns), Some(name)) = (m.namespace.as_deref(), m.name.as_deref()) else {
        return Err("Secret without namespace or name".into());
    };
    let Some(sa) = m
        .annotations
        .as_ref()
        .and_then(|a| a.get(SA_NAME_ANNOTATION))
    else {
        return Ok(None);
    };
    Ok(Some(Object::TokenSecret(TokenSecret {
        namespace: Name::from(ns),
        name: Name::from(name),
        service_account: Name::from(sa.as_str()),
        created: m.creation_timestamp.as_ref().map(|t| t.0),
    })))
}

async fn drive<K, S>(
    stream: S,
    resource: &'static str,
    state: Arc<AppState>,
    ready: Arc<Readiness>,
    reduce: fn(&K) -> Result<Option<Object>, String>,
) where
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
{
    let mut stream = std::pin::pin!(stream);
    // Keys this watcher has put in the index, to drop what a relist no longer shows.
    let mut known: HashSet<ObjectKey> = HashSet::new();
    let mut relisting: Option<HashSet<ObjectKey>> = None;
    let mut listed_once = false;
    let reduce_logged = |obj: &K| match reduce(obj) {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(resource, error = %e, "ignoring an object that cannot be read");
            None
        }
    };
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                state.metrics.watch_restart(resource);
                tracing::warn!(resource, error = %e, "watch failed; retrying with backoff");
                continue;
            }
        };
        state.metrics.watch_event(resource);
        match event {
            watcher::Event::Init => relisting = Some(HashSet::new()),
            watcher::Event::InitApply(obj) | watcher::Event::Apply(obj) => {
                if let Some(o) = reduce_logged(&obj) {
                    let key = o.key();
                    state.watch_apply(o);
                    if let Some(seen) = relisting.as_mut() {
                        seen.insert(key.clone());
                    }
                    known.insert(key);
                }
            }
            watcher::Event::Delete(obj) => {
                if let Some(o) = reduce_logged(&obj) {
                    let key = o.key();
                    state.watch_remove(&key);
                    known.remove(&key);
                }
            }
            watcher::Event::InitDone => {
                if let Some(seen) = relisting.take() {
                    for gone in known.difference(&seen) {
                        state.watch_remove(gone);
                    }
                    known = seen;
                }
                if listed_once {
                    state.metrics.watch_restart(resource);
                } else {
                    listed_once = true;
                    ready.listed(resource);
                }
            }
        }
    }
}
