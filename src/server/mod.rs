//! `sodguard serve`: the validating webhook, a thin edge over the engine.

pub mod config;
pub mod http;
pub mod metrics;
pub mod review;
pub mod state;
pub mod tls;
pub mod watch;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

pub use config::{ServeArgs, Tls};
use metrics::Metrics;
use state::{AppState, Mode};

use crate::index::Index;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("cannot load the state: {0}")]
    State(String),
    #[error("cannot reach the cluster: {0}")]
    Kube(String),
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
    let state = if args.state.is_empty() {
        let client = kube_client(&args).await?;
        let mut index = Index::new();
        index.set_unwatched_namespaces(&args.excluded_namespaces);
        let state = AppState::new(Mode::Live, index, args.overlay_ttl, metrics);
        watch::spawn_all(client, state.clone(), args.watch_secrets);
        state
    } else {
        let (mut index, report) =
            crate::cli::load_state(&args.state).map_err(|e| ServeError::State(e.to_string()))?;
        index.set_unwatched_namespaces(&args.excluded_namespaces);
        tracing::info!(
            documents = report.documents,
            skipped = report.skipped_total(),
            "static state loaded"
        );
        AppState::new(Mode::Static, index, args.overlay_ttl, metrics).with_clock(args.now)
    };
    spawn_housekeeping(state.clone(), args.violations_interval);
    if let Some((cert, key)) = names {
        tokio::spawn(tls::reload_loop(
            rustls_config.clone(),
            cert,
            key,
            args.client_ca.clone(),
            pair,
            args.cert_reload_interval,
        ));
    }

    let handle = axum_server::Handle::new();
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
    webhook_listener.set_nonblocking(true)?;
    tracing::info!(
        listen = %webhook_listener.local_addr()?,
        probes = %probe_listener.local_addr()?,
        mode = ?state.mode,
        "serving"
    );

    let shutdown = shutdown_signal();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let probes = {
        let mut rx = stop_rx.clone();
        let app = http::probe_router(state.clone());
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
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!(grace = ?grace, "shutting down: no new connections, finishing in-flight requests");
            handle.graceful_shutdown(Some(grace));
            let _ = stop_tx.send(true);
        });
    }
    let app = http::webhook_router(state, args.max_body_bytes);
    axum_server::from_tcp_rustls(webhook_listener, rustls_config)?
        .handle(handle)
        .serve(app.into_make_service())
        .await?;
    let _ = probes.await;
    Ok(())
}

async fn kube_client(args: &ServeArgs) -> Result<kube::Client, ServeError> {
    crate::cluster::client(args.kubeconfig.as_deref(), args.context.as_deref())
        .await
        .map_err(|e| ServeError::Kube(e.to_string()))
}

/// Overlay expiry, index metrics and the violations gauge.
fn spawn_housekeeping(state: Arc<AppState>, violations_every: Duration) {
    let s = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut n: u64 = 0;
        loop {
            tick.tick().await;
            let expired = s.expire_overlay();
            if expired > 0 {
                tracing::info!(expired, "reverted admitted changes the watch never showed");
            }
            n += 1;
            if n.is_multiple_of(10) {
                s.refresh_object_metrics();
            }
        }
    });
    if violations_every.is_zero() {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(violations_every);
        loop {
            tick.tick().await;
            if !state.is_ready() {
                continue;
            }
            let s = state.clone();
            let counts = tokio::task::spawn_blocking(move || {
                s.with_index(|index| {
                    let ev = crate::engine::evaluate(index, jiff::Timestamp::now());
                    let mut by: std::collections::BTreeMap<String, usize> = index
                        .policies()
                        .map(|(_, p)| (p.name.to_string(), 0))
                        .collect();
                    for v in &ev.violations {
                        *by.entry(v.policy.to_string()).or_default() += 1;
                    }
                    by.into_iter().collect::<Vec<_>>()
                })
            })
            .await;
            if let Ok(c) = counts {
                state.metrics.set_violations(&c);
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
