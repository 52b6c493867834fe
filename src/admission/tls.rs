//! Serving certificates: loaded from files and reloaded when they change, or
//! generated at start (`--self-signed`); optional client certificates.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Pem { path: PathBuf, message: String },
    #[error("invalid certificate or key: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client CA {}: {message}", path.display())]
    ClientCa { path: PathBuf, message: String },
    #[error("peer CA {}: {message}", path.display())]
    PeerCa { path: PathBuf, message: String },
    #[error("--peer-server-name {0:?} is not a DNS name")]
    PeerServerName(String),
    #[error(
        "{}: the leader would refuse this replica's client certificate ({source}); it must be signed by --peer-ca, name --peer-server-name and allow clientAuth",
        path.display()
    )]
    PeerCertRefused {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate chain and its key, as PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct PemPair {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

impl std::fmt::Debug for PemPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("PemPair")
            .field("cert_bytes", &self.cert.len())
            .finish_non_exhaustive()
    }
}

impl PemPair {
    pub fn read(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| TlsError::Read {
                path: p.into(),
                source,
            })
        };
        Ok(PemPair {
            cert: read(cert)?,
            key: read(key)?,
        })
    }
}

/// Who may call a TLS port.
#[derive(Debug, Clone)]
pub enum Callers {
    /// Anyone (the webhook port without --client-ca).
    Anyone,
    /// A client certificate signed by this CA (the webhook port with
    /// --client-ca).
    SignedBy(PathBuf),
    /// A client certificate signed by the peer CA that also names the
    /// replicas' DNS name: sodguard's own certificate, not any certificate a
    /// shared issuer may have signed (the peer port).
    Peer { ca: PathBuf, name: String },
}

impl Callers {
    pub fn ca(&self) -> Option<&Path> {
        match self {
            Callers::Anyone => None,
            Callers::SignedBy(ca) | Callers::Peer { ca, .. } => Some(ca),
        }
    }
}

/// Builds the server configuration: TLS 1.3 and 1.2 (1.3 preferred), HTTP/2
/// and HTTP/1.1, and client certificates verified against `client_ca` when
/// given.
pub fn server_config(
    pair: &PemPair,
    client_ca: Option<&Path>,
    names: (&Path, &Path),
) -> Result<Arc<ServerConfig>, TlsError> {
    let callers = client_ca.map_or(Callers::Anyone, |p| Callers::SignedBy(p.into()));
    server_config_for(pair, &callers, names)
}

/// [`server_config`] for any kind of caller.
pub fn server_config_for(
    pair: &PemPair,
    callers: &Callers,
    names: (&Path, &Path),
) -> Result<Arc<ServerConfig>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pair.cert)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            path: names.0.into(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: names.0.into(),
            message: "no certificate in the file".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(&pair.key).map_err(|e| TlsError::Pem {
        path: names.1.into(),
        message: format!("no usable private key: {e}"),
    })?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match callers.ca() {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let bad = |message: String| TlsError::ClientCa {
                path: path.into(),
                message,
            };
            let roots = read_roots(path, bad)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| bad(e.to_string()))?;
            match callers {
                Callers::Peer { name, .. } => {
                    let name = rustls::pki_types::ServerName::try_from(name.clone())
                        .map_err(|_| TlsError::PeerServerName(name.clone()))?;
                    builder.with_client_cert_verifier(Arc::new(PeerClientVerifier {
                        inner: verifier,
                        name,
                    }))
                }
                _ => builder.with_client_cert_verifier(verifier),
            }
        }
    };
    let mut config = builder.with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Our verifiers change which certificate is accepted, never how handshake
/// signatures are checked: that stays with the wrapped WebPKI verifier.
macro_rules! signatures_by_inner {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.inner.supported_verify_schemes()
        }
    };
}

/// A client certificate of the peer CA that also holds the replicas' DNS name.
#[derive(Debug)]
struct PeerClientVerifier {
    inner: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    name: rustls::pki_types::ServerName<'static>,
}

impl rustls::server::danger::ClientCertVerifier for PeerClientVerifier {
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        webpki::EndEntityCert::try_from(end_entity)
            .and_then(|c| c.verify_is_valid_for_subject_name(&self.name))
            .map_err(|_| {
                rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)
            })?;
        Ok(verified)
    }

    signatures_by_inner!();
}

/// The certificates of a CA bundle file; an empty bundle is an error.
fn read_roots(
    path: &Path,
    bad: impl Fn(String) -> TlsError,
) -> Result<rustls::RootCertStore, TlsError> {
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&pem) {
        roots
            .add(c.map_err(|e| bad(e.to_string()))?)
            .map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no certificate in the file".into()));
    }
    Ok(roots)
}

/// Checks the leader's certificate against the peer CA and one fixed DNS
/// name (the Service's), whichever address (a Pod IP) it was reached at:
/// full WebPKI verification, only the expected name is ours.
#[derive(Debug)]
struct FixedNameVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    name: rustls::pki_types::ServerName<'static>,
}

impl rustls::client::danger::ServerCertVerifier for FixedNameVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    signatures_by_inner!();
}

/// The TLS client of a follower: trusts only the peer CA, expects
/// `server_name` in the leader's certificate, and presents `pair` as its
/// client certificate.
pub fn peer_client_config(
    pair: &PemPair,
    peer_ca: &Path,
    server_name: &str,
    names: (&Path, &Path),
) -> Result<rustls::ClientConfig, TlsError> {
    let bad = |message: String| TlsError::PeerCa {
        path: peer_ca.into(),
        message,
    };
    let roots = read_roots(peer_ca, bad)?;
    let inner =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| bad(e.to_string()))?;
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string())
        .map_err(|_| TlsError::PeerServerName(server_name.into()))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pair.cert)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            path: names.0.into(),
            message: e.to_string(),
        })?;
    let key = PrivateKeyDer::from_pem_slice(&pair.key).map_err(|e| TlsError::Pem {
        path: names.1.into(),
        message: format!("no usable private key: {e}"),
    })?;
    // The leader applies exactly this check: a certificate it would refuse
    // (wrong CA, no clientAuth usage, wrong name) is an operator error to
    // report now, not a 503 on every forwarded request later.
    {
        let client_verifier = WebPkiClientVerifier::builder_with_provider(
            Arc::new(read_roots(peer_ca, bad)?),
            provider(),
        )
        .build()
        .map_err(|e| bad(e.to_string()))?;
        let own = PeerClientVerifier {
            inner: client_verifier,
            name: name.clone(),
        };
        let (end_entity, intermediates) = certs.split_first().ok_or_else(|| TlsError::Pem {
            path: names.0.into(),
            message: "no certificate in the file".into(),
        })?;
        rustls::server::danger::ClientCertVerifier::verify_client_cert(
            &own,
            end_entity,
            intermediates,
            rustls::pki_types::UnixTime::now(),
        )
        .map_err(|source| TlsError::PeerCertRefused {
            path: names.0.into(),
            source,
        })?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(FixedNameVerifier { inner, name }))
        .with_client_auth_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A CA and a serving certificate for `hosts`, made at start.
pub struct SelfSigned {
    pub ca_pem: String,
    pub pair: PemPair,
}

pub fn self_signed(hosts: &[String]) -> Result<SelfSigned, TlsError> {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "sodguard self-signed CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key)?;
    let leaf_key = KeyPair::generate()?;
    let mut leaf_params = CertificateParams::new(hosts.to_vec())?;
    leaf_params.distinguished_name.push(
        DnType::CommonName,
        hosts.first().map_or("sodguard", String::as_str),
    );
    let leaf = leaf_params.signed_by(&leaf_key, &ca)?;
    Ok(SelfSigned {
        ca_pem: ca.pem(),
        pair: PemPair {
            cert: leaf.pem().into_bytes(),
            key: leaf_key.serialize_pem().into_bytes(),
        },
    })
}

/// A TLS listener whose configuration follows the serving certificate: the
/// webhook port (client CA optional) or the peer port (peer CA required).
#[derive(Clone)]
pub struct ReloadTarget {
    pub config: axum_server::tls_rustls::RustlsConfig,
    pub callers: Callers,
}

/// Watches the certificate files (cert-manager and Secret volume updates swap
/// them underneath us) and installs a new configuration when the pair or a
/// client CA changes and loads; one that fails to load is logged and the old
/// one kept.
pub async fn reload_loop(
    targets: Vec<ReloadTarget>,
    cert: PathBuf,
    key: PathBuf,
    mut current: PemPair,
    every: Duration,
) {
    let read_ca = |t: &ReloadTarget| t.callers.ca().and_then(|p| std::fs::read(p).ok());
    let mut cas: Vec<Option<Vec<u8>>> = targets.iter().map(read_ca).collect();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let pair = match PemPair::read(&cert, &key) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the serving certificate; keeping the current one");
                continue;
            }
        };
        let pair_changed = pair != current;
        let mut all_loaded = true;
        for (target, ca) in targets.iter().zip(cas.iter_mut()) {
            let new_ca = read_ca(target);
            // A CA file that cannot be read now keeps the verifier it had.
            let ca_changed = new_ca.is_some() && new_ca != *ca;
            if !pair_changed && !ca_changed {
                continue;
            }
            match server_config_for(&pair, &target.callers, (&cert, &key)) {
                Ok(c) => {
                    target.config.reload_from_config(c);
                    if ca_changed {
                        *ca = new_ca;
                        tracing::info!(client_ca = ?target.callers.ca(), "client CA reloaded");
                    }
                }
                Err(e) => {
                    all_loaded = false;
                    tracing::warn!(error = %e, "new certificate or client CA does not load; keeping the current one");
                }
            }
        }
        if pair_changed && all_loaded {
            current = pair;
            tracing::info!(cert = %cert.display(), "serving certificate reloaded");
        }
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use rustls::pki_types::ServerName;

    use super::*;

    const NAME: &str = "sodguard.sodguard.svc";

    fn ca() -> CertifiedIssuer<'static, KeyPair> {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
    }

    fn leaf(ca: &CertifiedIssuer<'static, KeyPair>, name: &str) -> PemPair {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .signed_by(&key, ca)
            .unwrap();
        PemPair {
            cert: cert.pem().into_bytes(),
            key: key.serialize_pem().into_bytes(),
        }
    }

    /// A whole handshake in memory; the first error of either side.
    fn handshake(
        server: Arc<ServerConfig>,
        client: rustls::ClientConfig,
    ) -> Result<(), rustls::Error> {
        // Reached by address, as a follower reaches the leader's Pod IP.
        let addr = ServerName::try_from("10.1.2.3").unwrap();
        let mut c = rustls::ClientConnection::new(Arc::new(client), addr)?;
        let mut s = rustls::ServerConnection::new(server)?;
        for _ in 0..10 {
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).unwrap();
            }
            s.read_tls(&mut &buf[..]).unwrap();
            s.process_new_packets()?;
            let mut buf = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut buf).unwrap();
            }
            c.read_tls(&mut &buf[..]).unwrap();
            c.process_new_packets()?;
            if !c.is_handshaking() && !s.is_handshaking() {
                return Ok(());
            }
        }
        Err(rustls::Error::General(
            "the handshake did not finish".into(),
        ))
    }

    #[test]
    fn the_peer_port_admits_only_replicas_and_followers_check_the_leader() {
        let dir = tempfile::tempdir().unwrap();
        let (peer_ca, other_ca) = (ca(), ca());
        let ca_file = dir.path().join("ca.crt");
        std::fs::write(&ca_file, peer_ca.pem()).unwrap();
        let names = (Path::new("tls.crt"), Path::new("tls.key"));
        let replica = leaf(&peer_ca, NAME);
        let server = server_config_for(
            &replica,
            &Callers::Peer {
                ca: ca_file.clone(),
                name: NAME.into(),
            },
            names,
        )
        .unwrap();
        let client = |pair: &PemPair, expect: &str| {
            peer_client_config(pair, &ca_file, expect, names).unwrap()
        };

        // A replica's own certificate, presented to the leader at its Pod IP.
        handshake(server.clone(), client(&replica, NAME)).unwrap();
        // Another certificate of the same CA (a shared issuer) without the
        // replicas' name is refused by the leader.
        // (The follower itself refuses to start with one: the same check.)
        let stranger = leaf(&peer_ca, "someone-else.example");
        let e = peer_client_config(&stranger, &ca_file, NAME, names).unwrap_err();
        assert!(matches!(e, TlsError::PeerCertRefused { .. }), "{e}");
        let as_client = |pair: Option<&PemPair>| {
            let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(
                    read_roots(&ca_file, |message| TlsError::PeerCa {
                        path: ca_file.clone(),
                        message,
                    })
                    .unwrap(),
                ),
                provider(),
            )
            .build()
            .unwrap();
            let b = rustls::ClientConfig::builder_with_provider(provider())
                .with_protocol_versions(&[&rustls::version::TLS13])
                .unwrap()
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(FixedNameVerifier {
                    inner: verifier,
                    name: ServerName::try_from(NAME).unwrap(),
                }));
            match pair {
                Some(p) => b
                    .with_client_auth_cert(
                        CertificateDer::pem_slice_iter(&p.cert)
                            .collect::<Result<_, _>>()
                            .unwrap(),
                        PrivateKeyDer::from_pem_slice(&p.key).unwrap(),
                    )
                    .unwrap(),
                None => b.with_no_client_auth(),
            }
        };
        let e = handshake(server.clone(), as_client(Some(&stranger))).unwrap_err();
        assert!(matches!(e, rustls::Error::InvalidCertificate(_)), "{e:?}");
        // A certificate of another CA with the right name: refused too.
        let forged = leaf(&other_ca, NAME);
        assert!(handshake(server.clone(), as_client(Some(&forged))).is_err());
        // No certificate at all: refused.
        assert!(handshake(server.clone(), as_client(None)).is_err());
        // The follower refuses a leader whose certificate lacks the name.
        let impostor = server_config_for(
            &leaf(&peer_ca, "someone-else.example"),
            &Callers::Anyone,
            names,
        )
        .unwrap();
        let e = handshake(impostor, client(&replica, NAME)).unwrap_err();
        assert!(matches!(e, rustls::Error::InvalidCertificate(_)), "{e:?}");
    }
}
