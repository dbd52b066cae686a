//! Shared by the end-to-end batch tests: an organization with an authority and a balance to
//! issue batches from, waiting for a batch to finish, downloading and unpacking its ZIP, and
//! reading the batch tables straight from the daemon's SQLite file.

use super::{Api, create_req, openssl};
use cardhsm_proto::v1 as pb;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What a batch test issues from: an EC root authority assigned to an organization.
pub struct BatchSetup {
    pub authority: pb::Authority,
    pub organization: pb::Organization,
    /// The authority's certificate, PEM, in `<dir>/ca.pem` for `openssl verify`.
    pub ca_file: PathBuf,
}

/// Creates an EC P-256 root `name`, an organization `org_name`, and assigns the authority to
/// it with `balance`. Writes the CA certificate to `<dir>/<name>.pem`.
pub async fn setup(api: &mut Api, dir: &Path, name: &str, org_name: &str, balance: i64) -> BatchSetup {
    let authority = api
        .issuance
        .create_authority(create_req(
            name,
            "EC:P-256",
            &format!("CN={name},O=Batch Test,C=CZ"),
            pb::AuthorityKind::Root,
            "",
        ))
        .await
        .expect("create authority")
        .into_inner();
    let organization = api
        .organizations
        .create_organization(pb::CreateOrganizationRequest {
            name: org_name.into(),
            parameters: HashMap::new(),
            status: 0,
        })
        .await
        .expect("create organization")
        .into_inner();
    assign(api, &organization.id, &authority.id, balance).await;
    let ca_file = dir.join(format!("{}.pem", name.replace(' ', "_")));
    std::fs::write(&ca_file, &authority.certificate_pem).expect("write CA");
    BatchSetup { authority, organization, ca_file }
}

pub async fn assign(api: &mut Api, organization_id: &str, authority_id: &str, balance: i64) {
    api.organizations
        .add_organization_authority(pb::AddOrganizationAuthorityRequest {
            organization_id: organization_id.into(),
            authority_id: authority_id.into(),
            balance,
            enabled: true,
        })
        .await
        .expect("assign authority");
}

/// A CreateBatch request for `size` devices of profile ecc-device, commonName template `cn`.
pub fn generator_req(
    s: &BatchSetup,
    name: &str,
    size: u32,
    cn: &str,
    password: &str,
) -> pb::CreateBatchRequest {
    pb::CreateBatchRequest {
        organization_id: s.organization.id.clone(),
        authority_id: s.authority.id.clone(),
        profile_id: "ecc-device".into(),
        batch_name: name.into(),
        generator_id: "serial".into(),
        generator_params: Some(pb::GeneratorParams { start_value: 0, increment: 1 }),
        batch_size: size,
        profile_params: [("commonName".to_owned(), cn.to_owned())].into_iter().collect(),
        key_type: String::new(),
        pkcs12_password: password.into(),
        validity_years: 0,
    }
}

/// The organization's assignment of the setup's authority (balance, used, available).
pub async fn balance(api: &mut Api, s: &BatchSetup) -> pb::OrganizationAuthority {
    api.organizations
        .list_organization_authorities(pb::ListOrganizationAuthoritiesRequest {
            organization_id: s.organization.id.clone(),
        })
        .await
        .expect("list authorities")
        .into_inner()
        .authorities
        .into_iter()
        .find(|a| a.authority_id == s.authority.id)
        .expect("assignment")
}

/// Whether the engine is done with a batch in this status.
pub fn settled(status: i32) -> bool {
    use pb::BatchStatus as S;
    !matches!(
        S::try_from(status),
        Ok(S::PendingCreation | S::PendingIssue | S::ProcessingReject | S::ProcessingRevoke)
    )
}

/// Follows WatchBatch to its last event and returns the batch then.
pub async fn wait_done(api: &mut Api, id: &str) -> pb::Batch {
    let mut stream =
        api.batches.watch_batch(pb::WatchBatchRequest { id: id.into() }).await.expect("watch").into_inner();
    let mut last = None;
    while let Some(event) = stream.message().await.expect("watch event") {
        last = Some(event.done);
        if event.done {
            break;
        }
    }
    assert_eq!(last, Some(true), "WatchBatch ended without a done event");
    let b = api.batches.get_batch(pb::GetBatchRequest { id: id.into() }).await.expect("get").into_inner();
    assert!(settled(b.status), "{b:?}");
    b
}

/// Polls GetBatch (no stream) until `pred` holds, at most `limit`.
pub async fn poll_until(
    api: &mut Api,
    id: &str,
    limit: Duration,
    pred: impl Fn(&pb::Batch) -> bool,
) -> pb::Batch {
    let deadline = Instant::now() + limit;
    loop {
        let b = api.batches.get_batch(pb::GetBatchRequest { id: id.into() }).await.expect("get").into_inner();
        if pred(&b) {
            return b;
        }
        assert!(Instant::now() < deadline, "batch never got there: {b:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// DownloadBatch into `<dir>/<name>.zip`, unpacked into `<dir>/<name>/`. Returns the directory
/// and how many chunks came.
pub async fn download(api: &mut Api, id: &str, dir: &Path, name: &str) -> (PathBuf, usize) {
    let mut stream = api
        .batches
        .download_batch(pb::DownloadBatchRequest { id: id.into() })
        .await
        .expect("download")
        .into_inner();
    let mut bytes = Vec::new();
    let mut chunks = 0;
    while let Some(chunk) = stream.message().await.expect("chunk") {
        chunks += 1;
        bytes.extend_from_slice(&chunk.data);
    }
    let zip = dir.join(format!("{name}.zip"));
    std::fs::write(&zip, &bytes).expect("write zip");
    let out = dir.join(name);
    std::fs::create_dir_all(&out).expect("dir");
    let st = std::process::Command::new("unzip")
        .args(["-q", "-o"])
        .arg(&zip)
        .arg("-d")
        .arg(&out)
        .status()
        .expect("unzip (Debian package unzip)");
    assert!(st.success(), "unzip failed on the downloaded ZIP");
    (out, chunks)
}

/// manifest.csv rows (header checked) as (device_id, common_name, serial, file_name).
pub fn manifest(dir: &Path) -> Vec<(String, String, String, String)> {
    let text = std::fs::read_to_string(dir.join("manifest.csv")).expect("manifest.csv");
    let mut lines = text.split("\r\n").filter(|l| !l.is_empty());
    assert_eq!(lines.next(), Some("device_id,common_name,serial,file_name"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 4, "manifest line {l:?}");
            (f[0].to_owned(), f[1].to_owned(), f[2].to_owned(), f[3].to_owned())
        })
        .collect()
}

/// Opens `<dir>/<file>` (a PKCS#12) with `password` through openssl, checks the certificate
/// in it against `ca_file` with `openssl verify`, and returns the certificate's text.
pub fn check_pkcs12(dir: &Path, file: &str, password: &str, ca_file: &Path) -> String {
    let pass = format!("pass:{password}");
    let pem = format!("{file}.pem");
    openssl(dir, &["pkcs12", "-in", file, "-nodes", "-passin", &pass, "-out", &pem]);
    let all = std::fs::read_to_string(dir.join(&pem)).expect("pem");
    assert!(all.contains("PRIVATE KEY"), "the PKCS#12 holds no key");
    let cert = format!("{file}.crt");
    openssl(dir, &["pkcs12", "-in", file, "-nokeys", "-clcerts", "-passin", &pass, "-out", &cert]);
    let ca = ca_file.to_str().expect("path");
    let verified = openssl(dir, &["verify", "-CAfile", ca, &cert]);
    assert!(verified.contains(": OK"), "{verified}");
    openssl(dir, &["x509", "-in", &cert, "-noout", "-subject", "-serial"])
}

/// One SQL value from the daemon's database.
pub fn sql_i64(db: &Path, sql: &str, params: &[&str]) -> i64 {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open db");
    conn.query_row(sql, rusqlite::params_from_iter(params.iter()), |r| r.get(0)).expect("query")
}
