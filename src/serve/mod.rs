//! `sodguard serve`: the validating webhook, a thin edge over the engine.

pub mod config;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use crate::admission::{conn, forward, http, tls};
use crate::cluster::watch;
use crate::controllers::lease as leader;
use crate::controllers::{audit, grants};
use crate::runtime::metrics::Metrics;
use crate::runtime::state::{AppState, Mode};
pub use config::{ServeArgs, Tls};

use crate::engine::index::Index;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("cannot load the state: {0}")]
    State(#[from] crate::load::LoadError),
    #[error("cannot reach the cluster: {0}")]
    Kube(#[from] crate::cluster::ClusterError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl ServeError {
    /// Settings and inputs are the operator's to fix (exit 2); the rest is
    /// the environment (exit 1).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            ServeError::Config(_) | ServeError::Tls(_) | ServeError::State(_)
        )
    }
}

pub async fn run(args: ServeArgs) -> Result<(), ServeError> {
    let tls = args.validate()?;
    let election = args.election()?;
    #[cfg(unix)]
    raise_open_files(1 + u64::from(election.is_some()), args.max_connections);
    let (pair, names) = match &tls {
        Tls::Files { cert, key } => (
            tls::PemPair::read(cert, key)?,
            Some((cert.clone(), key.clone())),
        ),
        Tls::SelfSigned { hosts } => {
            let generated = tls::self_signed(hosts)?;
            // The bundle goes to stdout so scripts can put it in a webhook configuration.
            let mut out = std::io::stdout().lock();
            out.write_all(generated.ca_pem.as_bytes())?;
            out.flush()?;
            if let Some(path) = &args.ca_bundle_out {
                std::fs::write(path, &generated.ca_pem)?;
            }
            (generated.pair, None)
        }
    };
    let placeholder = (
        std::path::PathBuf::from("<generated>"),
        std::path::PathBuf::from("<generated>"),
    );
    let (cert_name, key_name) = names.clone().unwrap_or(placeholder);
    let server_config =
        tls::server_config(&pair, args.client_ca.as_deref(), (&cert_name, &key_name))?;
    let rustls_config = axum_server::tls_rustls::RustlsConfig::from_config(server_config);

    let metrics = Metrics::new();
    let mut live_client = None;
    let state = if args.state.is_empty() {
        let client = kube_client(&args).await?;
        let mut index = Index::new();
        index.set_unwatched_namespaces(&args.excluded_namespaces);
        index.set_grant_controller(args.grant_controller_user.clone());
        let state = AppState::new(Mode::Live, index, args.overlay_ttl, metrics)
            .with_decision_budget(args.decision_budget());
        watch::spawn_all(client.clone(), state.clone(), args.watch_secrets);
        live_client = Some(client);
        state
    } else {
        // Kept for the process's life: read on one thread (`Readers::One`).
        let (mut index, report) =
            crate::load::load_state_with(&args.state, crate::load::Readers::One)?;
        index.set_unwatched_namespaces(&args.excluded_namespaces);
        index.set_grant_controller(args.grant_controller_user.clone());
        tracing::info!(
            documents = report.documents,
            skipped = report.skipped_total(),
            "static state loaded"
        );
        AppState::new(Mode::Static, index, args.overlay_ttl, metrics)
            .with_clock(args.now)
            .with_decision_budget(args.decision_budget())
    };
    spawn_housekeeping(state.clone());
    if args.violations_interval.is_some() {
        tracing::warn!(
            "--violations-interval has no effect any more: the violations gauge is the audit's (sodguard_audit_violations, --audit-interval)"
        );
    }
    if live_client.is_none() && !args.audit_interval.is_zero() {
        // Nothing to write to: the audit of the files gives the metrics alone.
        audit::spawn_static(
            state.clone(),
            args.audit_interval,
            args.audit_budget(),
            args.audit_background(),
        );
    }
    let audit_client = live_client.clone();
    let mut targets = vec![tls::ReloadTarget {
        config: rustls_config.clone(),
        callers: args
            .client_ca
            .clone()
            .map_or(tls::Callers::Anyone, tls::Callers::SignedBy),
    }];
    let cluster = match (&election, live_client, &names) {
        (Some(settings), Some(client), Some((cert, key))) => {
            let c = replicas(&args, settings, client, &state, (cert, key), &pair)?;
            targets.push(tls::ReloadTarget {
                config: c.peer_tls.clone(),
                callers: peer_callers(settings),
            });
            Some(c)
        }
        // validate() refuses election without a live cluster or cert files.
        _ => None,
    };
    if let Some(client) = &audit_client
        && args.grants
    {
        // R10.4: one replica (the leader) activates and expires grants.
        let leading = cluster.as_ref().map(|c| c.elector.leadership.subscribe());
        grants::spawn(client.clone(), state.clone(), leading);
    }
    if let Some(client) = audit_client
        && !args.audit_interval.is_zero()
    {
        let leading = cluster.as_ref().map(|c| c.elector.leadership.subscribe());
        let instance = cluster
            .as_ref()
            .map(|c| c.elector.leadership.identity().to_string())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "sodguard".into());
        audit::spawn(
            client,
            state.clone(),
            leading,
            audit::Settings {
                interval: args.audit_interval,
                debounce: args.audit_debounce,
                format: args.report_format,
                instance,
                budget: args.audit_budget(),
                background: args.audit_background(),
            },
        );
    }
    if let Some((cert, key)) = names {
        tokio::spawn(tls::reload_loop(
            targets,
            cert,
            key,
            pair,
            args.cert_reload_interval,
        ));
    }

    let limits = conn::Limits {
        max_connections: args.max_connections,
        handshake_timeout: args.tls_handshake_timeout,
        idle_timeout: args.idle_timeout,
    };
    let handle = conn::handle();
    let probe_listener = tokio::net::TcpListener::bind(args.probe_listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: args.probe_listen,
            source,
        })?;
    let webhook_listener =
        std::net::TcpListener::bind(args.listen).map_err(|source| ServeError::Listen {
            addr: args.listen,
            source,
        })?;
    tracing::info!(
        listen = %webhook_listener.local_addr()?,
        probes = %probe_listener.local_addr()?,
        mode = ?state.mode,
        "serving"
    );

    let shutdown = shutdown_signal();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let peer_handle = conn::handle();
    let peer_server = match &cluster {
        Some(c) => {
            let listener = std::net::TcpListener::bind(c.peer_listen).map_err(|source| {
                ServeError::Listen {
                    addr: c.peer_listen,
                    source,
                }
            })?;
            tracing::info!(peers = %listener.local_addr()?, identity = %c.replicas.leadership.identity(), "leader election on");
            let server =
                conn::server(listener, c.peer_tls.clone(), limits, "peer", &state.metrics)?
                    .handle(peer_handle.clone());
            let app = forward::peer_router(c.replicas.clone());
            Some(tokio::spawn(async move {
                if let Err(e) = server.serve(app.into_make_service()).await {
                    tracing::error!(error = %e, "the peer server stopped");
                }
            }))
        }
        None => None,
    };
    let probes = {
        let mut rx = stop_rx.clone();
        let app = match &cluster {
            Some(c) => forward::probe_router(c.replicas.clone()),
            None => http::probe_router(state.clone()),
        };
        tokio::spawn(async move {
            let _ = axum::serve(probe_listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|s| *s).await;
                })
                .await;
        })
    };
    {
        let handle = handle.clone();
        let grace = args.shutdown_grace;
        let leadership = cluster.as_ref().map(|c| c.elector.leadership.clone());
        tokio::spawn(async move {
            shutdown.await;
            // First stop deciding (503: the API server and the followers
            // fail closed), so that the last decision comes before the Lease
            // is given up, however long the in-flight requests take.
            if let Some(l) = leadership {
                l.step_down();
            }
            tracing::info!(grace = ?grace, "shutting down: no new connections, finishing in-flight requests");
            handle.graceful_shutdown(Some(grace));
            peer_handle.graceful_shutdown(Some(grace));
            let _ = stop_tx.send(true);
        });
    }
    let metrics = state.metrics.clone();
    let app = match &cluster {
        Some(c) => forward::webhook_router(c.replicas.clone()),
        None => http::webhook_router(state, args.max_body_bytes),
    };
    conn::server(webhook_listener, rustls_config, limits, "webhook", &metrics)?
        .handle(handle)
        .serve(app.into_make_service())
        .await?;
    if let Some(p) = peer_server {
        let _ = p.await;
    }
    if let Some(c) = cluster {
        // Only once nothing is in flight: a follower then takes the Lease
        // without waiting for it to expire (and decides grace/2 later).
        let state = c.replicas.state.clone();
        c.elector
            .release(Duration::from_secs(3), move || state.decision_barrier())
            .await;
    }
    let _ = probes.await;
    Ok(())
}

/// Who may post to the peer port: the other replicas, by a certificate of
/// the peer CA for the replicas' name.
fn peer_callers(settings: &config::Election) -> tls::Callers {
    tls::Callers::Peer {
        ca: settings.peer_ca.clone(),
        name: settings.peer_server_name.clone(),
    }
}

/// A replica under leader election: the election, the forwarding and the
/// peer port's TLS (client certificates of the peer CA required).
struct Cluster {
    elector: leader::Elector,
    replicas: Arc<forward::Replicas>,
    peer_tls: axum_server::tls_rustls::RustlsConfig,
    peer_listen: std::net::SocketAddr,
}

fn replicas(
    args: &ServeArgs,
    settings: &config::Election,
    client: kube::Client,
    state: &Arc<AppState>,
    serving: (&std::path::PathBuf, &std::path::PathBuf),
    pair: &tls::PemPair,
) -> Result<Cluster, ServeError> {
    let (cert, key) = settings
        .peer_client
        .clone()
        .unwrap_or_else(|| (serving.0.clone(), serving.1.clone()));
    let files = forward::PeerFiles {
        cert,
        key,
        ca: settings.peer_ca.clone(),
        server_name: settings.peer_server_name.clone(),
    };
    let forwarder = Arc::new(forward::Forwarder::new(settings, &files)?);
    tokio::spawn(forward::reload_loop(
        forwarder.clone(),
        files,
        args.cert_reload_interval,
    ));
    let peer_tls = axum_server::tls_rustls::RustlsConfig::from_config(tls::server_config_for(
        pair,
        &peer_callers(settings),
        (serving.0, serving.1),
    )?);
    let ready = state.clone();
    let elector = leader::start(client, settings, move || ready.is_ready());
    {
        let mut leading = elector.leadership.subscribe();
        let metrics = state.metrics.clone();
        tokio::spawn(async move {
            loop {
                metrics.leader.set(i64::from(*leading.borrow_and_update()));
                if leading.changed().await.is_err() {
                    return;
                }
            }
        });
    }
    let replicas = Arc::new(forward::Replicas {
        leadership: elector.leadership.clone(),
        forwarder,
        state: state.clone(),
        local: http::gated_webhook_router(state.clone(), args.max_body_bytes, {
            let leadership = elector.leadership.clone();
            Arc::new(move || leadership.may_decide())
        }),
        max_body: args.max_body_bytes,
    });
    Ok(Cluster {
        elector,
        replicas,
        peer_tls,
        peer_listen: settings.peer_listen,
    })
}

/// Files a replica opens besides its connections: listeners, the API
/// server's watches, certificate reloads.
const SPARE_FILES: u64 = 256;

/// Raises the soft limit of open files to the hard one, as the Go runtime
/// does: container runtimes often start processes at 1024, below what
/// `--max-connections` lets clients open on two listeners, and past it
/// `accept` fails and so does every other file the server needs (the
/// watches' connections, certificate reloads). Warns when even the hard
/// limit is too low.
#[cfg(unix)]
fn raise_open_files(listeners: u64, max_connections: usize) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    // None: unlimited.
    let mut soft = limit.current;
    if soft.is_some() && soft != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => soft = limit.maximum,
            Err(e) => tracing::warn!(error = %e, "cannot raise the limit of open files"),
        }
    }
    let needed = listeners
        .saturating_mul(max_connections as u64)
        .saturating_add(SPARE_FILES);
    if let Some(soft) = soft
        && soft < needed
    {
        tracing::warn!(
            open_files = soft,
            needed,
            "the limit of open files is below what --max-connections lets clients open: lower --max-connections or raise the limit"
        );
    }
}

async fn kube_client(args: &ServeArgs) -> Result<kube::Client, ServeError> {
    crate::cluster::client(args.kubeconfig.as_deref(), args.context.as_deref())
        .await
        .map_err(ServeError::from)
}

/// Overlay expiry and index metrics. Whole-state work is the audit's, on
/// the replica that audits: every replica evaluating the whole state for a
/// gauge would only repeat it.
fn spawn_housekeeping(state: Arc<AppState>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut n: u64 = 0;
        loop {
            tick.tick().await;
            let expired = state.expire_overlay();
            if expired > 0 {
                tracing::info!(expired, "reverted admitted changes the watch never showed");
            }
            n += 1;
            if n.is_multiple_of(10) {
                state.refresh_object_metrics();
            }
        }
    });
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
