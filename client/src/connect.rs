//! How the client reaches the daemon: endpoint parsing and the TLS / mutual-TLS setup that turn
//! [`ConnectOptions`] into a tonic `Channel`, the first step of every [`crate::CardhsmClient`].

use crate::error::ClientError;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use zeroize::Zeroizing;

/// The daemon's gRPC address when nothing else is said.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:50051";

/// How long establishing a connection may take before giving up.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how to connect: the endpoint URL and, for `https://`, the TLS material.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    endpoint: String,
    ca_file: Option<PathBuf>,
    identity: Option<(PathBuf, PathBuf)>,
    domain_name: Option<String>,
    connect_timeout: Duration,
    timeout: Option<Duration>,
}

impl ConnectOptions {
    /// Options for `endpoint` (`http://host:port` or `https://host:port`) with defaults: the
    /// system trust store for `https://`, no client certificate, a 10 s connect timeout, no
    /// per-request timeout.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            ca_file: None,
            identity: None,
            domain_name: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            timeout: None,
        }
    }

    /// Trust only the CA certificate(s) in this PEM file for the daemon's certificate.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Present this client certificate and key (both PEM) for mutual TLS.
    pub fn client_identity(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.identity = Some((cert.into(), key.into()));
        self
    }

    /// Check the daemon's certificate against this name instead of the endpoint's host.
    pub fn domain_name(mut self, name: impl Into<String>) -> Self {
        self.domain_name = Some(name.into());
        self
    }

    /// How long connecting may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// A deadline for every request (none by default: issuing a card may take a while).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The endpoint as given.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Validates the options and builds the tonic endpoint (reads the TLS files; no network).
    pub fn to_endpoint(&self) -> Result<Endpoint, ClientError> {
        let invalid = |reason: &str| ClientError::InvalidEndpoint {
            endpoint: self.endpoint.clone(),
            reason: reason.into(),
        };
        let tls = if self.endpoint.starts_with("https://") {
            true
        } else if self.endpoint.starts_with("http://") {
            false
        } else {
            return Err(invalid("it must start with http:// or https://"));
        };
        if !tls && (self.ca_file.is_some() || self.identity.is_some() || self.domain_name.is_some()) {
            return Err(invalid("a CA file or client certificate needs an https:// endpoint"));
        }
        let mut endpoint = Endpoint::from_shared(self.endpoint.clone())
            .map_err(|_| invalid("not a valid URL"))?
            .connect_timeout(self.connect_timeout);
        if let Some(timeout) = self.timeout {
            endpoint = endpoint.timeout(timeout);
        }
        if endpoint.uri().host().is_none_or(str::is_empty) {
            return Err(invalid("it has no host"));
        }
        if tls {
            endpoint = endpoint
                .tls_config(self.tls_config()?)
                .map_err(|e| ClientError::Connect { endpoint: self.endpoint.clone(), source: e })?;
        }
        Ok(endpoint)
    }

    /// Connects now (fails fast when the daemon is not there).
    pub async fn connect(&self) -> Result<Channel, ClientError> {
        self.to_endpoint()?
            .connect()
            .await
            .map_err(|source| ClientError::Connect { endpoint: self.endpoint.clone(), source })
    }

    fn tls_config(&self) -> Result<ClientTlsConfig, ClientError> {
        let mut config = ClientTlsConfig::new();
        config = match &self.ca_file {
            Some(path) => config.ca_certificate(Certificate::from_pem(read("CA file", path)?)),
            None => config.with_enabled_roots(),
        };
        if let Some((cert, key)) = &self.identity {
            let cert = read("client certificate", cert)?;
            let key = read("client key", key)?;
            config = config.identity(Identity::from_pem(&*cert, &*key));
        }
        if let Some(name) = &self.domain_name {
            config = config.domain_name(name.clone());
        }
        Ok(config)
    }
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self::new(DEFAULT_ENDPOINT)
    }
}

/// Reads a PEM file into a buffer that is wiped afterwards (it may hold a private key).
fn read(what: &'static str, path: &Path) -> Result<Zeroizing<Vec<u8>>, ClientError> {
    std::fs::read(path).map(Zeroizing::new).map_err(|source| ClientError::ReadFile {
        what,
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(result: Result<Endpoint, ClientError>) -> String {
        match result {
            Err(ClientError::InvalidEndpoint { reason, .. }) => reason,
            other => panic!("expected InvalidEndpoint, got {other:?}"),
        }
    }

    #[test]
    fn plain_http_endpoint_is_accepted() {
        let endpoint = ConnectOptions::default().to_endpoint();
        assert!(endpoint.is_ok(), "{endpoint:?}");
    }

    #[test]
    fn endpoint_without_scheme_is_rejected() {
        assert!(reason(ConnectOptions::new("127.0.0.1:50051").to_endpoint()).contains("http://"));
    }

    #[test]
    fn tls_options_need_https() {
        let options = ConnectOptions::new("http://127.0.0.1:50051").ca_file("/nonexistent/ca.pem");
        assert!(reason(options.to_endpoint()).contains("https://"));
    }

    #[test]
    fn missing_ca_file_is_named() {
        let options = ConnectOptions::new("https://localhost:50051").ca_file("/nonexistent/ca.pem");
        match options.to_endpoint() {
            Err(ClientError::ReadFile { what, path, .. }) => {
                assert_eq!(what, "CA file");
                assert_eq!(path, PathBuf::from("/nonexistent/ca.pem"));
            }
            other => panic!("expected ReadFile, got {other:?}"),
        }
    }
}
