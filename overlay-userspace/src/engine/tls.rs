//! The cluster's certificates as rustls configurations. One CA, given by the operator,
//! signs every certificate: the manager's (server for the docker CLI, client for the
//! agents), each agent's (server for the manager) and the CLI users' (client).
//!
//! Files are PEM, as `openssl` and Docker's `DOCKER_CERT_PATH` hold them: the CA
//! certificate(s), a certificate chain (leaf first) and its private key (PKCS#8, PKCS#1
//! or SEC1). All of it is read and checked before anything listens or connects.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use tokio_rustls::rustls::{
    self, ClientConfig, RootCertStore, ServerConfig,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject},
    server::WebPkiClientVerifier,
};

use super::EngineError;

/// The PEM files of one party: the cluster CA, its own certificate and key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// [`CertFiles`], read and parsed.
pub struct Credentials {
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for Credentials {
    fn clone(&self) -> Self {
        Credentials { roots: self.roots.clone(), chain: self.chain.clone(), key: self.key.clone_key() }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("roots", &self.roots.len()).field("chain", &self.chain.len()).finish()
    }
}

/// The one crypto provider built here (ring, as etcd-client's TLS uses).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn unreadable(path: &Path, what: &str, reason: impl std::fmt::Display) -> EngineError {
    EngineError::Tls { path: path.to_owned(), message: format!("{what}: {reason}") }
}

impl CertFiles {
    /// Reads and checks the three files: the CA holds at least one certificate, the
    /// chain at least one, the key parses and belongs to the first certificate.
    pub fn load(&self) -> Result<Credentials, EngineError> {
        let certs = |path: &Path, what: &str| -> Result<Vec<CertificateDer<'static>>, EngineError> {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| unreadable(path, what, e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| unreadable(path, what, e))?;
            if certs.is_empty() {
                return Err(unreadable(path, what, "no PEM certificate (-----BEGIN CERTIFICATE-----) in it"));
            }
            Ok(certs)
        };
        let ca = certs(&self.ca, "the CA certificate")?;
        let mut roots = RootCertStore::empty();
        for cert in ca {
            roots.add(cert).map_err(|e| unreadable(&self.ca, "the CA certificate", e))?;
        }
        let chain = certs(&self.cert, "the certificate")?;
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| unreadable(&self.key, "the private key", e))?;
        let credentials = Credentials { roots: Arc::new(roots), chain, key };
        // Building a server configuration checks that the key matches the certificate.
        credentials.server_config()?;
        Ok(credentials)
    }
}

impl Credentials {
    fn tls_error(&self, error: rustls::Error) -> EngineError {
        EngineError::TlsConfig(error.to_string())
    }

    /// A TLS server that requires a client certificate signed by the cluster CA.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, EngineError> {
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider())
            .build()
            .map_err(|e| EngineError::TlsConfig(e.to_string()))?;
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| self.tls_error(e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| self.tls_error(e))?;
        Ok(Arc::new(config))
    }

    /// A TLS client that shows this certificate and trusts only servers the cluster CA
    /// signed (for an IP address, the certificate must name it: `subjectAltName=IP:…`).
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, EngineError> {
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| self.tls_error(e))?
            .with_root_certificates(self.roots.clone())
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| self.tls_error(e))?;
        Ok(Arc::new(config))
    }
}

/// The name a server certificate must carry for `address`.
pub fn server_name(address: IpAddr) -> ServerName<'static> {
    ServerName::IpAddress(address.into())
}
