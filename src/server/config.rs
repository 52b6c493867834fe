//! `sodguard serve` settings: one clap struct, every flag with an env var;
//! partial or contradictory settings are refused before anything starts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::http::DEFAULT_MAX_BODY;

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
    /// How long an admitted change the watch has not shown is assumed.
    #[arg(long, env = "SODGUARD_OVERLAY_TTL", default_value = "30s", value_parser = duration)]
    pub overlay_ttl: Duration,
    /// How often the certificate files are checked for changes.
    #[arg(long, env = "SODGUARD_CERT_RELOAD_INTERVAL", default_value = "10s", value_parser = duration)]
    pub cert_reload_interval: Duration,
    /// How often the violations gauge is recomputed (0s: never).
    #[arg(long, env = "SODGUARD_VIOLATIONS_INTERVAL", default_value = "60s", value_parser = duration)]
    pub violations_interval: Duration,
    /// Time given to in-flight requests after SIGTERM.
    #[arg(long, env = "SODGUARD_SHUTDOWN_GRACE", default_value = "20s", value_parser = duration)]
    pub shutdown_grace: Duration,
    /// Namespaces the webhook configuration excludes (its namespaceSelector):
    /// their ServiceAccounts are governed as soon as a binding names them,
    /// since their creation is never checked (R7.10).
    #[arg(long, env = "SODGUARD_EXCLUDED_NAMESPACES", value_delimiter = ',', value_parser = namespace_name)]
    pub excluded_namespaces: Vec<String>,
}

/// A namespace name is an RFC 1123 label; anything else (an empty entry, a
/// glob) would silently match nothing.
fn namespace_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
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
        Ok(tls)
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

    #[test]
    fn excluded_namespaces_are_namespace_names() {
        let args = |v: &[&str]| {
            let mut a = vec!["t", "--self-signed"];
            a.extend(v);
            T::try_parse_from(a).map(|t| t.a.excluded_namespaces)
        };
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
}
