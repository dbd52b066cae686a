//! End-to-end: the `cardhsm store` commands of the real CLI against the real cardhsmd on a
//! real SoftHSM card token, checked with the real `openssl` and `pkcs11-tool`: `store import`
//! of a certificate with an encrypted key (the password from a file), `store list` (JSON and
//! table, all and by fingerprint), `store csr` with the key generated on the token,
//! `openssl req -verify` and an openssl CA signing it, `store complete`, `store delete` and
//! `store delete-subject`, and errors reported as `error: <GRPC CODE>: …` with exit code 1.

mod support;

use cardhsm_tests::{ADMIN_PASSWORD, Daemon, TestEnv};
use serde_json::Value;
use support::{CliHome, openssl, openssl_ca_sign, openssl_fingerprint, self_signed};

fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("no string `{key}` in {v}"))
}

fn certificates(v: &Value) -> &Vec<Value> {
    v["certificates"].as_array().unwrap_or_else(|| panic!("no certificates in {v}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn store_import_list_csr_complete_and_delete_through_the_cli() {
    let env = TestEnv::new(1).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let cli = CliHome::new(env.path());
    let dir = cli.dir.as_path();
    cli.login(&daemon.endpoint, "admin", ADMIN_PASSWORD);

    // An EC certificate whose key is encrypted PKCS#8; the password comes from a file.
    self_signed(dir, "ec", "ec:P-256", "/CN=cli-cert/O=Acme");
    openssl(
        dir,
        &[
            "pkcs8",
            "-topk8",
            "-in",
            "ec.key",
            "-v2",
            "aes-256-cbc",
            "-passout",
            "pass:key pass 1",
            "-out",
            "ec.p8",
        ],
    );
    std::fs::write(dir.join("key.pw"), "key pass 1\n").expect("write");
    let fp = openssl_fingerprint(dir, "ec.crt", "sha1");
    let import = [
        "store",
        "import",
        "--token",
        "card-01",
        "--certificate",
        "ec.crt",
        "--private-key",
        "ec.p8",
        "--key-password-file",
        "key.pw",
        "--label",
        "cli cert",
        "--system-use-only",
    ];
    let imported = cli.json(&import);
    assert_eq!((str_field(&imported, "fingerprint"), str_field(&imported, "replaced")), (fp.as_str(), ""));
    assert_eq!(imported["certificate"]["subject"]["cn"], "cli-cert", "{imported}");
    // Again: it replaces itself.
    assert_eq!(str_field(&cli.json(&import), "replaced"), fp);

    let list = cli.json(&["store", "list", "--token", "card-01"]);
    let all = certificates(&list);
    assert_eq!(all.len(), 1, "{list}");
    assert_eq!(
        (all[0]["label"].as_str(), all[0]["has_private_key"].as_bool()),
        (Some("cli cert"), Some(true))
    );
    assert_eq!(all[0]["system_use_only"], true);
    assert_eq!(all[0]["sha256_fingerprint"], openssl_fingerprint(dir, "ec.crt", "sha256"));
    let cert_id = str_field(&all[0], "id").to_owned();
    let table = cli.run(&["store", "list", "--token", "card-01"]).ok();
    assert!(table.stdout.lines().any(|l| l.starts_with(&fp) && l.contains("cli cert")), "{table:#?}");
    let one = cli.json(&["store", "list", "--token", "card-01", "--id", &fp.to_ascii_uppercase()]);
    assert_eq!(certificates(&one).len(), 1);
    // On the token: the certificate next to its key pair, the private key not extractable.
    let objects = env.list_token_objects("card-01").expect("pkcs11-tool");
    assert!(objects.iter().any(|o| o.class == "certificate" && o.id_hex == cert_id), "{objects:#?}");
    assert!(
        objects.iter().any(|o| o.class == "private" && o.id_hex == cert_id && o.extractable == Some(false)),
        "{objects:#?}"
    );

    // A CSR whose P-384 key the token generates; an openssl CA signs it; complete.
    self_signed(dir, "ca", "ec:P-256", "/CN=CLI Test CA");
    let csr = cli.json(&[
        "store",
        "csr",
        "--token",
        "card-01",
        "--subject",
        "CN=cli-device,O=Acme",
        "--key-type",
        "EC:P-384",
        "--out",
        "dev.csr",
    ]);
    assert_eq!(csr["key_algorithm"], "EC:P-384");
    let csr_id = str_field(&csr, "csr_id").to_owned();
    assert_eq!(std::fs::read_to_string(dir.join("dev.csr")).expect("--out"), str_field(&csr, "csr_pem"));
    openssl(dir, &["req", "-in", "dev.csr", "-noout", "-verify"]);
    openssl_ca_sign(dir, "ca", "dev");
    let done = cli.json(&[
        "store",
        "complete",
        "--token",
        "card-01",
        "--csr-id",
        &csr_id,
        "--certificate",
        "dev.crt",
    ]);
    let dev_fp = openssl_fingerprint(dir, "dev.crt", "sha1");
    assert_eq!(str_field(&done, "fingerprint"), dev_fp);
    assert_eq!((done["source"].as_str(), done["issuer"]["cn"].as_str()), (Some("CSR"), Some("CLI Test CA")));
    assert_eq!(done["id"], csr["id"]);
    assert_eq!(certificates(&cli.json(&["store", "list", "--token", "card-01"])).len(), 2);

    // Errors: the daemon's code and message, exit code 1, nothing on stdout.
    let run = cli.run(&[
        "store",
        "import",
        "--token",
        "card-01",
        "--certificate",
        "dev.crt",
        "--private-key",
        "ec.key",
    ]);
    let first = run.failed_with("INVALID_ARGUMENT");
    assert!(first.contains("private_key"), "{run:#?}");
    cli.run(&["store", "list", "--token", "no-such-token"]).failed_with("NOT_FOUND");
    cli.run(&["store", "complete", "--token", "card-01", "--csr-id", &csr_id, "--certificate", "dev.crt"])
        .failed_with("NOT_FOUND");

    // Delete by fingerprint; delete by subject CN.
    let gone = cli.json(&["store", "delete", "--token", "card-01", &fp]);
    assert_eq!(gone["deleted"], serde_json::json!([fp]));
    let gone = cli.run(&["store", "delete-subject", "--token", "card-01", "--cn", "cli-device"]).ok();
    assert!(gone.stdout.contains(&format!("deleted certificate {dev_fp}")), "{gone:#?}");
    assert!(certificates(&cli.json(&["store", "list", "--token", "card-01"])).is_empty());
    let objects = env.list_token_objects("card-01").expect("pkcs11-tool");
    assert!(objects.is_empty(), "everything left the token: {objects:#?}");

    // A CA certificate alone (no key pair), over gRPC's ImportCertificate certificate_only.
    self_signed(dir, "trusted", "ec:P-256", "/CN=Trusted CA/O=Acme");
    let only =
        ["store", "import", "--token", "card-01", "--certificate", "trusted.crt", "--certificate-only"];
    let done = cli.json(&only);
    let stored = &done["certificate"];
    assert_eq!(stored["has_private_key"], false, "{done}");
    let trusted_fp = str_field(&done, "fingerprint").to_owned();
    assert_eq!(trusted_fp, openssl_fingerprint(dir, "trusted.crt", "-sha1"));
    let objects = env.list_token_objects("card-01").expect("pkcs11-tool");
    assert_eq!(objects.len(), 1, "a certificate object only: {objects:#?}");
    // A key with --certificate-only is a usage error; without either, --private-key is named.
    let mut with_key = only.to_vec();
    with_key.extend(["--private-key", "trusted.key"]);
    assert_ne!(cli.run(&with_key).code, Some(0));
    let neither = cli.run(&["store", "import", "--token", "card-01", "--certificate", "trusted.crt"]);
    assert!(neither.code != Some(0) && neither.stderr.contains("--private-key"), "{neither:#?}");
    cli.json(&["store", "delete", "--token", "card-01", &trusted_fp]);
}
