//! Shared by the end-to-end test files: raw generated gRPC clients with a bearer token, so a
//! test sees the exact `tonic::Status` the daemon answers, and direct reads of the daemon's
//! SQLite file to prove that refused requests changed nothing.

#![allow(dead_code, reason = "each test file uses a different subset")]

mod pki;
#[allow(unused_imports, reason = "each test file uses a different subset")]
pub use pki::*;
pub mod batches;
pub mod mtls;
pub mod rest;

use cardhsm_proto::v1 as pb;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::OnceLock;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

pub type Intercepted = InterceptedService<Channel, Bearer>;

/// Adds `authorization: Bearer <token>` (when there is one) to every call.
#[derive(Clone)]
pub struct Bearer(pub Option<String>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(t) = &self.0 {
            let v: MetadataValue<_> =
                format!("Bearer {t}").parse().map_err(|_| Status::internal("token is not ASCII"))?;
            req.metadata_mut().insert("authorization", v);
        }
        Ok(req)
    }
}

/// Raw clients of every service, all carrying the same token.
pub struct Api {
    pub auth: pb::auth_service_client::AuthServiceClient<Intercepted>,
    pub cards: pb::card_service_client::CardServiceClient<Intercepted>,
    pub users: pb::user_service_client::UserServiceClient<Intercepted>,
    pub issuance: pb::issuance_service_client::IssuanceServiceClient<Intercepted>,
    pub certstore: pb::certificate_store_service_client::CertificateStoreServiceClient<Intercepted>,
    pub sessions: pb::session_service_client::SessionServiceClient<Intercepted>,
    pub organizations: pb::organization_service_client::OrganizationServiceClient<Intercepted>,
    pub ecosystems: pb::ecosystem_service_client::EcosystemServiceClient<Intercepted>,
    pub privileges: pb::privilege_service_client::PrivilegeServiceClient<Intercepted>,
    pub batches: pb::batch_service_client::BatchServiceClient<Intercepted>,
}

pub async fn channel(endpoint: &str) -> Channel {
    Channel::from_shared(endpoint.to_owned()).expect("endpoint").connect().await.expect("connect to cardhsmd")
}

pub async fn api(endpoint: &str, token: Option<String>) -> Api {
    api_on(channel(endpoint).await, token)
}

/// Every client over an existing channel (e.g. a client-certificate TLS one).
pub fn api_on(ch: Channel, token: Option<String>) -> Api {
    let b = Bearer(token);
    Api {
        auth: pb::auth_service_client::AuthServiceClient::with_interceptor(ch.clone(), b.clone()),
        cards: pb::card_service_client::CardServiceClient::with_interceptor(ch.clone(), b.clone()),
        users: pb::user_service_client::UserServiceClient::with_interceptor(ch.clone(), b.clone()),
        issuance: pb::issuance_service_client::IssuanceServiceClient::with_interceptor(ch.clone(), b.clone()),
        certstore: pb::certificate_store_service_client::CertificateStoreServiceClient::with_interceptor(
            ch.clone(),
            b.clone(),
        ),
        sessions: pb::session_service_client::SessionServiceClient::with_interceptor(ch.clone(), b.clone()),
        organizations: pb::organization_service_client::OrganizationServiceClient::with_interceptor(
            ch.clone(),
            b.clone(),
        ),
        ecosystems: pb::ecosystem_service_client::EcosystemServiceClient::with_interceptor(
            ch.clone(),
            b.clone(),
        ),
        privileges: pb::privilege_service_client::PrivilegeServiceClient::with_interceptor(
            ch.clone(),
            b.clone(),
        ),
        // ZIP chunks are at most 256 KiB; uploads may be up to server.max_upload_bytes.
        batches: pb::batch_service_client::BatchServiceClient::with_interceptor(ch, b)
            .max_decoding_message_size(64 * 1024 * 1024)
            .max_encoding_message_size(64 * 1024 * 1024),
    }
}

pub async fn login(endpoint: &str, username: &str, password: &str) -> pb::LoginResponse {
    let mut a = api(endpoint, None).await;
    a.auth
        .login(pb::LoginRequest { username: username.into(), password: password.into() })
        .await
        .expect("login")
        .into_inner()
}

/// Logged in as `username`.
pub async fn api_as(endpoint: &str, username: &str, password: &str) -> Api {
    let t = login(endpoint, username, password).await;
    api(endpoint, Some(t.access_token)).await
}

/// Asserts `r` failed with `code`, and returns the status for further checks.
#[track_caller]
pub fn expect_code<T: std::fmt::Debug>(r: Result<tonic::Response<T>, Status>, code: Code) -> Status {
    match r {
        Ok(ok) => panic!("expected {code:?}, got success: {:?}", ok.into_inner()),
        Err(s) => {
            assert_eq!(s.code(), code, "unexpected status: {s:?}");
            s
        }
    }
}

/// Asserts INVALID_ARGUMENT whose BadRequest detail names `field`.
#[track_caller]
pub fn expect_invalid_field<T: std::fmt::Debug>(r: Result<tonic::Response<T>, Status>, field: &str) {
    use tonic_types::StatusExt;
    let s = expect_code(r, Code::InvalidArgument);
    let bad = s.get_details_bad_request().unwrap_or_else(|| panic!("no BadRequest detail in {s:?}"));
    let fields: Vec<&str> = bad.field_violations.iter().map(|v| v.field.as_str()).collect();
    assert_eq!(fields, [field], "status: {s:?}");
    assert!(s.message().contains(field), "message should name {field}: {}", s.message());
}

/// Every row of `tables` in the daemon's database, one `table:value|value|…` line each, in
/// key order: what a test compares before and after to prove nothing changed.
pub fn table_rows(db: &std::path::Path, tables: &[&str]) -> Vec<String> {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open db");
    let mut out = Vec::new();
    for table in tables {
        let mut stmt = conn.prepare(&format!("SELECT * FROM {table} ORDER BY 1, 2")).expect("prepare");
        let cols = stmt.column_count();
        let rows = stmt
            .query_map([], |r| {
                let mut line = format!("{table}:");
                for i in 0..cols {
                    let v: rusqlite::types::Value = r.get(i)?;
                    line.push_str(&format!("{v:?}|"));
                }
                Ok(line)
            })
            .expect("query");
        for row in rows {
            out.push(row.expect("row"));
        }
    }
    out
}

/// Everything a refused request must leave untouched: every row of every table.
pub fn store_snapshot(db: &std::path::Path) -> Vec<String> {
    table_rows(
        db,
        &[
            "users",
            "cards",
            "card_keys",
            "audit_log",
            "refresh_tokens",
            "meta",
            "authorities",
            "certificates",
            "crls",
        ],
    )
}

/// [`store_snapshot`] plus the identity tables: sessions, idle timeouts, API keys. Leaves out
/// the last-activity bookkeeping (written back in the background, at most every 30 s, by any
/// authenticated call), which is not a state change.
pub fn identity_snapshot(db: &std::path::Path) -> Vec<String> {
    let mut out = store_snapshot(db);
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open db");
    for (table, columns) in [
        (
            "sessions",
            "id, user_id, username, realm, roles, source_ip, agent, login_node, signed_in_at, expires_at",
        ),
        ("session_idle_timeouts", "*"),
        ("api_keys", "id, key_hash, user_id, username, realm, roles, created_at, revoked_at"),
    ] {
        let mut stmt = conn.prepare(&format!("SELECT {columns} FROM {table} ORDER BY 1")).expect("prepare");
        let cols = stmt.column_count();
        let rows = stmt
            .query_map([], |r| {
                let mut line = format!("{table}:");
                for i in 0..cols {
                    let v: rusqlite::types::Value = r.get(i)?;
                    line.push_str(&format!("{v:?}|"));
                }
                Ok(line)
            })
            .expect("query");
        for row in rows {
            out.push(row.expect("row"));
        }
    }
    out
}

pub fn state_name(s: i32) -> &'static str {
    pb::CardState::try_from(s).map(|s| s.as_str_name()).unwrap_or("?")
}

// ---- the `cardhsm` CLI binary, for the tests that run it -------------------------------------

/// The `cardhsm` binary: `$CARDHSM_BIN`, else built into this test's target directory.
pub fn cardhsm_path() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        cardhsm_tests::workspace_binary("cardhsm-client", "cardhsm", "CARDHSM_BIN")
            .unwrap_or_else(|e| panic!("the cardhsm CLI: {e:#}"))
    })
    .clone()
}

/// What one run of the CLI did.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(self.code, Some(0), "cardhsm failed:\n{self:#?}");
        self
    }

    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{self:#?}"))
    }

    /// Exit code 1, nothing on stdout, and `error: <prefix>…` as the first line of stderr.
    #[track_caller]
    pub fn failed_with(&self, prefix: &str) -> &str {
        assert_eq!(self.code, Some(1), "expected exit code 1:\n{self:#?}");
        assert_eq!(self.stdout, "", "nothing on stdout on failure:\n{self:#?}");
        let first = self.stderr.lines().next().unwrap_or_default();
        assert!(first.starts_with(&format!("error: {prefix}")), "expected `error: {prefix}…`:\n{self:#?}");
        first
    }
}

// ---- openssl, for the tests that cross-check with it -----------------------------------------

/// A new key `<name>.key` (PKCS#8 PEM, as `openssl genpkey` writes it; `alg` is `ec:P-256`,
/// `ec:P-384`, `rsa:2048` …) and a self-signed certificate for it in `<name>.crt` with subject
/// `subj` (openssl's `/CN=…/O=…` form), valid for 30 days.
pub fn self_signed(dir: &std::path::Path, name: &str, alg: &str, subj: &str) {
    let key = format!("{name}.key");
    let opt = match alg.split_once(':') {
        Some(("ec", curve)) => ["EC".to_owned(), format!("ec_paramgen_curve:{curve}")],
        Some(("rsa", bits)) => ["RSA".to_owned(), format!("rsa_keygen_bits:{bits}")],
        _ => panic!("unknown algorithm {alg}"),
    };
    openssl(dir, &["genpkey", "-algorithm", &opt[0], "-pkeyopt", &opt[1], "-out", &key]);
    let crt = format!("{name}.crt");
    openssl(dir, &["req", "-x509", "-new", "-key", &key, "-subj", subj, "-days", "30", "-out", &crt]);
}

/// The openssl CA `<ca>.crt` / `<ca>.key` signs `<name>.csr` into `<name>.crt` (30 days);
/// returns the certificate PEM.
pub fn openssl_ca_sign(dir: &std::path::Path, ca: &str, name: &str) -> Vec<u8> {
    let (csr, crt) = (format!("{name}.csr"), format!("{name}.crt"));
    let (ca_crt, ca_key) = (format!("{ca}.crt"), format!("{ca}.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_crt,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "30",
            "-out",
            &crt,
        ],
    );
    std::fs::read(dir.join(&crt)).expect("the signed certificate")
}

/// A fingerprint as `openssl x509 -noout -fingerprint -<digest>` prints it
/// (`SHA1 Fingerprint=AB:CD:…`), in the API's form: lower-case hex without separators.
#[track_caller]
pub fn openssl_fingerprint(dir: &std::path::Path, cert: &str, digest: &str) -> String {
    let out = openssl(dir, &["x509", "-in", cert, "-noout", "-fingerprint", &format!("-{digest}")]);
    let (_, hex) = out.trim().split_once('=').unwrap_or_else(|| panic!("no fingerprint in {out:?}"));
    hex.replace(':', "").to_ascii_lowercase()
}

/// The `cardhsm` CLI of one test: its own HOME and session file, run in a working directory.
pub struct CliHome {
    pub home: PathBuf,
    pub dir: PathBuf,
}

impl CliHome {
    /// `<root>/cli-home` and `<root>/cli-work`, created.
    pub fn new(root: &std::path::Path) -> CliHome {
        let (home, dir) = (root.join("cli-home"), root.join("cli-work"));
        for d in [&home, &dir] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        CliHome { home, dir }
    }

    /// `cardhsm <args>` with this HOME and session file, no CARDHSM_* settings from outside.
    pub fn command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(cardhsm_path());
        cmd.args(args)
            .current_dir(&self.dir)
            .env("HOME", &self.home)
            .env("CARDHSM_SESSION_FILE", self.home.join("session.json"))
            .env_remove("XDG_CONFIG_HOME");
        for var in ["CARDHSM_ENDPOINT", "CARDHSM_CA_FILE", "CARDHSM_CERT", "CARDHSM_KEY", "CARDHSM_PASSWORD"]
        {
            cmd.env_remove(var);
        }
        cmd.stdin(std::process::Stdio::null());
        cmd
    }

    pub fn output(mut cmd: std::process::Command) -> Run {
        let out = cmd.output().expect("running cardhsm");
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn run(&self, args: &[&str]) -> Run {
        CliHome::output(self.command(args))
    }

    /// `cardhsm --output json <args>`, which must succeed.
    #[track_caller]
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        self.run(&all).ok().json()
    }

    /// `cardhsm login` against `endpoint`, the password from CARDHSM_PASSWORD.
    #[track_caller]
    pub fn login(&self, endpoint: &str, username: &str, password: &str) {
        let mut login = self.command(&["--endpoint", endpoint, "login", "--username", username]);
        login.env("CARDHSM_PASSWORD", password);
        CliHome::output(login).ok();
    }
}
