//! Shared by the end-to-end test files that check our PKI output with the real `openssl`:
//! running it, authorities to create, and reading CRLs the way `openssl crl -text` prints them.

use super::Api;
use cardhsm_proto::v1 as pb;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs `openssl <args>` in `dir`; returns (success, stdout + stderr).
pub fn openssl_try(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("running openssl (Debian package openssl)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Runs `openssl <args>` in `dir`; panics with its output when it fails. Returns the output.
#[track_caller]
pub fn openssl(dir: &Path, args: &[&str]) -> String {
    let (ok, text) = openssl_try(dir, args);
    assert!(ok, "openssl {} failed:\n{text}", args.join(" "));
    text
}

pub fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write file");
}

pub fn create_req(
    name: &str,
    alg: &str,
    dn: &str,
    kind: pb::AuthorityKind,
    parent: &str,
) -> pb::CreateAuthorityRequest {
    pb::CreateAuthorityRequest {
        name: name.into(),
        key_algorithm: alg.into(),
        subject_dn: dn.into(),
        validity_years: 10,
        kind: kind as i32,
        parent_id: parent.into(),
    }
}

/// Serial → reason as `openssl crl -text` lists them (serials lower-case, no separators).
pub fn crl_entries(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut serial: Option<String> = None;
    let mut lines = text.lines().map(str::trim).peekable();
    while let Some(line) = lines.next() {
        if let Some(s) = line.strip_prefix("Serial Number: ") {
            if let Some(prev) = serial.take() {
                out.insert(prev, "unspecified".into());
            }
            serial = Some(s.trim().to_ascii_lowercase());
        } else if line == "X509v3 CRL Reason Code:"
            && let Some(s) = serial.take()
        {
            let reason = lines.next().unwrap_or_default().trim().to_owned();
            out.insert(s, reason);
        }
    }
    if let Some(prev) = serial {
        out.insert(prev, "unspecified".into());
    }
    out
}

/// openssl prints serials with an even number of hex digits; ours are the same.
pub fn norm_serial(s: &str) -> String {
    s.to_ascii_lowercase()
}

pub async fn fetch_crl(api: &mut Api, dir: &Path, authority: &str, file: &str) -> pb::Crl {
    let crl = api
        .issuance
        .get_crl(pb::GetCrlRequest { authority_id: authority.into() })
        .await
        .expect("get crl")
        .into_inner();
    write(dir, file, &crl.crl_pem);
    crl
}
