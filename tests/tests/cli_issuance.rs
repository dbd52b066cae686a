//! End-to-end: the PKI commands of the real `cardhsm` tool against the real cardhsmd, checked
//! with the real `openssl` — `ca create` a root, `ca list`, `profiles list`, `cert issue` from an
//! openssl CSR, `openssl verify` against `ca show --chain-out`, `cert find --cn`, `cert revoke`
//! by serial and by id, `crl get` (DER and PEM) that `openssl crl -verify` accepts and that lists
//! the revoked serials with their reasons, and a bad CSR reported as `error: INVALID_ARGUMENT`.
//!
//! The binary is found or built as in `cli.rs`: `$CARDHSM_BIN`, else `cargo build -p
//! cardhsm-client --bin cardhsm` into this test's target directory and profile.

mod support;

use cardhsm_tests::{ADMIN_PASSWORD, Daemon, TestEnv};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use support::{Run, cardhsm_path, crl_entries, openssl, openssl_try};

/// The CLI of one test: its own HOME and session file, run in the PKI working directory.
struct Cli {
    home: PathBuf,
    dir: PathBuf,
}

impl Cli {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(cardhsm_path());
        cmd.args(args)
            .current_dir(&self.dir)
            .env("HOME", &self.home)
            .env("CARDHSM_SESSION_FILE", self.home.join("session.json"))
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("CARDHSM_ENDPOINT")
            .env_remove("CARDHSM_CA_FILE")
            .env_remove("CARDHSM_CERT")
            .env_remove("CARDHSM_KEY")
            .env_remove("CARDHSM_PASSWORD")
            .stdin(Stdio::null());
        cmd
    }

    fn output(mut cmd: Command) -> Run {
        let out = cmd.output().expect("running cardhsm");
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn run(&self, args: &[&str]) -> Run {
        Cli::output(self.command(args))
    }

    /// `cardhsm --output json <args>`, which must succeed.
    #[track_caller]
    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        self.run(&all).ok().json()
    }
}

/// An EC P-256 key in `<name>.key` and a CSR for it in `<name>.csr` with subject `subj`.
fn key_and_csr(dir: &Path, name: &str, subj: &str) -> String {
    let key = format!("{name}.key");
    openssl(dir, &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", &key]);
    let csr = format!("{name}.csr");
    openssl(dir, &["req", "-new", "-key", &key, "-subj", subj, "-out", &csr]);
    csr
}

fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("no string `{key}` in {v}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn ca_issue_verify_find_revoke_and_crl_through_the_cli() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let home = env.path().join("cli-home");
    let dir = env.path().join("cli-pki");
    std::fs::create_dir_all(&home).expect("mkdir cli-home");
    std::fs::create_dir_all(&dir).expect("mkdir cli-pki");
    let cli = Cli { home, dir: dir.clone() };
    let dir = dir.as_path();
    let mut login = cli.command(&["--endpoint", &daemon.endpoint, "login", "--username", "admin"]);
    login.env("CARDHSM_PASSWORD", ADMIN_PASSWORD);
    Cli::output(login).ok();

    // ca create (root) → ca list shows it.
    let root = cli.json(&[
        "ca",
        "create",
        "--name",
        "CLI Root",
        "--key-type",
        "EC:P-256",
        "--subject",
        "CN=CLI Root CA,O=Acme,C=CZ",
        "--validity-years",
        "5",
        "--kind",
        "root",
    ]);
    let root_id = str_field(&root, "id").to_owned();
    assert_eq!((root["kind"].as_str(), root["status"].as_str()), (Some("root"), Some("active")), "{root}");
    assert_eq!(root["key_algorithm"], "EC:P-256");
    let list = cli.json(&["ca", "list"]);
    let authorities = list["authorities"].as_array().unwrap_or_else(|| panic!("no authorities: {list}"));
    assert_eq!(authorities.len(), 1, "{list}");
    assert_eq!(authorities[0]["id"], root_id.as_str());
    assert_eq!(authorities[0]["name"], "CLI Root");
    let table = cli.run(&["ca", "list"]).ok();
    assert!(table.stdout.lines().any(|l| l.starts_with(&root_id) && l.contains("CLI Root")), "{table:#?}");

    // profiles list: the four built-in ones.
    let profiles = cli.json(&["profiles", "list"]);
    let ids: Vec<&str> = profiles["profiles"]
        .as_array()
        .unwrap_or_else(|| panic!("no profiles: {profiles}"))
        .iter()
        .map(|p| str_field(p, "id"))
        .collect();
    assert_eq!(
        ids,
        ["ecc-device", "ecc-server", "rsa-device", "rsa-server", "card-authentication", "card-signature"]
    );
    let shown = cli.run(&["profiles", "show", "ecc-device"]).ok();
    assert!(shown.stdout.contains("commonName"), "{shown:#?}");

    // cert issue from an openssl CSR → openssl verify against ca show --chain-out.
    let csr = key_and_csr(dir, "dev1", "/CN=cli-device-01/O=Acme");
    let issued = cli.json(&[
        "cert",
        "issue",
        "--authority",
        &root_id,
        "--profile",
        "ecc-device",
        "--csr",
        &csr,
        "--param",
        "country=CZ",
        "--out",
        "dev1.pem",
    ]);
    let serial = str_field(&issued, "serial_number").to_owned();
    let cert_id = str_field(&issued, "id").to_owned();
    let written = std::fs::read_to_string(dir.join("dev1.pem")).expect("--out file");
    assert_eq!(written, str_field(&issued, "certificate_pem"));
    cli.run(&["ca", "show", &root_id, "--chain-out", "chain.pem"]).ok();
    let out = openssl(dir, &["verify", "-CAfile", "chain.pem", "-purpose", "sslclient", "dev1.pem"]);
    assert!(out.contains("dev1.pem: OK"), "{out}");

    // A second certificate, to revoke by id.
    let csr2 = key_and_csr(dir, "dev2", "/CN=cli-device-02");
    let issued2 =
        cli.json(&["cert", "issue", "--authority", &root_id, "--profile", "ecc-device", "--csr", &csr2]);
    let serial2 = str_field(&issued2, "serial_number").to_owned();

    // cert find --cn finds the first, valid.
    let found = cli.json(&["cert", "find", "--cn", "cli-device-01"]);
    let certs = found["certificates"].as_array().unwrap_or_else(|| panic!("no certificates: {found}"));
    assert_eq!(certs.len(), 1, "{found}");
    assert_eq!(
        (certs[0]["id"].as_str(), certs[0]["serial_number"].as_str()),
        (Some(&*cert_id), Some(&*serial))
    );
    assert_eq!(certs[0]["status"], "valid");
    assert_eq!(found["total_count"], 1);

    // cert revoke by serial + profile (keyCompromise), and by id (superseded, as a number).
    let revoked = cli.json(&[
        "cert",
        "revoke",
        "--serial",
        &serial,
        "--profile",
        "ecc-device",
        "--reason",
        "keyCompromise",
    ]);
    assert_eq!(revoked["certificates"][0]["status"], "revoked", "{revoked}");
    assert_eq!(revoked["certificates"][0]["revocation_reason"], "keyCompromise", "{revoked}");
    let revoked2 = cli.run(&["cert", "revoke", "--id", str_field(&issued2, "id"), "--reason", "4"]).ok();
    assert!(revoked2.stdout.contains("revoked  superseded"), "{revoked2:#?}");
    let found = cli.json(&["cert", "find", "--serial", &serial.to_ascii_uppercase()]);
    assert_eq!(found["certificates"][0]["status"], "revoked", "{found}");

    // crl get (DER by default, PEM with --pem): openssl verifies both and lists the serials.
    let crl = cli.json(&["crl", "get", "--authority", &root_id, "--out", "ca.crl"]);
    assert_eq!(crl["format"], "der");
    assert!(crl["crl_number"].as_u64().is_some_and(|n| n >= 2), "{crl}");
    openssl(dir, &["crl", "-inform", "DER", "-in", "ca.crl", "-CAfile", "chain.pem", "-noout", "-verify"]);
    let text = openssl(dir, &["crl", "-inform", "DER", "-in", "ca.crl", "-noout", "-text"]);
    let expected: BTreeMap<String, String> =
        [(serial.clone(), "Key Compromise".to_owned()), (serial2, "Superseded".to_owned())]
            .into_iter()
            .collect();
    assert_eq!(crl_entries(&text), expected, "{text}");
    cli.run(&["crl", "get", "--authority", &root_id, "--out", "ca-crl.pem", "--pem"]).ok();
    openssl(dir, &["crl", "-in", "ca-crl.pem", "-CAfile", "chain.pem", "-noout", "-verify"]);
    let (ok, out) = openssl_try(
        dir,
        &["verify", "-crl_check", "-CAfile", "chain.pem", "-CRLfile", "ca-crl.pem", "dev1.pem"],
    );
    assert!(!ok && out.contains("certificate revoked"), "{out}");

    // A bad CSR file: the daemon refuses it, exit 1, nothing issued.
    std::fs::write(dir.join("bad.csr"), "-----BEGIN CERTIFICATE REQUEST-----\nnot base64\n").expect("write");
    let r =
        cli.run(&["cert", "issue", "--authority", &root_id, "--profile", "ecc-device", "--csr", "bad.csr"]);
    r.failed_with("INVALID_ARGUMENT: ");
    let all = cli.json(&["cert", "find"]);
    assert_eq!(all["total_count"], 2, "{all}");
    // A missing file is a local error, also exit 1.
    let r =
        cli.run(&["cert", "issue", "--authority", &root_id, "--profile", "ecc-device", "--csr", "none.csr"]);
    r.failed_with("cannot read the certificate request");
    // Reason 7 is refused by the argument parser (a usage error, exit 2).
    let r = cli.run(&["cert", "revoke", "--id", &cert_id, "--reason", "7"]);
    assert_eq!(r.code, Some(2), "{r:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn external_and_intermediate_authorities_through_the_cli() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let home = env.path().join("cli-home");
    let dir = env.path().join("cli-pki");
    std::fs::create_dir_all(&home).expect("mkdir cli-home");
    std::fs::create_dir_all(&dir).expect("mkdir cli-pki");
    let cli = Cli { home, dir: dir.clone() };
    let dir = dir.as_path();
    let mut login = cli.command(&["--endpoint", &daemon.endpoint, "login", "--username", "admin"]);
    login.env("CARDHSM_PASSWORD", ADMIN_PASSWORD);
    Cli::output(login).ok();

    // An external authority: pending, its CSR signed by an openssl root, then imported.
    let ext = cli.json(&[
        "ca",
        "create",
        "--name",
        "Ext CA",
        "--key-type",
        "EC:P-256",
        "--subject",
        "CN=Ext CA,O=Acme",
        "--kind",
        "external",
    ]);
    let ext_id = str_field(&ext, "id").to_owned();
    assert_eq!(ext["status"], "pending-certificate", "{ext}");
    std::fs::write(dir.join("ext.csr"), str_field(&ext, "csr_pem")).expect("write ext.csr");
    let r = cli.run(&["ca", "show", &ext_id, "--chain-out", "none.pem"]);
    r.failed_with("authority");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ext-root.key",
            "-out",
            "ext-root.pem",
            "-days",
            "3650",
            "-subj",
            "/CN=External Root",
        ],
    );
    std::fs::write(
        dir.join("ca.ext"),
        "basicConstraints=critical,CA:TRUE,pathlen:1\nkeyUsage=critical,keyCertSign,cRLSign\n\
         subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
    )
    .expect("write ca.ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "ext.csr",
            "-CA",
            "ext-root.pem",
            "-CAkey",
            "ext-root.key",
            "-CAcreateserial",
            "-days",
            "1825",
            "-extfile",
            "ca.ext",
            "-out",
            "ext.pem",
        ],
    );
    let r = cli.run(&["ca", "import-cert", &ext_id, "--certificate", "ext-root.pem"]);
    r.failed_with("INVALID_ARGUMENT: ");
    let active =
        cli.json(&["ca", "import-cert", &ext_id, "--certificate", "ext.pem", "--chain", "ext-root.pem"]);
    assert_eq!(active["status"], "active", "{active}");

    // An intermediate under it (kind inferred from --parent), and a leaf from that.
    let inter = cli.json(&[
        "ca",
        "create",
        "--name",
        "Ext Issuing",
        "--key-type",
        "EC:P-384",
        "--subject",
        "CN=Ext Issuing,O=Acme",
        "--parent",
        &ext_id,
    ]);
    assert_eq!((inter["kind"].as_str(), inter["parent_id"].as_str()), (Some("intermediate"), Some(&*ext_id)));
    let inter_id = str_field(&inter, "id").to_owned();
    let csr = key_and_csr(dir, "leaf", "/CN=ext-leaf-1");
    let r = cli
        .run(&[
            "cert",
            "issue",
            "--authority",
            &inter_id,
            "--profile",
            "ecc-device",
            "--csr",
            &csr,
            "--out",
            "leaf.pem",
        ])
        .ok();
    assert!(r.stdout.lines().any(|l| l.starts_with("serial number:")), "{r:#?}");
    let shown = cli.run(&["ca", "show", &inter_id, "--chain-out", "inter-chain.pem"]).ok();
    assert!(shown.stdout.lines().any(|l| l.split_whitespace().eq(["chain", "length:", "3"])), "{shown:#?}");
    let out =
        openssl(dir, &["verify", "-CAfile", "ext-root.pem", "-untrusted", "inter-chain.pem", "leaf.pem"]);
    assert!(out.contains("leaf.pem: OK"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cert_issue_generate_key_writes_a_pkcs12_that_openssl_opens() {
    let env = TestEnv::new(0).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let cli = support::CliHome::new(env.path());
    let dir = cli.dir.as_path();
    cli.login(&daemon.endpoint, "admin", ADMIN_PASSWORD);
    let root = cli.json(&[
        "ca",
        "create",
        "--name",
        "Gen Root",
        "--key-type",
        "EC:P-256",
        "--subject",
        "CN=Gen Root,O=Acme",
    ]);
    let root_id = str_field(&root, "id").to_owned();
    // The password is in a file (never a flag's value); its first line counts.
    std::fs::write(dir.join("p12.pw"), "Gen-Key-P12 pass 42\nignored second line\n").expect("write");
    let issue = |key_type: &str, cn: &str, out: &str| {
        let param = format!("commonName={cn}");
        cli.run(&[
            "--output",
            "json",
            "cert",
            "issue",
            "--authority",
            &root_id,
            "--profile",
            if key_type.starts_with("RSA") { "rsa-device" } else { "ecc-device" },
            "--param",
            &param,
            "--generate-key",
            "--key-type",
            key_type,
            "--p12-password-file",
            "p12.pw",
            "--out",
            out,
        ])
    };
    for (key_type, cn, p12, key_word) in [
        ("EC:P-256", "cli generated 1", "gen-ec.p12", "prime256v1"),
        ("RSA:2048", "cli generated 2", "gen-rsa.p12", "modulus"),
    ] {
        let issued = issue(key_type, cn, p12).ok().json();
        assert_eq!(issued["subject_dn"], format!("CN={cn}"), "{issued}");
        // openssl opens the file with the password from the same file, and finds the
        // certificate issued and its private key.
        let leaf = openssl(dir, &["pkcs12", "-in", p12, "-passin", "file:p12.pw", "-clcerts", "-nokeys"]);
        assert!(leaf.contains(&format!("CN = {cn}")) || leaf.contains(&format!("CN={cn}")), "{leaf}");
        let key = openssl(dir, &["pkcs12", "-in", p12, "-passin", "file:p12.pw", "-nocerts", "-nodes"]);
        assert!(key.contains("-----BEGIN PRIVATE KEY-----"), "{key}");
        std::fs::write(dir.join("leaf.pem"), &leaf).expect("write");
        std::fs::write(dir.join("key.pem"), &key).expect("write");
        let text = openssl(dir, &["pkey", "-in", "key.pem", "-noout", "-text"]);
        assert!(text.contains(key_word), "{text}");
        let from_cert = openssl(dir, &["x509", "-in", "leaf.pem", "-noout", "-pubkey"]);
        let from_key = openssl(dir, &["pkey", "-in", "key.pem", "-pubout"]);
        assert_eq!(from_cert, from_key, "the key in the PKCS#12 is the certified key");
        let (ok, _) = openssl_try(dir, &["pkcs12", "-in", p12, "-passin", "pass:wrong password", "-nokeys"]);
        assert!(!ok, "a wrong password does not open it");
    }
    // The daemon's rule on the password (8 characters or more) reaches the CLI user.
    std::fs::write(dir.join("short.pw"), "short\n").expect("write");
    let run = cli.run(&[
        "cert",
        "issue",
        "--authority",
        &root_id,
        "--profile",
        "ecc-device",
        "--param",
        "commonName=x",
        "--generate-key",
        "--key-type",
        "EC:P-256",
        "--p12-password-file",
        "short.pw",
        "--out",
        "x.p12",
    ]);
    let first = run.failed_with("INVALID_ARGUMENT");
    assert!(first.contains("pkcs12_password"), "{run:#?}");
    assert!(!dir.join("x.p12").exists(), "nothing written on failure");
    // --csr and --generate-key exclude each other; --generate-key needs its options.
    assert_eq!(
        cli.run(&["cert", "issue", "--authority", &root_id, "--profile", "p", "--generate-key"]).code,
        Some(2)
    );
}
