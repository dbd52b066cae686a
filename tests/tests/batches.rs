//! End-to-end: BatchService through the real cardhsmd on a real SoftHSM daemon token and a
//! real SQLite file, cross-checked with `openssl` and `unzip`: batches from the serial
//! generator, a single request, a CSV file and a CSR bundle, issued by the engine, watched,
//! downloaded as a streamed ZIP whose PKCS#12 files `openssl pkcs12` opens and whose
//! certificates `openssl verify` accepts, with a manifest that matches; every status rule
//! (reject, revoke with the CRL checked by openssl, files expiring); balances reserved,
//! consumed and restored; bad input refused naming the field; and callers of another
//! organization who never see a batch.

mod support;

use cardhsm_proto::v1 as pb;
use cardhsm_tests::{ADMIN_PASSWORD, Daemon, TestEnv};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;
use support::batches::*;
use support::*;
use tonic::Code;

const PASSWORD: &str = "batch-password-1234";

fn pki_dir(env: &TestEnv) -> std::path::PathBuf {
    let dir = env.path().join("pki");
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

/// The serials of a CRL as `openssl crl -text` lists them, with their reasons.
fn crl_of(
    api_dir: &Path,
    crl: &pb::Crl,
    ca_file: &Path,
    name: &str,
) -> std::collections::BTreeMap<String, String> {
    write(api_dir, name, &crl.crl_pem);
    let ca = ca_file.to_str().expect("path");
    let text = openssl(api_dir, &["crl", "-in", name, "-CAfile", ca, "-noout", "-text"]);
    crl_entries(&text)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_generator_batch_is_issued_watched_downloaded_and_verified() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let dir = pki_dir(&env);
    let s = setup(&mut api, &dir, "Batch Root", "Acme Devices", 100).await;

    let generators = api
        .batches
        .list_generators(pb::ListGeneratorsRequest { profile_id: "ecc-device".into() })
        .await
        .expect("generators")
        .into_inner()
        .generators;
    assert_eq!(generators.iter().map(|g| g.id.as_str()).collect::<Vec<_>>(), ["serial"]);
    assert_eq!(generators[0].target_parameter, "commonName");

    // Preview: start 0, increment 1, commonName "name" → the first device is "0name".
    let mut req = generator_req(&s, "first run", 25, "name", PASSWORD);
    let preview = api.batches.preview_batch(req.clone()).await.expect("preview").into_inner();
    assert_eq!(preview.first_device_params.get("commonName").map(String::as_str), Some("0name"));
    assert!(preview.first_subject_dn.contains("CN=0name"), "{}", preview.first_subject_dn);
    assert_eq!(preview.serials, (0..10).map(|i| i.to_string()).collect::<Vec<_>>());
    assert_eq!(preview.available_balance, 100);
    assert_eq!(sql_i64(&env.store_path(), "SELECT COUNT(*) FROM batches", &[]), 0, "preview stores nothing");

    req.generator_params = Some(pb::GeneratorParams { start_value: 0, increment: 1 });
    let created = api.batches.create_batch(req).await.expect("create").into_inner();
    assert_eq!(created.pkcs12_password, "", "a given password is never echoed");
    let batch = created.batch.expect("batch");
    assert_eq!(batch.batch_size, 25);
    assert_eq!(batch.kind, pb::BatchKind::Generator as i32);

    let done = wait_done(&mut api, &batch.id).await;
    assert_eq!(done.status, pb::BatchStatus::ReadyForDownload as i32, "{done:?}");
    assert_eq!((done.issued, done.failed), (25, 0));
    assert!(done.finished_at > 0);
    let info = api
        .batches
        .get_processing_info(pb::GetBatchRequest { id: batch.id.clone() })
        .await
        .expect("info")
        .into_inner();
    assert_eq!((info.active, info.success, info.failed), (0, 25, 0));
    let status = api
        .batches
        .get_batch_status(pb::GetBatchRequest { id: batch.id.clone() })
        .await
        .expect("status")
        .into_inner();
    assert_eq!(status.text, "Ready for download");

    // The balance: 25 consumed, nothing reserved any more.
    let b = balance(&mut api, &s).await;
    assert_eq!((b.balance, b.used, b.available), (100, 25, 75));

    // The ZIP: 25 PKCS#12 files named by CN and a manifest that matches the store.
    let (out, chunks) = download(&mut api, &batch.id, &dir, "first").await;
    assert!(chunks >= 1);
    let rows = manifest(&out);
    assert_eq!(rows.len(), 25);
    for (i, (device, cn, serial, file)) in rows.iter().enumerate() {
        assert_eq!(device, &i.to_string());
        assert_eq!(cn, &format!("{i}name"));
        assert_eq!(file, &format!("{i}name.p12"));
        assert!(out.join(file).is_file(), "{file} is in the ZIP");
        let stored = sql_i64(
            &env.store_path(),
            "SELECT COUNT(*) FROM certificates c JOIN batch_devices d ON d.certificate_id = c.id
             WHERE d.batch_id = ?1 AND d.position = ?2 AND c.serial = ?3 AND c.common_name = ?4",
            &[&batch.id, device, serial, cn],
        );
        assert_eq!(stored, 1, "manifest row {i} matches the stored certificate");
    }
    let serials: HashSet<&String> = rows.iter().map(|r| &r.2).collect();
    assert_eq!(serials.len(), 25, "distinct serials");
    for (_, cn, serial, file) in rows.iter().step_by(8) {
        let text = check_pkcs12(&out, file, PASSWORD, &s.ca_file);
        assert!(text.contains(&format!("CN = {cn}")), "{text}");
        assert!(text.to_ascii_lowercase().contains(&serial.to_ascii_lowercase()), "{text}");
    }
    // A wrong password does not open them.
    let (ok, _) =
        openssl_try(&out, &["pkcs12", "-in", "0name.p12", "-nodes", "-passin", "pass:wrong-password"]);
    assert!(!ok, "a wrong password opened the PKCS#12");

    // Audit: the batch's events, and each device's issuance with its serial.
    let log = api
        .batches
        .get_batch_audit_log(pb::GetBatchAuditLogRequest { batch_id: batch.id.clone() })
        .await
        .expect("audit")
        .into_inner()
        .entries;
    let kinds: Vec<&str> = log.iter().map(|e| e.r#type.as_str()).collect();
    assert_eq!(kinds, ["batch.create", "batch.start", "batch.finish", "batch.download"]);
    assert!(log.iter().all(|e| e.user == "admin" && e.batch_id == batch.id));
    let device = api
        .batches
        .get_device_audit_log(pb::GetDeviceAuditLogRequest { batch_id: batch.id.clone(), position: 3 })
        .await
        .expect("device audit")
        .into_inner()
        .entries;
    assert_eq!(device.len(), 1, "{device:?}");
    assert_eq!(device[0].r#type, "device.issue");
    assert!(device[0].message.contains(&rows[3].2), "{:?}", device[0]);
    expect_code(
        api.batches
            .get_device_audit_log(pb::GetDeviceAuditLogRequest { batch_id: batch.id.clone(), position: 25 })
            .await,
        Code::NotFound,
    );

    // Listing, with filters and the total.
    let listed = api
        .batches
        .list_batches(pb::ListBatchesRequest { name: "FIRST".into(), ..Default::default() })
        .await
        .expect("list")
        .into_inner();
    assert_eq!((listed.total, listed.batches.len()), (1, 1));
    assert_eq!(listed.batches[0].id, batch.id);
    let none = api
        .batches
        .list_batches(pb::ListBatchesRequest {
            status: pb::BatchStatus::Rejected as i32,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(none.total, 0);

    // Statistics: 25 ordered and 25 issued today.
    let stats = api
        .batches
        .get_device_statistics(pb::GetDeviceStatisticsRequest {
            organization_id: s.organization.id.clone(),
            ..Default::default()
        })
        .await
        .expect("statistics")
        .into_inner();
    assert_eq!((stats.ordered, stats.issued, stats.days.len()), (25, 25, 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn single_csv_and_csr_batches_are_issued_end_to_end() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let dir = pki_dir(&env);
    let s = setup(&mut api, &dir, "Inputs Root", "Inputs Org", 50).await;

    // Single, with the password left empty: one is generated and shown once.
    let created = api
        .batches
        .create_single_cert_batch(pb::CreateSingleCertBatchRequest {
            organization_id: s.organization.id.clone(),
            authority_id: s.authority.id.clone(),
            profile_id: "ecc-device".into(),
            batch_name: "one device".into(),
            profile_params: [("commonName".to_owned(), "gateway-7".to_owned())].into_iter().collect(),
            ..Default::default()
        })
        .await
        .expect("single")
        .into_inner();
    let generated = created.pkcs12_password.clone();
    assert_eq!(generated.chars().count(), 20, "a generated password comes back once");
    let single = created.batch.expect("batch");
    assert_eq!(single.kind, pb::BatchKind::Single as i32);
    let done = wait_done(&mut api, &single.id).await;
    assert_eq!((done.status, done.issued), (pb::BatchStatus::ReadyForDownload as i32, 1));
    let got = api.batches.get_batch(pb::GetBatchRequest { id: single.id.clone() }).await.expect("get");
    assert!(!format!("{:?}", got.into_inner()).contains(&generated), "the password is never returned again");
    let stored_password = sql_i64(
        &env.store_path(),
        "SELECT COUNT(*) FROM batches WHERE id = ?1 AND password_enc IS NOT NULL",
        &[&single.id],
    );
    assert_eq!(stored_password, 0, "the sealed password is dropped once the batch is finished");
    let (out, _) = download(&mut api, &single.id, &dir, "single").await;
    assert_eq!(manifest(&out).len(), 1);
    let text = check_pkcs12(&out, "gateway-7.p12", &generated, &s.ca_file);
    assert!(text.contains("CN = gateway-7"), "{text}");
    let log = daemon.log();
    assert!(!log.contains(&generated), "the generated password reached the log");

    // CSV: header in any order and case, a BOM, one device per row.
    let csv = "\u{feff}ORGANIZATION,commonname\r\nAcme,csv-a\r\nAcme,\"csv b\"\r\nAcme,csv-c\r\n";
    let created = api
        .batches
        .upload_csv_batch(pb::UploadCsvBatchRequest {
            organization_id: s.organization.id.clone(),
            authority_id: s.authority.id.clone(),
            profile_id: "ecc-device".into(),
            batch_name: "from csv".into(),
            file: csv.as_bytes().to_vec(),
            pkcs12_password: PASSWORD.into(),
            ..Default::default()
        })
        .await
        .expect("csv")
        .into_inner();
    let csv_batch = created.batch.expect("batch");
    assert_eq!((csv_batch.kind, csv_batch.batch_size), (pb::BatchKind::Csv as i32, 3));
    let done = wait_done(&mut api, &csv_batch.id).await;
    assert_eq!((done.status, done.issued), (pb::BatchStatus::ReadyForDownload as i32, 3));
    let (out, _) = download(&mut api, &csv_batch.id, &dir, "csv").await;
    let rows = manifest(&out);
    let names: Vec<&str> = rows.iter().map(|r| r.3.as_str()).collect();
    assert_eq!(names, ["csv-a.p12", "csv_b.p12", "csv-c.p12"], "CN made safe for file names");
    let text = check_pkcs12(&out, "csv_b.p12", PASSWORD, &s.ca_file);
    assert!(text.contains("CN = csv b") && text.contains("O = Acme"), "{text}");

    // CSRs: one PEM holding three requests; the certificates come back as PEM files.
    let mut bundle = String::new();
    for i in 0..3 {
        let key = format!("dev{i}.key");
        openssl(&dir, &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", &key]);
        let csr = format!("dev{i}.csr");
        openssl(&dir, &["req", "-new", "-key", &key, "-subj", &format!("/CN=csr-device-{i}"), "-out", &csr]);
        bundle.push_str(&std::fs::read_to_string(dir.join(&csr)).expect("csr"));
    }
    let created = api
        .batches
        .upload_csr_batch(pb::UploadCsrBatchRequest {
            organization_id: s.organization.id.clone(),
            authority_id: s.authority.id.clone(),
            profile_id: "ecc-device".into(),
            batch_name: "from csrs".into(),
            files: bundle.into_bytes(),
            ..Default::default()
        })
        .await
        .expect("csr upload")
        .into_inner();
    assert_eq!(created.pkcs12_password, "", "CSR batches have no PKCS#12");
    let csr_batch = created.batch.expect("batch");
    assert_eq!(
        (csr_batch.kind, csr_batch.batch_size, csr_batch.key_type.as_str()),
        (pb::BatchKind::Csr as i32, 3, "")
    );
    let done = wait_done(&mut api, &csr_batch.id).await;
    assert_eq!((done.status, done.issued), (pb::BatchStatus::ReadyForDownload as i32, 3));
    let (out, _) = download(&mut api, &csr_batch.id, &dir, "csrs").await;
    let rows = manifest(&out);
    assert_eq!(rows.len(), 3);
    let ca = s.ca_file.to_str().expect("path");
    for (i, (_, cn, _, file)) in rows.iter().enumerate() {
        assert_eq!(cn, &format!("csr-device-{i}"));
        assert_eq!(file, &format!("csr-device-{i}.pem"));
        let verified = openssl(&out, &["verify", "-CAfile", ca, file]);
        assert!(verified.contains(": OK"), "{verified}");
        // The certificate is for the requester's key.
        let cert_key = openssl(&out, &["x509", "-in", file, "-noout", "-pubkey"]);
        let own_key = openssl(&dir, &["pkey", "-in", &format!("dev{i}.key"), "-pubout"]);
        assert_eq!(cert_key, own_key);
    }

    // 1 + 3 + 3 consumed.
    let b = balance(&mut api, &s).await;
    assert_eq!((b.used, b.available), (7, 43));

    // A CSR bundle with one bad CSR among good ones is refused naming it; nothing is created.
    let good = std::fs::read_to_string(dir.join("dev0.csr")).expect("csr");
    // The second request's signature no longer matches its (changed) subject key bytes.
    let other = std::fs::read_to_string(dir.join("dev1.csr")).expect("csr");
    let mut lines: Vec<String> = other.lines().map(str::to_owned).collect();
    let line = &mut lines[2];
    let flipped = if line.as_bytes()[10] == b'A' { 'B' } else { 'A' };
    line.replace_range(10..11, &flipped.to_string());
    let bad = lines.join("\n") + "\n";
    let before = sql_i64(&env.store_path(), "SELECT COUNT(*) FROM batches", &[]);
    let refused = api
        .batches
        .upload_csr_batch(pb::UploadCsrBatchRequest {
            organization_id: s.organization.id.clone(),
            authority_id: s.authority.id.clone(),
            profile_id: "ecc-device".into(),
            batch_name: "bad csrs".into(),
            files: format!("{good}{bad}").into_bytes(),
            ..Default::default()
        })
        .await;
    let st = expect_code(refused, Code::InvalidArgument);
    assert!(st.message().contains("CSR 2"), "names the bad CSR: {}", st.message());
    assert_eq!(sql_i64(&env.store_path(), "SELECT COUNT(*) FROM batches", &[]), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn status_rules_reject_before_download_revoke_after_with_crl_and_balances() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let dir = pki_dir(&env);
    let s = setup(&mut api, &dir, "Rules Root", "Rules Org", 40).await;

    // Reject: before any download, the certificates are revoked and the balance restored.
    let a = api.batches.create_batch(generator_req(&s, "to reject", 10, "rej-", PASSWORD)).await.expect("a");
    let a = a.into_inner().batch.expect("batch");
    assert_eq!(balance(&mut api, &s).await.available, 30, "the size is reserved at creation");
    let a = wait_done(&mut api, &a.id).await;
    assert_eq!(a.status, pb::BatchStatus::ReadyForDownload as i32);
    assert_eq!(balance(&mut api, &s).await.used, 10);
    expect_invalid_field(
        api.batches.reject_batch(pb::RejectBatchRequest { id: a.id.clone(), reason: " ".into() }).await,
        "reason",
    );
    expect_code(
        api.batches
            .revoke_batch(pb::RevokeBatchRequest { id: a.id.clone(), reason: 1, comment: String::new() })
            .await,
        Code::FailedPrecondition,
    );
    let rejected = api
        .batches
        .reject_batch(pb::RejectBatchRequest { id: a.id.clone(), reason: "wrong firmware line".into() })
        .await
        .expect("reject")
        .into_inner();
    assert_eq!(rejected.status, pb::BatchStatus::Rejected as i32);
    assert_eq!(rejected.status_reason, "wrong firmware line");
    let b = balance(&mut api, &s).await;
    assert_eq!((b.used, b.available), (0, 40), "a reject gives the consumed balance back");
    expect_code(
        api.batches.download_batch(pb::DownloadBatchRequest { id: a.id.clone() }).await,
        Code::FailedPrecondition,
    );
    expect_code(
        api.batches.reject_batch(pb::RejectBatchRequest { id: a.id.clone(), reason: "again".into() }).await,
        Code::FailedPrecondition,
    );
    let rejected_serials: Vec<String> = {
        let conn = rusqlite::Connection::open(env.store_path()).expect("db");
        let mut stmt = conn.prepare("SELECT serial FROM batch_devices WHERE batch_id = ?1").expect("prepare");
        stmt.query_map([&a.id], |r| r.get(0)).expect("query").map(|r| r.expect("row")).collect()
    };
    assert_eq!(rejected_serials.len(), 10);
    assert_eq!(
        sql_i64(
            &env.store_path(),
            "SELECT COUNT(*) FROM batch_devices WHERE batch_id = ?1 AND pkcs12 IS NOT NULL",
            &[&a.id]
        ),
        0,
        "the files of a rejected batch are deleted"
    );

    // Revoke: only after a download; every certificate revoked with the reason, on the CRL.
    let c = api.batches.create_batch(generator_req(&s, "to revoke", 12, "rev-", PASSWORD)).await.expect("c");
    let c = wait_done(&mut api, &c.into_inner().batch.expect("batch").id).await;
    expect_code(
        api.batches
            .revoke_batch(pb::RevokeBatchRequest { id: c.id.clone(), reason: 1, comment: String::new() })
            .await,
        Code::FailedPrecondition,
    );
    let (out, _) = download(&mut api, &c.id, &dir, "revoke").await;
    let rows = manifest(&out);
    expect_code(
        api.batches
            .reject_batch(pb::RejectBatchRequest { id: c.id.clone(), reason: "too late".into() })
            .await,
        Code::FailedPrecondition,
    );
    expect_invalid_field(
        api.batches
            .revoke_batch(pb::RevokeBatchRequest { id: c.id.clone(), reason: 6, comment: String::new() })
            .await,
        "reason",
    );
    let revoked = api
        .batches
        .revoke_batch(pb::RevokeBatchRequest { id: c.id.clone(), reason: 1, comment: "keys leaked".into() })
        .await
        .expect("revoke")
        .into_inner();
    assert_eq!(revoked.status, pb::BatchStatus::Revoked as i32);
    assert!(revoked.status_reason.contains("keys leaked"), "{}", revoked.status_reason);
    assert_eq!(balance(&mut api, &s).await.used, 12, "a revoked batch was delivered: its balance stays used");
    let crl = api
        .issuance
        .get_crl(pb::GetCrlRequest { authority_id: s.authority.id.clone() })
        .await
        .expect("crl")
        .into_inner();
    let entries = crl_of(&dir, &crl, &s.ca_file, "batch.crl");
    for (_, _, serial, _) in &rows {
        assert_eq!(
            entries.get(&norm_serial(serial)).map(String::as_str),
            Some("Key Compromise"),
            "serial {serial} on the CRL: {entries:?}"
        );
    }
    for serial in &rejected_serials {
        assert_eq!(entries.get(&norm_serial(serial)).map(String::as_str), Some("Cessation Of Operation"));
    }
    assert_eq!(entries.len(), 22);
    let kinds: Vec<String> = api
        .batches
        .get_batch_audit_log(pb::GetBatchAuditLogRequest { batch_id: c.id.clone() })
        .await
        .expect("audit")
        .into_inner()
        .entries
        .into_iter()
        .map(|e| e.r#type)
        .collect();
    assert_eq!(
        kinds,
        [
            "batch.create",
            "batch.start",
            "batch.finish",
            "batch.download",
            "batch.revoke.begin",
            "batch.revoke"
        ]
    );
    expect_code(
        api.batches
            .revoke_batch(pb::RevokeBatchRequest { id: c.id.clone(), reason: 1, comment: String::new() })
            .await,
        Code::FailedPrecondition,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stored_files_expire_after_the_configured_lifetime() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start_with(&env, "[batches]\nzip_lifetime_secs = 1\nsweep_interval_secs = 1\n")
        .await
        .expect("daemon");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let dir = pki_dir(&env);
    let s = setup(&mut api, &dir, "Expiry Root", "Expiry Org", 10).await;
    let b = api
        .batches
        .create_batch(generator_req(&s, "short lived", 3, "exp-", PASSWORD))
        .await
        .expect("create");
    let id = b.into_inner().batch.expect("batch").id;
    let removed = poll_until(&mut api, &id, Duration::from_secs(30), |b| {
        b.status == pb::BatchStatus::ZipRemovedAfterExpiration as i32
    })
    .await;
    assert_eq!(removed.issued, 3);
    assert_eq!(
        sql_i64(
            &env.store_path(),
            "SELECT COUNT(*) FROM batch_devices WHERE batch_id = ?1 AND pkcs12 IS NOT NULL",
            &[&id]
        ),
        0
    );
    expect_code(
        api.batches.download_batch(pb::DownloadBatchRequest { id: id.clone() }).await,
        Code::FailedPrecondition,
    );
    expect_code(
        api.batches.reject_batch(pb::RejectBatchRequest { id: id.clone(), reason: "late".into() }).await,
        Code::FailedPrecondition,
    );
    let status = api.batches.get_batch_status(pb::GetBatchRequest { id }).await.expect("status").into_inner();
    assert_eq!(status.text, "Zip removed after expiration");
}

#[tokio::test(flavor = "multi_thread")]
async fn balances_are_reserved_consumed_and_a_shortage_names_available_and_asked() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let dir = pki_dir(&env);
    let s = setup(&mut api, &dir, "Balance Root", "Balance Org", 8).await;

    let before = store_snapshot(&env.store_path());
    let short = api.batches.create_batch(generator_req(&s, "too many", 10, "x-", PASSWORD)).await;
    let st = expect_code(short, Code::FailedPrecondition);
    assert!(st.message().contains("available 8") && st.message().contains("asked 10"), "{}", st.message());
    let st = expect_code(
        api.batches.preview_batch(generator_req(&s, "too many", 10, "x-", PASSWORD)).await,
        Code::FailedPrecondition,
    );
    assert!(st.message().contains("available 8") && st.message().contains("asked 10"), "{}", st.message());
    assert_eq!(store_snapshot(&env.store_path()), before, "a refused batch changes nothing");
    assert_eq!(sql_i64(&env.store_path(), "SELECT COUNT(*) FROM batches", &[]), 0);

    let first =
        api.batches.create_batch(generator_req(&s, "five", 5, "five-", PASSWORD)).await.expect("five");
    // Reserved at once: only 3 are left for anyone else, even while the first still issues.
    let st = expect_code(
        api.batches.create_batch(generator_req(&s, "four", 4, "four-", PASSWORD)).await,
        Code::FailedPrecondition,
    );
    assert!(st.message().contains("available 3") && st.message().contains("asked 4"), "{}", st.message());
    let done = wait_done(&mut api, &first.into_inner().batch.expect("batch").id).await;
    assert_eq!(done.issued, 5);
    let b = balance(&mut api, &s).await;
    assert_eq!((b.balance, b.used, b.available), (8, 5, 3));
    assert_eq!(
        sql_i64(
            &env.store_path(),
            "SELECT reserved FROM organization_authorities WHERE organization_id = ?1",
            &[&s.organization.id]
        ),
        0,
        "nothing stays reserved once the batch is done"
    );
    let three =
        api.batches.create_batch(generator_req(&s, "three", 3, "three-", PASSWORD)).await.expect("three");
    wait_done(&mut api, &three.into_inner().batch.expect("batch").id).await;
    let st = expect_code(
        api.batches.create_batch(generator_req(&s, "one more", 1, "more-", PASSWORD)).await,
        Code::FailedPrecondition,
    );
    assert!(st.message().contains("available 0") && st.message().contains("asked 1"), "{}", st.message());
    // Statistics count what was ordered and issued.
    let stats = api
        .batches
        .get_device_statistics(pb::GetDeviceStatisticsRequest::default())
        .await
        .expect("stats")
        .into_inner();
    assert_eq!((stats.ordered, stats.issued), (8, 8));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_naming_the_field_and_changes_nothing() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let dir = pki_dir(&env);
    let s = setup(&mut api, &dir, "Input Root", "Input Org", 100).await;
    let before = store_snapshot(&env.store_path());
    let ok = generator_req(&s, "fine", 2, "ok-", PASSWORD);
    type Edit = fn(&mut pb::CreateBatchRequest);
    let cases: Vec<(&str, Edit)> = vec![
        ("batch_name", |r| r.batch_name = "  ".into()),
        ("batch_name", |r| r.batch_name = "x".repeat(256)),
        ("batch_size", |r| r.batch_size = 0),
        ("batch_size", |r| r.batch_size = 100_001),
        ("generator_id", |r| r.generator_id = "uuid".into()),
        ("pkcs12_password", |r| r.pkcs12_password = "short".into()),
        ("profile_id", |r| r.profile_id = "no-such-profile".into()),
        ("organization_id", |r| r.organization_id = "not-an-id".into()),
        ("authority_id", |r| r.authority_id = "6f1c1f9e-3a0e-4a43-9d43-0f6f2e6f1e1a".into()),
        ("key_type", |r| r.key_type = "RSA:2048".into()),
        ("params.commonName", |r| {
            r.profile_params.insert("commonName".into(), "bad\u{7}name".into());
        }),
        ("params.noSuchParameter", |r| {
            r.profile_params.insert("noSuchParameter".into(), "x".into());
        }),
        ("validity_years", |r| r.validity_years = 99),
    ];
    for (field, edit) in cases {
        let mut req = ok.clone();
        edit(&mut req);
        expect_invalid_field(api.batches.create_batch(req.clone()).await, field);
        expect_invalid_field(api.batches.preview_batch(req).await, field);
    }
    // A CSV with a bad value names the row and the column.
    let st = expect_code(
        api.batches
            .upload_csv_batch(pb::UploadCsvBatchRequest {
                organization_id: s.organization.id.clone(),
                authority_id: s.authority.id.clone(),
                profile_id: "ecc-device".into(),
                batch_name: "bad csv".into(),
                file: b"commonName\r\ngood-1\r\n!bad\r\n".to_vec(),
                pkcs12_password: PASSWORD.into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
    );
    assert!(st.message().contains("row 3") && st.message().contains("commonName"), "{}", st.message());
    assert_eq!(store_snapshot(&env.store_path()), before);
    assert_eq!(sql_i64(&env.store_path(), "SELECT COUNT(*) FROM batches", &[]), 0);
    assert_eq!(sql_i64(&env.store_path(), "SELECT COUNT(*) FROM batch_devices", &[]), 0);
    // Unknown ids.
    let unknown = "6f1c1f9e-3a0e-4a43-9d43-0f6f2e6f1e1a".to_owned();
    expect_code(api.batches.get_batch(pb::GetBatchRequest { id: unknown.clone() }).await, Code::NotFound);
    expect_code(
        api.batches.download_batch(pb::DownloadBatchRequest { id: unknown.clone() }).await,
        Code::NotFound,
    );
    expect_invalid_field(api.batches.get_batch(pb::GetBatchRequest { id: "nope".into() }).await, "id");
}

#[tokio::test(flavor = "multi_thread")]
async fn callers_of_another_organization_never_see_a_batch() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let mut admin = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let dir = pki_dir(&env);
    let a = setup(&mut admin, &dir, "Scope Root", "Org A", 20).await;
    let org_b = admin
        .organizations
        .create_organization(pb::CreateOrganizationRequest {
            name: "Org B".into(),
            parameters: HashMap::new(),
            status: 0,
        })
        .await
        .expect("org b")
        .into_inner();
    assign(&mut admin, &org_b.id, &a.authority.id, 20).await;
    let batch_a =
        admin.batches.create_batch(generator_req(&a, "a's batch", 2, "a-", PASSWORD)).await.expect("a");
    let batch_a = wait_done(&mut admin, &batch_a.into_inner().batch.expect("batch").id).await;

    // A USER of organization B with profile ecc-device.
    let user = admin
        .users
        .create_user(pb::CreateUserRequest {
            username: "bobby_b".into(),
            password: "bob-password-123456".into(),
            roles: vec![pb::Role::User as i32],
            ..Default::default()
        })
        .await
        .expect("user")
        .into_inner();
    admin
        .privileges
        .set_user_privileges(pb::SetUserPrivilegesRequest {
            user_id: user.id.clone(),
            privileges: vec![pb::Privilege {
                role: pb::Role::User as i32,
                ecosystem_id: String::new(),
                organization_id: org_b.id.clone(),
                profiles: vec!["ecc-device".into()],
            }],
        })
        .await
        .expect("privileges");
    let mut bob = api_as(&daemon.endpoint, "bobby_b", "bob-password-123456").await;

    expect_code(bob.batches.get_batch(pb::GetBatchRequest { id: batch_a.id.clone() }).await, Code::NotFound);
    expect_code(
        bob.batches.download_batch(pb::DownloadBatchRequest { id: batch_a.id.clone() }).await,
        Code::NotFound,
    );
    expect_code(
        bob.batches.watch_batch(pb::WatchBatchRequest { id: batch_a.id.clone() }).await,
        Code::NotFound,
    );
    expect_code(
        bob.batches
            .reject_batch(pb::RejectBatchRequest { id: batch_a.id.clone(), reason: "mine now".into() })
            .await,
        Code::NotFound,
    );
    expect_code(
        bob.batches.get_batch_audit_log(pb::GetBatchAuditLogRequest { batch_id: batch_a.id.clone() }).await,
        Code::NotFound,
    );
    let listed =
        bob.batches.list_batches(pb::ListBatchesRequest::default()).await.expect("list").into_inner();
    assert_eq!(listed.total, 0, "{listed:?}");
    expect_code(
        bob.batches.create_batch(generator_req(&a, "in a", 1, "bob-", PASSWORD)).await,
        Code::NotFound,
    );

    // In its own organization, with its profile, bob issues; not with another profile.
    let in_b = pb::CreateBatchRequest {
        organization_id: org_b.id.clone(),
        ..generator_req(&a, "bob's", 2, "b-", PASSWORD)
    };
    let mine = bob.batches.create_batch(in_b.clone()).await.expect("bob creates").into_inner();
    let mine = wait_done(&mut bob, &mine.batch.expect("batch").id).await;
    assert_eq!(mine.issued, 2);
    let other_profile = pb::CreateBatchRequest { profile_id: "rsa-device".into(), ..in_b };
    expect_code(bob.batches.create_batch(other_profile).await, Code::PermissionDenied);
    let listed =
        bob.batches.list_batches(pb::ListBatchesRequest::default()).await.expect("list").into_inner();
    assert_eq!(listed.batches.iter().map(|b| b.id.as_str()).collect::<Vec<_>>(), [mine.id.as_str()]);
    // The administrator sees both.
    let all = admin.batches.list_batches(pb::ListBatchesRequest::default()).await.expect("list").into_inner();
    assert_eq!(all.total, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_authority_disabled_mid_batch_fails_the_rest_and_gives_their_balance_back() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let dir = pki_dir(&env);
    let s = setup(&mut api, &dir, "Disabled Root", "Disabled Org", 200).await;
    let b = api
        .batches
        .create_batch(generator_req(&s, "interrupted", 200, "d-", PASSWORD))
        .await
        .expect("create");
    let id = b.into_inner().batch.expect("batch").id;
    poll_until(&mut api, &id, Duration::from_secs(60), |b| b.issued > 0 || settled(b.status)).await;
    api.issuance
        .set_authority_enabled(pb::SetAuthorityEnabledRequest { id: s.authority.id.clone(), enabled: false })
        .await
        .expect("disable");
    let done = wait_done(&mut api, &id).await;
    // However the race fell, every device is accounted for exactly once.
    assert_eq!(done.issued + done.failed, 200, "{done:?}");
    let expected = if done.failed == 0 {
        pb::BatchStatus::ReadyForDownload
    } else if done.issued > 0 {
        pb::BatchStatus::IssuedPartly
    } else {
        pb::BatchStatus::Broken
    };
    assert_eq!(done.status, expected as i32, "{done:?}");
    if done.failed > 0 {
        assert!(done.status_reason.contains("failed") || done.status_reason.contains("disabled"), "{done:?}");
        let failed_log = sql_i64(
            &env.store_path(),
            "SELECT COUNT(*) FROM audit_log WHERE action = 'device.fail' AND target_id LIKE ?1",
            &[&format!("{id}/%")],
        );
        assert_eq!(failed_log, i64::from(done.failed));
    }
    let b = balance(&mut api, &s).await;
    assert_eq!((b.used, b.available), (i64::from(done.issued), 200 - i64::from(done.issued)));
}

#[tokio::test(flavor = "multi_thread")]
async fn organization_parameters_fill_the_subject_unless_the_request_gives_them() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let s = setup(&mut api, env.path(), "Org Params CA", "Org Params", 10).await;
    api.organizations
        .update_organization(pb::UpdateOrganizationRequest {
            id: s.organization.id.clone(),
            name: "Org Params".into(),
            parameters: [("ORGANIZATION", "Org Params s.r.o."), ("COUNTRY", "SK")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            status: 0,
        })
        .await
        .expect("set the organization's parameters");

    let req = generator_req(&s, "from the organization", 2, "dev", PASSWORD);
    let preview = api.batches.preview_batch(req.clone()).await.expect("preview").into_inner();
    assert_eq!(
        preview.first_device_params.get("organization").map(String::as_str),
        Some("Org Params s.r.o.")
    );
    assert_eq!(preview.first_device_params.get("country").map(String::as_str), Some("SK"));
    assert!(preview.first_subject_dn.contains("O=Org Params s.r.o."), "{}", preview.first_subject_dn);
    assert!(preview.first_subject_dn.contains("C=SK"), "{}", preview.first_subject_dn);

    // A value the request gives wins over the organization's.
    let mut given = req.clone();
    given.profile_params.insert("organization".into(), "Given Org".into());
    let preview = api.batches.preview_batch(given).await.expect("preview").into_inner();
    assert!(preview.first_subject_dn.contains("O=Given Org"), "{}", preview.first_subject_dn);

    // And the issued certificates carry it.
    let batch = api.batches.create_batch(req).await.expect("create").into_inner().batch.expect("batch");
    let done = wait_done(&mut api, &batch.id).await;
    assert_eq!(done.issued, 2, "{done:?}");
    let (out, _) = download(&mut api, &batch.id, env.path(), "org-params").await;
    let rows = manifest(&out);
    assert_eq!(rows.len(), 2);
    let subject = check_pkcs12(&out, &rows[0].3, PASSWORD, &s.ca_file);
    assert!(
        subject.contains("O = Org Params s.r.o.") || subject.contains("O=Org Params s.r.o."),
        "{subject}"
    );
}
