//! End-to-end: the `cardhsm batch` commands of the real CLI against the real cardhsmd, checked
//! with the real `unzip` and `openssl` — a generator batch created, watched to the end,
//! downloaded as a ZIP whose manifest lists every device and whose PKCS#12 files open with the
//! batch password and hold certificates that verify against the authority; a CSR batch from
//! one PEM of openssl CSRs downloaded as PEM certificates; a CSV with a bad row refused naming
//! the row and the column (and no batch made); a bad CSR among good ones named; `--output
//! json` parsed by scripts.

mod support;

use cardhsm_tests::{ADMIN_PASSWORD, Daemon, TestEnv};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use support::{CliHome, Run, openssl};

const PKCS12_PASSWORD: &str = "batch-pass-1234";

/// A root authority and an organization it is assigned to (balance 100), made through the
/// CLI; returns (authority id, organization id).
fn authority_and_org(cli: &CliHome) -> (String, String) {
    let root = cli.json(&[
        "ca",
        "create",
        "--name",
        "Batch Root",
        "--key-type",
        "EC:P-256",
        "--subject",
        "CN=Batch Root CA,O=Acme,C=CZ",
        "--kind",
        "root",
    ]);
    let authority = root["id"].as_str().expect("authority id").to_owned();
    let org = cli.json(&["orgs", "create", "Batch Org", "--country", "CZ"]);
    let org = org["id"].as_str().expect("org id").to_owned();
    cli.json(&["orgs", "authorities", "add", &org, &authority, "--balance", "100"]);
    (authority, org)
}

/// `cardhsm <args>` with the batch PKCS#12 password in the environment.
fn with_password(cli: &CliHome, args: &[&str]) -> Run {
    let mut cmd = cli.command(args);
    cmd.env("CARDHSM_PKCS12_PASSWORD", PKCS12_PASSWORD);
    CliHome::output(cmd)
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap_or_else(|| panic!("no id in {v}")).to_owned()
}

/// `cardhsm batch watch` until the end; the last JSON line must say done.
fn watch_to_the_end(cli: &CliHome, id: &str) -> Value {
    let run = cli.run(&["--output", "json", "batch", "watch", id, "--no-progress"]).ok();
    let events: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let last = events.last().cloned().unwrap_or_else(|| panic!("no events: {run:#?}"));
    assert_eq!(last["done"], true, "{run:#?}");
    for e in &events {
        assert_eq!(e["batch_id"], id, "{e}");
    }
    last
}

/// Unzips `zip` into `dir/out` with the real unzip (after `unzip -t`), returning the directory.
fn unzip(dir: &Path, zip: &str) -> std::path::PathBuf {
    let test = Command::new("unzip").arg("-t").arg(zip).current_dir(dir).output().expect("unzip");
    assert!(test.status.success(), "unzip -t: {}", String::from_utf8_lossy(&test.stdout));
    let out = dir.join("out");
    let st = Command::new("unzip")
        .args(["-q", "-o", zip, "-d"])
        .arg(&out)
        .current_dir(dir)
        .status()
        .expect("unzip");
    assert!(st.success());
    out
}

/// The manifest's rows as (device id, common name, serial, file name), header checked.
fn manifest(out: &Path) -> Vec<[String; 4]> {
    let text = std::fs::read_to_string(out.join("manifest.csv")).expect("manifest.csv in the ZIP");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("device_id,common_name,serial,file_name"), "{text}");
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 4, "manifest line {l:?}");
            [f[0].to_owned(), f[1].to_owned(), f[2].to_owned(), f[3].to_owned()]
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn generator_batch_create_watch_download_and_open_with_openssl() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let cli = CliHome::new(env.path());
    cli.login(&daemon.endpoint, "admin", ADMIN_PASSWORD);
    let (authority, org) = authority_and_org(&cli);
    let dir = cli.dir.as_path();
    cli.json(&["ca", "show", &authority, "--chain-out", "chain.pem"]);

    let common = [
        "--org",
        org.as_str(),
        "--authority",
        authority.as_str(),
        "--profile",
        "ecc-device",
        "--name",
        "cli batch",
        "--size",
        "5",
        "--start",
        "7",
        "--param",
        "commonName=dev",
        "--param",
        "organization=Acme",
    ];
    // preview: the first device gets the first generated value in front of the template.
    let mut args = vec!["--output", "json", "batch", "preview"];
    args.extend_from_slice(&common);
    let preview = with_password(&cli, &args).ok().json();
    assert_eq!(preview["first_device_params"]["commonName"], "7dev", "{preview}");
    assert_eq!(preview["batch_size"], 5);

    let mut args = vec!["--output", "json", "batch", "create"];
    args.extend_from_slice(&common);
    let created = with_password(&cli, &args).ok().json();
    assert!(created.get("pkcs12_password").is_none(), "a given password is never echoed: {created}");
    assert_eq!((created["kind"].as_str(), created["batch_size"].as_u64()), (Some("generator"), Some(5)));
    let id = id_of(&created);

    let last = watch_to_the_end(&cli, &id);
    assert_eq!(last["status"], "ready-for-download", "{last}");
    assert_eq!((last["issued"].as_u64(), last["failed"].as_u64()), (Some(5), Some(0)));
    let status = cli.json(&["batch", "status", &id]);
    assert_eq!((status["success"].as_u64(), status["active"].as_u64()), (Some(5), Some(0)), "{status}");

    let download = cli.json(&["batch", "download", &id, "--out", "batch.zip", "--no-progress"]);
    let size = std::fs::metadata(dir.join("batch.zip")).expect("batch.zip").len();
    assert_eq!(download["bytes"].as_u64(), Some(size), "{download}");
    assert!(!dir.join("batch.zip.part").exists(), "the part file is renamed");
    let out = unzip(dir, "batch.zip");
    let rows = manifest(&out);
    let mut cns: Vec<&str> = rows.iter().map(|r| r[1].as_str()).collect();
    cns.sort();
    assert_eq!(cns, ["10dev", "11dev", "7dev", "8dev", "9dev"]);
    for row in &rows {
        assert!(out.join(&row[3]).is_file(), "{} listed but not in the ZIP", row[3]);
        assert!(row[3].ends_with(".p12"), "{row:?}");
    }
    // A sample: the PKCS#12 opens with the password, its certificate verifies against the
    // authority and carries the device's common name and the manifest's serial.
    for row in rows.iter().take(2) {
        let p12 = out.join(&row[3]);
        let pem = format!("{}.pem", row[1]);
        let pass = format!("pass:{PKCS12_PASSWORD}");
        let p12 = p12.to_str().expect("utf-8 path");
        openssl(dir, &["pkcs12", "-in", p12, "-passin", &pass, "-nokeys", "-clcerts", "-out", &pem]);
        let keys = openssl(dir, &["pkcs12", "-in", p12, "-passin", &pass, "-nocerts", "-nodes"]);
        assert!(keys.contains("PRIVATE KEY"), "the device key is in the PKCS#12");
        let verified = openssl(dir, &["verify", "-CAfile", "chain.pem", &pem]);
        assert!(verified.contains(": OK"), "{verified}");
        let subject = openssl(dir, &["x509", "-in", &pem, "-noout", "-subject", "-serial"]);
        assert!(subject.contains(&format!("CN = {}", row[1])), "{subject}");
        assert!(subject.to_ascii_lowercase().contains(&row[2].to_ascii_lowercase()), "{subject} vs {row:?}");
        let wrong = Command::new("openssl")
            .args(["pkcs12", "-in", p12, "-passin", "pass:wrong-password", "-nokeys"])
            .output()
            .expect("openssl");
        assert!(!wrong.status.success(), "a wrong password does not open it");
    }

    // show / list in both formats.
    let shown = cli.json(&["batch", "show", &id]);
    assert_eq!((shown["issued"].as_u64(), shown["status"].as_str()), (Some(5), Some("ready-for-download")));
    assert!(shown["first_downloaded_at"].as_i64().unwrap_or(0) > 0, "{shown}");
    let listed = cli.json(&["batch", "list"]);
    assert_eq!(listed["total"], 1, "{listed}");
    assert_eq!(listed["batches"][0]["id"], id.as_str());
    let table = cli.run(&["batch", "list"]).ok();
    assert!(table.stdout.contains("cli batch") && table.stdout.contains("(1 of 1 batches)"), "{table:#?}");
    let filtered = cli.json(&["batch", "list", "--status", "broken"]);
    assert_eq!(filtered["total"], 0, "{filtered}");

    // Downloaded: reject is refused, revoke works.
    cli.run(&["batch", "reject", &id, "--reason", "too late"]).failed_with("FAILED_PRECONDITION");
    let revoked = cli.json(&["batch", "revoke", &id, "--reason", "cessationOfOperation"]);
    assert!(matches!(revoked["status"].as_str(), Some("revoked" | "processing-revoke")), "{revoked}");
}

#[tokio::test(flavor = "multi_thread")]
async fn csr_batch_from_one_pem_downloads_pem_certificates() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let cli = CliHome::new(env.path());
    cli.login(&daemon.endpoint, "admin", ADMIN_PASSWORD);
    let (authority, org) = authority_and_org(&cli);
    let dir = cli.dir.as_path();
    cli.json(&["ca", "show", &authority, "--chain-out", "chain.pem"]);

    let mut csrs = Vec::new();
    for cn in ["csr-a", "csr-b", "csr-c"] {
        let key = format!("{cn}.key");
        openssl(dir, &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", &key]);
        let csr = format!("{cn}.csr");
        openssl(dir, &["req", "-new", "-key", &key, "-subj", &format!("/CN={cn}"), "-out", &csr]);
        csrs.push(std::fs::read_to_string(dir.join(&csr)).expect("csr"));
    }
    std::fs::write(dir.join("bundle.pem"), csrs.concat()).expect("write bundle");
    let target = ["--org", &org, "--authority", &authority, "--profile", "ecc-device", "--name", "csr batch"];

    // One bad CSR (a certificate block where the second request should be) refuses the
    // upload, naming it.
    let cert_pem = std::fs::read_to_string(dir.join("chain.pem")).expect("chain");
    let bad = [csrs[0].as_str(), &cert_pem, &csrs[1], &csrs[2]].concat();
    std::fs::write(dir.join("bad.pem"), bad).expect("write bad");
    let mut args = vec!["batch", "upload-csr"];
    args.extend_from_slice(&target);
    args.push("bad.pem");
    let refused = cli.run(&args);
    let line = refused.failed_with("INVALID_ARGUMENT");
    assert!(line.contains("CSR 2"), "the bad CSR is named: {refused:#?}");
    assert_eq!(cli.json(&["batch", "list"])["total"], 0, "nothing was created");

    let mut args = vec!["--output", "json", "batch", "upload-csr"];
    args.extend_from_slice(&target);
    args.push("bundle.pem");
    let created = cli.run(&args).ok().json();
    assert_eq!(
        (created["kind"].as_str(), created["batch_size"].as_u64()),
        (Some("csr"), Some(3)),
        "{created}"
    );
    let id = id_of(&created);
    let last = watch_to_the_end(&cli, &id);
    assert_eq!((last["status"].as_str(), last["issued"].as_u64()), (Some("ready-for-download"), Some(3)));

    cli.run(&["batch", "download", &id, "--out", "csr.zip", "--no-progress"]).ok();
    let out = unzip(dir, "csr.zip");
    let rows = manifest(&out);
    let mut cns: Vec<&str> = rows.iter().map(|r| r[1].as_str()).collect();
    cns.sort();
    assert_eq!(cns, ["csr-a", "csr-b", "csr-c"]);
    for row in &rows {
        assert!(row[3].ends_with(".pem"), "CSR batches get PEM certificates: {row:?}");
        let path = out.join(&row[3]);
        let verified = openssl(dir, &["verify", "-CAfile", "chain.pem", path.to_str().expect("path")]);
        assert!(verified.contains(": OK"), "{verified}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn csv_upload_names_the_bad_row_and_column() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let cli = CliHome::new(env.path());
    cli.login(&daemon.endpoint, "admin", ADMIN_PASSWORD);
    let (authority, org) = authority_and_org(&cli);
    let dir = cli.dir.as_path();
    let target = ["--org", &org, "--authority", &authority, "--profile", "ecc-device", "--name", "csv batch"];
    let upload = |file: &str, json: bool| {
        let mut args = if json { vec!["--output", "json"] } else { vec![] };
        args.extend_from_slice(&["batch", "upload-csv"]);
        args.extend_from_slice(&target);
        args.push(file);
        with_password(&cli, &args)
    };

    std::fs::write(dir.join("bad.csv"), "commonName,Country\r\ndev-1,CZ\r\ndev-2,CZ\r\ndev-3,czech\r\n")
        .expect("write");
    let refused = upload("bad.csv", false);
    let line = refused.failed_with("INVALID_ARGUMENT");
    assert!(line.contains("row 4") && line.contains("column \"country\""), "{refused:#?}");
    std::fs::write(dir.join("unknown.csv"), "commonName,colour\ndev-1,red\n").expect("write");
    let line = upload("unknown.csv", false).failed_with("INVALID_ARGUMENT").to_owned();
    assert!(line.contains("\"colour\""), "{line}");
    assert_eq!(cli.json(&["batch", "list"])["total"], 0, "nothing was created");

    // A good file with a BOM and columns in another case and order.
    std::fs::write(dir.join("good.csv"), "\u{feff}COUNTRY,commonname\nCZ,csv-1\nDE,csv-2\n").expect("write");
    let created = upload("good.csv", true).ok().json();
    assert_eq!(
        (created["kind"].as_str(), created["batch_size"].as_u64()),
        (Some("csv"), Some(2)),
        "{created}"
    );
    let id = id_of(&created);
    let last = watch_to_the_end(&cli, &id);
    assert_eq!(last["issued"], 2, "{last}");
    // A script reads the status as JSON.
    let status = cli.json(&["batch", "status", &id]);
    assert_eq!(status["status"], "ready-for-download", "{status}");
    // Unknown batch ids come back as the daemon's NOT_FOUND.
    cli.run(&["batch", "show", "6f1c1f9e-3a0e-4a43-9d43-0f6f2e6f1e1a"]).failed_with("NOT_FOUND");
}
