//! kube-runtime watchers that feed the index one event at a time. Objects are
//! reduced to domain types as they arrive; no whole object is kept, and of
//! Secrets only the metadata of token Secrets is ever read.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::{WatchStreamExt, watcher};

use crate::decode::kinds::{self, Kind, PerKind};
use crate::decode::{ConvertError, TOKEN_TYPE, token_secret};
use crate::model::{Object, ObjectKey};
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

/// Starts a watcher for every kind of the table; the state becomes ready once
/// each has listed.
pub fn spawn_all(client: Client, state: Arc<AppState>, watch_secrets: bool) {
    let n = kinds::names()
        .iter()
        .filter(|k| watch_secrets || !k.optional)
        .count();
    let ready = Arc::new(Readiness {
        pending: AtomicUsize::new(n),
        state: state.clone(),
    });
    kinds::each(&mut Spawn {
        client,
        state,
        ready,
        watch_secrets,
    });
}

struct Spawn {
    client: Client,
    state: Arc<AppState>,
    ready: Arc<Readiness>,
    watch_secrets: bool,
}

impl PerKind for Spawn {
    fn object<K: Kind>(&mut self) {
        let api: Api<K> = Api::all(self.client.clone());
        let stream = watcher(api, watcher::Config::default()).default_backoff();
        tokio::spawn(drive(
            stream,
            kinds::metric_resource(&K::plural(&())),
            self.state.clone(),
            self.ready.clone(),
            |o: &K| o.decode().map(Some),
        ));
    }

    fn token_secrets(&mut self) {
        if !self.watch_secrets {
            return;
        }
        // Metadata only (an `Api` of PartialObjectMeta asks the API server
        // for PartialObjectMetadata) and only token Secrets: payloads never
        // reach this process.
        let api: Api<PartialObjectMeta<Secret>> = Api::all(self.client.clone());
        let config = watcher::Config::default().fields(&format!("type={TOKEN_TYPE}"));
        let stream = watcher(api, config).default_backoff();
        tokio::spawn(drive(
            stream,
            kinds::metric_resource("secrets"),
            self.state.clone(),
            self.ready.clone(),
            |m: &PartialObjectMeta<Secret>| {
                token_secret(&m.metadata).map(|t| t.map(Object::TokenSecret))
            },
        ));
    }
}

async fn drive<K, S>(
    stream: S,
    resource: &'static str,
    state: Arc<AppState>,
    ready: Arc<Readiness>,
    reduce: fn(&K) -> Result<Option<Object>, ConvertError>,
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
