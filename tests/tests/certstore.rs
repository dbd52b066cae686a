//! End-to-end: CertificateStoreService through the real cardhsmd on a real SoftHSM card token
//! and a real SQLite file, cross-checked with the real `openssl` and `pkcs11-tool`: importing EC
//! and RSA certificates with their keys in every accepted form (PKCS#8 PEM and DER, PKCS#1,
//! SEC1, encrypted PKCS#8), fingerprints and key identifiers as openssl computes them, the
//! objects as pkcs11-tool reads them (certificate and key pair under one CKA_ID, the private key
//! sensitive and not extractable), replacing, deleting, protected certificates and who may
//! protect one; CSRs whose key the token generates, signed by an openssl CA and completed;
//! deleting by subject CN; and bad input refused naming the field with the store and the
//! token's objects unchanged.

mod support;

use cardhsm_proto::v1 as pb;
use cardhsm_tests::{ADMIN_PASSWORD, Daemon, TestEnv};
use pb::certificate_store_service_client::CertificateStoreServiceClient;
use std::path::Path;
use support::*;
use tonic::Code;

const TOKEN: &str = "card-01";
const OPERATOR_PASSWORD: &str = "Operator-Passw0rd-certstore";
const USER_PASSWORD: &str = "User-Passw0rd-certstore-tests";

type Store = CertificateStoreServiceClient<Intercepted>;

async fn store_client(endpoint: &str, username: &str, password: &str) -> Store {
    let token = login(endpoint, username, password).await.access_token;
    CertificateStoreServiceClient::with_interceptor(channel(endpoint).await, Bearer(Some(token)))
}

async fn admin_store(daemon: &Daemon) -> Store {
    store_client(&daemon.endpoint, "admin", ADMIN_PASSWORD).await
}

/// One card token (`card-01`), the daemon, and the certificate store as the administrator.
async fn start() -> (TestEnv, Daemon, Store) {
    let env = TestEnv::new(1).expect("env");
    let daemon = Daemon::start(&env).await.expect("daemon");
    let store = admin_store(&daemon).await;
    (env, daemon, store)
}

/// `<env>/pki`, where the test's openssl files go.
fn pki_dir(env: &TestEnv) -> std::path::PathBuf {
    let dir = env.path().join("pki");
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("reading {name}: {e}"))
}

/// The subjectKeyIdentifier openssl put in a certificate (SHA-1 of the public key bits), as
/// lower-case hex.
fn openssl_ski(dir: &Path, cert: &str) -> String {
    let out = openssl(dir, &["x509", "-in", cert, "-noout", "-ext", "subjectKeyIdentifier"]);
    let line = out.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or_default();
    line.replace(':', "").to_ascii_lowercase()
}

fn import_req(cert: Vec<u8>, key: Vec<u8>) -> pb::ImportCertificateRequest {
    pb::ImportCertificateRequest { token: TOKEN.into(), cert, private_key: key, ..Default::default() }
}

fn list_req(id: &str) -> pb::ListCertificatesRequest {
    pb::ListCertificatesRequest { token: TOKEN.into(), id: id.into() }
}

fn delete_req(id: &str) -> pb::DeleteCertificateRequest {
    pb::DeleteCertificateRequest { token: TOKEN.into(), id: id.into() }
}

async fn list_all(store: &mut Store) -> Vec<pb::StoredCertificate> {
    store.list_certificates(list_req("")).await.expect("list").into_inner().certificates
}

/// The rows of the certificate-store tables, which `store_snapshot` does not read.
fn certstore_rows(db: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open db");
    let mut out = Vec::new();
    for sql in [
        "SELECT token_serial || '|' || fingerprint || '|' || hex(object_id) || '|' || source || '|' || \
         protected || '|' || system_use_only FROM token_certificates ORDER BY 1",
        "SELECT id || '|' || token_serial || '|' || hex(object_id) || '|' || subject_dn || '|' || \
         hex(csr_der) FROM token_csrs ORDER BY 1",
    ] {
        let mut stmt = conn.prepare(sql).expect("prepare");
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).expect("query");
        out.extend(rows.map(|r| r.expect("row")));
    }
    out
}

/// Everything a refused request must leave as it was: every row of the store and every object
/// on the card token (class, CKA_ID, label, key type, access flags).
fn state(env: &TestEnv) -> (Vec<String>, Vec<String>, Vec<String>) {
    let mut objects: Vec<String> = env
        .list_token_objects(TOKEN)
        .expect("pkcs11-tool")
        .into_iter()
        .map(|o| format!("{} {} {:?} {:?} {:?}", o.class, o.id_hex, o.label, o.key_type, o.access))
        .collect();
    objects.sort();
    (store_snapshot(&env.store_path()), certstore_rows(&env.store_path()), objects)
}

fn count_audit(env: &TestEnv, action: &str) -> i64 {
    let conn =
        rusqlite::Connection::open_with_flags(env.store_path(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open db");
    conn.query_row("SELECT COUNT(*) FROM audit_log WHERE action = ?1", [action], |r| r.get(0)).expect("count")
}

fn find<'a>(list: &'a [pb::StoredCertificate], fingerprint: &str) -> &'a pb::StoredCertificate {
    list.iter()
        .find(|c| c.fingerprint == fingerprint)
        .unwrap_or_else(|| panic!("{fingerprint} not listed in {list:#?}"))
}

fn dn(cn: &str, o: &str, ou: &str, l: &str, s: &str, c: &str) -> pb::DistinguishedName {
    pb::DistinguishedName { cn: cn.into(), o: o.into(), ou: ou.into(), l: l.into(), s: s.into(), c: c.into() }
}

/// The certificate object and key pair under `id`, as pkcs11-tool reads them: one of each, the
/// private key sensitive and not extractable. Returns the private key's type.
#[track_caller]
fn assert_pair_on_token(env: &TestEnv, id: &str) -> String {
    let objects = env.list_token_objects(TOKEN).expect("pkcs11-tool");
    let with_id =
        |class: &str| objects.iter().filter(|o| o.class == class && o.id_hex == id).collect::<Vec<_>>();
    assert_eq!(with_id("certificate").len(), 1, "one certificate object under {id}: {objects:#?}");
    assert_eq!(with_id("public").len(), 1, "one public key under {id}: {objects:#?}");
    let private = with_id("private");
    assert_eq!(private.len(), 1, "one private key under {id}: {objects:#?}");
    assert_eq!(private[0].sensitive, Some(true), "{:?}", private[0]);
    assert_eq!(private[0].extractable, Some(false), "{:?}", private[0]);
    private[0].key_type.clone().unwrap_or_default()
}

#[track_caller]
fn assert_nothing_under(env: &TestEnv, id: &str) {
    let objects = env.list_token_objects(TOKEN).expect("pkcs11-tool");
    assert!(objects.iter().all(|o| o.id_hex != id), "objects left under {id}: {objects:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn import_list_replace_and_delete_checked_with_openssl_and_pkcs11_tool() {
    let (env, daemon, mut store) = start().await;
    let dir = pki_dir(&env);
    let dir = dir.as_path();

    // Four certificates with their keys in four forms.
    self_signed(dir, "ec", "ec:P-256", "/CN=dev-ec/O=Acme/OU=Ops/L=Brno/ST=JM/C=CZ");
    self_signed(dir, "rsa", "rsa:2048", "/CN=dev-rsa/O=Acme");
    openssl(dir, &["rsa", "-in", "rsa.key", "-traditional", "-out", "rsa.pkcs1.pem"]);
    self_signed(dir, "sec1", "ec:P-384", "/CN=dev-sec1");
    openssl(dir, &["ec", "-in", "sec1.key", "-out", "sec1.sec1.pem"]);
    openssl(dir, &["x509", "-in", "sec1.crt", "-outform", "DER", "-out", "sec1.der"]);
    self_signed(dir, "enc", "ec:P-256", "/CN=dev-enc");
    openssl(
        dir,
        &[
            "pkcs8",
            "-topk8",
            "-in",
            "enc.key",
            "-v2",
            "aes-256-cbc",
            "-passout",
            "pass:correct horse",
            "-out",
            "enc.p8.pem",
        ],
    );
    for (file, label) in [
        ("ec.key", "PRIVATE KEY"),
        ("rsa.pkcs1.pem", "RSA PRIVATE KEY"),
        ("sec1.sec1.pem", "EC PRIVATE KEY"),
        ("enc.p8.pem", "ENCRYPTED PRIVATE KEY"),
    ] {
        let text = String::from_utf8(read(dir, file)).expect("PEM");
        assert!(text.contains(&format!("-----BEGIN {label}-----")), "{file} is not {label}:\n{text}");
    }
    let fp = |name: &str| openssl_fingerprint(dir, &format!("{name}.crt"), "sha1");

    // EC, PKCS#8 PEM: the id is the key identifier openssl put in the certificate.
    let ec = store
        .import_certificate(import_req(read(dir, "ec.crt"), read(dir, "ec.key")))
        .await
        .expect("import ec");
    let ec = ec.into_inner();
    assert_eq!(ec.fingerprint, fp("ec"));
    assert_eq!(ec.replaced, "");
    let ec_id = ec.certificate.as_ref().expect("certificate").id.clone();
    assert_eq!(ec_id, openssl_ski(dir, "ec.crt"), "CKA_ID = SHA-1 of the public key bits");
    // RSA, PKCS#1; token named by serial this time.
    let rsa = store
        .import_certificate(pb::ImportCertificateRequest {
            token: env.card_serials[0].clone(),
            ..import_req(read(dir, "rsa.crt"), read(dir, "rsa.pkcs1.pem"))
        })
        .await
        .expect("import rsa")
        .into_inner();
    assert_eq!(rsa.fingerprint, fp("rsa"));
    let rsa_id = openssl_ski(dir, "rsa.crt");
    // EC P-384, SEC1 key, DER certificate.
    let sec1 = store
        .import_certificate(import_req(read(dir, "sec1.der"), read(dir, "sec1.sec1.pem")))
        .await
        .expect("import sec1")
        .into_inner();
    assert_eq!(sec1.fingerprint, fp("sec1"));
    let sec1_id = openssl_ski(dir, "sec1.crt");
    // Encrypted PKCS#8 with its password, an id and a label of our choosing, system use only.
    let enc = store
        .import_certificate(pb::ImportCertificateRequest {
            password: "correct horse".into(),
            id: "01:02:A0".into(),
            label: "enc-label".into(),
            system_use_only: true,
            ..import_req(read(dir, "enc.crt"), read(dir, "enc.p8.pem"))
        })
        .await
        .expect("import encrypted")
        .into_inner();
    assert_eq!(enc.fingerprint, fp("enc"));

    // The list, against openssl.
    let all = list_all(&mut store).await;
    assert_eq!(all.len(), 4, "{all:#?}");
    let c = find(&all, &ec.fingerprint);
    assert_eq!(c.sha256_fingerprint, openssl_fingerprint(dir, "ec.crt", "sha256"));
    assert_eq!(c.subject, Some(dn("dev-ec", "Acme", "Ops", "Brno", "JM", "CZ")));
    assert_eq!(c.issuer, c.subject, "self-signed");
    assert_eq!((c.id.as_str(), c.label.as_str()), (ec_id.as_str(), "dev-ec"));
    assert!(c.has_private_key && !c.protected && !c.system_use_only);
    assert_eq!(c.source, "IMPORT");
    let days = (c.end_date - c.start_date) / 86_400;
    assert!((29..=31).contains(&days), "valid for 30 days: {c:?}");
    std::fs::write(dir.join("listed.pem"), &c.certificate_pem).expect("write");
    assert_eq!(
        openssl_fingerprint(dir, "listed.pem", "sha1"),
        ec.fingerprint,
        "certificate_pem is the certificate"
    );
    let serial = openssl(dir, &["x509", "-in", "ec.crt", "-noout", "-serial"]);
    assert_eq!(serial.trim().trim_start_matches("serial=").to_ascii_lowercase(), c.serial_number);
    let r = find(&all, &rsa.fingerprint);
    assert_eq!(r.subject, Some(dn("dev-rsa", "Acme", "", "", "", "")));
    assert_eq!(r.id, rsa_id);
    let e = find(&all, &enc.fingerprint);
    assert_eq!((e.id.as_str(), e.label.as_str(), e.system_use_only), ("0102a0", "enc-label", true));
    assert_eq!(find(&all, &sec1.fingerprint).id, sec1_id);

    // On the token: each certificate next to its key pair, the private keys sensitive and not
    // extractable.
    assert_eq!(assert_pair_on_token(&env, &ec_id), "EC");
    assert_eq!(assert_pair_on_token(&env, &rsa_id), "RSA");
    assert_eq!(assert_pair_on_token(&env, &sec1_id), "EC");
    assert_eq!(assert_pair_on_token(&env, "0102a0"), "EC");
    assert_eq!(count_audit(&env, "token_certificate.import"), 4);

    // One by id, by fingerprint (any case, with colons), by SHA-256 fingerprint.
    let one = store.list_certificates(list_req(&ec_id)).await.expect("by id").into_inner().certificates;
    assert_eq!(one.iter().map(|c| c.fingerprint.as_str()).collect::<Vec<_>>(), [ec.fingerprint.as_str()]);
    let colons: Vec<String> = rsa
        .fingerprint
        .to_ascii_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    let one = store.list_certificates(list_req(&colons.join(":"))).await.expect("by fp").into_inner();
    assert_eq!(one.certificates.len(), 1);
    assert_eq!(one.certificates[0].fingerprint, rsa.fingerprint);
    let one = store.list_certificates(list_req(&e.sha256_fingerprint)).await.expect("by sha256").into_inner();
    assert_eq!(one.certificates[0].fingerprint, enc.fingerprint);
    expect_code(store.list_certificates(list_req("00ff")).await, Code::NotFound);
    expect_invalid_field(store.list_certificates(list_req("xyz")).await, "id");

    // The same certificate again replaces itself: same objects, no second copy.
    let again = store
        .import_certificate(import_req(read(dir, "ec.crt"), read(dir, "ec.key")))
        .await
        .expect("import again")
        .into_inner();
    assert_eq!(
        (again.fingerprint.as_str(), again.replaced.as_str()),
        (ec.fingerprint.as_str(), ec.fingerprint.as_str())
    );
    assert_eq!(list_all(&mut store).await.len(), 4);
    assert_pair_on_token(&env, &ec_id);

    // Another certificate (another key) under the RSA one's id replaces it and its key pair.
    self_signed(dir, "ec2", "ec:P-256", "/CN=dev-ec2");
    let ec2 = store
        .import_certificate(pb::ImportCertificateRequest {
            id: rsa_id.clone(),
            ..import_req(read(dir, "ec2.crt"), read(dir, "ec2.key"))
        })
        .await
        .expect("import under the RSA id")
        .into_inner();
    assert_eq!(ec2.replaced, rsa.fingerprint);
    let all = list_all(&mut store).await;
    assert_eq!(all.len(), 4);
    assert!(all.iter().all(|c| c.fingerprint != rsa.fingerprint));
    assert_eq!(find(&all, &ec2.fingerprint).id, rsa_id);
    assert_eq!(assert_pair_on_token(&env, &rsa_id), "EC", "the RSA key pair went with its certificate");
    let rows = certstore_rows(&env.store_path());
    assert!(rows.iter().all(|r| !r.contains(&rsa.fingerprint)), "the replaced row is gone: {rows:#?}");

    // Delete by fingerprint, then by id: certificate and key pair leave the token.
    let gone = store.delete_certificate(delete_req(&sec1.fingerprint)).await.expect("delete").into_inner();
    assert_eq!(gone.deleted, [sec1.fingerprint.as_str()]);
    assert_nothing_under(&env, &sec1_id);
    expect_code(store.delete_certificate(delete_req(&sec1.fingerprint)).await, Code::NotFound);
    let gone = store.delete_certificate(delete_req("01:02:a0")).await.expect("delete by id").into_inner();
    assert_eq!(gone.deleted, [enc.fingerprint.as_str()]);
    assert_nothing_under(&env, "0102a0");
    assert_eq!(list_all(&mut store).await.len(), 2);
    assert_eq!(count_audit(&env, "token_certificate.delete"), 2);

    // Protected: only an administrator may set it; then nothing deletes or replaces it.
    let mut admin = api_as(&daemon.endpoint, "admin", ADMIN_PASSWORD).await;
    for (name, password, role) in
        [("officer", OPERATOR_PASSWORD, pb::Role::Operator), ("someone", USER_PASSWORD, pb::Role::User)]
    {
        admin
            .users
            .create_user(pb::CreateUserRequest {
                username: name.into(),
                password: password.into(),
                roles: vec![role as i32],
                ..Default::default()
            })
            .await
            .expect("create user");
    }
    self_signed(dir, "prot", "ec:P-256", "/CN=prot");
    let prot_req = || pb::ImportCertificateRequest {
        protected: true,
        ..import_req(read(dir, "prot.crt"), read(dir, "prot.key"))
    };
    let mut officer = store_client(&daemon.endpoint, "officer", OPERATOR_PASSWORD).await;
    let before = state(&env);
    expect_code(officer.import_certificate(prot_req()).await, Code::PermissionDenied);
    assert_eq!(state(&env), before, "a refused import changes nothing");
    assert_eq!(list_all(&mut officer).await.len(), 2, "operators list");
    let mut someone = store_client(&daemon.endpoint, "someone", USER_PASSWORD).await;
    expect_code(someone.list_certificates(list_req("")).await, Code::PermissionDenied);

    let prot = store.import_certificate(prot_req()).await.expect("admin imports protected").into_inner();
    assert!(prot.certificate.as_ref().is_some_and(|c| c.protected));
    assert!(find(&list_all(&mut store).await, &prot.fingerprint).protected);
    let before = state(&env);
    expect_code(store.delete_certificate(delete_req(&prot.fingerprint)).await, Code::FailedPrecondition);
    expect_code(officer.delete_certificate(delete_req(&prot.fingerprint)).await, Code::FailedPrecondition);
    expect_code(store.import_certificate(prot_req()).await, Code::FailedPrecondition);
    expect_code(
        store
            .delete_certificate_by_subject(pb::DeleteCertificateBySubjectRequest {
                token: TOKEN.into(),
                subject_cn: "prot".into(),
            })
            .await,
        Code::FailedPrecondition,
    );
    assert_eq!(state(&env), before, "refused deletes change nothing");

    // The officer imports and deletes ordinary certificates.
    self_signed(dir, "op", "rsa:2048", "/CN=op");
    let op = officer
        .import_certificate(import_req(read(dir, "op.crt"), read(dir, "op.key")))
        .await
        .expect("officer imports");
    let op = op.into_inner();
    officer.delete_certificate(delete_req(&op.fingerprint)).await.expect("officer deletes");
    assert!(!daemon.log().contains("correct horse"), "the key password reached the log");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_imported_without_its_key_is_stored_alone_and_never_replaces_a_key_pair() {
    let (env, _daemon, mut store) = start().await;
    let dir = pki_dir(&env);
    let dir = dir.as_path();
    self_signed(dir, "ca", "ec:P-256", "/CN=Trusted CA/O=Acme");
    self_signed(dir, "dev", "ec:P-256", "/CN=device/O=Acme");
    let only = |cert: Vec<u8>| pb::ImportCertificateRequest {
        certificate_only: true,
        ..import_req(cert, Vec::new())
    };

    let done = store.import_certificate(only(read(dir, "ca.crt"))).await.expect("import").into_inner();
    let stored = done.certificate.expect("certificate");
    assert!(!stored.has_private_key);
    assert_eq!(done.fingerprint, openssl_fingerprint(dir, "ca.crt", "-sha1"));
    let objects = env.list_token_objects(TOKEN).expect("pkcs11-tool");
    assert_eq!(objects.len(), 1, "the certificate object alone: {objects:#?}");

    // The key-pair fields do not apply, and are refused by name rather than ignored.
    let before = list_all(&mut store).await;
    for (field, req) in [
        (
            "private_key",
            pb::ImportCertificateRequest {
                certificate_only: true,
                ..import_req(read(dir, "dev.crt"), read(dir, "dev.key"))
            },
        ),
        ("label", pb::ImportCertificateRequest { label: "x".into(), ..only(read(dir, "dev.crt")) }),
        ("protected", pb::ImportCertificateRequest { protected: true, ..only(read(dir, "dev.crt")) }),
    ] {
        expect_invalid_field(store.import_certificate(req).await, field);
    }
    // A certificate stored with its key pair is not replaced by a key-less import of it.
    let with_key = store.import_certificate(import_req(read(dir, "dev.crt"), read(dir, "dev.key"))).await;
    let with_key = with_key.expect("import with key").into_inner();
    expect_invalid_field(store.import_certificate(only(read(dir, "dev.crt"))).await, "id");
    let after = list_all(&mut store).await;
    assert_eq!(after.len(), before.len() + 1);
    assert!(after.iter().any(|c| c.fingerprint == with_key.fingerprint && c.has_private_key));
}

#[test]
fn import_request_debug_shows_neither_key_nor_password() {
    let r = pb::ImportCertificateRequest {
        private_key: b"-----BEGIN PRIVATE KEY-----".to_vec(),
        password: "hunter2 pass".into(),
        label: "shown".into(),
        ..Default::default()
    };
    let dbg = format!("{r:?}");
    assert!(dbg.contains("shown") && dbg.contains("[redacted]"), "{dbg}");
    assert!(!dbg.contains("hunter2") && !dbg.contains("45, 45"), "{dbg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn csr_key_generated_on_the_token_signed_by_an_openssl_ca_then_completed_and_deleted_by_subject() {
    let (env, _daemon, mut store) = start().await;
    let dir = pki_dir(&env);
    let dir = dir.as_path();
    self_signed(dir, "ca", "ec:P-256", "/CN=Test CA/O=Acme");
    let csr_req = |subject: &str, key_type: pb::CsrKeyType| pb::CreateCsrRequest {
        token: TOKEN.into(),
        subject: subject.into(),
        key_type: key_type as i32,
        ..Default::default()
    };

    // ECDSA P-256 (the default curve): the token signs the request; openssl verifies it.
    let ec = store
        .create_csr(csr_req("CN=device1,O=Acme", pb::CsrKeyType::Ecdsa))
        .await
        .expect("csr")
        .into_inner();
    assert_eq!(ec.key_algorithm, "EC:P-256");
    std::fs::write(dir.join("ec.csr"), &ec.csr_pem).expect("write");
    let verified = openssl(dir, &["req", "-in", "ec.csr", "-noout", "-verify", "-subject"]);
    assert!(
        verified.contains("verify OK") || verified.contains("Certificate request self-signature verify OK"),
        "{verified}"
    );
    assert!(verified.contains("CN = device1") && verified.contains("O = Acme"), "{verified}");
    // The key is on the token: generated there, sensitive, never extractable.
    let objects = env.list_token_objects(TOKEN).expect("pkcs11-tool");
    let private: Vec<_> = objects.iter().filter(|o| o.class == "private" && o.id_hex == ec.id).collect();
    assert_eq!(private.len(), 1, "{objects:#?}");
    assert_eq!((private[0].sensitive, private[0].extractable), (Some(true), Some(false)));
    assert_eq!((private[0].never_extractable, private[0].local), (Some(true), Some(true)));
    assert!(objects.iter().all(|o| o.class != "certificate"), "no certificate until CompleteCsr");
    assert_eq!(count_audit(&env, "token_csr.create"), 1);

    // RSA 2048 and EC P-384.
    let rsa = store
        .create_csr(pb::CreateCsrRequest { rsa_bits: 2048, ..csr_req("CN=device-rsa", pb::CsrKeyType::Rsa) })
        .await
        .expect("rsa csr")
        .into_inner();
    assert_eq!(rsa.key_algorithm, "RSA:2048");
    std::fs::write(dir.join("rsa.csr"), &rsa.csr_pem).expect("write");
    openssl(dir, &["req", "-in", "rsa.csr", "-noout", "-verify"]);
    let p384 = store
        .create_csr(pb::CreateCsrRequest {
            curve: pb::EcCurve::P384 as i32,
            ..csr_req("CN=device-384", pb::CsrKeyType::Ecdsa)
        })
        .await
        .expect("p384 csr")
        .into_inner();
    assert_eq!(p384.key_algorithm, "EC:P-384");

    // The openssl CA signs the requests.
    let sign = |name: &str| openssl_ca_sign(dir, "ca", name);
    let ec_crt = sign("ec");
    let rsa_crt = sign("rsa");
    let complete = |csr_id: &str, certificate: Vec<u8>| pb::CompleteCsrRequest {
        token: TOKEN.into(),
        csr_id: csr_id.into(),
        certificate,
    };

    // The wrong certificate (another key's) is refused on `certificate`, changing nothing.
    let before = state(&env);
    expect_invalid_field(store.complete_csr(complete(&ec.csr_id, rsa_crt.clone())).await, "certificate");
    expect_invalid_field(
        store.complete_csr(complete(&ec.csr_id, b"not a certificate".to_vec())).await,
        "certificate",
    );
    expect_code(store.complete_csr(complete(&uuid_like(), ec_crt.clone())).await, Code::NotFound);
    assert_eq!(state(&env), before);

    // The right one is stored next to the key; the list shows it.
    let done = store.complete_csr(complete(&ec.csr_id, ec_crt.clone())).await.expect("complete").into_inner();
    assert_eq!(done.fingerprint, openssl_fingerprint(dir, "ec.crt", "sha1"));
    assert_eq!((done.id.as_str(), done.source.as_str()), (ec.id.as_str(), "CSR"));
    assert!(done.has_private_key);
    assert_eq!(done.subject, Some(dn("device1", "Acme", "", "", "", "")));
    assert_eq!(done.issuer, Some(dn("Test CA", "Acme", "", "", "", "")));
    assert_pair_on_token(&env, &ec.id);
    expect_code(store.complete_csr(complete(&ec.csr_id, ec_crt.clone())).await, Code::NotFound);
    let rsa_done =
        store.complete_csr(complete(&rsa.csr_id, rsa_crt)).await.expect("complete rsa").into_inner();
    assert_eq!(assert_pair_on_token(&env, &rsa_done.id), "RSA");
    let all = list_all(&mut store).await;
    assert_eq!(all.len(), 2, "{all:#?}");
    assert!(find(&all, &done.fingerprint).has_private_key);

    // Bad CreateCsr requests name their field and change nothing.
    let before = state(&env);
    for (req, field) in [
        (csr_req("", pb::CsrKeyType::Ecdsa), "subject"),
        (csr_req("CN=x,NOPE=y", pb::CsrKeyType::Ecdsa), "subject"),
        (csr_req("CN=x", pb::CsrKeyType::Unspecified), "key_type"),
        (pb::CreateCsrRequest { rsa_bits: 1024, ..csr_req("CN=x", pb::CsrKeyType::Rsa) }, "rsa_bits"),
        (pb::CreateCsrRequest { rsa_bits: 2048, ..csr_req("CN=x", pb::CsrKeyType::Ecdsa) }, "rsa_bits"),
        (
            pb::CreateCsrRequest { curve: pb::EcCurve::P256 as i32, ..csr_req("CN=x", pb::CsrKeyType::Rsa) },
            "curve",
        ),
        (pb::CreateCsrRequest { curve: 99, ..csr_req("CN=x", pb::CsrKeyType::Ecdsa) }, "curve"),
        (pb::CreateCsrRequest { token: String::new(), ..csr_req("CN=x", pb::CsrKeyType::Ecdsa) }, "token"),
    ] {
        expect_invalid_field(store.create_csr(req).await, field);
    }
    expect_code(
        store
            .create_csr(pb::CreateCsrRequest {
                token: "no-such-token".into(),
                ..csr_req("CN=x", pb::CsrKeyType::Ecdsa)
            })
            .await,
        Code::NotFound,
    );
    assert_eq!(state(&env), before);

    // Another pending CSR for device1, then everything with CN=device1 goes: the completed
    // certificate with its key pair and the pending request with its key pair.
    let pending = store
        .create_csr(csr_req("CN=device1,OU=Spare", pb::CsrKeyType::Ecdsa))
        .await
        .expect("csr")
        .into_inner();
    let by_subject =
        |cn: &str| pb::DeleteCertificateBySubjectRequest { token: TOKEN.into(), subject_cn: cn.into() };
    let gone = store
        .delete_certificate_by_subject(by_subject("device1"))
        .await
        .expect("delete by subject")
        .into_inner();
    assert_eq!(gone.deleted, [done.fingerprint.as_str()]);
    assert_eq!(gone.deleted_csrs, [pending.csr_id.as_str()]);
    assert_nothing_under(&env, &ec.id);
    assert_nothing_under(&env, &pending.id);
    assert!(certstore_rows(&env.store_path()).iter().all(|r| !r.contains(&pending.csr_id)));
    expect_code(store.delete_certificate_by_subject(by_subject("device1")).await, Code::NotFound);
    expect_invalid_field(store.delete_certificate_by_subject(by_subject("")).await, "subject_cn");
    // The rest stays: the RSA certificate and the pending P-384 request.
    let all = list_all(&mut store).await;
    assert_eq!(
        all.iter().map(|c| c.fingerprint.as_str()).collect::<Vec<_>>(),
        [rsa_done.fingerprint.as_str()]
    );
    assert_pair_on_token(&env, &rsa_done.id);
    let gone = store
        .delete_certificate_by_subject(by_subject("device-384"))
        .await
        .expect("pending only")
        .into_inner();
    assert_eq!((gone.deleted.len(), gone.deleted_csrs.as_slice()), (0, [p384.csr_id.clone()].as_slice()));
    assert_nothing_under(&env, &p384.id);
}

/// A well-formed CSR id that was never issued.
fn uuid_like() -> String {
    "6f1c1f9e-3a0e-4a43-9d43-0f6f2e6f1e1a".to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_naming_the_field_and_changes_nothing() {
    let env = TestEnv::new(1).expect("env");
    // Two more tokens sharing one label, made before the daemon starts (SoftHSM shows tokens
    // made later only after re-initialisation).
    for _ in 0..2 {
        let out = std::process::Command::new("softhsm2-util")
            .args([
                "--init-token",
                "--free",
                "--label",
                "twin",
                "--so-pin",
                &env.so_pin,
                "--pin",
                &env.card_pin,
            ])
            .env("SOFTHSM2_CONF", &env.softhsm_conf)
            .output()
            .expect("softhsm2-util");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let daemon = Daemon::start_with(&env, "[server]\nmax_upload_bytes = 4096\n").await.expect("daemon");
    let mut store = admin_store(&daemon).await;
    let dir = pki_dir(&env);
    let dir = dir.as_path();
    self_signed(dir, "good", "ec:P-256", "/CN=good");
    self_signed(dir, "other", "rsa:2048", "/CN=other");
    openssl(
        dir,
        &[
            "pkcs8",
            "-topk8",
            "-in",
            "good.key",
            "-v2",
            "aes-256-cbc",
            "-passout",
            "pass:right one",
            "-out",
            "good.p8.pem",
        ],
    );
    openssl(dir, &["x509", "-in", "good.crt", "-outform", "DER", "-out", "good.der"]);
    // Something on the token already, so "unchanged" means something.
    store
        .import_certificate(import_req(read(dir, "other.crt"), read(dir, "other.key")))
        .await
        .expect("import");

    let good_crt = read(dir, "good.crt");
    let good_key = read(dir, "good.key");
    let der = read(dir, "good.der");
    let mut oversize = good_crt.clone();
    oversize.extend(std::iter::repeat_n(b'\n', 4096));
    let mut oversize_key = good_key.clone();
    oversize_key.extend(std::iter::repeat_n(b'\n', 4096));
    let with = |cert: Vec<u8>, key: Vec<u8>, password: &str| pb::ImportCertificateRequest {
        password: password.into(),
        ..import_req(cert, key)
    };
    let cases: Vec<(&str, pb::ImportCertificateRequest, &str)> = vec![
        ("garbage certificate", with(b"hello, not a certificate".to_vec(), good_key.clone(), ""), "cert"),
        ("truncated certificate", with(der[..der.len() / 2].to_vec(), good_key.clone(), ""), "cert"),
        ("no certificate", with(Vec::new(), good_key.clone(), ""), "cert"),
        ("a key as the certificate", with(good_key.clone(), good_key.clone(), ""), "cert"),
        ("key of another certificate", with(good_crt.clone(), read(dir, "other.key"), ""), "private_key"),
        (
            "garbage key",
            with(
                good_crt.clone(),
                b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".to_vec(),
                "",
            ),
            "private_key",
        ),
        ("no key", with(good_crt.clone(), Vec::new(), ""), "private_key"),
        ("wrong password", with(good_crt.clone(), read(dir, "good.p8.pem"), "wrong one"), "password"),
        ("missing password", with(good_crt.clone(), read(dir, "good.p8.pem"), ""), "password"),
        ("oversize certificate", with(oversize, good_key.clone(), ""), "cert"),
        ("oversize key", with(good_crt.clone(), oversize_key, ""), "private_key"),
        (
            "id not hex",
            pb::ImportCertificateRequest { id: "zz".into(), ..with(good_crt.clone(), good_key.clone(), "") },
            "id",
        ),
        (
            "label with control characters",
            pb::ImportCertificateRequest {
                label: "a\u{7}b".into(),
                ..with(good_crt.clone(), good_key.clone(), "")
            },
            "label",
        ),
        (
            "no token",
            pb::ImportCertificateRequest {
                token: String::new(),
                ..with(good_crt.clone(), good_key.clone(), "")
            },
            "token",
        ),
        (
            "ambiguous label",
            pb::ImportCertificateRequest {
                token: "twin".into(),
                ..with(good_crt.clone(), good_key.clone(), "")
            },
            "token",
        ),
    ];
    let before = state(&env);
    for (what, req, field) in cases {
        eprintln!("case: {what}");
        expect_invalid_field(store.import_certificate(req).await, field);
        assert_eq!(state(&env), before, "{what} changed something");
    }
    let unknown = pb::ImportCertificateRequest {
        token: "no-such-token".into(),
        ..with(good_crt.clone(), good_key.clone(), "")
    };
    expect_code(store.import_certificate(unknown).await, Code::NotFound);
    expect_code(
        store
            .list_certificates(pb::ListCertificatesRequest {
                token: "no-such-token".into(),
                id: String::new(),
            })
            .await,
        Code::NotFound,
    );
    expect_invalid_field(
        store
            .list_certificates(pb::ListCertificatesRequest { token: "twin".into(), id: String::new() })
            .await,
        "token",
    );
    expect_code(store.delete_certificate(delete_req("00")).await, Code::NotFound);
    expect_invalid_field(store.delete_certificate(delete_req("")).await, "id");
    assert_eq!(state(&env), before, "refused requests changed something");

    // The right password, after all that, imports (the DER form of the certificate).
    let ok = store
        .import_certificate(with(der, read(dir, "good.p8.pem"), "right one"))
        .await
        .expect("import")
        .into_inner();
    assert_eq!(ok.fingerprint, openssl_fingerprint(dir, "good.crt", "sha1"));
}
