//! End-to-end: TLS and client-certificate TLS on the gRPC API of the real cardhsmd. The PKI is
//! made by the real `openssl` command in the test's directory (a CA, a server certificate for
//! IP:127.0.0.1 and DNS:localhost, a client certificate, and a second CA with a client
//! certificate of its own); the Rust client connects with `ConnectOptions`, and
//! `openssl s_client` cross-checks what the daemon presents on the wire.

mod support;

use cardhsm_client::{CardhsmClient, ClientError, ConnectOptions};
use cardhsm_tests::{ADMIN_PASSWORD, ADMIN_USERNAME, Daemon, TestEnv};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use support::store_snapshot;

/// The subject of the daemon's certificate, as `openssl s_client` prints it.
const SERVER_SUBJECT: &str = "O = cardhsm tests, CN = cardhsmd test server";
/// The subject of the CA that signs the server and the good client certificate.
const CA_SUBJECT: &str = "CN = cardhsm test CA";

/// The certificates and keys of one test, all PEM files in `<env>/tls`.
#[derive(Debug)]
struct Pki {
    ca_crt: PathBuf,
    server_crt: PathBuf,
    server_key: PathBuf,
    client_crt: PathBuf,
    client_key: PathBuf,
    /// A CA the daemon knows nothing about.
    other_ca_crt: PathBuf,
    /// A client certificate signed by the other CA.
    rogue_crt: PathBuf,
    rogue_key: PathBuf,
}

/// Runs `openssl <args>` in `dir`; panics with its output when it fails. Returns stdout.
fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("running openssl (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {} failed ({}):\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A P-256 key in `<dir>/<name>.key` (PKCS#8 PEM).
fn new_key(dir: &Path, name: &str) -> PathBuf {
    let file = format!("{name}.key");
    openssl(dir, &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", &file]);
    dir.join(file)
}

/// A self-signed CA certificate `<dir>/<name>.crt` with subject `/CN=<cn>`.
fn new_ca(dir: &Path, name: &str, cn: &str) -> PathBuf {
    let key = format!("{name}.key");
    let crt = format!("{name}.crt");
    new_key(dir, name);
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            &key,
            "-out",
            &crt,
            "-days",
            "2",
            "-subj",
            &format!("/CN={cn}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    dir.join(crt)
}

/// A leaf certificate `<dir>/<name>.crt` (key `<dir>/<name>.key`) signed by the CA `<ca>.crt`.
fn new_leaf(dir: &Path, name: &str, ca: &str, subject: &str, extensions: &str) -> (PathBuf, PathBuf) {
    let key = new_key(dir, name);
    let (csr, ext, crt) = (format!("{name}.csr"), format!("{name}.ext"), format!("{name}.crt"));
    std::fs::write(dir.join(&ext), extensions).expect("write extensions file");
    openssl(dir, &["req", "-new", "-key", &format!("{name}.key"), "-out", &csr, "-subj", subject]);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-out",
            &crt,
            "-days",
            "2",
            "-extfile",
            &ext,
        ],
    );
    (dir.join(crt), key)
}

fn make_pki(env: &TestEnv) -> Pki {
    let dir = env.path().join("tls");
    std::fs::create_dir_all(&dir).expect("mkdir tls");
    let ca_crt = new_ca(&dir, "ca", "cardhsm test CA");
    let (server_crt, server_key) = new_leaf(
        &dir,
        "server",
        "ca",
        "/O=cardhsm tests/CN=cardhsmd test server",
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    );
    let client_ext = "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
                      extendedKeyUsage=clientAuth\n";
    let (client_crt, client_key) = new_leaf(&dir, "client", "ca", "/CN=admin", client_ext);
    let other_ca_crt = new_ca(&dir, "other-ca", "some other CA");
    let (rogue_crt, rogue_key) = new_leaf(&dir, "rogue", "other-ca", "/CN=admin", client_ext);
    // What was made is what the tests expect: openssl agrees the chain and the names are right.
    let text = openssl(&dir, &["x509", "-in", "server.crt", "-noout", "-subject", "-ext", "subjectAltName"]);
    assert!(text.contains("IP Address:127.0.0.1") && text.contains("DNS:localhost"), "{text}");
    openssl(&dir, &["verify", "-CAfile", "ca.crt", "server.crt", "client.crt"]);
    openssl(&dir, &["verify", "-CAfile", "other-ca.crt", "rogue.crt"]);
    Pki { ca_crt, server_crt, server_key, client_crt, client_key, other_ca_crt, rogue_crt, rogue_key }
}

fn toml_path(p: &Path) -> String {
    toml::Value::String(p.display().to_string()).to_string()
}

/// `[server.tls]` with the server certificate, and `client_ca_file` when given.
fn tls_toml(pki: &Pki, client_ca: Option<&Path>) -> String {
    let mut t = format!(
        "[server.tls]\ncert_file = {}\nkey_file = {}\n",
        toml_path(&pki.server_crt),
        toml_path(&pki.server_key)
    );
    if let Some(ca) = client_ca {
        t.push_str(&format!("client_ca_file = {}\n", toml_path(ca)));
    }
    t
}

fn https(daemon: &Daemon) -> String {
    format!("https://127.0.0.1:{}", daemon.addr.port())
}

/// Connects and logs in as admin: the whole way a client gets to use the API.
async fn connect_and_login(options: &ConnectOptions) -> Result<CardhsmClient, ClientError> {
    let client = CardhsmClient::connect_with(options).await?;
    client.login(ADMIN_USERNAME, ADMIN_PASSWORD).await?;
    Ok(client)
}

/// Asserts that connecting and logging in with `options` fails; returns the error text with
/// its causes.
async fn refused(what: &str, options: &ConnectOptions) -> String {
    match connect_and_login(options).await {
        Ok(client) => panic!("{what}: expected the connection to be refused, but logged in: {client:?}"),
        Err(e) => {
            let text = format!("{e}");
            eprintln!("{what}: refused as expected: {text}");
            text
        }
    }
}

/// `openssl s_client` against the daemon with `extra` arguments; returns (success, stdout + stderr).
fn s_client(daemon: &Daemon, dir: &Path, extra: &[&str]) -> (bool, String) {
    let connect = format!("127.0.0.1:{}", daemon.addr.port());
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &connect])
        .args(extra)
        .current_dir(dir)
        // End of input: s_client closes the connection right after the handshake.
        .stdin(Stdio::null())
        .output()
        .expect("running openssl s_client");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// The PEM block of the server certificate in s_client's output.
fn presented_certificate(s_client_output: &str) -> Option<String> {
    let begin = s_client_output.find("-----BEGIN CERTIFICATE-----")?;
    let end_marker = "-----END CERTIFICATE-----";
    let end = s_client_output[begin..].find(end_marker)? + begin + end_marker.len();
    Some(s_client_output[begin..end].to_owned())
}

fn pem_of(path: &Path) -> String {
    std::fs::read_to_string(path).expect("read PEM").trim().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_serves_the_configured_certificate_to_clients_that_trust_its_ca() {
    let env = TestEnv::new(0).expect("env");
    let pki = make_pki(&env);
    let daemon = Daemon::start_with(&env, &tls_toml(&pki, None)).await.expect("daemon with TLS");
    let endpoint = https(&daemon);
    let tls_dir = pki.ca_crt.parent().expect("tls dir").to_path_buf();
    let log = daemon.log_of_current_run();
    assert!(log.contains(&format!("gRPC listening on {endpoint}")), "the daemon announces https://\n{log}");

    // Refused clients change nothing in the store; a login does (so the comparison is not vacuous).
    let before = store_snapshot(&env.store_path());

    // Plain HTTP/2 (h2c) to the TLS port: no answer.
    assert!(daemon.endpoint.starts_with("http://127.0.0.1:"), "{}", daemon.endpoint);
    refused("plaintext http:// client", &ConnectOptions::new(daemon.endpoint.clone())).await;

    // A client that trusts another CA, or only the system's trust store, rejects the daemon.
    let other_ca = ConnectOptions::new(endpoint.clone()).ca_file(&pki.other_ca_crt);
    let text = refused("client trusting another CA", &other_ca).await;
    assert!(text.to_lowercase().contains("certificate"), "should say why: {text}");
    let text = refused("client with the system trust store", &ConnectOptions::new(endpoint.clone())).await;
    assert!(text.to_lowercase().contains("certificate"), "should say why: {text}");
    // Trusting the CA is not enough when the name does not match the certificate.
    let wrong_name = ConnectOptions::new(endpoint.clone()).ca_file(&pki.ca_crt).domain_name("wrong.example");
    let text = refused("client checking another name", &wrong_name).await;
    assert!(text.to_lowercase().contains("certificate"), "should say why: {text}");
    assert_eq!(store_snapshot(&env.store_path()), before, "refused clients changed the store");

    // A client trusting the CA logs in over https and is who it logged in as.
    let client = connect_and_login(&ConnectOptions::new(endpoint.clone()).ca_file(&pki.ca_crt))
        .await
        .expect("client trusting the CA logs in over TLS (IP SAN 127.0.0.1)");
    let me = client.who_am_i().await.expect("WhoAmI over TLS");
    assert_eq!(me.username, ADMIN_USERNAME);
    assert_ne!(store_snapshot(&env.store_path()), before, "a login is visible in the store");

    // The certificate's DNS name works too.
    let by_name = connect_and_login(
        &ConnectOptions::new(endpoint.clone()).ca_file(&pki.ca_crt).domain_name("localhost"),
    )
    .await
    .expect("client checking DNS:localhost logs in");
    assert_eq!(by_name.who_am_i().await.expect("WhoAmI").username, ADMIN_USERNAME);

    // The real tool agrees: the daemon presents exactly server.crt, issued by the CA, valid
    // for 127.0.0.1, and speaks HTTP/2 over ALPN.
    let (ok, out) = s_client(
        &daemon,
        &tls_dir,
        &["-CAfile", "ca.crt", "-verify_return_error", "-verify_ip", "127.0.0.1", "-alpn", "h2"],
    );
    assert!(ok, "openssl s_client failed:\n{out}");
    assert!(out.contains(&format!("subject={SERVER_SUBJECT}")), "server subject:\n{out}");
    assert!(out.contains(&format!("issuer={CA_SUBJECT}")), "server issuer:\n{out}");
    assert!(out.contains("Verify return code: 0 (ok)"), "verification:\n{out}");
    assert!(out.contains("ALPN protocol: h2"), "ALPN:\n{out}");
    assert_eq!(presented_certificate(&out).as_deref(), Some(pem_of(&pki.server_crt).as_str()));
    // And the name it is not valid for fails verification there as well.
    let (ok, out) = s_client(
        &daemon,
        &tls_dir,
        &["-CAfile", "ca.crt", "-verify_return_error", "-verify_hostname", "wrong.example"],
    );
    assert!(!ok, "openssl s_client accepted a wrong host name:\n{out}");
    assert!(out.contains("hostname mismatch"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn client_certificate_tls_admits_only_certificates_from_the_client_ca() {
    let env = TestEnv::new(1).expect("env");
    let pki = make_pki(&env);
    let daemon =
        Daemon::start_with(&env, &tls_toml(&pki, Some(&pki.ca_crt))).await.expect("daemon with mTLS");
    let endpoint = https(&daemon);
    let tls_dir = pki.ca_crt.parent().expect("tls dir").to_path_buf();
    let trusting = || ConnectOptions::new(endpoint.clone()).ca_file(&pki.ca_crt);

    let before = store_snapshot(&env.store_path());

    // No client certificate, or one from another CA: the daemon refuses the handshake, so
    // the login never reaches it. (With TLS 1.3 the client learns it only from the alert that
    // follows its Finished message, so the Rust client reports a dead connection; the alert
    // itself is read with openssl s_client below.)
    refused("client without a certificate", &trusting()).await;
    let rogue = trusting().client_identity(&pki.rogue_crt, &pki.rogue_key);
    refused("client with a certificate from another CA", &rogue).await;
    assert_eq!(store_snapshot(&env.store_path()), before, "refused clients changed the store");

    // The client certificate signed by the client CA: login and ListTokens work.
    let client = connect_and_login(&trusting().client_identity(&pki.client_crt, &pki.client_key))
        .await
        .expect("client with the client certificate logs in");
    let tokens = client.list_tokens().await.expect("ListTokens over mTLS");
    let labels: Vec<&str> = tokens.iter().map(|t| t.label.as_str()).collect();
    let serials: Vec<&str> = tokens.iter().map(|t| t.serial_number.as_str()).collect();
    assert!(labels.contains(&env.daemon_token_label.as_str()), "tokens: {labels:?}");
    assert!(labels.contains(&"card-01"), "tokens: {labels:?}");
    assert!(serials.contains(&env.card_serials[0].as_str()), "serials: {serials:?}");
    assert_eq!(client.who_am_i().await.expect("WhoAmI").username, ADMIN_USERNAME);
    let after_login = store_snapshot(&env.store_path());
    assert_ne!(after_login, before, "a login is visible in the store");

    // openssl s_client: with the client certificate the handshake verifies, the daemon shows
    // its own certificate and asks for client certificates from the configured CA only.
    let (ok, out) = s_client(
        &daemon,
        &tls_dir,
        &[
            "-CAfile",
            "ca.crt",
            "-verify_return_error",
            "-verify_ip",
            "127.0.0.1",
            "-cert",
            "client.crt",
            "-key",
            "client.key",
        ],
    );
    assert!(ok, "openssl s_client with the client certificate failed:\n{out}");
    assert!(out.contains(&format!("subject={SERVER_SUBJECT}")), "server subject:\n{out}");
    assert!(out.contains("Verify return code: 0 (ok)"), "verification:\n{out}");
    assert_eq!(presented_certificate(&out).as_deref(), Some(pem_of(&pki.server_crt).as_str()));
    let acceptable = out
        .split("Acceptable client certificate CA names")
        .nth(1)
        .and_then(|rest| rest.lines().nth(1))
        .unwrap_or_else(|| panic!("the daemon names no acceptable client CA:\n{out}"));
    assert_eq!(acceptable.trim(), CA_SUBJECT, "{out}");
    assert!(!out.contains("some other CA"), "{out}");

    // Without a client certificate the daemon ends the handshake with the TLS alert
    // certificate_required (116); with one from another CA, unknown_ca (48). `-ign_eof` makes
    // s_client wait for the daemon's answer after its own Finished message.
    let (ok, out) = s_client(&daemon, &tls_dir, &["-CAfile", "ca.crt", "-ign_eof"]);
    assert!(!ok, "openssl s_client without a client certificate succeeded:\n{out}");
    assert!(out.contains("alert certificate required"), "{out}");
    let (ok, out) = s_client(
        &daemon,
        &tls_dir,
        &["-CAfile", "ca.crt", "-ign_eof", "-cert", "rogue.crt", "-key", "rogue.key"],
    );
    assert!(!ok, "openssl s_client with another CA's client certificate succeeded:\n{out}");
    assert!(out.contains("alert unknown ca"), "{out}");
    // The same over TLS 1.2, where the refusal is inside the handshake proper.
    let (ok, out) = s_client(&daemon, &tls_dir, &["-CAfile", "ca.crt", "-tls1_2"]);
    assert!(!ok, "openssl s_client -tls1_2 without a client certificate succeeded:\n{out}");
    assert!(out.contains("alert"), "{out}");
    assert_eq!(store_snapshot(&env.store_path()), after_login, "refused handshakes changed the store");
}
