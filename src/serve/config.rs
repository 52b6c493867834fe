//! `sodguard serve` settings: one clap struct, every flag with an env var;
//! partial or contradictory settings are refused before anything starts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::admission::http::DEFAULT_MAX_BODY;
pub use crate::controllers::lease::Election;

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address of the webhook (HTTPS).
    #[arg(long, env = "SODGUARD_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Address of /healthz, /readyz and /metrics (plain HTTP).
    #[arg(long, env = "SODGUARD_PROBE_LISTEN", default_value = "0.0.0.0:8080")]
    pub probe_listen: SocketAddr,
    /// Serving certificate chain (PEM); reloaded when the file changes.
    #[arg(long, env = "SODGUARD_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// Serving key (PEM); reloaded with the certificate.
    #[arg(long, env = "SODGUARD_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Generate a CA and serving certificate at start and print the CA bundle.
    #[arg(long, env = "SODGUARD_SELF_SIGNED")]
    pub self_signed: bool,
    /// DNS names and IP addresses of the self-signed certificate.
    #[arg(
        long,
        env = "SODGUARD_SELF_SIGNED_HOSTS",
        value_delimiter = ',',
        default_value = "localhost,127.0.0.1"
    )]
    pub self_signed_hosts: Vec<String>,
    /// Also write the self-signed CA bundle (PEM) to this file.
    #[arg(long, env = "SODGUARD_CA_BUNDLE_OUT")]
    pub ca_bundle_out: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM), e.g. the API server's.
    #[arg(long, env = "SODGUARD_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,
    /// Serve a fixed state read from these files and folders instead of
    /// watching a cluster.
    #[arg(long, env = "SODGUARD_STATE", num_args = 1.., value_delimiter = ',')]
    pub state: Vec<PathBuf>,
    /// With --state: judge exceptions at this time (RFC 3339) instead of now.
    #[arg(long, env = "SODGUARD_NOW")]
    pub now: Option<jiff::Timestamp>,
    /// Kubeconfig file (default: in-cluster config, then $KUBECONFIG, then ~/.kube/config).
    #[arg(long, env = "SODGUARD_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context.
    #[arg(long, env = "SODGUARD_CONTEXT")]
    pub context: Option<String>,
    /// Watch the metadata of token Secrets (for the credential rules, R8).
    #[arg(long, env = "SODGUARD_WATCH_SECRETS", default_value_t = true, action = clap::ArgAction::Set)]
    pub watch_secrets: bool,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "SODGUARD_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY)]
    pub max_body_bytes: usize,
    /// Most TCP connections each TLS listener (webhook, peer) holds; more
    /// wait in the kernel's backlog until one closes.
    #[arg(long, env = "SODGUARD_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// A TLS handshake not finished in this time is dropped.
    #[arg(long, env = "SODGUARD_TLS_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub tls_handshake_timeout: Duration,
    /// A connection on which the client sends nothing for this long (before
    /// its first request or between requests), or leaves an answer unread
    /// that long, is closed; also the time an HTTP/1.1 request head must
    /// arrive in.
    #[arg(long, env = "SODGUARD_IDLE_TIMEOUT", default_value = "60s", value_parser = duration)]
    pub idle_timeout: Duration,
    /// Most time one admission decision may judge for. A change that affects
    /// more subjects than that is refused (fail closed) unless a new
    /// violation under Deny was found already; keep it below the webhook's
    /// timeoutSeconds (and --forward-timeout with leader election).
    #[arg(long, env = "SODGUARD_DECISION_BUDGET", default_value = "2s", value_parser = duration)]
    pub decision_budget: Duration,
    /// Most new violations one decision keeps and lists; past it, one under
    /// Deny ends the judging (the change is refused) and others are counted.
    #[arg(long, env = "SODGUARD_DECISION_MAX_VIOLATIONS", default_value_t = 1000)]
    pub decision_max_violations: usize,
    /// Most time one audit's evaluation may take; an audit that stops short
    /// writes nothing and counts as failed (its age metric grows).
    #[arg(long, env = "SODGUARD_AUDIT_BUDGET", default_value = "2m", value_parser = duration)]
    pub audit_budget: Duration,
    /// Most violations one audit holds; past it, the audit stops short.
    #[arg(long, env = "SODGUARD_AUDIT_MAX_VIOLATIONS", default_value_t = 250_000)]
    pub audit_max_violations: usize,
    /// How long an admitted change the watch has not shown is assumed.
    #[arg(long, env = "SODGUARD_OVERLAY_TTL", default_value = "30s", value_parser = duration)]
    pub overlay_ttl: Duration,
    /// How often the certificate files are checked for changes.
    #[arg(long, env = "SODGUARD_CERT_RELOAD_INTERVAL", default_value = "10s", value_parser = duration)]
    pub cert_reload_interval: Duration,
    /// No effect (warned about at start): the violations gauge comes from
    /// the audit now. Still accepted so that a deployment that sets it keeps
    /// starting, and so keeps its webhook answering.
    #[arg(long, env = "SODGUARD_VIOLATIONS_INTERVAL", value_parser = duration, hide = true)]
    pub violations_interval: Option<Duration>,
    /// The review-time audit runs at least this often (0s: no audit). Live
    /// mode: on the leader only, also a few seconds after each change, and
    /// it writes status, reports and events. With --state: its metrics
    /// only, also when a finding changes with time.
    #[arg(long, env = "SODGUARD_AUDIT_INTERVAL", default_value = "5m", value_parser = duration)]
    pub audit_interval: Duration,
    /// How far below admission the audit's thread runs (its nice value
    /// above the process's, 0-19; Linux): decisions that run beside an
    /// audit then wait less for a core.
    #[arg(long, env = "SODGUARD_AUDIT_NICE", default_value_t = crate::runtime::background::DEFAULT_NICE,
          value_parser = clap::value_parser!(i32).range(0..=19))]
    pub audit_nice: i32,
    /// Async worker threads (1-1024): they read, decrypt and answer every
    /// connection, and decide admission requests one at a time whatever
    /// their number (a decision not done in 5 ms moves to a blocking
    /// thread). One suits a pod of one or two cores: a second worker mostly
    /// waits for the first one's turn and competes with it for the cores.
    /// More help a high rate of `/authorize` requests, answered side by side.
    #[arg(long, env = "SODGUARD_WORKER_THREADS", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub worker_threads: u16,
    /// How long the state must stay unchanged before the audit runs after a
    /// change (it runs at the latest 5 times this after the first change).
    #[arg(long, env = "SODGUARD_AUDIT_DEBOUNCE", default_value = "2s", value_parser = duration)]
    pub audit_debounce: Duration,
    /// The reports the audit writes: OpenReports, or wgpolicyk8s.io
    /// PolicyReports for tools that still read those.
    #[arg(long, env = "SODGUARD_REPORT_FORMAT", value_enum, default_value_t = crate::audit::ReportFormat::Openreports)]
    pub report_format: crate::audit::ReportFormat,
    /// Time given to in-flight requests after SIGTERM.
    #[arg(long, env = "SODGUARD_SHUTDOWN_GRACE", default_value = "20s", value_parser = duration)]
    pub shutdown_grace: Duration,
    /// Namespaces the webhook configuration excludes (its namespaceSelector):
    /// their ServiceAccounts are governed as soon as a binding names them,
    /// since their creation is never checked (R7.10).
    #[arg(long, env = "SODGUARD_EXCLUDED_NAMESPACES", value_delimiter = ',', value_parser = namespace_name)]
    pub excluded_namespaces: Vec<String>,
    /// The user sodguard itself acts as (`system:serviceaccount:NS:NAME`):
    /// the only one that may create, change or delete a binding labelled
    /// `sodguard.io/grant` (R10.4). Unset: nobody may.
    #[arg(long, env = "SODGUARD_GRANT_CONTROLLER_USER")]
    pub grant_controller_user: Option<String>,
    /// Run the grant controller (live mode, leader only): bind approved
    /// AccessGrants, unbind them at expiry (R10.4).
    #[arg(long, env = "SODGUARD_GRANTS")]
    pub grants: bool,
    #[command(flatten)]
    pub election: ElectionArgs,
}

/// Several replicas: one leader (a `coordination.k8s.io` Lease) decides
/// every request; the others forward to it over mutual TLS.
#[derive(Debug, Clone, clap::Args)]
pub struct ElectionArgs {
    /// Elect a leader among the replicas; only the leader decides.
    #[arg(long, env = "SODGUARD_LEADER_ELECTION")]
    pub leader_election: bool,
    /// Namespace of the Lease (the release namespace).
    #[arg(long, env = "SODGUARD_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Name of the Lease.
    #[arg(long, env = "SODGUARD_LEASE_NAME", default_value = "sodguard")]
    pub lease_name: String,
    /// How long a leader that stops renewing keeps the Lease (whole seconds).
    #[arg(long, env = "SODGUARD_LEASE_DURATION", default_value = "15s", value_parser = duration)]
    pub lease_duration: Duration,
    /// The leader renews this long before the Lease expires, and stops deciding
    /// half of it before (whole seconds; also the clock skew tolerated).
    #[arg(long, env = "SODGUARD_LEASE_GRACE", default_value = "6s", value_parser = duration)]
    pub lease_grace: Duration,
    /// This replica's name among the replicas (the Pod name).
    #[arg(long, env = "SODGUARD_IDENTITY")]
    pub identity: Option<String>,
    /// Address (HTTPS, mutual TLS) on which the leader takes forwarded requests.
    #[arg(long, env = "SODGUARD_PEER_LISTEN", default_value = "0.0.0.0:8444")]
    pub peer_listen: SocketAddr,
    /// host:port at which the other replicas reach this one's peer address
    /// (e.g. the Pod IP and the peer port).
    #[arg(long, env = "SODGUARD_PEER_ADDRESS")]
    pub peer_address: Option<String>,
    /// DNS name every replica's serving certificate holds (e.g. the Service's
    /// `name.namespace.svc`); checked when forwarding, whatever the address.
    #[arg(long, env = "SODGUARD_PEER_SERVER_NAME")]
    pub peer_server_name: Option<String>,
    /// CA bundle (PEM) that signs the replicas' certificates: it verifies the
    /// leader's serving certificate and the followers' client certificates.
    #[arg(long, env = "SODGUARD_PEER_CA")]
    pub peer_ca: Option<PathBuf>,
    /// Client certificate (PEM, with the clientAuth usage) a follower presents
    /// to the leader (default: the serving certificate).
    #[arg(long, env = "SODGUARD_PEER_CERT")]
    pub peer_cert: Option<PathBuf>,
    /// Key of --peer-cert.
    #[arg(long, env = "SODGUARD_PEER_KEY")]
    pub peer_key: Option<PathBuf>,
    /// How long a follower waits for the leader's answer before answering 503.
    #[arg(long, env = "SODGUARD_FORWARD_TIMEOUT", default_value = "3s", value_parser = duration)]
    pub forward_timeout: Duration,
}

/// A namespace name is an RFC 1123 label; anything else (an empty entry, a
/// glob) would silently match nothing.
fn namespace_name(s: &str) -> Result<String, String> {
    if crate::model::is_dns_label(s) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not a namespace name (lower-case letters, digits and '-', at most 63)"
        ))
    }
}

fn duration(s: &str) -> Result<Duration, String> {
    let d: jiff::SignedDuration = s
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like \"30s\" or \"5m\""))?;
    Duration::try_from(d).map_err(|_| format!("{s:?} must not be negative"))
}

/// The largest `--max-connections`: more than a process can have files
/// open under any usual limit (and within what a semaphore counts).
pub const MAX_CONNECTIONS: usize = 1 << 20;

/// Where the serving certificate comes from.
#[derive(Debug, Clone)]
pub enum Tls {
    Files { cert: PathBuf, key: PathBuf },
    SelfSigned { hosts: Vec<String> },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl ServeArgs {
    /// Rejects partial or contradictory settings, with what to do instead.
    pub fn validate(&self) -> Result<Tls, ConfigError> {
        let err = |m: &str| Err(ConfigError(m.to_string()));
        let tls = match (&self.tls_cert, &self.tls_key, self.self_signed) {
            (Some(_), None, _) => return err("--tls-cert is given without --tls-key: give both"),
            (None, Some(_), _) => return err("--tls-key is given without --tls-cert: give both"),
            (Some(_), Some(_), true) => {
                return err("--self-signed contradicts --tls-cert/--tls-key: choose one");
            }
            (Some(cert), Some(key), false) => Tls::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            (None, None, true) => {
                if self.self_signed_hosts.iter().all(|h| h.trim().is_empty()) {
                    return err("--self-signed-hosts must name at least one host");
                }
                Tls::SelfSigned {
                    hosts: self.self_signed_hosts.clone(),
                }
            }
            (None, None, false) => {
                return err(
                    "the webhook needs TLS: give --tls-cert and --tls-key, or --self-signed",
                );
            }
        };
        if self.ca_bundle_out.is_some() && !self.self_signed {
            return err("--ca-bundle-out only applies with --self-signed");
        }
        if !self.state.is_empty() && (self.kubeconfig.is_some() || self.context.is_some()) {
            return err("--state serves a fixed state: it contradicts --kubeconfig/--context");
        }
        if self.now.is_some() && self.state.is_empty() {
            return err(
                "--now only applies to a fixed state (--state): a live cluster is judged at the real time",
            );
        }
        if self.listen == self.probe_listen && self.listen.port() != 0 {
            return err("--listen and --probe-listen must differ");
        }
        if self.max_body_bytes < 1024 {
            return err("--max-body-bytes must be at least 1024");
        }
        if self.overlay_ttl.is_zero() {
            return err("--overlay-ttl must be positive");
        }
        if self.max_connections == 0 {
            return err(
                "--max-connections must be at least 1: with 0 the webhook would accept no connection",
            );
        }
        if self.max_connections > MAX_CONNECTIONS {
            return err(&format!(
                "--max-connections must be at most {MAX_CONNECTIONS}: a cap no process can hold bounds nothing"
            ));
        }
        // An hour is far beyond any use here, and keeps deadlines (now +
        // timeout) far from the clock's end.
        for (flag, d) in [
            ("--tls-handshake-timeout", self.tls_handshake_timeout),
            ("--idle-timeout", self.idle_timeout),
        ] {
            if d.is_zero() || d > Duration::from_secs(3600) {
                return err(&format!("{flag} must be positive and at most 1h"));
            }
        }
        for (flag, d) in [
            ("--decision-budget", self.decision_budget),
            ("--audit-budget", self.audit_budget),
        ] {
            if d.is_zero() || d > Duration::from_secs(3600) {
                return err(&format!("{flag} must be positive and at most 1h"));
            }
        }
        if self.decision_budget > Duration::from_secs(30) {
            return err(
                "--decision-budget must be at most 30s: the API server waits at most that long for a webhook",
            );
        }
        if self.decision_max_violations == 0 || self.audit_max_violations == 0 {
            return err("--decision-max-violations and --audit-max-violations must be at least 1");
        }
        if let Some(e) = self.election()?
            && self.decision_budget >= e.forward_timeout
        {
            return err(&format!(
                "--decision-budget ({:#}) must be below --forward-timeout ({:#}): a follower would answer 503 before the leader's decision arrives",
                jiff::SignedDuration::try_from(self.decision_budget).unwrap_or_default(),
                jiff::SignedDuration::try_from(e.forward_timeout).unwrap_or_default()
            ));
        }
        Ok(tls)
    }

    /// What one admission decision may do.
    pub fn decision_budget(&self) -> crate::engine::Budget {
        crate::engine::Budget {
            violations: self.decision_max_violations,
            time: Some(self.decision_budget),
        }
    }

    /// How the audit's whole-state work runs beside admission.
    pub fn audit_background(&self) -> crate::runtime::background::Background {
        crate::runtime::background::Background {
            nice: self.audit_nice,
        }
    }

    /// What one audit's evaluation may do.
    pub fn audit_budget(&self) -> crate::engine::Budget {
        crate::engine::Budget {
            violations: self.audit_max_violations,
            time: Some(self.audit_budget),
        }
    }

    /// The leader election settings (None: this replica decides alone).
    pub fn election(&self) -> Result<Option<Election>, ConfigError> {
        let err = |m: String| Err(ConfigError(m));
        let e = &self.election;
        if !e.leader_election {
            let given: Vec<&str> = [
                ("--lease-namespace", e.lease_namespace.is_some()),
                ("--identity", e.identity.is_some()),
                ("--peer-address", e.peer_address.is_some()),
                ("--peer-server-name", e.peer_server_name.is_some()),
                ("--peer-ca", e.peer_ca.is_some()),
                ("--peer-cert", e.peer_cert.is_some()),
                ("--peer-key", e.peer_key.is_some()),
            ]
            .into_iter()
            .filter_map(|(flag, set)| set.then_some(flag))
            .collect();
            if !given.is_empty() {
                return err(format!(
                    "{} only apply with --leader-election",
                    given.join(", ")
                ));
            }
            return Ok(None);
        }
        if !self.state.is_empty() {
            return err(
                "--leader-election needs a live cluster: it contradicts --state".to_string(),
            );
        }
        if self.self_signed {
            return err(
                "--leader-election needs certificates every replica trusts: \
                 --self-signed makes a CA per replica; give --tls-cert/--tls-key and --peer-ca"
                    .to_string(),
            );
        }
        let missing: Vec<&str> = [
            ("--lease-namespace", e.lease_namespace.is_none()),
            ("--identity", e.identity.is_none()),
            ("--peer-address", e.peer_address.is_none()),
            ("--peer-server-name", e.peer_server_name.is_none()),
            ("--peer-ca", e.peer_ca.is_none()),
        ]
        .into_iter()
        .filter_map(|(flag, unset)| unset.then_some(flag))
        .collect();
        if !missing.is_empty() {
            return err(format!("--leader-election needs {}", missing.join(", ")));
        }
        let peer_client = match (&e.peer_cert, &e.peer_key) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            (None, None) => None,
            _ => return err("--peer-cert and --peer-key go together: give both".to_string()),
        };
        let identity = e.identity.clone().unwrap_or_default();
        if identity.trim().is_empty() || identity.contains('@') {
            return err(format!(
                "--identity {identity:?} must be a non-empty name without '@'"
            ));
        }
        let mut peer_address = e.peer_address.clone().unwrap_or_default();
        if peer_address.contains('/') || !peer_address.contains(':') {
            return err(format!(
                "--peer-address {peer_address:?} must be host:port (e.g. 10.1.2.3:8444)"
            ));
        }
        // `$(POD_IP):8444` with an IPv6 Pod IP: the address needs brackets.
        if let Some((host, port)) = peer_address.rsplit_once(':')
            && host.contains(':')
            && !host.starts_with('[')
        {
            peer_address = format!("[{host}]:{port}");
        }
        let whole = |d: Duration| d.subsec_nanos() == 0 && d.as_secs() > 0;
        if !whole(e.lease_duration) || !whole(e.lease_grace) {
            return err(
                "--lease-duration and --lease-grace must be whole seconds, at least 1s".to_string(),
            );
        }
        if e.lease_grace.as_secs() < 2 || e.lease_grace >= e.lease_duration {
            return err(
                "--lease-grace must be at least 2s and shorter than --lease-duration".to_string(),
            );
        }
        if e.forward_timeout.is_zero() {
            return err("--forward-timeout must be positive".to_string());
        }
        for other in [self.listen, self.probe_listen] {
            if other == e.peer_listen && other.port() != 0 {
                return err(
                    "--peer-listen must differ from --listen and --probe-listen".to_string()
                );
            }
        }
        Ok(Some(Election {
            namespace: e.lease_namespace.clone().unwrap_or_default(),
            lease_name: e.lease_name.clone(),
            lease_duration_secs: e.lease_duration.as_secs(),
            lease_grace_secs: e.lease_grace.as_secs(),
            identity,
            peer_listen: e.peer_listen,
            peer_address,
            peer_server_name: e.peer_server_name.clone().unwrap_or_default(),
            peer_ca: e.peer_ca.clone().unwrap_or_default(),
            peer_client,
            forward_timeout: e.forward_timeout,
        }))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: ServeArgs,
    }

    fn parse(args: &[&str]) -> Result<Tls, ConfigError> {
        let mut v = vec!["t"];
        v.extend(args);
        T::try_parse_from(v)
            .map_err(|e| ConfigError(e.to_string()))?
            .a
            .validate()
    }

    #[test]
    fn tls_settings_must_be_whole_and_consistent() {
        assert!(
            parse(&["--tls-cert", "c"])
                .unwrap_err()
                .0
                .contains("without --tls-key")
        );
        assert!(
            parse(&["--tls-key", "k"])
                .unwrap_err()
                .0
                .contains("without --tls-cert")
        );
        assert!(
            parse(&["--tls-cert", "c", "--tls-key", "k", "--self-signed"])
                .unwrap_err()
                .0
                .contains("contradicts")
        );
        assert!(parse(&[]).unwrap_err().0.contains("needs TLS"));
        assert!(matches!(
            parse(&["--self-signed"]),
            Ok(Tls::SelfSigned { .. })
        ));
        assert!(matches!(
            parse(&["--tls-cert", "c", "--tls-key", "k"]),
            Ok(Tls::Files { .. })
        ));
        assert!(
            parse(&["--self-signed", "--state", "x", "--kubeconfig", "k"])
                .unwrap_err()
                .0
                .contains("contradicts")
        );
        assert!(parse(&["--self-signed", "--overlay-ttl", "soon"]).is_err());
    }

    /// Why `--self-signed` with `more` is refused (it must be).
    fn self_signed_refused(more: &[&str]) -> String {
        let mut v = vec!["--self-signed"];
        v.extend(more);
        parse(&v).unwrap_err().0
    }

    #[test]
    fn connection_bounds_must_be_positive() {
        assert!(parse(&["--self-signed"]).is_ok());
        for (bad, flag) in [
            (&["--max-connections", "0"][..], "--max-connections"),
            (
                &["--tls-handshake-timeout", "0s"],
                "--tls-handshake-timeout",
            ),
            (&["--idle-timeout", "0s"], "--idle-timeout"),
        ] {
            let e = self_signed_refused(bad);
            assert!(e.contains(flag), "{bad:?}: {e}");
        }
        assert!(parse(&["--self-signed", "--max-connections", "-1"]).is_err());
        for flag in ["--tls-handshake-timeout", "--idle-timeout"] {
            let e = parse(&["--self-signed", flag, "61m"]).unwrap_err().0;
            assert!(e.contains(flag) && e.contains("at most 1h"), "{e}");
            assert!(parse(&["--self-signed", flag, "1h"]).is_ok());
        }
        let huge = (MAX_CONNECTIONS + 1).to_string();
        let e = parse(&["--self-signed", "--max-connections", &huge])
            .unwrap_err()
            .0;
        assert!(e.contains("at most"), "{e}");
        assert!(
            parse(&[
                "--self-signed",
                "--max-connections",
                &usize::MAX.to_string()
            ])
            .is_err()
        );
    }

    #[test]
    fn the_audit_nice_value_is_one_linux_accepts() {
        let nice = |v: &[&str]| self_signed_with(v).map(|a| a.audit_background().nice);
        assert_eq!(nice(&[]).unwrap(), crate::runtime::background::DEFAULT_NICE);
        assert_eq!(nice(&["--audit-nice", "0"]).unwrap(), 0);
        assert_eq!(nice(&["--audit-nice", "19"]).unwrap(), 19);
        for bad in ["20", "-1", "high"] {
            let flag = format!("--audit-nice={bad}");
            let e = nice(&[&flag]).unwrap_err().to_string();
            assert!(e.contains("--audit-nice"), "{bad}: {e}");
        }
    }

    #[test]
    fn worker_threads_are_at_least_one() {
        let threads = |v: &[&str]| self_signed_with(v).map(|a| a.worker_threads);
        assert_eq!(threads(&[]).unwrap(), 1);
        assert_eq!(threads(&["--worker-threads", "4"]).unwrap(), 4);
        for bad in ["0", "-1", "1025", "many"] {
            let flag = format!("--worker-threads={bad}");
            let e = threads(&[&flag]).unwrap_err().to_string();
            assert!(e.contains("--worker-threads"), "{bad}: {e}");
        }
    }

    #[test]
    fn excluded_namespaces_are_namespace_names() {
        let args = |v: &[&str]| self_signed_with(v).map(|a| a.excluded_namespaces);
        assert_eq!(
            args(&["--excluded-namespaces", "kube-system,sodguard-system"]).unwrap(),
            ["kube-system", "sodguard-system"]
        );
        assert!(args(&[]).unwrap().is_empty());
        for bad in ["team-*", "Ops", "a,,b", "-x"] {
            let flag = format!("--excluded-namespaces={bad}");
            let e = args(&[&flag]).unwrap_err().to_string();
            assert!(e.contains("not a namespace name"), "{bad}: {e}");
        }
    }

    /// `serve --self-signed` with `more` arguments, parsed.
    fn self_signed_with(more: &[&str]) -> Result<ServeArgs, clap::Error> {
        let mut a = vec!["t", "--self-signed"];
        a.extend(more);
        T::try_parse_from(a).map(|t| t.a)
    }

    const FILES: [&str; 4] = ["--tls-cert", "c", "--tls-key", "k"];

    fn with_files(more: &[&str]) -> Result<Tls, ConfigError> {
        let mut v = FILES.to_vec();
        v.extend(more);
        parse(&v)
    }

    const ELECTION: [&str; 11] = [
        "--leader-election",
        "--lease-namespace",
        "sodguard",
        "--identity",
        "sodguard-0",
        "--peer-address",
        "10.1.2.3:8444",
        "--peer-server-name",
        "sodguard.sodguard.svc",
        "--peer-ca",
        "ca.crt",
    ];

    #[test]
    fn budgets_must_be_positive_and_fit_the_timeouts() {
        for (bad, why) in [
            (
                &["--decision-budget", "0s"][..],
                "--decision-budget must be positive",
            ),
            (&["--audit-budget", "0s"], "--audit-budget must be positive"),
            (&["--decision-budget", "31s"], "at most 30s"),
            (&["--decision-max-violations", "0"], "at least 1"),
            (&["--audit-max-violations", "0"], "at least 1"),
        ] {
            let e = self_signed_refused(bad);
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        assert!(parse(&["--self-signed", "--decision-budget", "30s"]).is_ok());
        // With leader election a follower waits --forward-timeout (3s) for
        // the leader: a longer decision would come back as a 503.
        let mut v = ELECTION.to_vec();
        v.extend(["--decision-budget", "3s"]);
        let e = with_files(&v).unwrap_err().0;
        assert!(
            e.contains("--decision-budget (3s) must be below --forward-timeout (3s)"),
            "{e}"
        );
        v.extend(["--forward-timeout", "4s"]);
        assert!(with_files(&v).is_ok());
    }

    #[test]
    fn leader_election_settings_must_be_whole_and_consistent() {
        assert!(with_files(&ELECTION).is_ok());
        // Each required setting missing is named.
        for (i, flag) in [
            (1, "--lease-namespace"),
            (3, "--identity"),
            (5, "--peer-address"),
            (7, "--peer-server-name"),
            (9, "--peer-ca"),
        ] {
            let mut v = ELECTION.to_vec();
            v.drain(i..i + 2);
            let e = with_files(&v).unwrap_err().0;
            assert!(e.contains(flag) && e.contains("needs"), "{e}");
        }
        // Peer settings without election are refused, not ignored.
        let e = with_files(&["--peer-ca", "ca.crt"]).unwrap_err().0;
        assert!(e.contains("only apply with --leader-election"), "{e}");
        // A fixed state or per-replica CAs cannot be shared between replicas.
        let mut v = ELECTION.to_vec();
        v.extend(["--state", "x"]);
        assert!(with_files(&v).unwrap_err().0.contains("--state"));
        let mut v = vec!["--self-signed"];
        v.extend(ELECTION);
        assert!(parse(&v).unwrap_err().0.contains("--self-signed"));
        for bad in [
            &["--peer-cert", "p.crt"][..],
            &["--lease-grace", "15s"],
            &["--lease-grace", "1s"],
            &["--lease-duration", "1500ms"],
            &["--peer-listen", "0.0.0.0:8443"],
        ] {
            let mut v = ELECTION.to_vec();
            v.extend(bad);
            assert!(with_files(&v).is_err(), "{bad:?} must be refused");
        }
        let mut v = ELECTION.to_vec();
        v[4] = "a@b";
        assert!(with_files(&v).unwrap_err().0.contains("--identity"));
        v[4] = "sodguard-0";
        v[6] = "fd00::1:8444";
        let e = T::try_parse_from(std::iter::once("t").chain(FILES).chain(v.iter().copied()))
            .unwrap()
            .a
            .election()
            .unwrap()
            .unwrap();
        assert_eq!(e.peer_address, "[fd00::1]:8444");
        v[6] = "https://10.1.2.3:8444/";
        assert!(with_files(&v).unwrap_err().0.contains("host:port"));
    }
}
