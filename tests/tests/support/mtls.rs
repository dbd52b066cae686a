//! Shared by the end-to-end tests of client-certificate TLS (administrators by certificate,
//! the authorization matrix): a small PKI made with the real `openssl`, the daemon's
//! `[server.tls]` section, and connections presenting a client certificate.

use super::openssl_fingerprint;
use super::pki::openssl;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cardhsm_client::{CardhsmClient, ConnectOptions};
use cardhsm_tests::{Daemon, TestEnv};
use std::path::{Path, PathBuf};
use tonic::transport::Channel;

/// The test's PKI in `<env>/tls`: a CA (`ca.crt`), the daemon's certificate, and client
/// certificates `<name>.crt` / `<name>.key` made on demand, all signed by the CA.
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn new(env: &TestEnv) -> Pki {
        let dir = env.path().join("tls");
        std::fs::create_dir_all(&dir).expect("mkdir tls");
        let pki = Pki { dir };
        pki.key("ca");
        openssl(
            &pki.dir,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=cardhsm admin test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        pki.signed(
            "server",
            "/CN=cardhsmd test server",
            "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
        );
        // The certificate the bootstrap administrator's connections present (client-certificate
        // TLS asks every client for one); it is nobody's administrator certificate.
        pki.client("boot");
        pki
    }

    pub fn key(&self, name: &str) -> PathBuf {
        let file = format!("{name}.key");
        openssl(
            &self.dir,
            &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", &file],
        );
        self.dir.join(file)
    }

    pub fn signed(&self, name: &str, subject: &str, extensions: &str) {
        self.key(name);
        let (csr, ext, crt) = (format!("{name}.csr"), format!("{name}.ext"), format!("{name}.crt"));
        let ext_text =
            format!("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n{extensions}");
        std::fs::write(self.dir.join(&ext), ext_text).expect("write extensions");
        openssl(&self.dir, &["req", "-new", "-key", &format!("{name}.key"), "-out", &csr, "-subj", subject]);
        openssl(
            &self.dir,
            &[
                "x509", "-req", "-in", &csr, "-CA", "ca.crt", "-CAkey", "ca.key", "-out", &crt, "-days", "2",
                "-extfile", &ext,
            ],
        );
    }

    /// A client certificate `<name>.crt` with subject `/O=cardhsm tests/CN=<name>`.
    pub fn client(&self, name: &str) {
        self.signed(name, &format!("/O=cardhsm tests/CN={name}"), "extendedKeyUsage=clientAuth\n");
    }

    pub fn crt(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.crt"))
    }

    pub fn key_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.key"))
    }

    /// The certificate as the API takes it: base64 of the DER.
    pub fn der_b64(&self, name: &str) -> String {
        let der = format!("{name}.der");
        openssl(&self.dir, &["x509", "-in", &format!("{name}.crt"), "-outform", "DER", "-out", &der]);
        STANDARD.encode(std::fs::read(self.dir.join(der)).expect("read DER"))
    }

    /// SHA-256 fingerprint as openssl computes it (lower-case hex).
    pub fn sha256(&self, name: &str) -> String {
        openssl_fingerprint(&self.dir, &format!("{name}.crt"), "sha256")
    }

    /// `openssl x509 -noout -<what>` of `<name>.crt`, the value after `=`.
    pub fn field(&self, name: &str, what: &str) -> String {
        let out = openssl(&self.dir, &["x509", "-in", &format!("{name}.crt"), "-noout", &format!("-{what}")]);
        out.trim().split_once('=').map(|(_, v)| v.to_owned()).unwrap_or_default()
    }

    /// `[server.tls]` with client certificates from `client_ca`.
    pub fn tls_toml(&self, client_ca: &Path) -> String {
        let path = |p: &Path| toml::Value::String(p.display().to_string()).to_string();
        format!(
            "[server.tls]\ncert_file = {}\nkey_file = {}\nclient_ca_file = {}\n",
            path(&self.crt("server")),
            path(&self.key_path("server")),
            path(client_ca)
        )
    }
}

/// The daemon's client-certificate TLS endpoint.
pub fn https(daemon: &Daemon) -> String {
    format!("https://127.0.0.1:{}", daemon.addr.port())
}

/// A connection presenting the client certificate `<identity>.crt`.
pub async fn connect(daemon: &Daemon, pki: &Pki, identity: &str) -> Channel {
    let options = ConnectOptions::new(https(daemon))
        .ca_file(pki.crt("ca"))
        .client_identity(pki.crt(identity), pki.key_path(identity));
    CardhsmClient::connect_with(&options).await.expect("connect over client-certificate TLS").channel()
}

/// A daemon serving client-certificate TLS with `pki`'s CA, plus `extra_toml`.
pub async fn start_mtls(env: &TestEnv, pki: &Pki, extra_toml: &str) -> Daemon {
    let toml = format!("{}\n{extra_toml}", pki.tls_toml(&pki.crt("ca")));
    Daemon::start_with(env, &toml).await.expect("daemon with client-certificate TLS")
}
