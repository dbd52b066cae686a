//! Shared by the end-to-end test files: raw generated gRPC clients with a bearer token, so a
//! test sees the exact `tonic::Status` the daemon answers, and direct reads of the daemon's
//! SQLite file to prove that refused requests changed nothing.

#![allow(dead_code, reason = "each test file uses a different subset")]

mod pki;
#[allow(unused_imports, reason = "each test file uses a different subset")]
pub use pki::*;

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
}

pub async fn channel(endpoint: &str) -> Channel {
    Channel::from_shared(endpoint.to_owned()).expect("endpoint").connect().await.expect("connect to cardhsmd")
}

pub async fn api(endpoint: &str, token: Option<String>) -> Api {
    let ch = channel(endpoint).await;
    let b = Bearer(token);
    Api {
        auth: pb::auth_service_client::AuthServiceClient::with_interceptor(ch.clone(), b.clone()),
        cards: pb::card_service_client::CardServiceClient::with_interceptor(ch.clone(), b.clone()),
        users: pb::user_service_client::UserServiceClient::with_interceptor(ch.clone(), b.clone()),
        issuance: pb::issuance_service_client::IssuanceServiceClient::with_interceptor(ch, b),
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

/// Everything a refused request must leave untouched: every row of every table.
pub fn store_snapshot(db: &std::path::Path) -> Vec<String> {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open db");
    let mut out = Vec::new();
    for table in [
        "users",
        "cards",
        "card_keys",
        "audit_log",
        "refresh_tokens",
        "meta",
        "authorities",
        "certificates",
        "crls",
    ] {
        let mut stmt = conn.prepare(&format!("SELECT * FROM {table} ORDER BY 1")).expect("prepare");
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

/// Runs `openssl <args>` in `dir`; returns (success, stdout + stderr).
pub fn openssl_try(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running openssl (Debian package openssl)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Runs `openssl <args>` in `dir`; panics with its output when it fails. Returns the output.
#[track_caller]
pub fn openssl(dir: &std::path::Path, args: &[&str]) -> String {
    let (ok, text) = openssl_try(dir, args);
    assert!(ok, "openssl {} failed:\n{text}", args.join(" "));
    text
}

/// A fingerprint as `openssl x509 -noout -fingerprint -<digest>` prints it
/// (`SHA1 Fingerprint=AB:CD:…`), in the API's form: lower-case hex without separators.
#[track_caller]
pub fn openssl_fingerprint(dir: &std::path::Path, cert: &str, digest: &str) -> String {
    let out = openssl(dir, &["x509", "-in", cert, "-noout", "-fingerprint", &format!("-{digest}")]);
    let (_, hex) = out.trim().split_once('=').unwrap_or_else(|| panic!("no fingerprint in {out:?}"));
    hex.replace(':', "").to_ascii_lowercase()
}
