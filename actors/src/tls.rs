//! TLS for every listener and client, with rustls and its `ring` provider: builds
//! the server side of `[listeners.btp.tls]` / `[listeners.http.tls]` ([`server_tls`]) and the
//! client side of a `btp-client` or `http` account's `link.tls` ([`client_config`]) from PEM
//! files, and reads which accounts a client certificate names ([`cert_names_account`]).
//!
//! Every config built here carries the ring provider explicitly, so nothing depends on a
//! process-wide default; [`install_default_provider`] is still called once at start-up for any
//! library that asks rustls for the default.
//!
//! Certificates name accounts by DNS subject alternative name: a client certificate names
//! account `id` when one of its DNS SANs equals `id` (ASCII case-insensitive; wildcard names
//! never match). The subject CN is not consulted (RFC 6125 deprecates CN identities).
//!
//! Every error names the configuration key and, for a file, its path.

use ilp::config::{ClientTlsConfig, ServerTlsConfig};
use rustls::client::ClientConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls::RootCertStore;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

/// Why a TLS configuration could not be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TlsError {
    /// A PEM file is missing, unreadable or holds nothing usable.
    #[error("{key} = {}: {reason}", path.display())]
    File {
        key: String,
        path: PathBuf,
        reason: String,
    },
    /// The settings do not fit together (or rustls refused them).
    #[error("{key}: {reason}")]
    Config { key: String, reason: String },
}

/// ALPN of the ILP-over-HTTP listener when it offers HTTP/2.
pub const ALPN_H2_HTTP1: &[&[u8]] = &[b"h2", b"http/1.1"];
/// ALPN of a listener that speaks HTTP/1.1 only (BTP's WebSocket upgrade, or `h2 = false`).
pub const ALPN_HTTP1: &[&[u8]] = &[b"http/1.1"];

/// The provider every config of this crate uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring the process-wide default provider; a second call (or another library having
/// installed one first) changes nothing.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Whether a listener asks its clients for certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCerts {
    /// No `client_ca_path`: clients are not asked.
    Ignored,
    /// `client_ca_path` without `require_client_cert`: a certificate is verified when sent.
    Optional,
    /// `require_client_cert`: the handshake fails without a certificate from the CA.
    Required,
}

/// A listener's TLS: the rustls config and how it treats client certificates.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub config: Arc<ServerConfig>,
    pub client_certs: ClientCerts,
}

impl ServerTls {
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
    }
}

/// The TLS of a listener whose `tls` table (at config path `key`, e.g. `listeners.http.tls`) is
/// `tls`, offering `alpn`; `None` when `tls.enabled` is false (plain TCP).
pub fn server_tls(
    tls: &ServerTlsConfig,
    key: &str,
    alpn: &[&[u8]],
) -> Result<Option<ServerTls>, TlsError> {
    if !tls.enabled {
        return Ok(None);
    }
    let cert_path = required(&tls.cert_path, key, "cert_path")?;
    let key_path = required(&tls.key_path, key, "key_path")?;
    let chain = load_certs(&format!("{key}.cert_path"), cert_path)?;
    let private_key = load_key(&format!("{key}.key_path"), key_path)?;
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error(key, e))?;
    let (builder, client_certs) = match &tls.client_ca_path {
        Some(ca) => {
            let ca_key = format!("{key}.client_ca_path");
            let roots = load_roots(&ca_key, ca)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let (verifier, mode) = if tls.require_client_cert {
                (verifier, ClientCerts::Required)
            } else {
                (verifier.allow_unauthenticated(), ClientCerts::Optional)
            };
            let verifier = verifier.build().map_err(|e| file_error(&ca_key, ca, e))?;
            (builder.with_client_cert_verifier(verifier), mode)
        }
        None if tls.require_client_cert => {
            return Err(TlsError::Config {
                key: format!("{key}.require_client_cert"),
                reason: "needs client_ca_path".into(),
            })
        }
        None => (builder.with_no_client_auth(), ClientCerts::Ignored),
    };
    let mut config = builder
        .with_single_cert(chain, private_key)
        .map_err(|e| file_error(&format!("{key}.key_path"), key_path, e))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Some(ServerTls {
        config: Arc::new(config),
        client_certs,
    }))
}

/// The client side of an account's `link.tls` (at config path `key`, e.g.
/// `accounts.a.link.tls`): trusts `ca_path` (or the system roots when unset) and presents
/// `cert_path`/`key_path` when set. No ALPN is set: hyper-rustls sets its own.
pub fn client_config(tls: &ClientTlsConfig, key: &str) -> Result<ClientConfig, TlsError> {
    let roots = match &tls.ca_path {
        Some(ca) => load_roots(&format!("{key}.ca_path"), ca)?,
        None => system_roots(key)?,
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error(key, e))?
        .with_root_certificates(roots);
    match (&tls.cert_path, &tls.key_path) {
        (Some(cert_path), Some(key_path)) => {
            let chain = load_certs(&format!("{key}.cert_path"), cert_path)?;
            let private_key = load_key(&format!("{key}.key_path"), key_path)?;
            builder
                .with_client_auth_cert(chain, private_key)
                .map_err(|e| file_error(&format!("{key}.key_path"), key_path, e))
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err(TlsError::Config {
            key: key.to_owned(),
            reason: "cert_path and key_path go together: set both or neither".into(),
        }),
    }
}

/// A client config that trusts nothing: for a connector that must be able to speak TLS but is
/// only ever given plain `http://` URLs.
pub fn trust_nothing_client_config() -> Result<ClientConfig, TlsError> {
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error("tls", e))?
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth())
}

/// Whether `tls` sets anything (a plain `ws://` or `http://` link must not carry TLS settings).
pub fn client_tls_is_set(tls: &ClientTlsConfig) -> bool {
    tls.ca_path.is_some() || tls.cert_path.is_some() || tls.key_path.is_some()
}

/// The name a client checks the server's certificate against: the URL's host (a DNS name or an
/// IP address, without IPv6 brackets).
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned())
        .map_err(|e| format!("invalid TLS server name {host:?}: {e}"))
}

/// The DNS subject alternative names of `cert` (a client's verified end-entity certificate),
/// wildcards left out.
pub fn cert_dns_names(cert: &CertificateDer<'_>) -> Vec<String> {
    match webpki::EndEntityCert::try_from(cert) {
        Ok(parsed) => parsed
            .valid_dns_names()
            .filter(|n| !n.starts_with('*'))
            .map(str::to_owned)
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Whether a certificate with DNS names `names` names account `account` (the rule in the module
/// doc).
pub fn cert_names_account(names: &[String], account: &str) -> bool {
    !account.is_empty() && names.iter().any(|n| n.eq_ignore_ascii_case(account))
}

fn required<'a>(value: &'a Option<PathBuf>, key: &str, field: &str) -> Result<&'a Path, TlsError> {
    value.as_deref().ok_or_else(|| TlsError::Config {
        key: format!("{key}.{field}"),
        reason: "required when tls.enabled = true".into(),
    })
}

fn config_error(key: &str, e: impl std::fmt::Display) -> TlsError {
    TlsError::Config {
        key: key.to_owned(),
        reason: e.to_string(),
    }
}

fn file_error(key: &str, path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        key: key.to_owned(),
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

fn read(key: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| file_error(key, path, format!("cannot read: {e}")))
}

/// Every CERTIFICATE block of a PEM file, in order; at least one.
fn load_certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(key, path, format!("invalid PEM: {e:?}")))?;
    if certs.is_empty() {
        return Err(file_error(key, path, "no CERTIFICATE block"));
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) of a PEM file.
fn load_key(key: &str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(key, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => file_error(
            key,
            path,
            "no PRIVATE KEY block (PKCS#8, RSA or EC PEM expected)",
        ),
        e => file_error(key, path, format!("invalid PEM: {e:?}")),
    })
}

fn load_roots(key: &str, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(key, path)? {
        roots
            .add(cert)
            .map_err(|e| file_error(key, path, format!("unusable CA certificate: {e}")))?;
    }
    Ok(roots)
}

fn system_roots(key: &str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    let loaded = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(loaded.certs);
    if roots.is_empty() {
        return Err(TlsError::Config {
            key: format!("{key}.ca_path"),
            reason: "not set, and no system CA certificate could be loaded".into(),
        });
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(enabled: bool) -> ServerTlsConfig {
        ServerTlsConfig {
            enabled,
            cert_path: Some("/nonexistent/cert.pem".into()),
            key_path: Some("/nonexistent/key.pem".into()),
            client_ca_path: None,
            require_client_cert: false,
        }
    }

    #[test]
    fn disabled_listener_tls_is_plain() {
        assert!(server_tls(&server(false), "listeners.http.tls", ALPN_HTTP1)
            .unwrap()
            .is_none());
    }

    #[test]
    fn errors_name_the_key_and_the_file() {
        let e = server_tls(&server(true), "listeners.http.tls", ALPN_HTTP1).unwrap_err();
        assert!(matches!(&e, TlsError::File { key, path, .. }
            if key == "listeners.http.tls.cert_path" && path == Path::new("/nonexistent/cert.pem")));
        assert!(
            e.to_string()
                .starts_with("listeners.http.tls.cert_path = /nonexistent/cert.pem: cannot read"),
            "{e}"
        );

        let mut t = server(true);
        t.cert_path = None;
        let e = server_tls(&t, "listeners.btp.tls", ALPN_HTTP1).unwrap_err();
        assert_eq!(
            e.to_string(),
            "listeners.btp.tls.cert_path: required when tls.enabled = true"
        );

        let client = ClientTlsConfig {
            ca_path: Some("/nonexistent/ca.pem".into()),
            cert_path: None,
            key_path: None,
        };
        let e = client_config(&client, "accounts.a.link.tls").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("accounts.a.link.tls.ca_path = /nonexistent/ca.pem"),
            "{e}"
        );
    }

    #[test]
    fn a_file_without_pem_blocks_is_refused() {
        let dir = std::env::temp_dir().join(format!("ilp-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("empty.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let client = ClientTlsConfig {
            ca_path: Some(path.clone()),
            cert_path: None,
            key_path: None,
        };
        let e = client_config(&client, "accounts.a.link.tls").unwrap_err();
        assert_eq!(
            e,
            TlsError::File {
                key: "accounts.a.link.tls.ca_path".into(),
                path: path.clone(),
                reason: "no CERTIFICATE block".into()
            }
        );
        let e = load_key("k", &path).unwrap_err();
        assert!(e.to_string().contains("no PRIVATE KEY block"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn account_names_match_dns_sans_exactly_ignoring_case() {
        let names = vec!["alice".to_owned(), "node.example".to_owned()];
        assert!(cert_names_account(&names, "alice"));
        assert!(cert_names_account(&names, "ALICE"));
        assert!(!cert_names_account(&names, "alic"));
        assert!(!cert_names_account(&names, "bob"));
        assert!(!cert_names_account(&names, ""));
        assert!(!cert_names_account(&[], "alice"));
    }

    #[test]
    fn dns_names_come_from_the_subject_alt_names_without_wildcards() {
        let key = rcgen::KeyPair::generate().unwrap();
        let names = ["alice", "*.wild.example", "127.0.0.1", "Node.Example"];
        let mut params = rcgen::CertificateParams::new(names.map(str::to_owned).to_vec()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "bob");
        let cert = params.self_signed(&key).unwrap();
        let found = cert_dns_names(cert.der());
        assert_eq!(found, ["alice", "Node.Example"]);
        // The CN is not an identity.
        assert!(!cert_names_account(&found, "bob"));
        assert!(cert_names_account(&found, "node.example"));
        assert!(cert_dns_names(&CertificateDer::from(vec![1, 2, 3])).is_empty());
    }

    #[test]
    fn server_names_accept_hosts_and_ips() {
        assert!(server_name("localhost").is_ok());
        assert!(server_name("127.0.0.1").is_ok());
        assert!(server_name("[::1]").is_ok());
        assert!(server_name("bad host").is_err());
    }
}
