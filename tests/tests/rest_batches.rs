//! End-to-end: the batch platform's batch, certificate and device routes of the REST shim
//! (`/api/v1/batches...`, `/api/v1/certificates/...`, `/api/v1/devices`) against the real
//! cardhsmd on a SoftHSM token and a real SQLite file. A batch is previewed, created, watched
//! until done (through REST and gRPC), downloaded as a streamed ZIP whose PKCS#12 files
//! `openssl pkcs12` opens and `openssl verify` accepts; another is rejected with the reason as
//! the body and its balance comes back; CSV and CSR uploads go through multipart forms;
//! certificates found over REST are revoked and seen revoked through gRPC and on the CRL
//! (read by openssl). Bad input gets a 4xx in the plain shape naming the camelCase field and
//! writes nothing; a missing credential is 401, a caller without the role 403, an unknown id
//! 404. Every answer is checked against the served OpenAPI document by the test client.

mod support;

use cardhsm_proto::v1 as pb;
use cardhsm_tests::{ADMIN_PASSWORD, Daemon, TestEnv};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::batches::*;
use support::rest::{Body, Rest, rest_as};
use support::*;

const PASSWORD: &str = "batch-password-1234";

fn pki_dir(env: &TestEnv) -> PathBuf {
    let dir = env.path().join("pki");
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

#[track_caller]
fn assert_plain_error(body: &Value, status: u16, field: Option<&str>) {
    assert_eq!(body["status"], status, "{body}");
    assert!(body["error"].is_string() && body["message"].is_string(), "{body}");
    match field {
        Some(f) => assert_eq!(body["field"], f, "{body}"),
        None => assert!(body.get("field").is_none(), "{body}"),
    }
}

/// The body of `PUT /api/v1/batches` for `size` devices of profile ecc-device named `<n><cn>`.
fn create_body(s: &BatchSetup, name: &str, size: u32, cn: &str) -> Value {
    json!({
        "organizationId": s.organization.id,
        "authorityId": s.authority.id,
        "profileId": "ecc-device",
        "batchName": name,
        "generatorId": "serial",
        "generatorParams": {"startValue": 0, "increment": 1},
        "batchSize": size,
        "profileParams": {"commonName": cn},
        "pkcs12Password": PASSWORD,
    })
}

/// Polls `GET /api/v1/batches/{id}/status` until the engine is done with the batch.
async fn rest_wait(rest: &Rest, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = rest.get(&format!("/api/v1/batches/{id}/status")).await.expect(200).body;
        let busy = ["PENDING_CREATION", "PENDING_ISSUE", "PROCESSING_REJECT", "PROCESSING_REVOKE"];
        if !busy.iter().any(|b| s["status"] == *b) {
            return s;
        }
        assert!(Instant::now() < deadline, "batch {id} never finished: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `GET /api/v1/batches/{id}/download` into `<dir>/<name>.zip`, unpacked into `<dir>/<name>/`.
async fn rest_download(rest: &Rest, id: &str, dir: &Path, name: &str) -> PathBuf {
    let reply = rest.get(&format!("/api/v1/batches/{id}/download")).await.expect(200);
    assert_eq!(reply.content_type, "application/zip");
    let disposition = reply.headers.get("content-disposition").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(disposition.contains(&format!("batch-{id}.zip")), "{disposition:?}");
    let zip = dir.join(format!("{name}.zip"));
    std::fs::write(&zip, &reply.bytes).expect("write zip");
    let out = dir.join(name);
    std::fs::create_dir_all(&out).expect("dir");
    let st = std::process::Command::new("unzip")
        .args(["-q", "-o"])
        .arg(&zip)
        .arg("-d")
        .arg(&out)
        .status()
        .expect("unzip (Debian package unzip)");
    assert!(st.success(), "unzip failed on the ZIP downloaded over REST");
    out
}

/// The serials and reasons of the authority's CRL, fetched over gRPC and read by openssl.
async fn crl(
    api: &mut Api,
    s: &BatchSetup,
    dir: &Path,
    name: &str,
) -> std::collections::BTreeMap<String, String> {
    let crl = api
        .issuance
        .get_crl(pb::GetCrlRequest { authority_id: s.authority.id.clone() })
        .await
        .expect("crl")
        .into_inner();
    write(dir, name, &crl.crl_pem);
    let ca = s.ca_file.to_str().expect("path");
    crl_entries(&openssl(dir, &["crl", "-in", name, "-CAfile", ca, "-noout", "-text"]))
}

fn batch_count(env: &TestEnv) -> i64 {
    sql_i64(&env.store_path(), "SELECT COUNT(*) FROM batches", &[])
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_is_previewed_created_watched_downloaded_rejected_and_revoked_over_rest() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let rest = rest_as(&daemon, "admin", ADMIN_PASSWORD).await;
    let dir = pki_dir(&env);
    let s = setup(&mut api, &dir, "Rest Batch Root", "Rest Devices", 50).await;

    // --- preview: start 0, increment 1, commonName "rest" → "0rest"; nothing stored ----
    let preview =
        rest.post("/api/v1/batches/preview", create_body(&s, "rest run", 5, "rest")).await.expect(200);
    let p = &preview.body;
    assert_eq!(p["firstDeviceParams"]["commonName"], "0rest", "{p}");
    assert!(p["firstSubjectDn"].as_str().is_some_and(|d| d.contains("CN=0rest")), "{p}");
    assert_eq!(p["serials"], json!(["0", "1", "2", "3", "4"]));
    assert_eq!((p["batchSize"].as_u64(), p["availableBalance"].as_i64()), (Some(5), Some(50)));
    assert_eq!(batch_count(&env), 0, "a preview stores nothing");

    // --- create (PUT) -----------------------------------------------------------------
    let created = rest.put("/api/v1/batches", create_body(&s, "rest run", 5, "rest")).await.expect(201).body;
    assert_eq!(created["pkcs12Password"], Value::Null, "a given password is never echoed");
    let batch = &created["batch"];
    let id = batch["id"].as_str().expect("id").to_owned();
    assert_eq!((batch["batchSize"].as_u64(), batch["kind"].as_str()), (Some(5), Some("GENERATOR")));
    assert_eq!(batch["organizationId"], s.organization.id.as_str());
    assert_eq!(batch["name"], "rest run");

    // --- watched to the end through REST, and seen the same through gRPC ---------------
    let status = rest_wait(&rest, &id).await;
    assert_eq!(status, json!({"status": "READY_FOR_DOWNLOAD", "text": "Ready for download", "reason": ""}));
    let grpc = wait_done(&mut api, &id).await;
    assert_eq!(grpc.status, pb::BatchStatus::ReadyForDownload as i32);
    let got = rest.get(&format!("/api/v1/batches/{id}")).await.expect(200).body;
    assert_eq!(got["status"], "READY_FOR_DOWNLOAD");
    assert_eq!((got["issued"].as_u64(), got["failed"].as_u64()), (Some(5), Some(0)));
    assert_eq!(got["finishedAt"].as_i64(), Some(grpc.finished_at));
    assert_eq!(got["firstDownloadedAt"], Value::Null, "not downloaded yet");
    let info = rest.get(&format!("/api/v1/batches/{id}/processing_info")).await.expect(200).body;
    assert_eq!(info, json!({"active": 0, "success": 5, "failed": 0}));
    let device_log = rest.get(&format!("/api/v1/batches/{id}/devices/auditLog?position=0")).await.expect(200);
    let entries = device_log.body.as_array().expect("entries");
    assert!(
        entries.iter().any(|e| e["type"] == "device.issue" && e["batchId"] == id.as_str()),
        "{entries:?}"
    );
    let r = rest.get(&format!("/api/v1/batches/{id}/devices/auditLog?position=5")).await.expect(404);
    assert_plain_error(&r.body, 404, None);
    let r = rest.get(&format!("/api/v1/batches/{id}/devices/auditLog?position=first")).await.expect(400);
    assert_plain_error(&r.body, 400, Some("position"));

    // --- download: the streamed ZIP opens; each PKCS#12 opens and verifies --------------
    let out = rest_download(&rest, &id, &dir, "rest").await;
    let rows = manifest(&out);
    assert_eq!(rows.len(), 5);
    for (i, (device, cn, _, file)) in rows.iter().enumerate() {
        assert_eq!(
            (device.as_str(), cn.as_str(), file.as_str()),
            (&*i.to_string(), &*format!("{i}rest"), &*format!("{i}rest.p12"))
        );
    }
    let text = check_pkcs12(&out, "0rest.p12", PASSWORD, &s.ca_file);
    assert!(text.contains("CN = 0rest"), "{text}");
    let after = rest.get(&format!("/api/v1/batches/{id}")).await.expect(200).body;
    assert!(after["firstDownloadedAt"].as_i64().is_some_and(|t| t > 0), "{after}");
    let log = rest.get(&format!("/api/v1/batches/{id}/auditLog")).await.expect(200).body;
    let kinds: Vec<&str> =
        log.as_array().expect("entries").iter().filter_map(|e| e["type"].as_str()).collect();
    assert!(kinds.contains(&"batch.create") && kinds.contains(&"batch.download"), "{kinds:?}");
    // A downloaded batch can no longer be rejected.
    let r = rest
        .call("DELETE", &format!("/api/v1/batches/{id}"), Body::Text("too late".into()))
        .await
        .expect(409);
    assert_plain_error(&r.body, 409, None);

    // --- a single-certificate batch, rejected before download: the balance comes back ---
    let single = rest
        .post(
            "/api/v1/batches/createSingleCertBatch",
            json!({
                "organizationId": s.organization.id,
                "authorityId": s.authority.id,
                "profileId": "ecc-device",
                "batchName": "one gateway",
                "profileParams": {"commonName": "gateway-1"},
            }),
        )
        .await
        .expect(201)
        .body;
    let generated = single["pkcs12Password"].as_str().expect("a generated password, shown once").to_owned();
    assert!(generated.len() >= 8, "{generated}");
    let single_id = single["batch"]["id"].as_str().expect("id").to_owned();
    assert_eq!(
        (single["batch"]["kind"].as_str(), single["batch"]["batchSize"].as_u64()),
        (Some("SINGLE"), Some(1))
    );
    assert_eq!(rest_wait(&rest, &single_id).await["status"], "READY_FOR_DOWNLOAD");
    assert_eq!(balance(&mut api, &s).await.used, 6);
    // The reason is required; an empty body is refused naming it.
    let r = rest.call("DELETE", &format!("/api/v1/batches/{single_id}"), Body::Empty).await.expect(400);
    assert_plain_error(&r.body, 400, Some("reason"));
    let rejecting = rest
        .call("DELETE", &format!("/api/v1/batches/{single_id}"), Body::Text("ordered by mistake".into()))
        .await
        .expect(200)
        .body;
    assert!(["PROCESSING_REJECT", "REJECTED"].iter().any(|s| rejecting["status"] == *s), "{rejecting}");
    let rejected = wait_done(&mut api, &single_id).await;
    assert_eq!(rejected.status, pb::BatchStatus::Rejected as i32);
    assert!(rejected.status_reason.contains("ordered by mistake"), "{}", rejected.status_reason);
    let st = rest_wait(&rest, &single_id).await;
    assert_eq!((st["status"].as_str(), st["text"].as_str()), (Some("REJECTED"), Some("Rejected")));
    assert_eq!(balance(&mut api, &s).await.used, 5, "a reject gives the balance back");

    // --- list (POST): filters, and an unknown status value named ----------------------
    let all = rest.post("/api/v1/batches", json!({})).await.expect(200).body;
    assert_eq!(all["total"], 2);
    let only =
        rest.post("/api/v1/batches", json!({"status": "REJECTED", "sortBy": "name"})).await.expect(200).body;
    assert_eq!(only["total"], 1);
    assert_eq!(only["batches"][0]["id"], single_id.as_str());
    let named =
        rest.post("/api/v1/batches", json!({"name": "rest", "size": 1, "page": 0})).await.expect(200).body;
    assert_eq!((named["total"].as_u64(), named["batches"][0]["id"].as_str()), (Some(1), Some(id.as_str())));
    let r = rest.post("/api/v1/batches", json!({"status": "DONE"})).await.expect(400);
    assert_plain_error(&r.body, 400, Some("status"));
    let r = rest.post("/api/v1/batches", json!({"size": 500})).await.expect(400);
    assert_plain_error(&r.body, 400, Some("size"));
    let r = rest.post("/api/v1/batches", json!({"sizeFrom": 9, "sizeTo": 2})).await.expect(400);
    assert_plain_error(&r.body, 400, Some("sizeTo"));

    // --- certificates: find, revoke by id, revoke by profile and serial ---------------
    let (_, _, serial0, _) = rows[0].clone();
    let found =
        rest.post("/api/v1/certificates/find", json!({"serialNumber": serial0})).await.expect(200).body;
    assert_eq!(found["totalCount"], 1);
    let cert = &found["certificates"][0];
    assert_eq!((cert["commonName"].as_str(), cert["status"].as_str()), (Some("0rest"), Some("VALID")));
    assert_eq!(cert["revocationReason"], Value::Null);
    let by_cn = rest.post("/api/v1/certificates/find", json!({"commonName": "1rest"})).await.expect(200).body;
    assert_eq!(by_cn["totalCount"], 1);
    let cert_id = cert["id"].as_str().expect("id").to_owned();
    let revoked = rest
        .post("/api/v1/certificates/revoke", json!({"ids": [cert_id], "reasonCode": 1}))
        .await
        .expect(200)
        .body;
    assert_eq!(revoked["certificates"][0]["status"], "REVOKED");
    assert_eq!(revoked["certificates"][0]["revocationReason"], 1);
    let (_, _, serial1, _) = rows[1].clone();
    let one = rest
        .post("/api/v1/certificates/ecc-device/revoke", json!({"serialNumber": serial1, "reasonCode": 4}))
        .await
        .expect(200)
        .body;
    assert_eq!((one["status"].as_str(), one["revocationReason"].as_i64()), (Some("REVOKED"), Some(4)));
    // Seen through gRPC and on the CRL (openssl).
    let listed = api
        .issuance
        .find_certificates(pb::FindCertificatesRequest {
            serial_number: serial0.clone(),
            ..Default::default()
        })
        .await
        .expect("find")
        .into_inner()
        .certificates;
    assert_eq!(listed[0].status, pb::CertificateStatus::Revoked as i32);
    let entries = crl(&mut api, &s, &dir, "rest.crl").await;
    assert_eq!(
        entries.get(&norm_serial(&serial0)).map(String::as_str),
        Some("Key Compromise"),
        "{entries:?}"
    );
    assert_eq!(entries.get(&norm_serial(&serial1)).map(String::as_str), Some("Superseded"), "{entries:?}");
    // The rejected batch's certificate was revoked by the reject (cessation of operation).
    let gateway =
        rest.post("/api/v1/certificates/find", json!({"commonName": "gateway-1"})).await.expect(200).body;
    let gateway = &gateway["certificates"][0];
    assert_eq!(gateway["status"], "REVOKED", "{gateway}");
    let gateway_serial = gateway["serialNumber"].as_str().expect("serial");
    assert_eq!(
        entries.get(&norm_serial(gateway_serial)).map(String::as_str),
        Some("Cessation Of Operation"),
        "{entries:?}"
    );
    assert_eq!(entries.len(), 3, "{entries:?}");
    // Refusals: a bad reason code, an unknown id, an unknown serial, a wrong type.
    let r = rest
        .post("/api/v1/certificates/revoke", json!({"ids": [cert_id], "reasonCode": 7}))
        .await
        .expect(400);
    assert_plain_error(&r.body, 400, Some("reasonCode"));
    let r = rest
        .post(
            "/api/v1/certificates/revoke",
            json!({"ids": ["7a1b3c4d-0000-4000-8000-000000000000"], "reasonCode": 1}),
        )
        .await
        .expect(404);
    assert_plain_error(&r.body, 404, None);
    let r = rest
        .post(
            "/api/v1/certificates/ecc-device/revoke",
            json!({"serialNumber": "0abcdef123", "reasonCode": 1}),
        )
        .await
        .expect(404);
    assert_plain_error(&r.body, 404, None);
    let r =
        rest.post("/api/v1/certificates/revoke", json!({"ids": "all", "reasonCode": 1})).await.expect(400);
    assert_plain_error(&r.body, 400, Some("ids"));

    // --- devices: ordered and issued, as gRPC counts them -----------------------------
    let devices =
        rest.get(&format!("/api/v1/devices?organizationId={}", s.organization.id)).await.expect(200).body;
    let stats = api
        .batches
        .get_device_statistics(pb::GetDeviceStatisticsRequest {
            organization_id: s.organization.id.clone(),
            ..Default::default()
        })
        .await
        .expect("statistics")
        .into_inner();
    assert_eq!(
        (devices["ordered"].as_u64(), devices["issued"].as_u64()),
        (Some(stats.ordered), Some(stats.issued))
    );
    assert!(stats.issued >= 5, "{stats:?}");
    assert_eq!(devices["days"].as_array().map(Vec::len), Some(stats.days.len()));
    let r = rest.get("/api/v1/devices?fromDay=yesterday").await.expect(400);
    assert_plain_error(&r.body, 400, Some("fromDay"));

    // PKCS#12 passwords never reach the daemon's log.
    let log = daemon.log();
    assert!(!log.contains(&generated) && !log.contains(PASSWORD), "a PKCS#12 password reached the log");
}

#[tokio::test(flavor = "multi_thread")]
async fn uploads_and_refusals_over_rest() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let mut api = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    let rest = rest_as(&daemon, "admin", ADMIN_PASSWORD).await;
    let dir = pki_dir(&env);
    let s = setup(&mut api, &dir, "Upload Root", "Upload Devices", 20).await;
    let request = |name: &str| {
        json!({
            "organizationId": s.organization.id,
            "authorityId": s.authority.id,
            "batchName": name,
            "pkcs12Password": PASSWORD,
        })
        .to_string()
        .into_bytes()
    };

    // --- CSV: multipart csrBatchRequest + files -----------------------------------------
    let csv = "commonName,ORGANIZATION\r\ncsv-a,Acme\r\n\"csv b\",Acme\r\ncsv-c,Acme\r\n";
    let form = |req: Vec<u8>, file: &str| {
        Body::Multipart(vec![
            ("csrBatchRequest".into(), None, req),
            ("files".into(), Some("devices.csv".into()), file.as_bytes().to_vec()),
        ])
    };
    let created = rest
        .call("POST", "/api/v1/batches/upload-csv?profileId=ecc-device", form(request("from csv"), csv))
        .await
        .expect(201)
        .body;
    let csv_id = created["batch"]["id"].as_str().expect("id").to_owned();
    assert_eq!(
        (created["batch"]["kind"].as_str(), created["batch"]["batchSize"].as_u64()),
        (Some("CSV"), Some(3))
    );
    assert_eq!(created["batch"]["profileId"], "ecc-device", "the profile comes from the query");
    assert_eq!(rest_wait(&rest, &csv_id).await["status"], "READY_FOR_DOWNLOAD");
    let out = rest_download(&rest, &csv_id, &dir, "csv").await;
    let names: Vec<String> = manifest(&out).into_iter().map(|r| r.3).collect();
    assert_eq!(names, ["csv-a.p12", "csv_b.p12", "csv-c.p12"]);
    let text = check_pkcs12(&out, "csv_b.p12", PASSWORD, &s.ca_file);
    assert!(text.contains("CN = csv b") && text.contains("O = Acme"), "{text}");

    // A bad row is named, in the part the client sent; nothing is created.
    let before = batch_count(&env);
    let r = rest
        .call(
            "POST",
            "/api/v1/batches/upload-csv?profileId=ecc-device",
            form(request("bad csv"), "commonName,colour\r\nx,blue\r\n"),
        )
        .await
        .expect(400);
    assert_plain_error(&r.body, 400, Some("files"));
    let r = rest
        .call(
            "POST",
            "/api/v1/batches/upload-csv?profileId=ecc-device",
            form(b"{\"batchName\": 5}".to_vec(), csv),
        )
        .await
        .expect(400);
    assert_plain_error(&r.body, 400, Some("csrBatchRequest.batchName"));
    let r = rest
        .call(
            "POST",
            "/api/v1/batches/upload-csv?profileId=ecc-device",
            form(b"{\"batchName\": ".to_vec(), csv),
        )
        .await
        .expect(400);
    assert_plain_error(&r.body, 400, Some("csrBatchRequest"));
    let r = rest
        .call(
            "POST",
            "/api/v1/batches/upload-csv?profileId=ecc-device",
            Body::Multipart(vec![("csrBatchRequest".into(), None, request("no file"))]),
        )
        .await
        .expect(400);
    assert_plain_error(&r.body, 400, Some("files"));
    let r =
        rest.call("POST", "/api/v1/batches/upload-csv", form(request("no profile"), csv)).await.expect(400);
    assert_plain_error(&r.body, 400, Some("profileId"));
    let r = rest.call("POST", "/api/v1/batches/upload-csv?profileId=ecc-device", Body::Json(json!({}))).await;
    assert!((400..500).contains(&r.status), "a JSON body is not a form: {}", r.status);
    assert_eq!(batch_count(&env), before, "refused uploads create nothing");

    // --- CSRs: one PEM holding two requests; certificates come back as PEM ------------
    let mut bundle = String::new();
    for i in 0..2 {
        let key = format!("dev{i}.key");
        openssl(&dir, &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", &key]);
        let csr = format!("dev{i}.csr");
        openssl(&dir, &["req", "-new", "-key", &key, "-subj", &format!("/CN=rest-csr-{i}"), "-out", &csr]);
        bundle.push_str(&std::fs::read_to_string(dir.join(&csr)).expect("csr"));
    }
    let created = rest
        .call(
            "POST",
            "/api/v1/batches/upload?profileId=ecc-device",
            Body::Multipart(vec![
                ("csrBatchRequest".into(), None, request("from csrs")),
                ("files".into(), Some("requests.pem".into()), bundle.into_bytes()),
            ]),
        )
        .await
        .expect(201)
        .body;
    assert_eq!(created["pkcs12Password"], Value::Null, "CSR batches have no PKCS#12");
    let csr_id = created["batch"]["id"].as_str().expect("id").to_owned();
    assert_eq!(
        (created["batch"]["kind"].as_str(), created["batch"]["batchSize"].as_u64()),
        (Some("CSR"), Some(2))
    );
    assert_eq!(rest_wait(&rest, &csr_id).await["status"], "READY_FOR_DOWNLOAD");
    let out = rest_download(&rest, &csr_id, &dir, "csrs").await;
    let ca = s.ca_file.to_str().expect("path");
    for (i, (_, cn, _, file)) in manifest(&out).iter().enumerate() {
        assert_eq!((cn.as_str(), file.as_str()), (&*format!("rest-csr-{i}"), &*format!("rest-csr-{i}.pem")));
        assert!(openssl(&out, &["verify", "-CAfile", ca, file]).contains(": OK"));
        let cert_key = openssl(&out, &["x509", "-in", file, "-noout", "-pubkey"]);
        assert_eq!(cert_key, openssl(&dir, &["pkey", "-in", &format!("dev{i}.key"), "-pubout"]));
    }
    let r = rest
        .call(
            "POST",
            "/api/v1/batches/upload?profileId=ecc-device",
            Body::Multipart(vec![
                ("csrBatchRequest".into(), None, request("junk")),
                ("files".into(), Some("junk.pem".into()), b"not a CSR".to_vec()),
            ]),
        )
        .await
        .expect(400);
    assert_plain_error(&r.body, 400, Some("files"));
    assert_eq!(balance(&mut api, &s).await.used, 5, "3 CSV + 2 CSR devices");

    // --- bodies that do not fit: 4xx naming the field, nothing written ----------------
    let before = batch_count(&env);
    let good = create_body(&s, "refused", 2, "x");
    let r = rest
        .call("PUT", "/api/v1/batches", Body::Raw("application/json", b"{\"batchSize\": 2,".to_vec()))
        .await;
    assert_plain_error(&r.expect(400).body, 400, None);
    let mut wrong = good.clone();
    wrong["batchSize"] = json!("ten");
    assert_plain_error(&rest.put("/api/v1/batches", wrong).await.expect(400).body, 400, Some("batchSize"));
    let mut zero = good.clone();
    zero["batchSize"] = json!(0);
    assert_plain_error(&rest.put("/api/v1/batches", zero).await.expect(400).body, 400, Some("batchSize"));
    let mut nameless = good.clone();
    nameless["batchName"] = json!("");
    assert_plain_error(&rest.put("/api/v1/batches", nameless).await.expect(400).body, 400, Some("batchName"));
    let mut params = good.clone();
    params["generatorParams"]["increment"] = json!("one");
    let r = rest.put("/api/v1/batches", params).await.expect(400);
    assert_plain_error(&r.body, 400, Some("generatorParams.increment"));
    // More than the balance: refused naming what is available and what was asked.
    let mut big = good.clone();
    big["batchSize"] = json!(16);
    let r = rest.put("/api/v1/batches", big).await.expect(409);
    assert!(
        r.body["message"].as_str().is_some_and(|m| m.contains("available 15") && m.contains("asked 16")),
        "{}",
        r.body
    );
    assert_eq!(batch_count(&env), before, "refused creates write nothing");

    // --- unknown and malformed ids ----------------------------------------------------
    let unknown = "7a1b3c4d-0000-4000-8000-000000000000";
    for path in ["", "/status", "/processing_info", "/auditLog", "/download"] {
        let r = rest.get(&format!("/api/v1/batches/{unknown}{path}")).await.expect(404);
        assert_plain_error(&r.body, 404, None);
    }
    let r = rest
        .call("DELETE", &format!("/api/v1/batches/{unknown}"), Body::Text("why".into()))
        .await
        .expect(404);
    assert_plain_error(&r.body, 404, None);
    let r = rest.get("/api/v1/batches/not-an-id").await.expect(400);
    assert_plain_error(&r.body, 400, Some("id"));

    // --- credentials and roles ----------------------------------------------------------
    let anonymous = Rest::new(&daemon).await;
    let r = anonymous.get(&format!("/api/v1/batches/{csv_id}")).await.expect(401);
    assert_plain_error(&r.body, 401, None);
    anonymous.post("/api/v1/certificates/find", json!({})).await.expect(401);
    anonymous.get("/api/v1/devices").await.expect(401);
    // An operator has no batch role; a USER-role account may not find or revoke certificates.
    for (login, role) in [("rest_operator", pb::Role::Operator), ("rest_plainuser", pb::Role::User)] {
        api.users
            .create_user(pb::CreateUserRequest {
                username: login.into(),
                password: PASSWORD.into(),
                roles: vec![role as i32],
                ..Default::default()
            })
            .await
            .expect("create user");
    }
    let operator = rest_as(&daemon, "rest_operator", PASSWORD).await;
    let r = operator.get(&format!("/api/v1/batches/{csv_id}")).await.expect(403);
    assert_plain_error(&r.body, 403, None);
    operator.put("/api/v1/batches", good.clone()).await.expect(403);
    let user = rest_as(&daemon, "rest_plainuser", PASSWORD).await;
    let r = user.post("/api/v1/certificates/find", json!({})).await.expect(403);
    assert_plain_error(&r.body, 403, None);
    user.post("/api/v1/certificates/revoke", json!({"ids": [unknown], "reasonCode": 1})).await.expect(403);
    // A USER without privileges sees no batch of the organization (as if it did not exist).
    user.get(&format!("/api/v1/batches/{csv_id}")).await.expect(404);
    let mine = user.post("/api/v1/batches", json!({})).await.expect(200).body;
    assert_eq!(mine["total"], 0);
    assert_eq!(batch_count(&env), before, "refused callers write nothing");
}
