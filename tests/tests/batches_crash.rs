//! End-to-end: the batch engine survives its daemon being killed. A 2,000-device batch is
//! interrupted by SIGKILL at several points (just after it was ordered, and twice while it
//! issues); after every kill the database is consistent (each recorded certificate belongs to
//! an issued device, the balance consumed equals the certificates, the rest still reserved),
//! and after the last restart the batch ends with exactly 2,000 certificates, distinct serials,
//! the balance debited exactly 2,000 times and one audit record per device. SIGTERM stops the
//! engine gracefully, and the next start finishes the batch.

mod support;

use cardhsm_proto::v1 as pb;
use cardhsm_tests::{ADMIN_PASSWORD, Daemon, TestEnv};
use std::path::Path;
use std::time::{Duration, Instant};
use support::batches::*;
use support::*;

const PASSWORD: &str = "crash-password-1234";
const SIZE: i64 = 2000;

/// Waits (reading the database, not the daemon) until the batch has issued `at_least`.
async fn wait_issued(db: &Path, id: &str, at_least: i64) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let issued = sql_i64(db, "SELECT issued FROM batches WHERE id = ?1", &[id]);
        if issued >= at_least {
            return;
        }
        assert!(Instant::now() < deadline, "the batch never reached {at_least} (at {issued})");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What must hold in the database whenever the daemon is down, whatever it was doing.
fn check_consistent(db: &Path, id: &str, organization_id: &str) -> i64 {
    let issued_rows =
        sql_i64(db, "SELECT COUNT(*) FROM batch_devices WHERE batch_id = ?1 AND status = 'ISSUED'", &[id]);
    let issued = sql_i64(db, "SELECT issued FROM batches WHERE id = ?1", &[id]);
    let certificates = sql_i64(db, "SELECT COUNT(*) FROM certificates", &[]);
    let linked = sql_i64(
        db,
        "SELECT COUNT(*) FROM batch_devices d JOIN certificates c ON c.id = d.certificate_id WHERE d.batch_id = ?1",
        &[id],
    );
    let used = sql_i64(
        db,
        "SELECT used FROM organization_authorities WHERE organization_id = ?1",
        &[organization_id],
    );
    let reserved = sql_i64(
        db,
        "SELECT reserved FROM organization_authorities WHERE organization_id = ?1",
        &[organization_id],
    );
    let batch_reserved = sql_i64(db, "SELECT reserved FROM batches WHERE id = ?1", &[id]);
    let device_audit = sql_i64(
        db,
        "SELECT COUNT(*) FROM audit_log WHERE action = 'device.issue' AND target_id LIKE ?1",
        &[&format!("{id}/%")],
    );
    let cert_audit = sql_i64(db, "SELECT COUNT(*) FROM audit_log WHERE action = 'certificate.issue'", &[]);
    assert_eq!(issued_rows, issued, "device rows and the batch counter agree");
    assert_eq!(certificates, issued, "no certificate recorded without its device (and none lost)");
    assert_eq!(linked, issued, "every issued device points at its certificate");
    assert_eq!(used, issued, "the balance is debited once per certificate");
    assert_eq!(reserved, SIZE - issued, "the rest is still reserved");
    assert_eq!(batch_reserved, SIZE - issued);
    assert_eq!(device_audit, issued, "one device.issue record per issued device");
    assert_eq!(cert_audit, issued, "one certificate.issue record per certificate");
    issued
}

#[tokio::test(flavor = "multi_thread")]
async fn a_2000_device_batch_killed_at_several_points_ends_with_exactly_2000_certificates() {
    let env = TestEnv::new(0).expect("env");
    let mut daemon = Daemon::start(&env).await.expect("daemon");
    let db = env.store_path();
    let dir = env.path().join("pki");
    std::fs::create_dir_all(&dir).expect("dir");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let s = setup(&mut api, &dir, "Crash Root", "Crash Org", SIZE).await;
    let created = api
        .batches
        .create_batch(generator_req(&s, "two thousand", SIZE as u32, "crash-", PASSWORD))
        .await
        .expect("create")
        .into_inner();
    let id = created.batch.expect("batch").id;

    // Killed at once (before or just as the engine starts), then twice while issuing.
    let mut seen = Vec::new();
    for at_least in [0, 300, 1200] {
        wait_issued(&db, &id, at_least).await;
        daemon.kill().await;
        let issued = check_consistent(&db, &id, &s.organization.id);
        assert!(issued < SIZE, "the batch finished before the kill at {at_least}; nothing was tested");
        seen.push(issued);
        daemon.start_again().await.expect("restart after kill");
    }
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "work is never lost: {seen:?}");

    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let done = wait_done(&mut api, &id).await;
    assert_eq!(done.status, pb::BatchStatus::ReadyForDownload as i32, "{done:?}");
    assert_eq!((i64::from(done.issued), done.failed), (SIZE, 0));
    assert_eq!(check_consistent(&db, &id, &s.organization.id), SIZE);
    assert_eq!(
        sql_i64(&db, "SELECT COUNT(DISTINCT serial) FROM certificates", &[]),
        SIZE,
        "distinct serials"
    );
    assert_eq!(
        sql_i64(
            &db,
            "SELECT COUNT(DISTINCT target_id) FROM audit_log WHERE action = 'device.issue' AND target_id LIKE ?1",
            &[&format!("{id}/%")]
        ),
        SIZE,
        "every device has its audit record"
    );
    let b = balance(&mut api, &s).await;
    assert_eq!((b.balance, b.used, b.available), (SIZE, SIZE, 0));
    let kinds: Vec<String> = api
        .batches
        .get_batch_audit_log(pb::GetBatchAuditLogRequest { batch_id: id.clone() })
        .await
        .expect("audit")
        .into_inner()
        .entries
        .into_iter()
        .map(|e| e.r#type)
        .collect();
    assert_eq!(kinds.iter().filter(|k| *k == "batch.create").count(), 1);
    assert_eq!(kinds.iter().filter(|k| *k == "batch.start").count(), 1);
    assert_eq!(kinds.iter().filter(|k| *k == "batch.finish").count(), 1);

    // The download holds all of them; files made before and after each crash open with the
    // one password (kept sealed across the restarts).
    let (out, chunks) = download(&mut api, &id, &dir, "crash").await;
    assert!(chunks > 1, "a 2,000-file ZIP streams in several chunks");
    let rows = manifest(&out);
    assert_eq!(rows.len() as i64, SIZE);
    let serials: std::collections::HashSet<&String> = rows.iter().map(|r| &r.2).collect();
    assert_eq!(serials.len() as i64, SIZE);
    for i in [0usize, seen[1] as usize, seen[2] as usize, SIZE as usize - 1] {
        let (device, cn, _, file) = &rows[i];
        assert_eq!(device, &i.to_string());
        let text = check_pkcs12(&out, file, PASSWORD, &s.ca_file);
        assert!(text.contains(&format!("CN = {cn}")), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_the_engine_gracefully_and_the_next_start_finishes_the_batch() {
    let env = TestEnv::new(0).expect("env");
    let mut daemon = Daemon::start(&env).await.expect("daemon");
    let db = env.store_path();
    let dir = env.path().join("pki");
    std::fs::create_dir_all(&dir).expect("dir");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let s = setup(&mut api, &dir, "Term Root", "Term Org", SIZE).await;
    let created = api
        .batches
        .create_batch(generator_req(&s, "terminated", SIZE as u32, "term-", PASSWORD))
        .await
        .expect("create")
        .into_inner();
    let id = created.batch.expect("batch").id;
    wait_issued(&db, &id, 200).await;
    daemon.stop().await;
    let exit = daemon.exit_status().expect("exited");
    assert!(exit.success(), "SIGTERM ends the daemon cleanly (not killed after the grace period): {exit:?}");
    assert!(daemon.log_of_current_run().contains("stopped"), "{}", daemon.log_of_current_run());
    let issued = check_consistent(&db, &id, &s.organization.id);
    assert!(issued < SIZE, "the batch finished before SIGTERM; nothing was tested");

    daemon.start_again().await.expect("start again");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let done = wait_done(&mut api, &id).await;
    assert_eq!((i64::from(done.issued), done.status), (SIZE, pb::BatchStatus::ReadyForDownload as i32));
    assert_eq!(check_consistent(&db, &id, &s.organization.id), SIZE);
    assert!(daemon.log().contains("resuming unfinished batches"), "the engine resumed on start");
}
